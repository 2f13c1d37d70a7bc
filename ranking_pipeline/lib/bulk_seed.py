"""The benchmark's seeding at any N (10,000,000 users, 310 M orders): the sample generator's shape, fast.

The shape is that of lib/seed.py (user IDs 1 … N, about 90 % active, a per-user lognormal activity weight,
N orders a day over 31 JST days, about 85 % completed, lognormal amounts with some 0.00, 0.1 % of orders
naming unknown users, a few at exactly 00:00:00 JST), drawn from the same distributions in chunks of
``CHUNK_ROWS`` rows, so the values differ from lib/seed.py's but the process's memory stays flat at any N.

What makes it fast (10M: see docs/BENCHMARKS.md):
- numpy draws fixed-width columns only and sends them with binary COPY, built as one numpy record array per
  chunk and status (the amount as a three-digit NUMERIC, the status text of its own width, timestamps as
  microseconds since 2000-01-01): no CSV formatting in Python, no conversion pass in PostgreSQL;
- ``orders`` is created in the load's one transaction and filled with ``COPY ... FREEZE``: its rows are
  written once, already frozen, so the first reads later (the benchmark's timed ones) write no hint bits and
  no vacuum rewrites them; ``users`` goes through a small UNLOGGED staging table (the names are built in
  SQL) and is frozen by a VACUUM after the load;
- no key or index while loading: the primary keys and the ``ordered_at`` index are built once loaded, each
  in one sort (with a larger ``maintenance_work_mem`` for that session).

Tried and dropped: UNLOGGED tables made LOGGED after the load. ``SET LOGGED`` rewrites the whole table
and writes it to the WAL, so the table is written three times instead of twice (table and WAL), and the disk
holds the table twice while it runs (22 GB more at 10,000,000 users).

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
from ranking_pipeline.lib.seed import REFERENCE_DAYS, SeedSummary

CHUNK_ROWS = 250_000  # rows drawn and sent at once: the bench process's memory while seeding
INDEX_BUILD_MEMORY = "1GB"  # maintenance_work_mem of the session that builds the keys and the index
_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"
_USERS_CREATED_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)

CREATE_TABLES = (
    """
    CREATE TABLE users (
        user_id BIGINT NOT NULL, name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active','suspended','deleted')),
        created_at TIMESTAMPTZ NOT NULL)
    """,
    """
    CREATE TABLE orders (
        order_id BIGINT NOT NULL, user_id BIGINT NOT NULL, amount NUMERIC(12,2) NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('completed','cancelled','refunded')),
        ordered_at TIMESTAMPTZ NOT NULL)
    """,
    "CREATE UNLOGGED TABLE seed_users_stage (user_id BIGINT, status SMALLINT, created_at TIMESTAMPTZ)",
)
FILL_USERS = """
    INSERT INTO users (user_id, name, status, created_at)
    SELECT user_id, 'user-' || user_id, (ARRAY['active','suspended','deleted'])[status + 1], created_at
    FROM seed_users_stage
"""
ORDER_STATUSES = (b"completed", b"cancelled", b"refunded")
# NUMERIC in binary: ndigits, weight, sign, dscale, then base-10000 digits. Every amount is sent with three
# digits (weight 1: 10000s, units, hundredths as 0..9900): fixed width; PostgreSQL strips the leading zeros.
_NUMERIC_AMOUNT = np.dtype([("header", ">i2", 4), ("digits", ">i2", 3)])
_NUMERIC_HEADER = (3, 1, 0, 2)
FINISH = (  # after the load's commit, each statement on its own (VACUUM runs outside a transaction)
    "ALTER TABLE users ADD PRIMARY KEY (user_id)",
    "ALTER TABLE orders ADD PRIMARY KEY (order_id)",
    "CREATE INDEX orders_ordered_at_idx ON orders (ordered_at)",
    "VACUUM (FREEZE, ANALYZE) users",
    "VACUUM (ANALYZE) orders",
)


def _micros(moment: dt.datetime) -> int:
    """A timestamptz in PostgreSQL's binary form: microseconds since 2000-01-01 00:00 UTC."""
    return (moment - _PG_EPOCH) // dt.timedelta(microseconds=1)


def binary_copy_records(columns: list[tuple[np.ndarray, np.dtype | str]]) -> bytes:
    """COPY ... (FORMAT binary) tuples for equal-length columns of fixed width; each column is (values,
    big-endian dtype: '>i2' SMALLINT, '>i4' INT, '>i8' BIGINT or TIMESTAMPTZ in microseconds, 'S<n>' TEXT
    of exactly n bytes, _NUMERIC_AMOUNT)."""
    rows = len(columns[0][0])
    fields = [("count", ">i2")]
    for index, (_, dtype) in enumerate(columns):
        fields += [(f"length{index}", ">i4"), (f"value{index}", dtype)]
    records = np.empty(rows, dtype=np.dtype(fields))
    records["count"] = len(columns)
    for index, (values, dtype) in enumerate(columns):
        records[f"length{index}"] = np.dtype(dtype).itemsize
        records[f"value{index}"] = values
    return records.tobytes()


def _copy(cursor, table: str, tuples: list[bytes], *, freeze: bool = False) -> None:
    """COPY the tuples into ``table`` (a constant of this module); ``freeze``: rows written frozen, for a
    table created in the current transaction (no hint-bit writes or freezing on the first reads later)."""
    payload = io.BytesIO(b"".join([_COPY_HEADER, *tuples, _COPY_TRAILER]))
    options = "FORMAT binary, FREEZE" if freeze else "FORMAT binary"
    cursor.copy_expert(f"COPY {table} FROM STDIN WITH ({options})", payload)


