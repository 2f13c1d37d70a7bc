"""Design 6.3 metrics: the math on a prepared run history, and the asset on a real instance's runs."""

from __future__ import annotations

import base64
import datetime as dt

import dagster as dg
from dagster._core.test_utils import freeze_time

from ranking_pipeline.lib import metrics
from ranking_pipeline.lib.business_date import JST
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.helpers import run_date

NOW = dt.datetime(2026, 3, 2, 3, 30, tzinfo=JST)


def run(run_id: str, status: str, start: dt.datetime | None, minutes: float | None) -> metrics.RunFact:
    end = start + dt.timedelta(minutes=minutes) if start and minutes is not None else None
    return metrics.RunFact(run_id, status, start, end)


HISTORY = [
    run("jan-ok", "SUCCESS", dt.datetime(2026, 1, 30, 3, 0, tzinfo=JST), 100),  # older than 30 days
    run("feb-1-ok", "SUCCESS", dt.datetime(2026, 2, 1, 3, 0, tzinfo=JST), 10),
    run("feb-1-fail", "FAILURE", dt.datetime(2026, 2, 1, 3, 40, tzinfo=JST), 30),
    run("feb-1-retry", "SUCCESS", dt.datetime(2026, 2, 1, 4, 0, tzinfo=JST), 8),
    run("feb-2-late-utc", "SUCCESS", dt.datetime(2026, 2, 1, 18, 30, tzinfo=dt.UTC), 12),  # 03:30 JST 2 Feb
    run("feb-28-cancel", "CANCELED", dt.datetime(2026, 2, 28, 3, 0, tzinfo=JST), 1),
    run("mar-1-fail", "FAILURE", dt.datetime(2026, 3, 1, 3, 0, tzinfo=JST), 2),
    run("mar-2-running", "STARTED", dt.datetime(2026, 3, 2, 3, 0, tzinfo=JST), None),
    run("never-started", "QUEUED", None, None),
]


def test_runs_per_day_counts_starts_by_jst_day():
    assert metrics.runs_per_day(HISTORY) == {
        dt.date(2026, 1, 30): 1,
        dt.date(2026, 2, 1): 3,
        dt.date(2026, 2, 2): 1,
        dt.date(2026, 2, 28): 1,
        dt.date(2026, 3, 1): 1,
        dt.date(2026, 3, 2): 1,
    }


def test_mean_duration_covers_successful_runs_of_the_last_30_days():
    # 30 days before NOW is 31 Jan 03:30 JST: the 100-minute January run is out; failures are left out.
    assert metrics.mean_duration_seconds(HISTORY, NOW) == (10 + 8 + 12) / 3 * 60
    assert metrics.mean_duration_seconds(HISTORY, NOW + dt.timedelta(days=60)) is None


def test_failure_rate_per_month_is_failed_over_finished_runs():
    rates = metrics.failure_rate_by_month(HISTORY)
    assert {month: (r.failures, r.finished) for month, r in rates.items()} == {
        "2026-01": (0, 1),
        "2026-02": (1, 4),  # cancelled runs are neither
        "2026-03": (1, 1),
    }
    assert rates["2026-02"].rate == 0.25


def test_processed_counts_trend_by_iso_week():
    processed = [
        metrics.ProcessedFact(dt.date(2026, 2, 1), 900, 800),  # Sunday: ISO week 5
        metrics.ProcessedFact(dt.date(2026, 2, 2), 1000, 900),  # Monday: week 6
        metrics.ProcessedFact(dt.date(2026, 2, 3), 1200, 1000),
    ]
    weeks = metrics.processed_by_week(processed)
    assert list(weeks) == ["2026-W05", "2026-W06"]
    assert weeks["2026-W06"] == metrics.WeekCount(days=2, users_scored=2200, users_ranked=1900)
    assert weeks["2026-W06"].mean_scored_per_day == 1100


def test_the_chart_is_an_inline_svg_small_enough_for_the_ui_to_show_it_as_an_image():
    busy_days = {NOW.date() - dt.timedelta(days=n): 1000 + n for n in range(400)}
    busy_weeks = {f"W{n}": metrics.WeekCount(7, 10**9 + n, 10**9) for n in range(60)}
    chart = metrics.chart_markdown(busy_days, busy_weeks, NOW.date())
    assert chart.startswith("![") and "(data:image/svg+xml;base64," in chart
    assert len(chart) < 1000  # the UI renders markdown metadata inline only under 1,000 characters
    svg = base64.b64decode(chart.split("base64,")[1].rstrip(")")).decode()
    assert svg.count("<polyline") == 2 and "batches per day" in svg


def test_the_metrics_asset_reports_the_instance_batches_and_processed_counts(engine, instance, definitions):
    day = dt.date(2026, 1, 10)
    seed(engine, 2000, end_date=day)
    first = run_date(definitions, instance, day - dt.timedelta(days=1))
    second = run_date(definitions, instance, day)

    now = dt.datetime.fromtimestamp(instance.get_run_records(limit=1)[0].end_time, tz=dt.UTC)
    with freeze_time(now + dt.timedelta(seconds=1)):  # the asset's clock, right after the second batch
        result = dg.materialize(
            [definitions.get_assets_def("batch_metrics")], instance=instance, resources=definitions.resources
        )

    assert result.success
    [materialization] = result.asset_materializations_for_node("batch_metrics")
    metadata = materialization.metadata
    assert metadata["runs_recorded"].value == 2  # two BATCH-001 batches (two runs each), not BATCH-000
    starts = [
        r.start_time for r in instance.get_run_records() if r.dagster_run.job_name == "batch_001_scores_job"
    ]
    today = (now + dt.timedelta(seconds=1)).astimezone(JST).date()
    expected_today = sum(dt.datetime.fromtimestamp(t, tz=JST).date() == today for t in starts)
    assert (
        metadata["runs_today_jst"].value == expected_today
    )  # both batches, unless JST midnight fell between
    assert metadata["failure_rate_this_month"].value == 0.0
    assert 0 < metadata["mean_duration_seconds_30d"].value < 120
    week = "| 2026-W02 | 2 | " + f"{first.scored_users + second.scored_users:,}"
    assert week in metadata["processed_per_week"].value
    assert "(data:image/svg+xml;base64," in metadata["chart"].value
