"""The distributed batch lock, on both backends (Redis and the PostgreSQL table): refusal while the holder
lives, takeover when it is gone, fencing, and a release that never fails a run."""

import datetime as dt
import os
import signal
import subprocess
import sys
import uuid
from decimal import Decimal

import pytest
import redis
import sqlalchemy as sa

from ranking_pipeline.lib.lock import (
    LockHeldError,
    LockLostError,
    PostgresBatchLock,
    RedisBatchLock,
    lock_key,
)
from ranking_pipeline.lib.queries import replace_rankings
from ranking_pipeline.lib.schema import ensure_output_tables
from ranking_pipeline_tests.helpers import load_inputs, rankings_rows, wait_until

D = dt.date(2026, 11, 27)


@pytest.fixture(params=["redis", "postgresql"])
def make_lock(request, engine):
    """Builds locks on one backend; every lock of a test shares one unique key."""
    ensure_output_tables(engine)
    key = lock_key(f"TEST-{uuid.uuid4().hex[:8]}")
    if request.param == "redis":
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))

        def build(ttl_seconds: int = 60, lease_seconds: int = 60):
            return RedisBatchLock(client, key, ttl_seconds, lease_seconds=lease_seconds)

    else:

        def build(ttl_seconds: int = 60, lease_seconds: int = 60):
            return PostgresBatchLock(engine, key, ttl_seconds, lease_seconds=lease_seconds)

    build.backend = request.param
    build.key = key
    return build


def renewed_past(lock, holder, seconds: float) -> bool:
    """The holder's lease was renewed to at least ``seconds`` beyond its first lease: the renewal happened
    after that first lease had lapsed, and the holder still held the lock then."""
    current = lock.current_holder()
    first = dt.datetime.fromisoformat(holder.lease_until)
    return current is not None and (
        current.token == holder.token
        and dt.datetime.fromisoformat(current.lease_until) >= first + dt.timedelta(seconds=seconds)
    )


def test_the_lock_key_and_limits_are_the_design_documents(engine):
    ensure_output_tables(engine)
    lock = PostgresBatchLock(engine, lock_key("BATCH-001"))
    assert lock.key == "batch:lock:BATCH-001"
    assert lock.ttl_seconds == 30 * 60  # the upper bound of any holding
    assert lock.lease_seconds == 60  # a holder that is gone loses it within a minute


def test_a_second_holder_is_refused_with_the_live_holder_named(make_lock):
    first = make_lock().acquire("run-aaa")

    with pytest.raises(LockHeldError) as refused:
        make_lock().acquire("run-bbb")

    message = str(refused.value)
    assert refused.value.holder.run_id == "run-aaa" and not refused.value.holder.handed_over
    assert f"since {first.acquired_at[:16]}" in message
    assert make_lock.backend in message
    assert "nothing was written" in message


def test_release_frees_the_lock_for_the_next_run(make_lock):
    lock = make_lock()
    with lock.held("run-aaa"):
        assert lock.current_holder().run_id == "run-aaa"
    assert lock.current_holder() is None
    assert make_lock().acquire("run-bbb").run_id == "run-bbb"


def test_a_holder_that_is_gone_loses_the_lock_when_its_lease_lapses(make_lock):
    make_lock(lease_seconds=1).acquire("run-killed")  # no heartbeat: the process is gone

    waited = wait_until(lambda: make_lock().current_holder() is None, 10, "the lease to lapse")

    assert waited < 3
    assert make_lock().acquire("run-next").run_id == "run-next"


def test_a_live_holder_keeps_its_lock_past_its_lease_and_never_past_its_expiry(make_lock):
    lock = make_lock(ttl_seconds=4, lease_seconds=1)
    with lock.held("run-alive") as holder:
        wait_until(lambda: renewed_past(lock, holder, 1), 10, "a renewal after the first 1 s lease")
        with pytest.raises(LockHeldError):
            make_lock().acquire("run-other")
        wait_until(lambda: lock.current_holder() is None, 10, "the 4 s expiry")  # even while it still beats
    assert make_lock().acquire("run-other").run_id == "run-other"


def test_the_same_run_takes_its_lock_back_and_an_ended_run_is_taken_over_at_once(make_lock):
    first = make_lock().acquire("run-aaa")
    retried = make_lock().acquire("run-aaa")  # a step retry of the same run
    assert retried.token != first.token

    taken = make_lock().acquire("run-bbb", run_ended=lambda run_id: run_id == "run-aaa")  # a re-execution
    assert taken.run_id == "run-bbb"
    with pytest.raises(LockHeldError):
        make_lock().acquire("run-ccc", run_ended=lambda run_id: False)  # run-bbb is alive


