"""The distributed batch lock, on both backends: Redis and the PostgreSQL table."""

import datetime as dt
import time
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from ranking_pipeline.lib.lock import LockHeldError, LockLostError, make_batch_lock
from ranking_pipeline.lib.queries import replace_rankings
from ranking_pipeline.lib.schema import ensure_output_tables
from ranking_pipeline_tests.helpers import load_inputs, rankings_rows

D = dt.date(2026, 11, 27)


@pytest.fixture(params=["redis", "postgresql"])
def make_lock(request, engine):
    """Builds locks on one backend; every lock of a test shares one unique key."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    process_id = f"TEST-{uuid.uuid4().hex[:8]}"

    def build(ttl_seconds: int = 60):
        return make_batch_lock(process_id, redis_url=redis_url, engine=engine, ttl_seconds=ttl_seconds)

    build.backend = request.param
    return build


def test_the_lock_key_is_the_design_documents(engine):
    lock = make_batch_lock("BATCH-001", redis_url=None, engine=engine)
    assert lock.key == "batch:lock:BATCH-001"
    assert lock.ttl_seconds == 30 * 60


def test_a_second_holder_is_refused_with_the_holder_named(make_lock):
    first = make_lock().acquire("run-aaa")

    with pytest.raises(LockHeldError) as refused:
        make_lock().acquire("run-bbb")

    message = str(refused.value)
    assert "is held by run run-aaa" in message
    assert f"since {first.acquired_at[:16]}" in message
    assert make_lock.backend in message
    assert "nothing was written" in message


def test_release_frees_the_lock_for_the_next_run(make_lock):
    lock = make_lock()
    with lock.hold("run-aaa"):
        assert lock.current_holder().run_id == "run-aaa"
    assert lock.current_holder() is None
    assert make_lock().acquire("run-bbb").run_id == "run-bbb"


def test_expiry_frees_a_lock_its_holder_never_released(make_lock):
    make_lock(ttl_seconds=1).acquire("run-killed")  # a killed run: no release

    time.sleep(1.3)

    assert make_lock().acquire("run-next").run_id == "run-next"


def test_a_stale_holder_cannot_release_the_newer_holders_lock(make_lock):
    stale = make_lock(ttl_seconds=1).acquire("run-old")
    time.sleep(1.3)
    newer_lock = make_lock()
    newer = newer_lock.acquire("run-new")

    assert make_lock().release(stale.token) is False
    assert newer_lock.current_holder().token == newer.token


def test_a_stale_holder_cannot_commit_rankings_over_a_newer_holder(make_lock, engine):
    load_inputs(engine, [(1, "active")], [])
    ensure_output_tables(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO rankings VALUES (:d, 1, 1, 9.99, 1)"), {"d": D})
        connection.execute(sa.text("INSERT INTO user_scores VALUES (:d, 1, 2, 50.00, 50.00)"), {"d": D})
    stale_lock = make_lock(ttl_seconds=1)
    stale = stale_lock.acquire("run-old")
    time.sleep(1.3)
    make_lock().acquire("run-new")

    with pytest.raises(LockLostError, match=r"no longer ours .*now held by run run-new"):
        replace_rankings(
            engine, D, before_commit=lambda connection, rows: stale_lock.verify(stale.token, connection)
        )

    assert rankings_rows(engine, D) == [(1, 1, Decimal("9.99"), 1)]


def test_the_holder_commits_while_it_holds_the_lock(make_lock, engine):
    load_inputs(engine, [(1, "active")], [])
    ensure_output_tables(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO user_scores VALUES (:d, 1, 2, 50.00, 50.00)"), {"d": D})
    lock = make_lock()
    with lock.hold("run-now") as holder:
        replace_rankings(
            engine, D, before_commit=lambda connection, rows: lock.verify(holder.token, connection)
        )

    assert rankings_rows(engine, D) == [(1, 1, Decimal("50.00"), 2)]
