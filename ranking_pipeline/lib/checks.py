"""Checks on the rankings of a date: integrity (must hold) and row-count anomaly (suspicious)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ranking_pipeline.lib.partitions import RANKINGS, partition_dates

DEFAULT_ANOMALY_THRESHOLD = 0.5  # design 6.1: under 50 % of the previous day's count warns

_INTEGRITY = """
    SELECT count(*),
           coalesce(min(rank), 1),
           count(*) FILTER (WHERE score <= 0),
           count(*) FILTER (WHERE rank <> expected_rank)
    FROM (SELECT user_id, rank, score, RANK() OVER (ORDER BY score DESC) AS expected_rank
          FROM {table} WHERE ranking_date = :business_date) AS ranked
"""


class IntegrityError(RuntimeError):
    """The rankings about to be committed break a rule that must always hold."""


@dataclass(frozen=True)
class IntegrityReport:
    rows: int
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def rankings_integrity(
    connection: Connection, business_date: dt.date, table: str = "rankings"
) -> IntegrityReport:
    """The rules the rows of D in ``table`` (rankings, or the new rows about to replace D's) must follow.
    One row per user is the primary key's (ranking_date, user_id) to keep, not re-counted here."""
    rows, first_rank, non_positive, misranked = connection.execute(
        sa.text(_INTEGRITY.format(table=table)), {"business_date": business_date}
    ).one()
    problems = []
    if first_rank != 1:
        problems.append(f"ranks start at {first_rank}, not 1")
    if non_positive:
        problems.append(f"{non_positive} row(s) with a score of 0 or less")
    if misranked:
        problems.append(f"{misranked} row(s) whose rank is not RANK() OVER (ORDER BY score DESC)")
    return IntegrityReport(rows=rows, problems=problems)


# The candidate dates come from the catalog (the dates with a partition) and the small DEFAULT partition, and
# each count is planned with its date known, so PostgreSQL reads one partition. As one statement with a
# subquery the date was known only at run time and the plan scanned every partition (8.6 s with 400 dates
# of history at 100,000 users); even `max(ranking_date)` over the table plans a scan per partition.
_LATEST_IN_DEFAULT = sa.text(
    "SELECT max(ranking_date) FROM rankings_default WHERE ranking_date < :business_date"
)
_COUNT_OF_DATE = sa.text("SELECT count(*) FROM rankings WHERE ranking_date = :day")


def previous_ranking_count(connection: Connection, business_date: dt.date) -> tuple[dt.date, int] | None:
    """The latest earlier business date that has rankings, with its row count."""
    candidates = {day for day in partition_dates(connection, RANKINGS) if day < business_date}
    candidates.add(connection.execute(_LATEST_IN_DEFAULT, {"business_date": business_date}).scalar())
    for day in sorted(candidates - {None}, reverse=True):
        if rows := connection.execute(_COUNT_OF_DATE, {"day": day}).scalar_one():
            return day, rows
    return None


@dataclass(frozen=True)
class AnomalyVerdict:
    passed: bool
    ratio: float | None
    description: str


def row_count_anomaly(
    current: int, previous: tuple[dt.date, int] | None, threshold: float = DEFAULT_ANOMALY_THRESHOLD
) -> AnomalyVerdict:
    """Warn when the rows for D fall under ``threshold`` times the previous business date's rows."""
    if previous is None or previous[1] == 0:
        return AnomalyVerdict(True, None, f"{current:,} rows; no earlier business date to compare with")
    previous_date, previous_rows = previous
    ratio = current / previous_rows
    verdict = "under" if ratio < threshold else "at or above"
    return AnomalyVerdict(
        ratio >= threshold,
        ratio,
        f"{current:,} rows vs {previous_rows:,} on {previous_date}: {ratio:.1%}, "
        f"{verdict} the {threshold:.0%} threshold",
    )
