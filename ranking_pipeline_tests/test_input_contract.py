"""Input that breaks the data contract is refused before anything is written: from the command line as one
line and exit 2; in a Dagster run at once (no retries), by the blocking contract check on the input table."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time

import dagster as dg
import pytest
import sqlalchemy as sa

from ranking_pipeline.constants import BATCH_000_JOB, ORDERS_CONTRACT_CHECK
from ranking_pipeline.lib.business_date import aggregation_partition_tags
from ranking_pipeline.lib.contract import order_defects, table_facts, user_defects
from ranking_pipeline.lib.seed import create_input_tables
from ranking_pipeline.local_runs import execute_job
from ranking_pipeline_tests.helpers import jst, rankings_rows, table_rows

D = dt.date(2026, 11, 27)

# The contract's tables without their constraints: what an upstream that lost them would hand us.
LOOSE_TABLES = """
CREATE TABLE users (user_id BIGINT, name TEXT, status TEXT, created_at TIMESTAMPTZ);
CREATE TABLE orders (order_id BIGINT, user_id BIGINT, amount NUMERIC, status TEXT, ordered_at TIMESTAMPTZ);
CREATE INDEX ON orders (ordered_at);
"""
GOOD_ROWS = """
INSERT INTO users VALUES (1, 'a', 'active', now()), (2, 'b', 'active', now()), (3, 'c', 'active', now());
INSERT INTO orders VALUES
  (1, 1, 100.00, 'completed', '2026-11-27 10:00+09'),
  (2, 2, 80.00, 'completed', '2026-11-26 10:00+09'),
  (3, 3, 0.01, 'completed', '2026-11-25 10:00+09');
