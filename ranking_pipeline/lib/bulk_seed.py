"""The benchmark's seeding at any N (10,000,000 users, 310 M orders): the sample generator's shape, fast.

The shape is that of lib/seed.py (user IDs 1 … N, about 90 % active, a per-user lognormal activity weight,
N orders a day over 31 JST days, about 85 % completed, lognormal amounts with some 0.00, 0.1 % of orders
naming unknown users, a few at exactly 00:00:00 JST), drawn from the same distributions in chunks of
``CHUNK_ROWS`` rows, so the values differ from lib/seed.py's but the process's memory stays flat at any N.

What makes it fast (10M: see docs/BENCHMARKS.md):
- numpy draws fixed-width columns only (IDs, integer cents, a status code, microseconds since 2000-01-01)
  and sends them with binary COPY, built as one numpy record array per chunk: no CSV formatting in Python;
- into UNLOGGED staging tables, from which one ``INSERT ... SELECT`` per day converts them to the contract's
  columns (text status, NUMERIC(12,2) amount) in PostgreSQL;
- ``users`` and ``orders`` are created UNLOGGED without keys or indexes, made LOGGED once loaded (one
  sequential rewrite instead of WAL per row), and only then get their primary keys and the ``ordered_at``
  index, each built in one sort (with a larger ``maintenance_work_mem`` for that session).

Only for a new, empty database: it refuses a database that already has ``users`` or ``orders``.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Callable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ranking_pipeline.lib.business_date import jst_midnight
from ranking_pipeline.lib.seed import SEED_DAYS, SeedSummary

CHUNK_ROWS = 1_000_000
INDEX_BUILD_MEMORY = "1GB"  # maintenance_work_mem of the session that builds the keys and the index
_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"
_USERS_CREATED_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)

CREATE_TABLES = (
    """
    CREATE UNLOGGED TABLE users (
        user_id BIGINT NOT NULL, name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active','suspended','deleted')),
        created_at TIMESTAMPTZ NOT NULL)
    """,
    """
    CREATE UNLOGGED TABLE orders (
        order_id BIGINT NOT NULL, user_id BIGINT NOT NULL, amount NUMERIC(12,2) NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('completed','cancelled','refunded')),
        ordered_at TIMESTAMPTZ NOT NULL)
    """,
    "CREATE UNLOGGED TABLE seed_users_stage (user_id BIGINT, status SMALLINT, created_at TIMESTAMPTZ)",
    """
    CREATE UNLOGGED TABLE seed_orders_stage (
        order_id BIGINT, user_id BIGINT, cents INT, status SMALLINT, ordered_at TIMESTAMPTZ)
    """,
)
FILL_USERS = """
    INSERT INTO users (user_id, name, status, created_at)
    SELECT user_id, 'user-' || user_id, (ARRAY['active','suspended','deleted'])[status + 1], created_at
    FROM seed_users_stage
"""
FILL_ORDERS = """
    INSERT INTO orders (order_id, user_id, amount, status, ordered_at)
    SELECT order_id, user_id, cents / 100.0, (ARRAY['completed','cancelled','refunded'])[status + 1],
           ordered_at
    FROM seed_orders_stage
"""
FINISH = (
    "DROP TABLE seed_orders_stage",
    "ALTER TABLE users SET LOGGED",
    "ALTER TABLE orders SET LOGGED",
    "ALTER TABLE users ADD PRIMARY KEY (user_id)",
    "ALTER TABLE orders ADD PRIMARY KEY (order_id)",
    "CREATE INDEX orders_ordered_at_idx ON orders (ordered_at)",
    "ANALYZE users",
    "ANALYZE orders",
)


def _micros(moment: dt.datetime) -> int:
    """A timestamptz in PostgreSQL's binary form: microseconds since 2000-01-01 00:00 UTC."""
    return (moment - _PG_EPOCH) // dt.timedelta(microseconds=1)


def binary_copy_payload(columns: list[tuple[np.ndarray, str]]) -> bytes:
    """COPY ... (FORMAT binary) data for equal-length columns of fixed width; each column is (values,
    big-endian dtype: '>i2' SMALLINT, '>i4' INT, '>i8' BIGINT or TIMESTAMPTZ in microseconds)."""
    rows = len(columns[0][0])
    fields = [("count", ">i2")]
    for index, (_, dtype) in enumerate(columns):
        fields += [(f"length{index}", ">i4"), (f"value{index}", dtype)]
    records = np.empty(rows, dtype=np.dtype(fields))
    records["count"] = len(columns)
    for index, (values, dtype) in enumerate(columns):
        records[f"length{index}"] = np.dtype(dtype).itemsize
        records[f"value{index}"] = values
    return _COPY_HEADER + records.tobytes() + _COPY_TRAILER


def _copy(cursor, table: str, columns: list[tuple[np.ndarray, str]]) -> None:
    cursor.copy_expert(
        f"COPY {table} FROM STDIN WITH (FORMAT binary)", io.BytesIO(binary_copy_payload(columns))
    )


