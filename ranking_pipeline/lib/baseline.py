"""The plain-SQL baseline the benchmark compares the pipeline with: the same steps, hand-written, one session.

It writes to its own copies of the three output tables (``baseline_*``, the contract's DDL with the same
primary keys), reads the same ``users`` and ``orders``, and follows the contract's
semantics: what a competent engineer would type into psql. No locks, no bookkeeping, no checks.

It also measures the floor of a daily batch on the same database (``floor``): reading the orders of day D
once, the way the aggregation reads them, plus writing the ranked rows of D once into an empty table with
the contract's primary key. No batch can do less I/O than that; the benchmark reports the batch as a
multiple of it.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from ranking_pipeline.lib.business_date import jst_midnight, window_start

BASELINE_TABLES = {
    "daily_order_aggregates": "baseline_daily_order_aggregates",
    "user_scores": "baseline_user_scores",
    "rankings": "baseline_rankings",
}

# The contract's DDL (primary keys only): the baseline gets no index the pipeline might add for itself.
CREATE_TABLES = (
    """
    CREATE TABLE IF NOT EXISTS baseline_daily_order_aggregates (
        agg_date DATE, user_id BIGINT, order_count INT NOT NULL, total_amount NUMERIC(14,2) NOT NULL,
        PRIMARY KEY (agg_date, user_id))
    """,
    """
    CREATE TABLE IF NOT EXISTS baseline_user_scores (
        score_date DATE, user_id BIGINT, order_count INT NOT NULL, total_amount NUMERIC(14,2) NOT NULL,
        score NUMERIC(14,2) NOT NULL, PRIMARY KEY (score_date, user_id))
    """,
    """
    CREATE TABLE IF NOT EXISTS baseline_rankings (
        ranking_date DATE, rank INT NOT NULL, user_id BIGINT, score NUMERIC(14,2) NOT NULL,
        order_count INT NOT NULL, PRIMARY KEY (ranking_date, user_id))
    """,
)

DELETE_AGGREGATES = (
    "DELETE FROM baseline_daily_order_aggregates WHERE agg_date BETWEEN %(first)s AND %(last)s"
)
INSERT_AGGREGATES = """
    INSERT INTO baseline_daily_order_aggregates (agg_date, user_id, order_count, total_amount)
    SELECT (ordered_at AT TIME ZONE 'Asia/Tokyo')::date, user_id, count(*), sum(amount)
    FROM orders
    WHERE status = 'completed' AND ordered_at >= %(start_at)s AND ordered_at < %(end_at)s
    GROUP BY 1, 2
"""
DELETE_SCORES = "DELETE FROM baseline_user_scores WHERE score_date = %(d)s"
INSERT_SCORES = """
    INSERT INTO baseline_user_scores (score_date, user_id, order_count, total_amount, score)
    SELECT %(d)s, user_id, sum(order_count), sum(total_amount), sum(total_amount)
    FROM baseline_daily_order_aggregates
    WHERE agg_date BETWEEN %(window_start)s AND %(d)s
    GROUP BY user_id
"""
DELETE_RANKINGS = "DELETE FROM baseline_rankings WHERE ranking_date = %(d)s"
INSERT_RANKINGS = """
    INSERT INTO baseline_rankings (ranking_date, rank, user_id, score, order_count)
    SELECT %(d)s, RANK() OVER (ORDER BY s.score DESC), s.user_id, s.score, s.order_count
    FROM baseline_user_scores AS s JOIN users AS u ON u.user_id = s.user_id
    WHERE s.score_date = %(d)s AND u.status = 'active' AND s.score > 0
"""

# The floor's read: one aggregate over the completed orders of JST day D, with the same WHERE clause as the
# pipeline's aggregation (lib/queries.py), so PostgreSQL reads the same rows through the ordered_at index.
FLOOR_READ_ORDERS = """
    SELECT count(*), sum(amount)
    FROM orders
    WHERE status = 'completed' AND ordered_at >= %(start_at)s AND ordered_at < %(end_at)s
"""
# The floor's write: the ranked rows of D into an empty table with the contract's primary key on rankings.
CREATE_FLOOR_TABLE = """
    CREATE TABLE bench_floor_rankings (
        ranking_date DATE, rank INT NOT NULL, user_id BIGINT, score NUMERIC(14,2) NOT NULL,
        order_count INT NOT NULL, PRIMARY KEY (ranking_date, user_id))
"""
FLOOR_WRITE_RANKINGS = """
    INSERT INTO bench_floor_rankings (ranking_date, rank, user_id, score, order_count)
    SELECT ranking_date, rank, user_id, score, order_count FROM baseline_rankings WHERE ranking_date = %(d)s
