"""Short outages of the database or Redis during a batch end in a successful batch with nothing left behind;
longer ones in one clear failure naming the cause. The batch talks to the real servers through a TCP proxy on
loopback that the test cuts for 5 seconds (every open connection dropped, new ones refused), at a moment made
certain by the database itself (a trigger that holds the scoring INSERT, a lock that holds the lock
release)."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg
import pytest
import redis
import sqlalchemy as sa

from ranking_pipeline.batch_runner import BatchRunFailed, run_batch_runs
from ranking_pipeline.constants import BATCH_001_RANKINGS_JOB, BATCH_001_SCORES_JOB, SCORED_BY_TAG
from ranking_pipeline.defs.alerts.failure import alert_on_run_failure
from ranking_pipeline.defs.alerts.success import notify_on_batch_success
from ranking_pipeline.downstream import start_on_rankings_committed
from ranking_pipeline.lib import errors
from ranking_pipeline.lib.business_date import BusinessDate
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.conftest import REDIS_URL
from ranking_pipeline_tests.fakes import TcpProxy, fake_slack, slack_messages, slack_resource, tcp_proxy
from ranking_pipeline_tests.helpers import (
    batch_runs,
    project_defs,
    rankings_rows,
    run_date,
    sensor_tick,
    wait_until,
)
from ranking_pipeline_tests.test_against_sql import INDEPENDENT_RANKING
from ranking_pipeline_tests.test_automation import batch_002_job

D = dt.date(2026, 11, 27)
OUTAGE_SECONDS = 5
RETRY_DELAY_SECONDS = OUTAGE_SECONDS + 2  # the step's retry comes after the outage, as a minute would


@pytest.fixture
def retry_after_the_outage(monkeypatch):
    """The declared 60 s retry delay (asserted in test_definitions) shortened to just past the outage."""
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt_num: RETRY_DELAY_SECONDS)


@pytest.fixture
def window_ready(engine, instance, definitions):
    """Orders seeded and W(D) aggregated, so the batch itself is what runs through the proxy."""
    seed(engine, 1500, end_date=D, random_seed=12)
    run_date(definitions, instance, D - dt.timedelta(days=1))  # aggregates D-30 .. D-1, ranks D-1
    run_date(definitions, instance, D)  # and D; the batch under test ranks D again, forced
    return engine


def _host_port(url: str) -> tuple[str, int]:
    parsed = sa.engine.make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 5432


def _through(proxy: TcpProxy, url: str) -> str:
    parsed = sa.engine.make_url(url)
    return parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def _redis_through(proxy: TcpProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/0"


@contextmanager
def outage_when(condition: Callable[[], bool], proxy: TcpProxy, hold: Callable[[], None] | None = None):
    """In the background: as soon as ``condition()`` holds, cut the proxy for OUTAGE_SECONDS (and call
    ``hold()`` before releasing whatever held the batch at that moment)."""
    happened = threading.Event()

    def watch() -> None:
        try:
            wait_until(condition, 120, "the moment to cut the proxy", every=0.02)
        except AssertionError:
            return  # the moment never came: ``happened`` stays unset and the test says so
        proxy.cut()
        happened.set()
        if hold is not None:
            hold()
        time.sleep(OUTAGE_SECONDS)
        proxy.restore()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield happened
    finally:
        watcher.join(timeout=OUTAGE_SECONDS + 130)


def _scoring_insert_waits(engine: sa.Engine) -> Callable[[], bool]:
    """A trigger holds the first scoring INSERT for 3 s; the condition sees it waiting."""
    with engine.begin() as connection:
        connection.exec_driver_sql(
            """
            CREATE SEQUENCE hold_once;
            CREATE FUNCTION hold_first_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF nextval('hold_once') = 1 THEN PERFORM pg_sleep(3); END IF; RETURN NULL; END $$;
            CREATE TRIGGER hold_first_insert AFTER INSERT ON user_scores
              FOR EACH STATEMENT EXECUTE FUNCTION hold_first_insert();
            """
        )

    def waiting() -> bool:
        with engine.connect() as connection:
            return bool(
                connection.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                        "AND query LIKE '%INSERT INTO user_scores%' AND pid <> pg_backend_pid() "
                        "AND datname = current_database()"  # not another database's batch on this server
                    )
                ).scalar_one()
            )

    return waiting


def _ranking_committed(engine: sa.Engine, run_ids: Callable[[], set[str]]) -> Callable[[], bool]:
    def committed() -> bool:
        with engine.connect() as connection:
            done = connection.execute(
                sa.text(
                    "SELECT run_id FROM ranking_partition_runs WHERE asset = 'rankings' AND business_date = "
                    ":d "
                    "AND status = 'completed'"
                ),
                {"d": D},
            ).scalar_one_or_none()
        return done in run_ids()

    return committed


def _lock_free(engine: sa.Engine, client: redis.Redis | None) -> bool:
    if client is not None:
        return not client.keys("batch:lock:*")
    with engine.connect() as connection:
        return not connection.execute(
            sa.text("SELECT count(*) FROM ranking_batch_locks WHERE expires_at > now()")
        ).scalar_one()


def _assert_batch_succeeded_once(engine, instance, definitions, redis_client=None) -> None:
    with engine.connect() as connection:
        expected = [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": D})]
    assert rankings_rows(engine, D) == expected
    [scoring] = [
        r for r in batch_runs(instance, BATCH_001_SCORES_JOB) if r.tags.get("ranking/force_recompute")
    ]
    [ranking] = [
        r for r in batch_runs(instance, BATCH_001_RANKINGS_JOB) if r.tags.get(SCORED_BY_TAG) == scoring.run_id
    ]
    assert (scoring.status, ranking.status) == (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.SUCCESS)
    # a release that met the outage is finished in the background
    wait_until(lambda: _lock_free(engine, redis_client), 30, "the release of the batch's lock")


def _alerts_and_batch_002(instance, definitions, cursors: dict) -> tuple[list, list]:
    with fake_slack() as slack:
        sensor_tick(
            alert_on_run_failure, instance, definitions, cursors["failure"], slack=slack_resource(slack)
        )
        sensor_tick(
            notify_on_batch_success, instance, definitions, cursors["success"], slack=slack_resource(slack)
        )
        messages = slack_messages(slack)
    mail = start_on_rankings_committed(batch_002_job)
    with dg.build_sensor_context(instance=instance, cursor=cursors["batch_002"]) as context:
        requests = mail.evaluate_tick(context).run_requests
    return messages, requests


def _cursors(instance, definitions) -> dict:
    mail = start_on_rankings_committed(batch_002_job)
    with dg.build_sensor_context(instance=instance) as context:
        mail.evaluate_tick(context)
        batch_002 = context.cursor
    return {
        "failure": sensor_tick(alert_on_run_failure, instance, definitions).cursor,
        "success": sensor_tick(notify_on_batch_success, instance, definitions).cursor,
        "batch_002": batch_002,
    }


@pytest.fixture
def postgres_proxy(database_url) -> Iterator[TcpProxy]:
    with tcp_proxy(*_host_port(database_url)) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy(redis_url) -> Iterator[TcpProxy]:
    parsed = redis.connection.parse_url(redis_url)
    with tcp_proxy(parsed.get("host", "127.0.0.1"), parsed.get("port", 6379)) as proxy:
        yield proxy


def test_a_database_outage_during_scoring_ends_in_a_successful_batch(
    window_ready, database_url, instance, postgres_proxy, retry_after_the_outage
):
    definitions = project_defs(_through(postgres_proxy, database_url))  # the lock lives in the database too
    cursors = _cursors(instance, definitions)
    with outage_when(_scoring_insert_waits(window_ready), postgres_proxy) as happened:
        run_batch_runs(definitions, instance, BusinessDate.of(D), force=True)
    assert happened.is_set()

    _assert_batch_succeeded_once(window_ready, instance, definitions)
    [scoring] = [r for r in batch_runs(instance) if r.tags.get("ranking/force_recompute")]
    assert len(instance.all_logs(scoring.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    messages, requests = _alerts_and_batch_002(instance, definitions, cursors)
    assert [m["text"].split("*")[1] for m in messages] == ["BATCH-001 completed"]  # no failure alert
    assert [r.tags["ranking/business_date"] for r in requests] == [str(D)]


def test_a_database_outage_right_after_the_rankings_commit_ends_in_a_successful_batch(
    window_ready, database_url, instance, postgres_proxy, retry_after_the_outage
):
    definitions = project_defs(_through(postgres_proxy, database_url))
    cursors = _cursors(instance, definitions)
    holder = window_ready.connect()

    def hold_the_release() -> None:  # the run's lock release waits on this lock while the proxy is down
        holder.exec_driver_sql("LOCK TABLE ranking_batch_locks IN ACCESS EXCLUSIVE MODE")
        holder.rollback()

    forced_runs = lambda: {r.run_id for r in batch_runs(instance, BATCH_001_RANKINGS_JOB)}  # noqa: E731
    with outage_when(
        _ranking_committed(window_ready, forced_runs), postgres_proxy, hold_the_release
    ) as happened:
        run_batch_runs(definitions, instance, BusinessDate.of(D), force=True)
    holder.close()
    assert happened.is_set()

    _assert_batch_succeeded_once(window_ready, instance, definitions)
    messages, requests = _alerts_and_batch_002(instance, definitions, cursors)
    assert [m["text"].split("*")[1] for m in messages] == ["BATCH-001 completed"]
    assert [r.tags["ranking/business_date"] for r in requests] == [str(D)]


def test_a_redis_outage_during_scoring_ends_in_a_successful_batch(
    window_ready, database_url, instance, redis_proxy, retry_after_the_outage
):
    definitions = project_defs(database_url, redis_url=_redis_through(redis_proxy))  # lock and cache in Redis
    client = redis.Redis.from_url(REDIS_URL)
    with outage_when(_scoring_insert_waits(window_ready), redis_proxy) as happened:
        run_batch_runs(definitions, instance, BusinessDate.of(D), force=True)
    assert happened.is_set()

    _assert_batch_succeeded_once(window_ready, instance, definitions, client)


def test_a_redis_outage_right_after_the_rankings_commit_ends_in_a_successful_batch(
    window_ready, database_url, instance, redis_proxy, retry_after_the_outage
):
    prefix = f"ranking-outage-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    with client.pipeline(transaction=False) as pipe:  # enough cache that clearing it takes a while
        for start in range(0, 200_000, 10_000):
            pipe.mset({f"{prefix}:{n}": "x" for n in range(start, start + 10_000)})
        pipe.execute()
    definitions = project_defs(
        database_url, redis_url=_redis_through(redis_proxy), cache_key_pattern=f"{prefix}:*"
    )
    cursors = _cursors(instance, definitions)
    forced_runs = lambda: {r.run_id for r in batch_runs(instance, BATCH_001_RANKINGS_JOB)}  # noqa: E731
    with outage_when(_ranking_committed(window_ready, forced_runs), redis_proxy) as happened:
        run_batch_runs(definitions, instance, BusinessDate.of(D), force=True)
    assert happened.is_set()

    _assert_batch_succeeded_once(window_ready, instance, definitions, client)
    assert client.keys(f"{prefix}:*") == []  # the retry cleared what the outage interrupted
    messages, requests = _alerts_and_batch_002(instance, definitions, cursors)
    assert [m["text"].split("*")[1] for m in messages] == ["BATCH-001 completed"]
    assert [r.tags["ranking/business_date"] for r in requests] == [str(D)]


def test_a_database_that_stays_down_ends_in_one_clear_failure_naming_it(
    window_ready, database_url, instance, postgres_proxy, monkeypatch
):
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt_num: 0)
    monkeypatch.setattr(errors, "STORE_PATIENCE_SECONDS", 2.0)
    definitions = project_defs(_through(postgres_proxy, database_url))
    postgres_proxy.cut()

    started = time.monotonic()
    with pytest.raises(BatchRunFailed) as failed:
        run_batch_runs(definitions, instance, BusinessDate.of(D), force=True)

    assert time.monotonic() - started < 60
    assert "StoreUnreachableError" in failed.value.causes and "RANKING_DATABASE_URL" in str(failed.value)
    [scoring] = batch_runs(instance)[:1]
    assert not instance.all_logs(scoring.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