def _load_users(cursor, rng: np.random.Generator, users: int) -> None:
    created_from = _micros(_USERS_CREATED_FROM)
    for first in range(1, users + 1, CHUNK_ROWS):
        user_ids = np.arange(first, min(first + CHUNK_ROWS, users + 1), dtype=np.int64)
        status = rng.choice(3, size=len(user_ids), p=[0.90, 0.06, 0.04])
        created = created_from + rng.integers(0, 5 * 365 * 86400, len(user_ids)) * 1_000_000
        _copy(cursor, "seed_users_stage", [(user_ids, ">i8"), (status, ">i2"), (created, ">i8")])
    cursor.execute(FILL_USERS)
    cursor.execute("DROP TABLE seed_users_stage")


def _order_columns(
    rng: np.random.Generator,
    cumulative: np.ndarray,
    users: int,
    first_order_id: int,
    rows: int,
    midnight: int,
) -> list[tuple[np.ndarray, str]]:
    """One chunk of one day's orders (lib/seed.py's distributions), as binary COPY columns."""
    user_ids = np.searchsorted(cumulative, rng.random(rows) * cumulative[-1], side="right").astype(np.int64)
    user_ids = np.minimum(user_ids, users - 1) + 1
    unknown = rng.random(rows) < 0.001  # orders naming users that do not exist: never ranked
    user_ids[unknown] = users + 1 + rng.integers(0, 1_000_000, unknown.sum())
    cents = np.round(rng.lognormal(mean=8.0, sigma=1.0, size=rows)).astype(np.int64)
    cents[rng.random(rows) < 0.02] = 0
    cents = np.minimum(cents, 2**31 - 1)
    status = rng.choice(3, size=rows, p=[0.85, 0.10, 0.05])
    seconds = rng.integers(0, 86400, rows)
    seconds[rng.random(rows) < 0.0005] = 0  # exactly 00:00:00 JST belongs to this day
    order_ids = np.arange(first_order_id, first_order_id + rows, dtype=np.int64)
    ordered_at = midnight + seconds * 1_000_000
    return [(order_ids, ">i8"), (user_ids, ">i8"), (cents, ">i4"), (status, ">i2"), (ordered_at, ">i8")]


def _load_orders(cursor, rng, weights: np.ndarray, first_day: dt.date, log: Callable[[str], None]) -> None:
    users = len(weights)
    cumulative = np.cumsum(weights)
    for offset in range(SEED_DAYS):
        day = first_day + dt.timedelta(days=offset)
        midnight = _micros(jst_midnight(day))
        cursor.execute("TRUNCATE seed_orders_stage")
        for first in range(0, users, CHUNK_ROWS):
            rows = min(CHUNK_ROWS, users - first)
            order_id = offset * users + first + 1
            _copy(
                cursor, "seed_orders_stage", _order_columns(rng, cumulative, users, order_id, rows, midnight)
            )
        cursor.execute(FILL_ORDERS)
        cursor.connection.commit()
        if users >= CHUNK_ROWS:
            log(f"    seeded {day} ({offset + 1} of {SEED_DAYS} days)")


def _load_and_finish(
    cursor, rng, weights: np.ndarray, first_day: dt.date, log: Callable[[str], None]
) -> None:
    for statement in CREATE_TABLES:
        cursor.execute(statement)
    started = time.perf_counter()
    _load_users(cursor, rng, len(weights))
    cursor.connection.commit()
    _load_orders(cursor, rng, weights, first_day, log)
    log(f"    loaded users and orders (unlogged, no index) in {time.perf_counter() - started:.1f} s")
    cursor.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")  # a constant above
    for statement in FINISH:
        started = time.perf_counter()
        cursor.execute(statement)
        cursor.connection.commit()
        if len(weights) >= CHUNK_ROWS:
            log(f"    {statement}: {time.perf_counter() - started:.1f} s")


def seed_bulk(
    engine: Engine,
    users: int,
    *,
    end_date: dt.date,
    random_seed: int = 42,
    log: Callable[[str], None] = print,
) -> SeedSummary:
    """Create and fill ``users`` and ``orders`` (the contract's DDL) in an empty database, as fast as
    PostgreSQL takes them; the steps' times go to ``log``."""
    if users < 1:
        raise ValueError(f"--users must be at least 1, got {users}")
    with engine.connect() as connection:
        existing = [name for name in ("users", "orders") if sa.inspect(connection).has_table(name)]
    if existing:
        raise ValueError(
            f"refusing to bulk-seed: table(s) {', '.join(existing)} already exist in the database"
        )
    rng = np.random.default_rng(random_seed)
    weights = rng.lognormal(mean=0.0, sigma=1.0, size=users)
    first_day = end_date - dt.timedelta(days=SEED_DAYS - 1)
    raw = engine.raw_connection()
    try:  # each step commits; closing drops what an interrupted step left uncommitted
        with raw.cursor() as cursor:
            _load_and_finish(cursor, rng, weights, first_day, log)
    finally:
        raw.close()
    return SeedSummary(users=users, orders=users * SEED_DAYS, first_day=first_day, last_day=end_date)
