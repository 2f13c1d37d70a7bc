"""The installed `ranking-pipeline` command, as a person runs it."""

import datetime as dt
import os
from decimal import Decimal

import psycopg2
import sqlalchemy as sa

from ranking_pipeline_tests.helpers import cli, rankings_rows

D = dt.date(2026, 11, 27)
DATABASE_URL_ENV, EMBEDDED_PGDATA_ENV = "RANKING_DATABASE_URL", "RANKING_EMBEDDED_PGDATA"


def env_with(**values: str | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "DAGSTER_HOME" and not key.startswith("RANKING_")
    }
    for key, value in values.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def plain_url(url: str) -> str:
    """The URL as people write it: postgresql://, no driver."""
    return url.replace("postgresql+psycopg2://", "postgresql://")


def test_run_on_tables_written_by_another_program_matches_the_contract(database_url, engine):
    ddl_and_rows = """
    CREATE TABLE users (user_id BIGINT PRIMARY KEY, name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active','suspended','deleted')),
        created_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE orders (order_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount NUMERIC(12,2) NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('completed','cancelled','refunded')),
        ordered_at TIMESTAMPTZ NOT NULL);
    CREATE INDEX ON orders (ordered_at);
    INSERT INTO users VALUES (1,'a','active',now()), (2,'b','active',now()), (3,'c','suspended',now());
    INSERT INTO orders VALUES
      (1, 1, 10.10, 'completed', '2026-11-27 23:59:59+09'),
      (2, 2, 10.10, 'completed', '2026-10-29 00:00:00+09'),
      (3, 3, 99.00, 'completed', '2026-11-20 12:00:00+09'),
      (4, 1, 5.00, 'completed', '2026-11-28 00:00:00+09'),
      (5, 2, 0.01, 'refunded', '2026-11-20 12:00:00+09');
    """
    writer = psycopg2.connect(plain_url(database_url))  # plain DB-API, none of the pipeline's code
    with writer, writer.cursor() as cursor:
        cursor.execute(ddl_and_rows)
    writer.close()

    done = cli("run", "--date", D.isoformat(), env=env_with(**{DATABASE_URL_ENV: plain_url(database_url)}))

    assert done.returncode == 0, done.stderr
    assert "users ranked: 2" in done.stdout
    assert rankings_rows(engine, D) == [(1, 1, Decimal("10.10"), 1), (1, 2, Decimal("10.10"), 1)]


def test_seed_then_run_on_the_embedded_default_with_no_server_configured(tmp_path):
    env = env_with(**{DATABASE_URL_ENV: None, EMBEDDED_PGDATA_ENV: str(tmp_path / "pgdata")})

    seeded = cli("seed", "--users", "500", "--end-date", D.isoformat(), env=env, cwd=tmp_path)
    ran = cli("run", "--date", D.isoformat(), env=env, cwd=tmp_path)

    assert seeded.returncode == 0, seeded.stderr
    assert (
        f"seeded the embedded PostgreSQL in {tmp_path / 'pgdata'}: 500 users, 18,000 orders" in seeded.stdout
    )
    assert "from 2026-10-23 to 2026-11-27 (JST)" in seeded.stdout
    # every seeded day aggregated by one BATCH-000 run: the last 7 dates can be run or re-run at once
    assert "daily_order_aggregates 2026-10-23 .. 2026-11-27: run " in seeded.stdout
    assert "complete window (ready to run or re-run): 2026-11-21 .. 2026-11-27" in seeded.stdout
    assert ran.returncode == 0, ran.stderr
    assert "daily aggregates computed: 0 day(s) (the window was complete)" in ran.stdout
    earlier = cli("run", "--date", "2026-11-21", env=env, cwd=tmp_path)
    assert earlier.returncode == 0, earlier.stderr
    assert "daily aggregates computed: 0 day(s) (the window was complete)" in earlier.stdout
    top_line = ran.stdout.split("top 10:")[1].splitlines()[2].split()
    assert top_line[0] == "1"


def test_an_invalid_date_is_one_clear_line_and_a_nonzero_exit(database_url):
    done = cli("run", "--date", "2026-02-30", env=env_with(**{DATABASE_URL_ENV: database_url}))

    assert done.returncode == 2
    assert "invalid date '2026-02-30': expected a calendar date as YYYY-MM-DD" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_unreachable_database_is_named_without_its_password():
    url = "postgresql://batch:s3cret@127.0.0.1:1/ranking"
    done = cli("run", "--date", D.isoformat(), env=env_with(**{DATABASE_URL_ENV: url}))

    assert done.returncode == 2
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("ranking-pipeline: error:")]
    assert len(error_lines) == 1
    assert "cannot reach the database postgresql+psycopg2://batch:***@127.0.0.1:1/ranking" in error_lines[0]
    assert len(done.stderr.strip().splitlines()) == 1
    assert "s3cret" not in done.stderr + done.stdout


def test_missing_tables_are_named_and_nothing_is_created(database_url, engine):
    done = cli("run", "--date", D.isoformat(), env=env_with(**{DATABASE_URL_ENV: database_url}))

    assert done.returncode == 2
    assert "table 'users' is missing; table 'orders' is missing" in done.stderr
    with engine.connect() as connection:
        assert sa.inspect(connection).get_table_names() == []


def test_a_missing_column_is_named(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE users (user_id BIGINT, status TEXT)"))
        connection.execute(sa.text("CREATE TABLE orders (user_id BIGINT, amount NUMERIC, status TEXT)"))

    done = cli("run", "--date", D.isoformat(), env=env_with(**{DATABASE_URL_ENV: database_url}))

    assert done.returncode == 2
    assert "column orders.ordered_at is missing" in done.stderr
    assert "ranking-pipeline seed" in done.stderr