def numeric_amounts(cents: np.ndarray) -> np.ndarray:
    """Non-negative cents (< 10^10) as NUMERIC(12,2) values in binary form (_NUMERIC_AMOUNT)."""
    amounts = np.empty(len(cents), dtype=_NUMERIC_AMOUNT)
    amounts["header"] = _NUMERIC_HEADER
    units, hundredths = np.divmod(cents, 100)
    amounts["digits"] = np.stack([units // 10_000, units % 10_000, hundredths * 100], axis=1)
    return amounts


def _load_users(cursor, rng: np.random.Generator, users: int) -> None:
    created_from = _micros(_USERS_CREATED_FROM)
    for first in range(1, users + 1, CHUNK_ROWS):
        user_ids = np.arange(first, min(first + CHUNK_ROWS, users + 1), dtype=np.int64)
        status = rng.choice(3, size=len(user_ids), p=[0.90, 0.06, 0.04])
        created = created_from + rng.integers(0, 5 * 365 * 86400, len(user_ids)) * 1_000_000
        columns = [(user_ids, ">i8"), (status, ">i2"), (created, ">i8")]
        _copy(cursor, "seed_users_stage", [binary_copy_records(columns)])
    cursor.execute(FILL_USERS)
    cursor.execute("DROP TABLE seed_users_stage")


def _order_tuples(
    rng: np.random.Generator,
    cumulative: np.ndarray,
    users: int,
    first_order_id: int,
    rows: int,
    midnight: int,
) -> list[bytes]:
    """One chunk of one day's orders (lib/seed.py's distributions) as binary COPY tuples for ``orders``,
    grouped by status (each status's text has its own width)."""
    user_ids = np.searchsorted(cumulative, rng.random(rows) * cumulative[-1], side="right").astype(np.int64)
    user_ids = np.minimum(user_ids, users - 1) + 1
    unknown = rng.random(rows) < 0.001  # orders naming users that do not exist: never ranked
    user_ids[unknown] = users + 1 + rng.integers(0, 1_000_000, unknown.sum())
    cents = np.round(rng.lognormal(mean=8.0, sigma=1.0, size=rows)).astype(np.int64)
    cents[rng.random(rows) < 0.02] = 0
    cents = np.minimum(cents, 10**10 - 1)  # numeric_amounts' range
    status = rng.choice(len(ORDER_STATUSES), size=rows, p=[0.85, 0.10, 0.05])
    seconds = rng.integers(0, 86400, rows)
    seconds[rng.random(rows) < 0.0005] = 0  # exactly 00:00:00 JST belongs to this day
    order_ids = np.arange(first_order_id, first_order_id + rows, dtype=np.int64)
    ordered_at = midnight + seconds * 1_000_000
    amounts = numeric_amounts(cents)
    tuples = []
    for code, name in enumerate(ORDER_STATUSES):
        rows_of = status == code
        text = np.full(rows_of.sum(), name, dtype=f"S{len(name)}")
        columns = [
            (order_ids[rows_of], ">i8"),
            (user_ids[rows_of], ">i8"),
            (amounts[rows_of], _NUMERIC_AMOUNT),
        ]
        columns += [(text, text.dtype), (ordered_at[rows_of], ">i8")]
        tuples.append(binary_copy_records(columns))
    return tuples


def _load_orders(cursor, rng, weights: np.ndarray, first_day: dt.date, log: Callable[[str], None]) -> None:
    users = len(weights)
    cumulative = np.cumsum(weights, out=weights)  # in place: one array of N floats, not two
    for offset in range(REFERENCE_DAYS):
        day = first_day + dt.timedelta(days=offset)
        midnight = _micros(jst_midnight(day))
        for first in range(0, users, CHUNK_ROWS):
            rows = min(CHUNK_ROWS, users - first)
            order_id = offset * users + first + 1
            _copy(
                cursor, "orders", _order_tuples(rng, cumulative, users, order_id, rows, midnight), freeze=True
            )
        if users >= 1_000_000:
            log(f"    seeded {day} ({offset + 1} of {REFERENCE_DAYS} days)")


def _load_and_finish(
    cursor, rng, weights: np.ndarray, first_day: dt.date, log: Callable[[str], None]
) -> None:
    for statement in CREATE_TABLES:
        cursor.execute(statement)
    started = time.perf_counter()
    _load_users(cursor, rng, len(weights))
    _load_orders(cursor, rng, weights, first_day, log)
    cursor.connection.commit()  # one transaction: the tables were created in it, as COPY FREEZE needs
    log(f"    loaded users and orders (no key, no index) in {time.perf_counter() - started:.1f} s")
    cursor.connection.autocommit = True
    try:
        cursor.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")  # a constant above
        for statement in FINISH:
            started = time.perf_counter()
            cursor.execute(statement)
            if len(weights) >= 1_000_000:
                log(f"    {statement}: {time.perf_counter() - started:.1f} s")
        cursor.execute("RESET maintenance_work_mem")
    finally:  # the connection goes back to the engine's pool
        cursor.connection.autocommit = False


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
    first_day = end_date - dt.timedelta(days=REFERENCE_DAYS - 1)
    raw = engine.raw_connection()
    try:  # each step commits; closing drops what an interrupted step left uncommitted
        with raw.cursor() as cursor:
            _load_and_finish(cursor, rng, weights, first_day, log)
    finally:
        raw.close()
    return SeedSummary(users=users, orders=users * REFERENCE_DAYS, first_day=first_day, last_day=end_date)
