"""rankings_checks_job, what the README points to for checking dates from the UI: run as a run of the code
location on a real instance and database, it evaluates rankings' checks for its date only, reports them on
rankings' Checks tab for that date, never re-ranks, and a failure of it alerts nobody."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from ranking_pipeline.constants import (
    RANKINGS_CHECKS_JOB,
    RANKINGS_INTEGRITY_CHECK,
    RANKINGS_ROW_COUNT_ANOMALY_CHECK,
)
from ranking_pipeline.defs.alerts.failure import alert_on_run_failure
from ranking_pipeline.lib.seed import seed
from ranking_pipeline.local_runs import execute_job
from ranking_pipeline_tests.fakes import fake_slack, slack_messages, slack_resource
from ranking_pipeline_tests.helpers import current_check_results, rankings_rows, run_date, sensor_tick

D = dt.date(2026, 1, 10)
PREVIOUS = D - dt.timedelta(days=1)
NEVER_RANKED = D - dt.timedelta(days=5)
RANKINGS = dg.AssetKey("rankings")
INTEGRITY = dg.AssetCheckKey(RANKINGS, RANKINGS_INTEGRITY_CHECK)
ANOMALY = dg.AssetCheckKey(RANKINGS, RANKINGS_ROW_COUNT_ANOMALY_CHECK)


def check_date(definitions, instance, day: dt.date):
    """What launching rankings_checks_job for one date in the UI does: a run of the code location."""
    return execute_job(definitions, RANKINGS_CHECKS_JOB, instance, {"dagster/partition": day.isoformat()})


def evaluations_in(instance: dg.DagsterInstance, run_id: str) -> dict[tuple[str, str], object]:
    """(check name, partition) -> the evaluation the run reported."""
    return {
        (event.check_name, event.partition): event
        for event in (
            entry.dagster_event.event_specific_data
            for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        )
    }


def test_the_checks_job_evaluates_the_picked_date_only_and_never_re_ranks(engine, instance, definitions):
    seed(engine, 2000, end_date=D)
    run_date(definitions, instance, PREVIOUS)
    run_date(definitions, instance, D)
    [ranking_of_d] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RANKINGS, asset_partitions=[str(D)]), limit=1
    ).records
    with engine.begin() as connection:  # a bad write behind the pipeline's back: rank 2 becomes rank 1
        connection.execute(
            sa.text("UPDATE rankings SET rank = 1 WHERE ranking_date = :d AND rank = 2"), {"d": D}
        )
    rows_before = {day: rankings_rows(engine, day) for day in (PREVIOUS, D)}
    materialized_before = instance.fetch_materializations(RANKINGS, limit=100).records

    with fake_slack() as slack:
        channels = {"slack": slack_resource(slack)}
        cursor = sensor_tick(alert_on_run_failure, instance, definitions, None, **channels).cursor
        passed = check_date(definitions, instance, PREVIOUS)
        failed = check_date(definitions, instance, D)
        for _ in range(2):  # the failure sensor looks at both runs
            cursor = sensor_tick(alert_on_run_failure, instance, definitions, cursor, **channels).cursor
        posted = slack_messages(slack)

    assert passed.failure is None
    previous = evaluations_in(instance, passed.run_id)
    assert set(previous) == {
        (RANKINGS_INTEGRITY_CHECK, str(PREVIOUS)),
        (RANKINGS_ROW_COUNT_ANOMALY_CHECK, str(PREVIOUS)),
    }
    assert all(evaluation.passed for evaluation in previous.values())

    assert failed.failure is not None and "DagsterAssetCheckFailedError" in failed.causes, failed.causes
    [(name, partition)] = [key for key, e in evaluations_in(instance, failed.run_id).items() if not e.passed]
    assert (name, partition) == (RANKINGS_INTEGRITY_CHECK, str(D))
    integrity = evaluations_in(instance, failed.run_id)[(name, partition)]
    assert "whose rank is not RANK() OVER (ORDER BY score DESC)" in integrity.description
    assert integrity.metadata["rows"].value == len(rows_before[D])
    # What the Checks tab shows per date: the corrupted date failed, the other passed, both current (they
    # name the batch's materialization of their date).
    assert current_check_results(instance, INTEGRITY) == {str(PREVIOUS): "SUCCEEDED", str(D): "FAILED"}
    assert current_check_results(instance, ANOMALY) == {str(PREVIOUS): "SUCCEEDED", str(D): "SUCCEEDED"}
    assert integrity.target_materialization_data.storage_id == ranking_of_d.storage_id

    # Read only: no ranking replaced, republished or materialized; nobody alerted.
    assert {day: rankings_rows(engine, day) for day in (PREVIOUS, D)} == rows_before
    assert instance.fetch_materializations(RANKINGS, limit=100).records == materialized_before
    assert posted == []
    assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE


def test_a_date_without_rankings_fails_at_once_in_one_line_and_reports_nothing(engine, instance, definitions):
    seed(engine, 300, end_date=D, random_seed=4)
    run_date(definitions, instance, D)

    outcome = check_date(definitions, instance, NEVER_RANKED)

    assert outcome.failure is not None
    assert outcome.failure.endswith(
        f"no rankings of {NEVER_RANKED} are committed, so there is nothing to check: rank the date first "
        f"(rankings > Materialize..., or `ranking-pipeline run --date {NEVER_RANKED}`); nothing was written"
    )
    assert "\n" not in outcome.failure
    assert evaluations_in(instance, outcome.run_id) == {}
    assert str(NEVER_RANKED) not in current_check_results(instance, INTEGRITY)
    assert not instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)

    no_date = execute_job(definitions, RANKINGS_CHECKS_JOB, instance, {})  # launched without a partition
    assert no_date.failure is not None and "\n" not in no_date.failure
    assert f"open Jobs > {RANKINGS_CHECKS_JOB} > Launchpad, pick it under Partition" in no_date.failure
    assert evaluations_in(instance, no_date.run_id) == {}
