"""Batch metrics (design 6.3): runs per day, mean run time over the last 30 days, failure rate per month and
the processed-count trend by week. Pure functions of a run history and of per-date processed counts, plus
the SQL reading those counts from the management table and a PNG chart."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter, defaultdict
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ranking_pipeline.lib.business_date import JST

SUCCESS, FAILURE = "SUCCESS", "FAILURE"
DURATION_WINDOW_DAYS = 30


@dataclass(frozen=True)
class RunFact:
    run_id: str
    status: str  # Dagster's run status name: SUCCESS, FAILURE, CANCELED, STARTED, ...
    start: dt.datetime | None  # timezone-aware
    end: dt.datetime | None

    @property
    def seconds(self) -> float | None:
        return (self.end - self.start).total_seconds() if self.start and self.end else None


@dataclass(frozen=True)
class ProcessedFact:
    business_date: dt.date
    users_scored: int
    users_ranked: int


@dataclass(frozen=True)
class MonthRate:
    failures: int
    finished: int

    @property
    def rate(self) -> float:
        return self.failures / self.finished if self.finished else 0.0


@dataclass(frozen=True)
class WeekCount:
    days: int
    users_scored: int
    users_ranked: int

    @property
    def mean_scored_per_day(self) -> float:
        return self.users_scored / self.days if self.days else 0.0


def runs_per_day(runs: list[RunFact]) -> dict[dt.date, int]:
    """Runs started per JST calendar day (runs that never started are not counted)."""
    counts = Counter(run.start.astimezone(JST).date() for run in runs if run.start)
    return dict(sorted(counts.items()))


def mean_duration_seconds(
    runs: list[RunFact], now: dt.datetime, days: int = DURATION_WINDOW_DAYS
) -> float | None:
    """Mean wall-clock time of the successful runs that started in the last ``days`` days; None if none.

    Failed runs are left out: a run stopped at once or by the timeout says nothing about how long the
    batch takes (their share is the failure rate)."""
    since = now - dt.timedelta(days=days)
    durations = [
        r.seconds
        for r in runs
        if r.status == SUCCESS and r.start and r.start >= since and r.seconds is not None
    ]
    return sum(durations) / len(durations) if durations else None


def failure_rate_by_month(runs: list[RunFact]) -> dict[str, MonthRate]:
    """Per JST month (YYYY-MM) of the start: failed runs over finished (succeeded or failed) runs."""
    failures: Counter[str] = Counter()
    finished: Counter[str] = Counter()
    for run in runs:
        if run.start is None or run.status not in (SUCCESS, FAILURE):
            continue
        month = run.start.astimezone(JST).strftime("%Y-%m")
        finished[month] += 1
        failures[month] += run.status == FAILURE
    return {month: MonthRate(failures[month], finished[month]) for month in sorted(finished)}


def processed_by_week(processed: list[ProcessedFact]) -> dict[str, WeekCount]:
    """Per ISO week (YYYY-Www) of the business date: dates computed, users scored and ranked."""
    weeks: dict[str, list[ProcessedFact]] = defaultdict(list)
    for fact in processed:
        year, week, _ = fact.business_date.isocalendar()
        weeks[f"{year}-W{week:02d}"].append(fact)
    return {
        week: WeekCount(len(facts), sum(f.users_scored for f in facts), sum(f.users_ranked for f in facts))
        for week, facts in sorted(weeks.items())
    }


_PROCESSED = sa.text(
    """
    SELECT business_date,
           coalesce(sum(row_count) FILTER (WHERE asset = 'user_scores'), 0),
           coalesce(sum(row_count) FILTER (WHERE asset = 'rankings'), 0)
    FROM ranking_partition_runs
    WHERE status = 'completed' AND asset IN ('user_scores', 'rankings')
    GROUP BY business_date ORDER BY business_date
    """
)


def read_processed(connection: Connection) -> list[ProcessedFact]:
    """Users scored and ranked per business date, from the management table (latest completed results)."""
    return [
        ProcessedFact(day, int(scored), int(ranked)) for day, scored, ranked in connection.execute(_PROCESSED)
    ]


def markdown_tables(
    per_day: dict[dt.date, int], per_month: dict[str, MonthRate], per_week: dict[str, WeekCount]
) -> dict[str, str]:
    return {
        "runs_per_day": "| JST day | runs |\n|---|---|\n"
        + "\n".join(f"| {day} | {count} |" for day, count in per_day.items()),
        "failure_rate_per_month": "| month | failed | finished | failure rate |\n|---|---|---|---|\n"
        + "\n".join(f"| {m} | {r.failures} | {r.finished} | {r.rate:.1%} |" for m, r in per_month.items()),
        "processed_per_week": "| ISO week | dates | users scored | users ranked | scored per date |\n"
        "|---|---|---|---|---|\n"
        + "\n".join(
            f"| {w} | {c.days} | {c.users_scored:,} | {c.users_ranked:,} | {c.mean_scored_per_day:,.0f} |"
            for w, c in per_week.items()
        ),
    }


def render_chart(per_day: dict[dt.date, int], per_week: dict[str, WeekCount]) -> bytes:
    """A PNG: runs per day (last 30 days shown) and users scored per week."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    days = list(per_day.items())[-30:]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), constrained_layout=True)
    try:
        top.bar([d.isoformat()[5:] for d, _ in days], [c for _, c in days], color="#4f43dd")
        top.set_title("BATCH-001 runs per day (JST)")
        top.tick_params(axis="x", labelrotation=60, labelsize=7)
        weeks = list(per_week.items())
        bottom.plot([w for w, _ in weeks], [c.users_scored for _, c in weeks], marker="o", color="#0d9488")
        bottom.set_title("Users scored per ISO week")
        bottom.tick_params(axis="x", labelrotation=60, labelsize=7)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
    finally:
        plt.close(figure)
    return buffer.getvalue()