"""
DROP_FLOOR_TABLE = "DROP TABLE IF EXISTS bench_floor_rankings"

# (rank, user_id, score, order_count) rows of D present on one side only: 0 means identical rankings.
RANKING_DIFFERENCES = """
    SELECT count(*) FROM (
        (SELECT rank, user_id, score, order_count FROM rankings WHERE ranking_date = %(d)s
         EXCEPT ALL
         SELECT rank, user_id, score, order_count FROM baseline_rankings WHERE ranking_date = %(d)s)
        UNION ALL
        (SELECT rank, user_id, score, order_count FROM baseline_rankings WHERE ranking_date = %(d)s
         EXCEPT ALL
         SELECT rank, user_id, score, order_count FROM rankings WHERE ranking_date = %(d)s)
    ) AS differences
"""


@dataclass(frozen=True)
class StepTiming:
    """One timed step: wall-clock seconds (statements and commit) and the rows its last statement touched."""

    seconds: float
    rows: int


@dataclass(frozen=True)
class FloorTiming:
    """The floor of the daily batch for D: read D's orders once, write D's rankings once."""

    read: StepTiming  # rows: completed orders of D read
    write: StepTiming  # rows: ranked rows of D written
    read_plan: str  # the read's plan, top to bottom (e.g. "Aggregate > Bitmap Heap Scan > Bitmap Index Scan")

    @property
    def seconds(self) -> float:
        return self.read.seconds + self.write.seconds


def _timed(cursor, statements: list[tuple[str, dict]]) -> StepTiming:
    """Run the statements as one transaction and commit; rows are those of the last statement."""
    started = time.perf_counter()
    rows = 0
    for statement, params in statements:
        cursor.execute(statement, params)
        rows = cursor.rowcount
    cursor.connection.commit()
    return StepTiming(time.perf_counter() - started, rows)


def create_tables(connection) -> None:
    with connection.cursor() as cursor:
        for statement in CREATE_TABLES:
            cursor.execute(statement)
    connection.commit()


def aggregate_days(cursor, first: dt.date, last: dt.date) -> StepTiming:
    params = {
        "first": first,
        "last": last,
        "start_at": jst_midnight(first),
        "end_at": jst_midnight(last + dt.timedelta(days=1)),
    }
    return _timed(cursor, [(DELETE_AGGREGATES, params), (INSERT_AGGREGATES, params)])


def score(cursor, business_date: dt.date) -> StepTiming:
    params = {"d": business_date, "window_start": window_start(business_date)}
    return _timed(cursor, [(DELETE_SCORES, params), (INSERT_SCORES, params)])


def rank(cursor, business_date: dt.date) -> StepTiming:
    params = {"d": business_date}
    return _timed(cursor, [(DELETE_RANKINGS, params), (INSERT_RANKINGS, params)])


def ranking_differences(cursor, business_date: dt.date) -> int:
    cursor.execute(RANKING_DIFFERENCES, {"d": business_date})
    return cursor.fetchone()[0]


def _plan_nodes(cursor, statement: str, params: dict) -> str:
    """The node types of the statement's plan, outermost first (EXPLAIN without ANALYZE: nothing runs)."""
    cursor.execute("EXPLAIN (FORMAT JSON) " + statement, params)
    plan = cursor.fetchone()[0][0]["Plan"]
    nodes = []
    while plan is not None:
        nodes.append(plan["Node Type"] + (f" on {plan['Relation Name']}" if "Relation Name" in plan else ""))
        children = plan.get("Plans") or []
        plan = children[0] if children else None
    cursor.connection.commit()
    return " > ".join(nodes)


def floor(cursor, business_date: dt.date) -> FloorTiming:
    """Time the floor for D: one read of D's completed orders (count and sum through the ordered_at index)
    and one INSERT of baseline_rankings' rows of D into a new, empty table with rankings' primary key,
    each its own transaction. The table is created before and dropped after, untimed."""
    read_params = {
        "start_at": jst_midnight(business_date),
        "end_at": jst_midnight(business_date + dt.timedelta(days=1)),
    }
    read_plan = _plan_nodes(cursor, FLOOR_READ_ORDERS, read_params)
    started = time.perf_counter()
    cursor.execute(FLOOR_READ_ORDERS, read_params)
    orders_read = cursor.fetchone()[0]
    cursor.connection.commit()
    read = StepTiming(time.perf_counter() - started, orders_read)
    cursor.execute(DROP_FLOOR_TABLE)
    cursor.execute(CREATE_FLOOR_TABLE)
    cursor.connection.commit()
    try:
        write = _timed(cursor, [(FLOOR_WRITE_RANKINGS, {"d": business_date})])
    finally:
        cursor.execute(DROP_FLOOR_TABLE)
        cursor.connection.commit()
    return FloorTiming(read, write, read_plan)