"""

DEFECTS = {
    "a NULL amount beside a real order": (
        "INSERT INTO orders VALUES (10, 1, NULL, 'completed', '2026-11-27 12:00+09')",
        "1 orders with a NULL amount (order_id shown) (e.g. 10)",
    ),
    "every amount of a user's day NULL": (
        "INSERT INTO orders VALUES (10, 2, NULL, 'completed', '2026-11-27 12:00+09'), (11, 2, NULL, "
        "'completed', '2026-11-27 12:00+09')",
        "2 orders with a NULL amount (order_id shown) (e.g. 10, 11)",
    ),
    "statuses spelled differently": (
        "INSERT INTO orders VALUES (10, 1, 5, 'Completed', '2026-11-27 12:00+09'), (11, 1, 5, 'COMPLETED', "
        "'2026-11-27 12:00+09'),"
        " (12, 1, 5, 'completed ', '2026-11-27 12:00+09')",
        "3 orders whose status is not one of completed, cancelled, refunded (order_id shown) (e.g. 10, 11, "
        "12)",
    ),
    "an amount with three decimals": (
        "INSERT INTO orders VALUES (10, 3, 0.005, 'completed', '2026-11-27 12:00+09')",
        "1 orders whose amount has more than 2 decimals (order_id shown) (e.g. 10)",
    ),
    "a user with a NULL status": (
        "UPDATE users SET status = NULL WHERE user_id = 2",
        "1 users whose status is not one of active, suspended, deleted (user_id shown) (e.g. 2)",
    ),
    "a user with status 'Active'": (
        "UPDATE users SET status = 'Active' WHERE user_id = 3",
        "1 users whose status is not one of active, suspended, deleted (user_id shown) (e.g. 3)",
    ),
    "a duplicate user row": (
        "INSERT INTO users VALUES (2, 'b again', 'active', now())",
        "1 user_ids that appear more than once in users (e.g. 2)",
    ),
    "sums beyond NUMERIC(14,2)": (
        "INSERT INTO orders SELECT 100 + n, 3, 9999999999.99, 'completed', '2026-11-27 13:00+09' "
        "FROM generate_series(1, 101) AS n",
        "1 users whose completed orders of one day sum beyond NUMERIC(14,2) or INT (user_id shown) (e.g. 3)",
    ),
}


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKING_") and k != "DAGSTER_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "ranking_pipeline.cli", *args],
        env={**env, "RANKING_DATABASE_URL": database_url},
        cwd=tempfile.mkdtemp(prefix="rp-cli-"),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def ranked_once(engine, database_url):
    """The loose tables with good rows, and D ranked from them once (the outputs a bad run must keep)."""
    with engine.begin() as connection:
        connection.exec_driver_sql(LOOSE_TABLES + GOOD_ROWS)
    done = cli(database_url, "run", "--date", D.isoformat())
    assert done.returncode == 0, done.stderr
    assert len(rankings_rows(engine, D)) == 3
    return engine


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_defect_is_one_line_and_exit_2_within_seconds_and_nothing_changes(
    ranked_once, database_url, defect
):
    statement, expected = DEFECTS[defect]
    with ranked_once.begin() as connection:
        connection.exec_driver_sql(statement)
    outputs = {
        t: table_rows(ranked_once, t, "1, 2") for t in ("daily_order_aggregates", "user_scores", "rankings")
    }

    started = time.monotonic()
    done = cli(
        database_url, "run", "--date", D.isoformat(), "--force"
    )  # --force: re-read the window's orders

    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("ranking-pipeline: error: ")
    assert expected in line
    assert "nothing was written" in line
    assert {t: table_rows(ranked_once, t, "1, 2") for t in outputs} == outputs


def test_a_dagster_run_stops_at_the_blocking_contract_check_without_retries(
    ranked_once, instance, definitions
):
    with ranked_once.begin() as connection:
        connection.exec_driver_sql(DEFECTS["statuses spelled differently"][0])
    aggregates = table_rows(ranked_once, "daily_order_aggregates", "1, 2")

    outcome = execute_job(definitions, BATCH_000_JOB, instance, aggregation_partition_tags(D, D))

    assert outcome.failure is not None
    [evaluation] = [
        record.event.dagster_event.event_specific_data
        for record in instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("orders"), ORDERS_CONTRACT_CHECK), limit=1
        )
    ]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "3 orders whose status is not one of completed, cancelled, refunded" in evaluation.description
    steps = {
        e.step_key: e.dagster_event.event_type_value
        for e in instance.all_logs(outcome.run_id)
        if e.dagster_event
    }
    assert "daily_order_aggregates" not in steps or steps["daily_order_aggregates"] != "STEP_SUCCESS"
    assert not instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert table_rows(ranked_once, "daily_order_aggregates", "1, 2") == aggregates


def test_a_materialization_without_the_check_still_refuses_bad_orders(ranked_once, instance, definitions):
    with ranked_once.begin() as connection:
        connection.exec_driver_sql(DEFECTS["a NULL amount beside a real order"][0])
    aggregates = table_rows(ranked_once, "daily_order_aggregates", "1, 2")

    result = dg.materialize(
        [definitions.get_assets_def("daily_order_aggregates")],
        partition_key=D.isoformat(),
        instance=instance,
        resources=definitions.resources,
        raise_on_error=False,
    )

    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert "1 orders with a NULL amount (order_id shown) (e.g. 10)" in failure.step_failure_data.error.message
    assert not [event for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY"]
    assert table_rows(ranked_once, "daily_order_aggregates", "1, 2") == aggregates


def test_late_orders_need_force_and_force_recomputes_the_aggregates(ranked_once, database_url, engine):
    with engine.begin() as connection:  # a late order for D arrives after D was ranked
        connection.execute(
            sa.text("INSERT INTO orders VALUES (20, 2, 500.00, 'completed', :at)"),
            {"at": jst(2026, 11, 27, 18)},
        )
    before = rankings_rows(engine, D)

    plain = cli(database_url, "run", "--date", D.isoformat())
    assert plain.returncode == 0, plain.stderr
    assert rankings_rows(engine, D) == before  # the window was complete: nothing re-read

    forced = cli(database_url, "run", "--date", D.isoformat(), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "daily aggregates computed: 30 day(s)" in forced.stdout
    from decimal import Decimal

    assert rankings_rows(engine, D)[0] == (1, 2, Decimal("580.00"), 2)


def test_rules_the_table_definition_guarantees_are_not_rechecked_the_others_are(engine):
    """With the contract's DDL nothing is left to check; a looser CHECK or an unscaled amount is checked."""
    create_input_tables(engine)  # the contract's DDL: keys, NOT NULLs, status CHECKs, NUMERIC(12,2)
    with engine.connect() as connection:
        orders, users = table_facts(connection, "orders"), table_facts(connection, "users")
    assert {"order_id", "user_id", "amount", "status", "ordered_at"} <= orders.not_null
    assert orders.max_scale["amount"] == 2 and "user_id" in users.unique
    assert orders.allowed_values["status"] == {"completed", "cancelled", "refunded"}

    with engine.begin() as connection:  # an upstream that allows one more status and any scale
        connection.execute(sa.text("ALTER TABLE orders DROP CONSTRAINT orders_status_check"))
        connection.execute(sa.text("ALTER TABLE orders ALTER COLUMN amount TYPE NUMERIC"))
        connection.execute(
            sa.text(
                "ALTER TABLE orders ADD CONSTRAINT orders_status_check "
                "CHECK (status IN ('completed', 'cancelled', 'refunded', 'pending'))"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO orders VALUES (1, 1, 1.005, 'completed', '2026-11-27 12:00+09'), "
                "(2, 1, 5, 'pending', '2026-11-27 13:00+09')"
            )
        )
        connection.execute(sa.text("INSERT INTO users VALUES (1, 'a', 'active', now())"))
    with engine.connect() as connection:
        found = [defect.describe() for defect in order_defects(connection, D, D)]
        assert user_defects(connection) == []
    assert found == [
        "1 orders whose status is not one of completed, cancelled, refunded (order_id shown) (e.g. 2)",
        "1 orders whose amount has more than 2 decimals (order_id shown) (e.g. 1)",
    ]
