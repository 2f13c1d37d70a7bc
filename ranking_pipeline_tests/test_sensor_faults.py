"""Automation that cannot crash: the sensors that read the ranking database turn a database that is down, an
embedded server that fails to start and missing tables into a skip reason (or a notice without the part that
needed the database) naming the cause, and work again on the next tick once the cause is gone."""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import sqlalchemy as sa

from ranking_pipeline.defs import sensors
from ranking_pipeline.defs.alerts.success import notify_on_batch_success
from ranking_pipeline.defs.resources import Clock, RankingDatabase
from ranking_pipeline.lib.business_date import JST
from ranking_pipeline.lib.seed import create_input_tables, seed
from ranking_pipeline_tests.fakes import fake_slack, slack_messages, slack_resource, tcp_proxy
from ranking_pipeline_tests.helpers import run_date, sensor_tick

D = dt.date(2026, 11, 27)
AT_03_30 = dt.datetime(2026, 11, 28, 3, 30, tzinfo=JST)


def gate_tick(instance, definitions, database: RankingDatabase) -> str:
    result = sensor_tick(
        sensors.start_batch_001_on_aggregates_landed,
        instance,
        definitions,
        database=database,
        clock=Clock(fixed_at=AT_03_30.isoformat()),  # the clock is passed in
    )
    assert not result.run_requests
    return result.skip_message


def test_the_gate_says_the_database_is_down_and_recovers_when_it_is_back(
    database_url, engine, instance, definitions
):
    seed(engine, 200, end_date=D)
    parsed = sa.engine.make_url(database_url)
    with tcp_proxy(parsed.host, parsed.port or 5432) as proxy:
        proxied = RankingDatabase(url=parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
        proxy.cut()
        down = gate_tick(instance, definitions, proxied)
        proxy.restore()
        back = gate_tick(instance, definitions, proxied)

    assert down.startswith(f"BATCH-001 for {D} not started: cannot reach the database postgresql+psycopg2://")
    assert "checking again in a minute" in down
    assert back.startswith("BATCH-001 for 2026-11-27 not started: the pipeline's tables do not exist yet")


def test_the_gate_says_the_tables_are_missing_then_waits_for_batch_000(
    database_url, engine, instance, definitions
):
    create_input_tables(engine)  # a fresh database: nothing has run there yet

    missing = gate_tick(instance, definitions, RankingDatabase(url=database_url))
    assert "the pipeline's tables do not exist yet in postgresql+psycopg2://" in missing
    assert "BATCH-000 creates them" in missing

    seed(engine, 200, end_date=D)
    run_date(definitions, instance, D - dt.timedelta(days=1))  # BATCH-000 has run since: the gate just waits
    waiting = gate_tick(instance, definitions, RankingDatabase(url=database_url))
    assert "BATCH-000 has not finished: daily_order_aggregates lacks 2026-11-27 of W(2026-11-27)" in waiting


def test_the_gate_says_the_embedded_server_did_not_start_and_recovers_once_it_can(
    tmp_path, instance, definitions
):
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("18\n")  # a data folder that is not one: the server cannot start
    embedded = RankingDatabase(embedded_pgdata=str(pgdata))

    broken = gate_tick(instance, definitions, embedded)
    assert broken.startswith(
        f"BATCH-001 for {D} not started: the embedded PostgreSQL server in {pgdata} did not start"
    )
    assert "its log is" in broken

    shutil.rmtree(pgdata)  # an operator clears the broken folder
    recovered = gate_tick(instance, definitions, embedded)
    assert "the pipeline's tables do not exist yet in the embedded PostgreSQL in" in recovered


def test_the_completion_notice_goes_out_without_rank_movers_when_the_database_is_down(
    database_url, engine, instance, definitions
):
    seed(engine, 500, end_date=D)
    run_date(definitions, instance, D - dt.timedelta(days=1))
    cursor = sensor_tick(notify_on_batch_success, instance, definitions).cursor
    summary = run_date(definitions, instance, D)
    parsed = sa.engine.make_url(database_url)

    with fake_slack() as slack, tcp_proxy(parsed.host, parsed.port or 5432) as proxy:
        proxy.cut()
        down = RankingDatabase(url=parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
        sensor_tick(
            notify_on_batch_success, instance, definitions, cursor, database=down, slack=slack_resource(slack)
        )
        [message] = slack_messages(slack)

    assert (
        f"*BATCH-001 completed* for business date {D}: {summary.ranked_users:,} users ranked"
        in message["text"]
    )
    assert "Rank movers unavailable: cannot reach the database postgresql+psycopg2://" in message["text"]
    assert isinstance(instance.get_run_by_id(summary.run_ids[-1]).status, dg.DagsterRunStatus)
