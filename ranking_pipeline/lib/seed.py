"""A deterministic synthetic data set shaped like the contract's reference workload.

N users (about 90 % active, the rest suspended or deleted) and ``days`` JST days of orders ending at
``end_date`` (31 by default, the contract's reference workload), N orders a day: a per-user lognormal
activity weight, about 85 % completed orders (the rest cancelled or refunded), lognormal amounts rounded to
the cent with some 0.00, a few orders naming users that do not exist, and a few orders at exactly
00:00:00 JST. Loaded with COPY, one day at a time, so memory stays flat at any N.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ranking_pipeline.lib import schema
from ranking_pipeline.lib.business_date import jst_midnight

REFERENCE_DAYS = 31  # the contract's reference workload (benchmarks)
DERIVED_TABLES = [table.name for table in schema.metadata.sorted_tables]

INPUT_TABLES_DDL = (
    """
    CREATE TABLE IF NOT EXISTS users (
        user_id BIGINT PRIMARY KEY, name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active','suspended','deleted')),
        created_at TIMESTAMPTZ NOT NULL)
    """,
    """
    CREATE TABLE IF NOT EXISTS orders (
        order_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount NUMERIC(12,2) NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('completed','cancelled','refunded')),
        ordered_at TIMESTAMPTZ NOT NULL)
    """,
    "CREATE INDEX IF NOT EXISTS orders_ordered_at_idx ON orders (ordered_at)",
)


@dataclass(frozen=True)
class SeedSummary:
    users: int
    orders: int
    first_day: dt.date
    last_day: dt.date


def create_input_tables(engine: Engine) -> None:
    with engine.begin() as connection:
        for statement in INPUT_TABLES_DDL:
            connection.execute(sa.text(statement))


def _copy(raw_connection, table: str, columns: str, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, float_format="%.2f")
    buffer.seek(0)
    with raw_connection.cursor() as cursor:
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)


def generate_users(rng: np.random.Generator, users: int) -> pd.DataFrame:
    user_ids = np.arange(1, users + 1, dtype=np.int64)
    status = rng.choice(np.array(["active", "suspended", "deleted"]), size=users, p=[0.90, 0.06, 0.04])
    created = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 5 * 365 * 86400, users), "s"
    )
    return pd.DataFrame(
        {
            "user_id": user_ids,
            "name": [f"user-{i}" for i in user_ids],
            "status": status,
            "created_at": created,
        }
    )


def generate_orders_for_day(
    rng: np.random.Generator, day: dt.date, weights: np.ndarray, orders: int, first_order_id: int
) -> pd.DataFrame:
    users = len(weights)
    user_ids = rng.choice(users, size=orders, p=weights).astype(np.int64) + 1
    unknown = rng.random(orders) < 0.001  # orders naming users that do not exist: never ranked
    user_ids[unknown] = users + 1 + rng.integers(0, 1_000_000, unknown.sum())
    cents = np.round(rng.lognormal(mean=8.0, sigma=1.0, size=orders)).astype(np.int64)
    cents[rng.random(orders) < 0.02] = 0
    status = rng.choice(np.array(["completed", "cancelled", "refunded"]), size=orders, p=[0.85, 0.10, 0.05])
    seconds = rng.integers(0, 86400, orders)
    seconds[rng.random(orders) < 0.0005] = 0  # exactly 00:00:00 JST belongs to this day
    midnight = pd.Timestamp(jst_midnight(day)).tz_convert("UTC")
    return pd.DataFrame(
        {
            "order_id": np.arange(first_order_id, first_order_id + orders, dtype=np.int64),
            "user_id": user_ids,
            "amount": cents / 100,
            "status": status,
            "ordered_at": midnight + pd.to_timedelta(seconds, "s"),
        }
    )


def seed(
    engine: Engine, users: int, *, end_date: dt.date, random_seed: int = 42, days: int = REFERENCE_DAYS
) -> SeedSummary:
    """Replace users and orders with the synthetic data set (input tables are created if missing).

    Everything derived from the old orders (aggregates, scores, rankings and their run state) is emptied
    too, so the next run recomputes from the new data instead of trusting aggregates of data that is gone.
    """
    if users < 1 or days < 1:
        raise ValueError(f"--users and --days must be at least 1, got {users} and {days}")
    rng = np.random.default_rng(random_seed)
    weights = rng.lognormal(mean=0.0, sigma=1.0, size=users)
    weights /= weights.sum()
    first_day = end_date - dt.timedelta(days=days - 1)
    create_input_tables(engine)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
            cursor.execute("TRUNCATE users, orders")
            cursor.execute(
                "SELECT string_agg(quote_ident(table_name), ', ') FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
                (DERIVED_TABLES,),
            )
            derived = cursor.fetchone()[0]
            if derived:
                cursor.execute(f"TRUNCATE {derived}")
        _copy(raw, "users", "user_id, name, status, created_at", generate_users(rng, users))
        for offset in range(days):
            day = first_day + dt.timedelta(days=offset)
            frame = generate_orders_for_day(rng, day, weights, users, first_order_id=offset * users + 1)
            _copy(raw, "orders", "order_id, user_id, amount, status, ordered_at", frame)
        with raw.cursor() as cursor:
            cursor.execute("ANALYZE users")
            cursor.execute("ANALYZE orders")
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
    return SeedSummary(users=users, orders=users * days, first_day=first_day, last_day=end_date)
