"""The batch lock as an operator meets it, on both backends: a run killed while holding it does not block the
next one, and `ranking-pipeline lock status` / `lock release [--force]` say and do what the runbook
promises."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import redis
import sqlalchemy as sa

from ranking_pipeline.lib.lock import PostgresBatchLock, RedisBatchLock, lock_key
from ranking_pipeline.lib.schema import ensure_output_tables
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.helpers import cli, rankings_rows, wait_until
from ranking_pipeline_tests.test_against_sql import INDEPENDENT_RANKING
from ranking_pipeline_tests.test_lock import HOLDER_PROCESS

D = dt.date(2026, 11, 27)


@pytest.fixture(params=["postgresql", "redis"])
def backend(request, database_url) -> dict[str, str]:
    """The environment of the commands: the lock in the database, or in Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKING_") and k != "DAGSTER_HOME"}
    env["RANKING_DATABASE_URL"] = database_url
    if request.param == "redis":
        env["RANKING_REDIS_URL"] = request.getfixturevalue("redis_url")
        redis.Redis.from_url(env["RANKING_REDIS_URL"]).delete(lock_key("BATCH-001"))
    return env


def _holder_of(env: dict[str, str], engine: sa.Engine):
    if "RANKING_REDIS_URL" in env:
        return RedisBatchLock(
            redis.Redis.from_url(env["RANKING_REDIS_URL"]), lock_key("BATCH-001")
        ).current_holder()
    return PostgresBatchLock(engine, lock_key("BATCH-001")).current_holder()


def test_a_run_killed_while_holding_the_lock_does_not_block_the_next_one(backend, engine):
    seed(engine, 1000, end_date=D, random_seed=13)
    home = tempfile.mkdtemp(prefix="rp-cli-")  # one folder: both runs in one local instance
    assert cli("run", "--date", D.isoformat(), env=backend, cwd=home).returncode == 0
    with engine.begin() as connection:  # the next scoring INSERT takes 8 s: long enough to be killed in
        connection.exec_driver_sql(
            """
            CREATE FUNCTION slow_scores() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(8); RETURN NULL; END $$;
            CREATE TRIGGER slow_scores AFTER INSERT ON user_scores
              FOR EACH STATEMENT EXECUTE FUNCTION slow_scores();
            """
        )
    victim = subprocess.Popen(
        [sys.executable, "-m", "ranking_pipeline.cli", "run", "--date", D.isoformat(), "--force"],
        env=backend,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def victim_holds() -> bool:
        assert victim.poll() is None, "the run ended before it held the lock"
        holder = _holder_of(backend, engine)
        return holder is not None and holder.pid == victim.pid

    wait_until(victim_holds, 120, "the run holding the lock")
    os.kill(victim.pid, signal.SIGKILL)  # as the OOM killer would
    victim.wait()
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER slow_scores ON user_scores")

    started = time.monotonic()
    rerun = cli("run", "--date", D.isoformat(), "--force", env=backend, cwd=home)

    assert rerun.returncode == 0, rerun.stderr
    assert time.monotonic() - started < 120
    with engine.connect() as connection:
        expected = [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": D})]
    assert rankings_rows(engine, D) == expected
    assert _holder_of(backend, engine) is None  # and nothing left behind


def test_lock_status_and_release_say_and_do_what_the_runbook_promises(backend, engine):
    ensure_output_tables(engine)
    assert cli("lock", "status", env=backend).stdout.splitlines()[0].endswith(": free")
    target = backend.get("RANKING_REDIS_URL") or backend["RANKING_DATABASE_URL"]
    kind = "redis" if "RANKING_REDIS_URL" in backend else "postgresql"
    holder = subprocess.Popen(  # a live holder: its heartbeat keeps the lock
        [sys.executable, "-c", HOLDER_PROCESS, kind, target, lock_key("BATCH-001")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        status = cli("lock", "status", env=backend)
        refused = cli("lock", "release", env=backend)
        forced = cli("lock", "release", "--force", env=backend)
        after = cli("lock", "status", env=backend)
    finally:
        holder.kill()
        holder.wait()

    first = status.stdout.splitlines()[0]
    assert first.startswith(
        f"batch:lock:BATCH-001 ({'Redis' if kind == 'redis' else 'table ranking_batch_locks'}"
    )
    assert f"held by run run-that-gets-killed (host {os.uname().nodename}, pid {holder.pid})" in first
    assert "its run is not in this Dagster instance" in first
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "not released" in line and "ranking-pipeline lock release --force" in line
    assert forced.returncode == 0, forced.stderr
    assert "released" in forced.stdout and "it was alive" in forced.stdout
    assert after.stdout.splitlines()[0].endswith(": free")
