"""The project's Dagster instance: one per DAGSTER_HOME, whichever folder a process starts in.

dagster.yaml keeps runs, event logs and ticks in ``.ranking_pipeline/dagster``, a relative path. Dagster's own
SQLite storage resolves it against each process's current folder, so processes sharing a DAGSTER_HOME that
holds a copy of dagster.yaml (what Dagster's docs tell people to do) but started in different folders would
write different instances. ``HomeRelativeSqliteStorage`` resolves it against DAGSTER_HOME when that is set
(the folder of the dagster.yaml every process then reads), else against the current folder (where `dagster
dev` finds ./dagster.yaml, so `dagster dev` and the command line started in the project share one instance).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from ranking_pipeline.dagster_internals import DagsterSqliteStorage, InstanceRef


def storage_folder(base_dir: str) -> str:
    """``base_dir`` made absolute: relative to DAGSTER_HOME when it is set, else to the current folder."""
    home = os.environ.get("DAGSTER_HOME")
    anchor = Path(home).expanduser() if home else Path.cwd()
    return str(anchor / base_dir)  # an absolute base_dir stays as it is


class HomeRelativeSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage whose relative ``base_dir`` is relative to DAGSTER_HOME when it is set.

    dagster.yaml names it under ``storage: custom:`` (config ``base_dir``, a string or ``{env: NAME}``).
    """

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> HomeRelativeSqliteStorage:
        return cls.from_local(storage_folder(config_value["base_dir"]), inst_data=inst_data)


class DagsterHomeError(ValueError):
    """DAGSTER_HOME names no usable folder (Dagster's own check says which and why, in one line)."""


@contextmanager
def project_instance() -> Iterator[tuple[dg.DagsterInstance, str]]:
    """The Dagster instance `dagster dev` uses when started from the current folder, and a description of it.

    DAGSTER_HOME set: that instance. Else, in a folder with a dagster.yaml (the project's): the storage that
    file names (``.ranking_pipeline/dagster``), which `dagster dev` from the same folder reads too. Else a
    temporary instance, gone when the command ends.
    """
    if os.environ.get("DAGSTER_HOME"):
        try:
            home_instance = dg.DagsterInstance.get()
        except dg.DagsterInvariantViolationError as error:  # not an absolute path, not a folder
            raise DagsterHomeError(" ".join(str(error).split())) from None
        with home_instance as instance:
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
