"""Runs of the project's jobs executed in this process (the CLI), recorded as runs of the code location.

Each run carries the origin of the code location ``ranking_pipeline`` (the one `dagster dev` and the
production daemon load): the alert sensors of a daemon watching the same instance see it like any launched run
(and alert on it once), and the UI can re-execute it. It runs here, in this process, outside the run queue.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import dagster as dg

from ranking_pipeline.dagster_internals import (
    InMemoryJob,
    InProcessCodeLocationOrigin,
    LoadableTargetOrigin,
    ReconstructableRepository,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
    execute_run,
)

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
    step: str | None = None  # the step that failed first
    causes: frozenset[str] = frozenset()  # the class names of its error and of the errors behind it


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
        step=failures[0].step_key,
        causes=frozenset(causes),
    )
