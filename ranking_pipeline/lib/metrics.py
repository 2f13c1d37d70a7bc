"""Batch metrics (design 6.3): runs per day, mean run time over the last 30 days, failure rate per month and
the processed-count trend by week. Pure functions of a run history and of per-date processed counts, plus
the SQL reading those counts from the management table and a PNG chart."""

from __future__ import annotations

import base64
import datetime as dt
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


CHART_DAYS = 30
CHART_WEEKS = 12


def _polyline(values: list[int], top: int, bottom: int, color: str) -> str:
    peak = max(values, default=0) or 1
    step = 300 / max(len(values) - 1, 1)
    points = " ".join(
        f"{round(i * step)},{bottom - round((bottom - top) * v / peak)}" for i, v in enumerate(values)
    )
    return f"<polyline points='{points}' fill='none' stroke='{color}' stroke-width='2'/>"


def chart_markdown(per_day: dict[dt.date, int], per_week: dict[str, WeekCount], today: dt.date) -> str:
    """A small SVG chart as inline markdown (under 1,000 characters, so the UI shows it as an image, not a
    link): batches per JST day over the last 30 days, and users scored per ISO week over the last 12."""
    days = [per_day.get(today - dt.timedelta(days=offset), 0) for offset in range(CHART_DAYS - 1, -1, -1)]
    weeks = [count.users_scored for count in list(per_week.values())[-CHART_WEEKS:]]
    svg = (
        "<svg xmlns='http://www.w3.org/2000/svg' width='300' height='104' font-size='9'>"
        f"{_polyline(days, 12, 44, '#4f43dd')}<text y='9'>batches per day, last {CHART_DAYS} days</text>"
        f"{_polyline(weeks, 64, 100, '#0d9488')}<text y='61'>users scored per week</text></svg>"
    )
    encoded = base64.b64encode(svg.encode()).decode()
    return f"![batches per day; users scored per week](data:image/svg+xml;base64,{encoded})"
