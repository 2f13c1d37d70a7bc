"""The checks on rankings, per business date, through real materializations: the row-count anomaly passes at
60 % and warns at 40 % of the previous business date's rows (and the warning reaches Slack); the integrity
check fails on corrupted committed rankings of D, fails its run (blocking), and says so for D only."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from ranking_pipeline.constants import RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK
from ranking_pipeline.defs.alerts.anomaly import warn_on_row_count_anomaly
from ranking_pipeline.defs.alerts.failure import alert_on_run_failure
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.fakes import fake_slack, slack_messages, slack_resource
from ranking_pipeline_tests.helpers import current_check_results, run_date, sensor_tick

D = dt.date(2026, 1, 10)
PREVIOUS = D - dt.timedelta(days=1)
RANKINGS = dg.AssetKey("rankings")
ANOMALY = dg.AssetCheckKey(RANKINGS, RANKINGS_ROW_COUNT_ANOMALY_CHECK)
INTEGRITY = dg.AssetCheckKey(RANKINGS, RANKINGS_INTEGRITY_CHECK)


def ranked(engine: sa.Engine, day: dt.date) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text("SELECT user_id FROM rankings WHERE ranking_date = :d ORDER BY rank, user_id"),
                {"d": day},
            ).scalars()
        )


def latest_evaluation(instance: dg.DagsterInstance, check: dg.AssetCheckKey):
    [record] = instance.event_log_storage.get_asset_check_execution_history(check, limit=1)
    return record.event.dagster_event.event_specific_data


def rank_again_with(engine, instance, definitions, rows: int):
    """Delete ranked users of D until `rows` remain, recompute D, return the anomaly check's evaluation."""
    with engine.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM users WHERE user_id = ANY(:ids)"), {"ids": ranked(engine, D)[rows:]}
        )
    run_date(definitions, instance, D)
    assert len(ranked(engine, D)) == rows
    return latest_evaluation(instance, ANOMALY)


def test_row_count_anomaly_passes_at_60_percent_and_warns_at_40_percent_in_slack(
    engine, instance, definitions
):
    seed(engine, 2000, end_date=D)
    run_date(definitions, instance, PREVIOUS)
    run_date(definitions, instance, D)
    previous_rows = len(ranked(engine, PREVIOUS))
    with fake_slack() as slack:
        cursor = sensor_tick(
            warn_on_row_count_anomaly, instance, definitions, None, slack=slack_resource(slack)
        ).cursor

        at_60 = rank_again_with(engine, instance, definitions, round(previous_rows * 0.6))
        assert at_60.passed
        assert at_60.partition == D.isoformat()  # reported for D, not for the asset as a whole
        cursor = sensor_tick(
            warn_on_row_count_anomaly, instance, definitions, cursor, slack=slack_resource(slack)
        ).cursor
        assert slack_messages(slack) == []

        rows_40 = round(previous_rows * 0.4)
        at_40 = rank_again_with(engine, instance, definitions, rows_40)
        assert not at_40.passed
        assert at_40.severity == dg.AssetCheckSeverity.WARN
        assert at_40.metadata["rows"].value == rows_40
        assert at_40.metadata["previous_rows"].value == previous_rows
        for _ in range(2):
            cursor = sensor_tick(
                warn_on_row_count_anomaly, instance, definitions, cursor, slack=slack_resource(slack)
            ).cursor

        [message] = slack_messages(slack)
    text = message["text"]
    assert f"Warning: rankings row-count anomaly* for business date {D}" in text
    assert f"*Rows:* {rows_40:,}   *Previous ({PREVIOUS}):* {previous_rows:,}" in text
    assert f"*Ratio:* {rows_40 / previous_rows:.1%} (threshold 50%)" in text


def test_the_integrity_check_fails_on_corrupted_rankings_of_d_only_and_fails_its_run(
    engine, instance, definitions
):
    seed(engine, 2000, end_date=D)
    run_date(definitions, instance, PREVIOUS)
    run_date(definitions, instance, D)
    assert latest_evaluation(instance, INTEGRITY).passed
    with engine.begin() as connection:  # a bad write behind the pipeline's back: rank 2 becomes rank 1
        connection.execute(
            sa.text("UPDATE rankings SET rank = 1 WHERE ranking_date = :d AND rank = 2"), {"d": D}
        )

    checks_only = definitions.get_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={INTEGRITY}
    )  # what "Execute" on the Checks tab runs, for the partitions picked there
    result = checks_only.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": str(PREVIOUS),
            "dagster/asset_partition_range_end": str(D),
        },
        raise_on_error=False,
    )

    evaluations = {e.partition: e for e in result.get_asset_check_evaluations()}
    assert evaluations[str(PREVIOUS)].passed  # the other date is fine, and says so
    failed = evaluations[str(D)]
    assert not failed.passed
    assert failed.severity == dg.AssetCheckSeverity.ERROR
    assert "whose rank is not RANK() OVER (ORDER BY score DESC)" in failed.description
    assert not result.success  # blocking: the run fails, so nothing downstream of it proceeds


def test_each_dates_check_results_name_the_materialization_they_checked(engine, instance, definitions):
    seed(engine, 300, end_date=D)
    run_date(definitions, instance, PREVIOUS)
    run_date(definitions, instance, D)

    for check in (INTEGRITY, ANOMALY):
        assert current_check_results(instance, check) == {str(PREVIOUS): "SUCCEEDED", str(D): "SUCCEEDED"}

    checks_only = definitions.get_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={INTEGRITY, ANOMALY}
    )  # "Execute" on the Checks tab: the checks of D evaluate D's latest materialization too
    range_of_d = {"dagster/asset_partition_range_start": str(D), "dagster/asset_partition_range_end": str(D)}
    assert checks_only.execute_in_process(instance=instance, tags=range_of_d).success
    for check in (INTEGRITY, ANOMALY):
        assert current_check_results(instance, check) == {str(PREVIOUS): "SUCCEEDED", str(D): "SUCCEEDED"}


def test_checks_run_without_a_date_fail_at_once_with_one_line_and_alert_nobody(engine, instance, definitions):
    """What *Execute all* on the Checks tab launches: the checks of rankings, no asset, no partition."""
    seed(engine, 300, end_date=D, random_seed=4)
    run_date(definitions, instance, D)
    with fake_slack() as slack:
        channels = {"slack": slack_resource(slack)}
        cursor = sensor_tick(alert_on_run_failure, instance, definitions, None, **channels).cursor
        job = definitions.resolve_implicit_job_def_def_for_assets([RANKINGS])
        result = job.get_subset(
            asset_selection=set(), asset_check_selection={INTEGRITY, ANOMALY}
        ).execute_in_process(instance=instance, raise_on_error=False)
        sensor_tick(alert_on_run_failure, instance, definitions, cursor, **channels)
        posted = slack_messages(slack)

    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("rankings' checks are per business date and this run names none")
    assert "open Jobs > rankings_checks_job > Launchpad" in description  # how to check a date instead
    assert "\n" not in description
    assert not instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert posted == []  # checks only: not the batch, no Critical alert
