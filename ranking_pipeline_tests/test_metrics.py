"""Design 6.3 metrics: the math on a prepared run history, and the asset on a real instance's runs."""

from __future__ import annotations

import datetime as dt

import dagster as dg

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


def test_the_chart_is_a_png():
    png = metrics.render_chart(metrics.runs_per_day(HISTORY), {"2026-W06": metrics.WeekCount(2, 2200, 1900)})
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_the_metrics_asset_reports_the_instance_batches_and_processed_counts(engine, instance, definitions):
    day = dt.date(2026, 1, 10)
    seed(engine, 2000, end_date=day)
    first = run_date(definitions, instance, day - dt.timedelta(days=1))
    second = run_date(definitions, instance, day)

    result = dg.materialize(
        [definitions.get_assets_def("batch_metrics")], instance=instance, resources=definitions.resources
    )

    assert result.success
    [materialization] = result.asset_materializations_for_node("batch_metrics")
    metadata = materialization.metadata
    assert metadata["runs_recorded"].value == 2  # two BATCH-001 batches (two runs each), not BATCH-000
    assert metadata["runs_today_jst"].value == 2
    assert metadata["failure_rate_this_month"].value == 0.0
    assert 0 < metadata["mean_duration_seconds_30d"].value < 120
    week = "| 2026-W02 | 2 | " + f"{first.scored_users + second.scored_users:,}"
    assert week in metadata["processed_per_week"].value
    assert metadata["chart"].value.startswith("![BATCH-001 metrics](data:image/png;base64,iVBORw0KGgo")
