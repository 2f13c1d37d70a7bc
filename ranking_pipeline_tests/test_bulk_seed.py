"""The benchmark's bulk seeding (lib/bulk_seed.py): the contract's input tables, N orders a day, loaded in
chunks through binary COPY, logged and indexed at the end."""

import datetime as dt

import numpy as np
import pytest
import sqlalchemy as sa

from ranking_pipeline.lib import bulk_seed
from ranking_pipeline.lib.business_date import jst_midnight
from ranking_pipeline.lib.schema import validate_input_tables
from ranking_pipeline_tests.conftest import IN_CI

END = dt.date(2026, 11, 27)


def test_bulk_seed_loads_the_contract_tables_in_chunks(engine, monkeypatch):
    monkeypatch.setattr(bulk_seed, "CHUNK_ROWS", 1_000)  # 2,500 users: three chunks a day
    logged: list[str] = []

    summary = bulk_seed.seed_bulk(engine, 2_500, end_date=END, log=logged.append)

    assert (summary.users, summary.orders, summary.last_day) == (2_500, 77_500, END)
    with engine.connect() as connection:
        validate_input_tables(connection)  # what the batch's input check finds
        counts = connection.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM users), (SELECT max(user_id) FROM users), "
                "count(*), count(DISTINCT order_id), max(order_id) FROM orders"
            )
        ).one()
        assert tuple(counts) == (2_500, 2_500, 77_500, 77_500, 77_500)
        per_day = connection.execute(
            sa.text(
                "SELECT (ordered_at AT TIME ZONE 'Asia/Tokyo')::date, count(*) FROM orders "
                "GROUP BY 1 ORDER BY 1"
            )
        ).all()
        assert [count for _, count in per_day] == [2_500] * 31 and per_day[-1][0] == END
        first_instant = connection.execute(sa.text("SELECT min(ordered_at) FROM orders")).scalar_one()
        assert first_instant == jst_midnight(END - dt.timedelta(days=30))  # 00:00:00 JST, a day's own
        at_midnight = connection.execute(
            sa.text(
                "SELECT count(*) FROM orders WHERE (ordered_at AT TIME ZONE 'Asia/Tokyo')::time = '00:00'"
            )
        ).scalar_one()
        assert at_midnight > 10  # about 0.05 % of the orders: the boundary belongs to its day
        shares = dict(
            connection.execute(sa.text("SELECT status, count(*) / 77500.0 FROM orders GROUP BY 1")).all()
        )
        assert 0.83 < shares["completed"] < 0.87 and set(shares) == {"completed", "cancelled", "refunded"}
        unknown = connection.execute(sa.text("SELECT count(*) FROM orders WHERE user_id > 2500")).scalar_one()
        assert 0 < unknown < 300  # about 0.1 % of the orders name users that do not exist
        tables = dict(
            connection.execute(
                sa.text("SELECT relname, relpersistence FROM pg_class WHERE relname IN ('users', 'orders')")
            ).all()
        )
        assert tables == {"users": "p", "orders": "p"}  # logged (permanent) tables, as the contract's
    with engine.begin() as connection:
        indexes = set(
            connection.execute(
                sa.text("SELECT indexname FROM pg_indexes WHERE tablename IN ('users', 'orders')")
            ).scalars()
        )
        assert indexes == {"users_pkey", "orders_pkey", "orders_ordered_at_idx"}
        stray = connection.execute(sa.text("SELECT to_regclass('seed_users_stage')")).scalar_one()
        assert stray is None  # the users' staging table is gone
        available = connection.execute(
            sa.text("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_visibility'")
        ).scalar_one()
        if not available and not IN_CI:  # the embedded server's wheel ships no contrib extensions
            pytest.skip("COPY FREEZE not checked: this PostgreSQL has no pg_visibility extension")
        connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_visibility"))
        pages = connection.execute(
            sa.text("SELECT count(*), count(*) FILTER (WHERE all_frozen) FROM pg_visibility_map('orders')")
        ).one()
        assert pages[0] > 0 and pages[1] == pages[0]  # COPY FREEZE: no later read writes hint bits


def test_bulk_seed_refuses_a_database_with_input_tables(engine):
    bulk_seed.seed_bulk(engine, 10, end_date=END, log=lambda line: None)
    with pytest.raises(ValueError, match="table\\(s\\) users, orders already exist"):
        bulk_seed.seed_bulk(engine, 10, end_date=END, log=lambda line: None)


def test_amounts_sent_in_binary_read_back_to_the_cent(engine):
    cents = np.array([0, 1, 99, 100, 105, 123_456, 10_000_00, 9_999_999_999], dtype=np.int64)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE amounts (amount NUMERIC(12,2) NOT NULL)")
            amounts = bulk_seed.numeric_amounts(cents)
            bulk_seed._copy(cursor, "amounts", [bulk_seed.binary_copy_records([(amounts, amounts.dtype)])])
            cursor.execute("SELECT amount::text FROM amounts")
            assert [row[0] for row in cursor.fetchall()] == [
                "0.00",
                "0.01",
                "0.99",
                "1.00",
                "1.05",
                "1234.56",
                "10000.00",
                "99999999.99",
            ]
    finally:
        raw.close()
