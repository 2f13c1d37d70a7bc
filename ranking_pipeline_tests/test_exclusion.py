"""BATCH-001 and BATCH-003 never overlap, and a batch's ranking run waits for its scoring run: the run tag
limit and the writers' pool of dagster.yaml, enforced by the real queue daemon on an instance configured by
the project's dagster.yaml, with the runs launched by a real code server."""

import datetime as dt
import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.assets.job.asset_job import IMPLICIT_ASSET_JOB_NAME
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql, infer_job_selector

from ranking_pipeline.constants import (
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    FORCE_RECOMPUTE_TAG,
    RANKINGS_WRITER_POOL,
    RANKINGS_WRITER_POOL_LIMIT,
    RANKINGS_WRITER_TAG,
)
from ranking_pipeline.defs.batch_requests import rankings_after
from ranking_pipeline.lib.business_date import BusinessDate
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.batch_003_location import HOLD_BATCH_003
from ranking_pipeline_tests.conftest import PROJECT_ROOT
from ranking_pipeline_tests.helpers import rankings_rows, run_date, wait_until

D = dt.date(2026, 11, 27)
LOCATION = "ranking_pipeline"
Status = dg.DagsterRunStatus


@pytest.fixture
def workspace(engine, database_url, instance, definitions, monkeypatch) -> Iterator:
    """The project's code location plus a BATCH-003 stand-in, served by a real code server (which, like a
    deployment's, reads its settings from the environment)."""
    seed(engine, 1_000, end_date=D, random_seed=5)
    run_date(definitions, instance, D)  # W(D) aggregated, so BATCH-001 can run
    monkeypatch.setenv("RANKING_DATABASE_URL", database_url)
    target = ModuleTarget(
        module_name="ranking_pipeline_tests.batch_003_location",
        attribute=None,
        working_directory=str(PROJECT_ROOT),
        location_name=LOCATION,
    )
    with create_test_daemon_workspace_context(target, instance) as context:
        yield context


def submit(workspace, job_name: str, tags: dict[str, str], asset_selection=None) -> str:
    """Submit a run as the UI or the GraphQL API does: it lands QUEUED."""
    request = workspace.create_request_context()
    selector = infer_job_selector(request, job_name, asset_selection=asset_selection, location_name=LOCATION)
    result = execute_dagster_graphql(
        request,
        LAUNCH_PIPELINE_EXECUTION_MUTATION,
        variables={
            "executionParams": {
                "selector": selector,
                "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            }
        },
    )
    launched = result.data["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def dequeue(workspace) -> None:
    list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(workspace))


def status(instance, run_id: str) -> Status:
    return instance.get_run_by_id(run_id).status


def wait_until_finished(instance, run_id: str, timeout: float = 180) -> Status:
    wait_until(lambda: instance.get_run_by_id(run_id).is_finished, timeout, f"the end of run {run_id}", 0.5)
    return status(instance, run_id)


def test_batch_003_never_overlaps_the_scoring_or_the_ranking_of_a_batch(workspace, instance, engine):
    scoring = submit(
        workspace, BATCH_001_SCORES_JOB, {**BusinessDate.of(D).scoring_tags(), FORCE_RECOMPUTE_TAG: "true"}
    )
    batch_003 = submit(workspace, "batch_003_job", {})

    dequeue(workspace)

    assert status(instance, scoring) in (Status.STARTING, Status.STARTED)
    assert status(instance, batch_003) == Status.QUEUED
    assert wait_until_finished(instance, scoring) == Status.SUCCESS
    [follow] = rankings_after(instance, instance.get_run_by_id(scoring))  # what the sensor requests now
    ranking = submit(workspace, BATCH_001_RANKINGS_JOB, {**follow.tags, "dagster/partition": D.isoformat()})
    dequeue(workspace)
    assert status(instance, ranking) in (Status.STARTING, Status.STARTED)  # its priority puts it first
    assert status(instance, batch_003) == Status.QUEUED
    assert wait_until_finished(instance, ranking) == Status.SUCCESS
    dequeue(workspace)
    assert wait_until_finished(instance, batch_003) == Status.SUCCESS
    records = [instance.get_run_record_by_id(run_id) for run_id in (scoring, ranking, batch_003)]
    for earlier, later in itertools.pairwise(records):
        assert later.start_time >= earlier.end_time, "two writers of rankings overlapped"
    assert len(rankings_rows(engine, D)) > 0


def test_a_ui_materialization_of_rankings_waits_for_batch_003_through_the_pool(workspace, instance, engine):
    instance.event_log_storage.set_concurrency_slots(RANKINGS_WRITER_POOL, RANKINGS_WRITER_POOL_LIMIT)
    batch_003 = submit(workspace, "batch_003_job", {})
    ui_materialization = submit(  # user_scores of D exist (the fixture ran D), so rankings alone can run
        workspace,
        IMPLICIT_ASSET_JOB_NAME,
        {"dagster/partition": D.isoformat()},
        asset_selection=[{"path": ["rankings"]}],
    )
    assert RANKINGS_WRITER_TAG not in instance.get_run_by_id(ui_materialization).tags  # only the pool applies

    with holding_batch_003(engine):
        dequeue(workspace)

        assert status(instance, batch_003) in (Status.STARTING, Status.STARTED)
        assert status(instance, ui_materialization) == Status.QUEUED
        wait_until(lambda: _batch_003_writing(engine), 120, "BATCH-003 in its write", 0.2)
        dequeue(workspace)  # again, while BATCH-003 is certainly writing
        assert status(instance, ui_materialization) == Status.QUEUED
    assert wait_until_finished(instance, batch_003) == Status.SUCCESS
    dequeue(workspace)
    assert wait_until_finished(instance, ui_materialization) == Status.SUCCESS
    earlier, later = (instance.get_run_record_by_id(run_id) for run_id in (batch_003, ui_materialization))
    assert later.start_time >= earlier.end_time, "two writers of rankings overlapped"
    assert len(rankings_rows(engine, D)) > 0


@contextmanager
def holding_batch_003(engine: sa.Engine) -> Iterator[None]:
    """BATCH-003's stand-in keeps running (in its write) until the block ends."""
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": HOLD_BATCH_003})
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": HOLD_BATCH_003})


def _batch_003_writing(engine: sa.Engine) -> bool:
    """BATCH-003's op waits on the advisory lock the test holds."""
    with engine.connect() as connection:
        return (
            connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key"
                    " AND NOT granted AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                ),
                {"key": HOLD_BATCH_003},
            ).scalar_one()
            > 0
        )
