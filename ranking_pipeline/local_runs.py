"""Runs of the project's jobs executed in this process (the CLI), recorded as runs of the code location.

Each run carries the origin of the code location ``ranking_pipeline`` (the one `dagster dev` and the
production daemon load): the alert sensors of a daemon watching the same instance see it like any launched run
(and alert on it once), and the UI can re-execute it. It runs here, in this process, outside the run queue.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._core.instance.ref import InstanceRef
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

LOCATION_NAME = "ranking_pipeline"
REPOSITORY_NAME = "__repository__"
DEFINITIONS_MODULE = "ranking_pipeline.definitions"


# Failures caused by the input (not by the run): the command line reports them as bad input (exit 2).
INPUT_ERRORS = {"InputContractError", "InputSchemaError", "BusinessDateError"}


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    failure: str | None  # one line, None on success
    input_error: bool = False  # the failure's cause is the input data (nothing was written)


def _text(error) -> str:
    """An error's first line without Dagster's ``package.module.Class: `` prefix."""
    line = error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name
    head, _, rest = line.partition(": ")
    return rest if head.endswith(error.cls_name) and rest else line


def describe_error(error) -> str:
    """The error's first line, and the root cause's when the error wraps a different one (as retries do)."""
    root = error
    while root.cause is not None:
        root = root.cause
    first, root_text = _text(error), f"{root.cls_name}: {_text(root)}"
    return first if root is error or _text(root) in first else f"{first}: {root_text}"


def _origins(job_name: str):
    working_directory = os.getcwd()
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=DEFINITIONS_MODULE, working_directory=working_directory
    )
    location = InProcessCodeLocationOrigin(target, location_name=LOCATION_NAME)
    remote = RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY_NAME), job_name)
    code = (
        ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs", working_directory=working_directory)
        .get_reconstructable_job(job_name)
        .get_python_origin()
    )
    return remote, code


def execute_job(
    defs: dg.Definitions,
    job_name: str,
    instance: dg.DagsterInstance,
    tags: dict[str, str],
    *,
    quiet: bool = True,
) -> RunOutcome:
    """Create the run as a run of the code location, execute it here, and report it in one line."""
    job = defs.resolve_job_def(job_name)
    remote_origin, code_origin = _origins(job_name)
    run = instance.create_run_for_job(
        job_def=job,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL" if quiet else "INFO"}}}},
        tags={**job.tags, **tags},
        remote_job_origin=remote_origin,
        job_code_origin=code_origin,
    )
    result = execute_run(InMemoryJob(job), run, instance)
    if result.success:
        return RunOutcome(run.run_id, None)
    failures = [event for event in result.all_events if event.is_step_failure]
    if not failures:
        return RunOutcome(run.run_id, f"{job_name} run {run.run_id} failed; see the run's event log")
    error, causes = failures[0].step_failure_data.error, set()
    while error is not None:
        causes.add(error.cls_name)
        error = error.cause
    reason = describe_error(failures[0].step_failure_data.error)
    return RunOutcome(
        run.run_id,
        f"{job_name} run {run.run_id} failed in step {failures[0].step_key}: {reason}",
        input_error=bool(causes & INPUT_ERRORS),
    )


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
