"""The batch's SQL, set-based and parameterized: all heavy work runs inside PostgreSQL.

Every writer runs in one transaction that first sets ``lock_timeout`` (design 5.2: 10 s), so a writer
blocked by another session fails with SQLSTATE 55P03 instead of hanging, and its RetryPolicy retries it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ranking_pipeline.lib.business_date import check_aggregation_days, days_between, jst_midnight, window_days
from ranking_pipeline.lib.checks import IntegrityError, IntegrityReport, rankings_integrity
from ranking_pipeline.lib.errors import TransientError
from ranking_pipeline.lib.partitions import (
    RANKINGS,
    USER_SCORES,
    analyze_date,
    create_staging_table,
    drop_dates_before,
    partition_dates,
    replace_date_partition,
)
from ranking_pipeline.lib.ranges import UserIdRange
from ranking_pipeline.lib.state import RANKINGS_ASSET, USER_SCORES_ASSET, forget_dates_before

LOCK_TIMEOUT = "10s"
LOCK_NOT_AVAILABLE = "55P03"


class LockTimeoutError(TransientError):
    """A statement waited longer than the lock timeout for a lock another session holds."""


@contextmanager
def batch_transaction(engine: Engine, what: str = "the batch's write") -> Iterator[Connection]:
    """One transaction with the batch's lock timeout; rolled back on any error.

    A lock wait over the timeout becomes a LockTimeoutError naming ``what`` (the RetryPolicy retries it).
    """
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text("SELECT set_config('lock_timeout', :timeout, true)"), {"timeout": LOCK_TIMEOUT}
            )
            yield connection
    except sa.exc.OperationalError as error:
        if getattr(error.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
            raise
        raise LockTimeoutError(
            f"{what}: waited {LOCK_TIMEOUT} for a lock held by another database session "
            f"(SQLSTATE {LOCK_NOT_AVAILABLE}); rolled back, nothing changed. Retried by the retry policy; "
            "if it persists, look for long transactions on the table (pg_stat_activity)"
        ) from error


# --- BATCH-000: daily_order_aggregates ------------------------------------------------------------------

# Row locks in one order (ascending key) before deleting, so two writers can never deadlock (design 5.2).
_LOCK_AGGREGATE_DAYS = sa.text(
    "SELECT 1 FROM daily_order_aggregates WHERE agg_date BETWEEN :first_day AND :last_day "
    "ORDER BY agg_date, user_id FOR UPDATE"
)
_DELETE_AGGREGATE_DAYS = sa.text(
    "DELETE FROM daily_order_aggregates WHERE agg_date BETWEEN :first_day AND :last_day"
)
# One statement per day, its rows inserted in key order. Per day: the RETURNING rows that give the day's row
# count and maxima without a second scan stay small (a span's single statement spilled 13 M of them to
# temporary files at 1,000,000 users). In key order: the primary key (agg_date, user_id) grows at its right
# edge instead of taking each row at a random place; at 1,000,000 users a day took 1.4 s instead of 2.2 s.
# The orders are read once either way, each day through the ordered_at index.
_INSERT_AGGREGATE_DAY = sa.text(
    """
    WITH inserted AS (
        INSERT INTO daily_order_aggregates (agg_date, user_id, order_count, total_amount)
        SELECT :day, o.user_id, count(*), sum(o.amount)
        FROM orders AS o
        WHERE o.status = 'completed' AND o.ordered_at >= :start_at AND o.ordered_at < :end_at
        GROUP BY o.user_id
        ORDER BY o.user_id
        RETURNING order_count, total_amount
    )
    SELECT count(*), max(total_amount), max(order_count) FROM inserted
    """
)


@dataclass(frozen=True)
class AggregatedDay:
    rows: int
    max_total_amount: Decimal | None  # the largest per-user sum of the day
    max_order_count: int | None


def replace_daily_aggregates(
    connection: Connection, first_day: dt.date, last_day: dt.date
) -> dict[dt.date, AggregatedDay]:
    """Replace the aggregates of the JST days first_day..last_day (inclusive); what was written per day.

    A day that has not ended yet in JST is refused: its orders are still arriving."""
    check_aggregation_days(first_day, last_day)
    days = {"first_day": first_day, "last_day": last_day}
    connection.execute(_LOCK_AGGREGATE_DAYS, days)
    connection.execute(_DELETE_AGGREGATE_DAYS, days)
    written = {}
    for day in days_between(first_day, last_day):
        span = {"day": day, "start_at": jst_midnight(day), "end_at": jst_midnight(day + dt.timedelta(days=1))}
        written[day] = AggregatedDay(*connection.execute(_INSERT_AGGREGATE_DAY, span).one())
    return written


# --- user_scores -------------------------------------------------------------------------------------

# W(D) as the list of its 30 days (not a BETWEEN): with `agg_date = ANY(days)` the primary key
# (agg_date, user_id) bounds both columns of every day's index search, so a range with few users reads only
# its own rows instead of scanning the whole window (at N = 100,000 each of the 7 sparse ranges took 0.2 s as
# a sequential scan; at N = 1,000,000 a 25,000-user range took 0.65 s that way, 0.11 s as a bitmap scan).

_LOCK_SCORES = sa.text(
    "SELECT 1 FROM user_scores WHERE score_date = :business_date AND user_id BETWEEN :first_id AND :last_id "
    "ORDER BY user_id FOR UPDATE"
)
_DELETE_SCORES = sa.text(
    "DELETE FROM user_scores WHERE score_date = :business_date AND user_id BETWEEN :first_id AND :last_id"
)
_INSERT_SCORES = sa.text(
    """
    INSERT INTO user_scores (score_date, user_id, order_count, total_amount, score)
    SELECT :business_date, a.user_id, sum(a.order_count), sum(a.total_amount), sum(a.total_amount)
    FROM daily_order_aggregates AS a
    WHERE a.agg_date = ANY(:window_days) AND a.user_id BETWEEN :first_id AND :last_id
    GROUP BY a.user_id
    ORDER BY a.user_id
    """
)
# The nightly path: W(D) is W(D-1) plus day D minus day D-30, so D's sums are D-1's sums plus D's aggregates
# minus D-30's. A user whose only orders were on D-30 sums to 0 orders and has no row for D; every aggregate
# row has at least one order, so `order_count > 0` is exactly "has an aggregate row in W(D)".
_INSERT_SCORES_FROM_PREVIOUS = sa.text(
    """
    INSERT INTO user_scores (score_date, user_id, order_count, total_amount, score)
    SELECT :business_date, user_id, sum(order_count), sum(total_amount), sum(total_amount)
    FROM (
        SELECT user_id, order_count, total_amount FROM user_scores
        WHERE score_date = :previous_date AND user_id BETWEEN :first_id AND :last_id
        UNION ALL
        SELECT user_id, order_count, total_amount FROM daily_order_aggregates
        WHERE agg_date = :business_date AND user_id BETWEEN :first_id AND :last_id
        UNION ALL
        SELECT user_id, -order_count, -total_amount FROM daily_order_aggregates
        WHERE agg_date = :leaving_day AND user_id BETWEEN :first_id AND :last_id
    ) AS parts
    GROUP BY user_id
    HAVING sum(order_count) > 0
    ORDER BY user_id
    """
)


def replace_user_scores(
    connection: Connection, business_date: dt.date, user_range: UserIdRange, *, from_previous: bool = False
) -> int:
    """Replace user_scores for (D, range); returns rows written. From the aggregates of W(D), or with
    ``from_previous`` from user_scores(D-1) of the range plus day D minus day D-30: the caller must know that
    D-1's rows were computed from today's aggregates of W(D-1) (lib/state.py records which)."""
    window = window_days(business_date)
    params = {
        "business_date": business_date,
        "window_days": window,
        "previous_date": business_date - dt.timedelta(days=1),
        "leaving_day": window[0] - dt.timedelta(days=1),
        "first_id": user_range.first_id,
        "last_id": user_range.last_id,
    }
    connection.execute(_LOCK_SCORES, params)
    connection.execute(_DELETE_SCORES, params)
    insert = _INSERT_SCORES_FROM_PREVIOUS if from_previous else _INSERT_SCORES
    return connection.execute(insert, params).rowcount


# --- rankings ----------------------------------------------------------------------------------------

# SHARE ROW EXCLUSIVE blocks every other writer of rankings (and itself) for the replace while plain
# SELECTs keep reading the committed rows. The new rows of D are built in a table of their own, verified,
# indexed once and swapped in for D's partition in the same transaction (lib/partitions.py): a reader sees
# either the old or the new rankings for D, never a mix or nothing. ONLY: every writer of rankings locks the
# partitioned table itself, so its lock is enough, and it does not take one lock per date's partition.
_LOCK_RANKINGS = sa.text("LOCK TABLE ONLY rankings IN SHARE ROW EXCLUSIVE MODE")
_RANK_INTO = """
    INSERT INTO {staging} (ranking_date, rank, user_id, score, order_count)
    SELECT :business_date, RANK() OVER (ORDER BY s.score DESC), s.user_id, s.score, s.order_count
    FROM user_scores AS s
    JOIN users AS u ON u.user_id = s.user_id
    WHERE s.score_date = :business_date AND u.status = 'active' AND s.score > 0
