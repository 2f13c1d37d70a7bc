"""The project's Dagster instance, as the command line opens it (the instance `dagster dev` shows)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef


@contextmanager
def project_instance() -> Iterator[tuple[dg.DagsterInstance, str]]:
    """The Dagster instance `dagster dev` uses when started from the current folder, and a description of it.

    DAGSTER_HOME set: that instance. Else, in a folder with a dagster.yaml (the project's): the storage that
    file names (``.ranking_pipeline/dagster``), which `dagster dev` from the same folder reads too. Else a
    temporary instance, gone when the command ends.
    """
    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            yield instance, f"the Dagster instance in DAGSTER_HOME={os.environ['DAGSTER_HOME']}"
        return
    here = Path.cwd()
    if (here / "dagster.yaml").exists():
        # Like `dagster dev`: settings and storage from ./dagster.yaml, scratch files in a temporary folder.
        with (
            tempfile.TemporaryDirectory(prefix=".tmp_dagster_home_", dir=here) as scratch,
            dg.DagsterInstance.from_ref(InstanceRef.from_dir(scratch, config_dir=str(here))) as instance,
        ):
            yield (
                instance,
                f"the Dagster instance of {here / 'dagster.yaml'} (what `dagster dev` here shows)",
            )
        return
    with (
        tempfile.TemporaryDirectory(prefix="ranking-pipeline-dagster-") as home,
        dg.DagsterInstance.local_temp(home, overrides={"telemetry": {"enabled": False}}) as instance,
    ):
        yield instance, "a temporary Dagster instance (no dagster.yaml here and no DAGSTER_HOME)"
