"""The checks on rankings through real materializations: the row-count anomaly passes at 60 % and warns at
40 % of the previous business date's rows (and the warning reaches Slack); the integrity check fails on
corrupted committed rankings and blocks what depends on them."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from ranking_pipeline.constants import RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK
from ranking_pipeline.definitions import defs
from ranking_pipeline.defs.alerts import warn_on_row_count_anomaly
from ranking_pipeline.defs.checks import rankings_integrity_check
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.fakes import fake_slack, slack_messages
from ranking_pipeline_tests.helpers import run_date

D = dt.date(2026, 1, 10)
PREVIOUS = D - dt.timedelta(days=1)
RANKINGS = dg.AssetKey("rankings")


@pytest.fixture
def slack(monkeypatch):
    with fake_slack() as server:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("RANKING_SLACK_API_URL", f"{server.url}/api/")
        yield server


def tick(instance: dg.DagsterInstance, cursor: str | None) -> str | None:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs().resources) as context:
        return warn_on_row_count_anomaly.evaluate_tick(context).cursor


def ranked(engine: sa.Engine, day: dt.date) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text("SELECT user_id FROM rankings WHERE ranking_date = :d ORDER BY rank, user_id"),
                {"d": day},
            ).scalars()
        )


def rank_again_with(engine: sa.Engine, instance: dg.DagsterInstance, rows: int):
    """Delete ranked users of D until `rows` remain, recompute D, return the anomaly check's record."""
    with engine.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM users WHERE user_id = ANY(:ids)"),
            {"ids": ranked(engine, D)[rows:]},
        )
    run_date(instance, D)
    assert len(ranked(engine, D)) == rows
    key = dg.AssetCheckKey(RANKINGS, RANKINGS_ROW_COUNT_ANOMALY_CHECK)
    [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    return record.event.dagster_event.event_specific_data


def test_row_count_anomaly_passes_at_60_percent_and_warns_at_40_percent_in_slack(engine, instance, slack):
    seed(engine, 2000, end_date=D)
    run_date(instance, PREVIOUS)
    run_date(instance, D)
    previous_rows = len(ranked(engine, PREVIOUS))
    cursor = tick(instance, None)

    at_60 = rank_again_with(engine, instance, round(previous_rows * 0.6))
    assert at_60.passed
    cursor = tick(instance, cursor)
    assert slack_messages(slack) == []

    rows_40 = round(previous_rows * 0.4)
    at_40 = rank_again_with(engine, instance, rows_40)
    assert not at_40.passed
    assert at_40.severity == dg.AssetCheckSeverity.WARN
    assert at_40.metadata["rows"].value == rows_40
    assert at_40.metadata["previous_rows"].value == previous_rows
    cursor = tick(instance, cursor)
    tick(instance, cursor)

    [message] = slack_messages(slack)
    text = message["text"]
    assert f"Warning: rankings row-count anomaly* for business date {D}" in text
    assert f"*Rows:* {rows_40:,}   *Previous ({PREVIOUS}):* {previous_rows:,}" in text
    assert f"*Ratio:* {rows_40 / previous_rows:.1%} (threshold 50%)" in text


def test_the_integrity_check_fails_on_corrupted_rankings_and_blocks_downstream(engine, instance):
    seed(engine, 2000, end_date=D)
    run_date(instance, D)
    mailed: list[str] = []

    @dg.asset(deps=[RANKINGS])
    def ranking_mail_recipients() -> None:
        """Stands in for BATCH-002, which reads the rankings."""
        mailed.append("sent")

    def check_then_mail() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [defs().get_assets_def("rankings"), rankings_integrity_check, ranking_mail_recipients],
            selection=dg.AssetSelection.checks(rankings_integrity_check)
            | dg.AssetSelection.assets(ranking_mail_recipients),
            instance=instance,
            resources=defs().resources,
            tags={"ranking/business_date": D.isoformat()},
            raise_on_error=False,
        )

    assert check_then_mail().success and mailed == ["sent"]  # intact rankings flow downstream
    with engine.begin() as connection:  # a bad write behind the pipeline's back: rank 2 becomes rank 1
        connection.execute(
            sa.text("UPDATE rankings SET rank = 1 WHERE ranking_date = :d AND rank = 2"), {"d": D}
        )
    result = check_then_mail()

    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == RANKINGS_INTEGRITY_CHECK
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "whose rank is not RANK() OVER (ORDER BY score DESC)" in evaluation.description
    assert mailed == ["sent"]  # not run again: blocked by the failed check
    assert not result.success