"""


def replace_rankings(
    engine: Engine,
    business_date: dt.date,
    *,
    before_commit: Callable[[Connection, int], None] | None = None,
) -> IntegrityReport:
    """Atomically replace the rankings of D from user_scores(D); other dates are untouched. Returns the
    integrity report of the rows committed (verified before the swap: broken rows never replace D's).

    ``before_commit(connection, rows)`` runs inside the transaction after the swap (a fencing check, state
    bookkeeping); raising from it rolls everything back and leaves the previous rankings for D in place.
    """
    with batch_transaction(engine, f"replacing the rankings of {business_date}") as connection:
        # D's scores were just written to a new partition that has no statistics yet: without them the
        # planner expects a few rows and joins users by a million index lookups (2.5 s at 1,000,000 users)
        analyze_date(connection, USER_SCORES, business_date)
        connection.execute(_LOCK_RANKINGS)
        staging = create_staging_table(connection, RANKINGS, business_date)
        connection.execute(sa.text(_RANK_INTO.format(staging=staging)), {"business_date": business_date})
        integrity = rankings_integrity(connection, business_date, table=staging)
        if not integrity.passed:
            raise IntegrityError(
                f"rankings for {business_date} not replaced: {'; '.join(integrity.problems)}"
            )
        replace_date_partition(connection, RANKINGS, business_date)
        if before_commit is not None:
            before_commit(connection, integrity.rows)
    return integrity


def drop_dates_past_retention(engine: Engine, business_date: dt.date, keep: int) -> list[dt.date]:
    """After D's ranking: drop the dates of user_scores and rankings older than the ``keep`` business dates
    ending at D, whole partitions at a time, with their state rows (so nothing resumes from dropped rows).
    Nothing is dropped when a later date than D has rankings: re-running an old date never shortens history.
    Returns the dates dropped."""
    cutoff = business_date - dt.timedelta(days=keep - 1)
    with batch_transaction(engine, f"dropping dates before {cutoff}") as connection:
        if any(day > business_date for day in partition_dates(connection, RANKINGS)):
            return []
        dropped = set()
        for table in (USER_SCORES, RANKINGS):
            dropped.update(drop_dates_before(connection, table, cutoff))
        forget_dates_before(connection, cutoff, (USER_SCORES_ASSET, RANKINGS_ASSET))
    return sorted(dropped)


@dataclass(frozen=True)
class RankedUser:
    rank: int
    user_id: int
    score: Decimal
    order_count: int


def read_rankings(
    connection: Connection, business_date: dt.date, limit: int | None = None
) -> list[RankedUser]:
    """The rankings of D ordered by (rank, user_id): the contract's comparison order."""
    statement = sa.text(
        "SELECT rank, user_id, score, order_count FROM rankings WHERE ranking_date = :business_date "
        "ORDER BY rank, user_id LIMIT :limit"
    )
    rows = connection.execute(statement, {"business_date": business_date, "limit": limit})
    return [RankedUser(*row) for row in rows]


def count_rows(connection: Connection, table: sa.Table, date_column: str, day: dt.date) -> int:
    statement = sa.select(sa.func.count()).select_from(table).where(table.c[date_column] == day)
    return connection.execute(statement).scalar_one()