def test_a_lock_handed_over_waits_for_its_batchs_next_run_and_refuses_every_other(make_lock):
    lock = make_lock(lease_seconds=2)
    with lock.held("scoring-run", hand_over=lambda: True):  # the scoring step succeeds
        pass

    kept = make_lock().current_holder()
    assert kept.handed_over and kept.run_id == "scoring-run"
    assert kept.lease_until == kept.expires_at  # no heartbeat needed: it lives until its expiry
    with pytest.raises(LockHeldError) as refused:
        make_lock().acquire("another-batch", run_ended=lambda holder: False)
    assert refused.value.holder.run_id == "scoring-run" and refused.value.holder.handed_over
    ranking = make_lock().acquire("scoring-run")  # the batch's ranking run (ranking/scored_by)
    assert ranking.token != kept.token and not ranking.handed_over
    assert make_lock().acquire("another-batch", run_ended=lambda holder: holder == "scoring-run")  # ended


def test_a_failed_step_releases_instead_of_handing_over(make_lock):
    lock = make_lock()
    with pytest.raises(RuntimeError), lock.held("scoring-run", hand_over=lambda: False):
        raise RuntimeError("the scoring failed")

    assert make_lock().current_holder() is None


def test_a_stale_holder_cannot_release_the_newer_holders_lock(make_lock):
    stale = make_lock(lease_seconds=1).acquire("run-old")
    wait_until(lambda: make_lock().current_holder() is None, 10, "the lease to lapse")
    newer_lock = make_lock()
    newer = newer_lock.acquire("run-new")

    assert make_lock().release(stale.token) is False
    assert newer_lock.current_holder().token == newer.token


def test_a_stale_holder_cannot_commit_rankings_over_a_newer_holder(make_lock, engine):
    load_inputs(engine, [(1, "active")], [])
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO rankings VALUES (:d, 1, 1, 9.99, 1)"), {"d": D})
        connection.execute(sa.text("INSERT INTO user_scores VALUES (:d, 1, 2, 50.00, 50.00)"), {"d": D})
    stale_lock = make_lock(lease_seconds=1)
    stale = stale_lock.acquire("run-old")
    wait_until(lambda: make_lock().current_holder() is None, 10, "the lease to lapse")
    make_lock().acquire("run-new")

    with pytest.raises(LockLostError) as lost:
        replace_rankings(
            engine, D, before_commit=lambda connection, rows: stale_lock.verify(stale.token, connection)
        )
    assert lost.value.now_held_by.run_id == "run-new"

    assert rankings_rows(engine, D) == [(1, 1, Decimal("9.99"), 1)]


def test_the_holder_commits_while_it_holds_the_lock(make_lock, engine):
    load_inputs(engine, [(1, "active")], [])
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO user_scores VALUES (:d, 1, 2, 50.00, 50.00)"), {"d": D})
    lock = make_lock()
    with lock.held("run-now") as holder:
        replace_rankings(
            engine, D, before_commit=lambda connection, rows: lock.verify(holder.token, connection)
        )

    assert rankings_rows(engine, D) == [(1, 1, Decimal("50.00"), 2)]


HOLDER_PROCESS = """
import sys, time
import redis, sqlalchemy as sa
from ranking_pipeline.lib.lock import PostgresBatchLock, RedisBatchLock
backend, target, key = sys.argv[1:4]
if backend == "redis":
    lock = RedisBatchLock(redis.Redis.from_url(target), key, 1800, lease_seconds=2)
else:
    lock = PostgresBatchLock(sa.create_engine(target), key, 1800, lease_seconds=2)
with lock.held("run-that-gets-killed"):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_killed_holder_process_loses_the_lock_at_once_on_its_machine(make_lock, database_url, request):
    target = request.getfixturevalue("redis_url") if make_lock.backend == "redis" else database_url
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_PROCESS, make_lock.backend, target, make_lock.key],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        first = make_lock().current_holder()
        wait_until(lambda: renewed_past(make_lock(), first, 2), 20, "a renewal after the first 2 s lease")
        with pytest.raises(LockHeldError, match="run-that-gets-killed"):
            make_lock().acquire("run-next")
        os.kill(holder.pid, signal.SIGKILL)  # or the OOM killer
        holder.wait()

        taken = make_lock().acquire("run-next")  # its process is gone from this machine: no waiting
    finally:
        if holder.poll() is None:
            holder.kill()
    assert taken.run_id == "run-next"
