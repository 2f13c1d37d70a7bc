"""The production topology run for real: the code location's own code server, dagster-webserver and
dagster-daemon as separate processes talking over TCP, Dagster's storage in PostgreSQL (deploy/). A nightly
batch is launched through the webserver's GraphQL API, its code server is SIGKILLed while the scoring step
runs (alone, or with its run processes as when its host is lost) and started again, and the tests check
what an operator sees: how the batch ended, one Slack message about it, the rankings, and that the next
batch succeeds."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psutil
import pytest
import sqlalchemy as sa

from ranking_pipeline.constants import (
    BATCH_000_JOB,
    BATCH_001_SCORES_JOB,
    BUSINESS_DATE_TAG,
    LAUNCHED_BY_TAG,
    MAX_RUNTIME_TAG,
)
from ranking_pipeline.lib import db
from ranking_pipeline.lib.ranges import USER_ID_RANGES
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.conftest import PROJECT_ROOT, create_database, drop_database
from ranking_pipeline_tests.dagster_dev import LOCATION_NAME, REPOSITORY_NAME, batch_000_tags
from ranking_pipeline_tests.deployment import Deployment, deployment
from ranking_pipeline_tests.fakes import fake_slack, slack_messages
from ranking_pipeline_tests.helpers import rankings_rows
from ranking_pipeline_tests.test_against_sql import INDEPENDENT_RANKING
from ranking_pipeline_tests.test_graphql_launch import RUN_LOGS

pytestmark = pytest.mark.slow

TRIGGER = PROJECT_ROOT / "deploy" / "trigger" / "launch_batch_001.py"
LAST_DAY = dt.date(
    2025, 6, 30
)  # far from today: the real clock's nightly automation leaves these dates alone
BEFORE, KILLED, NEXT = (LAST_DAY - dt.timedelta(days=offset) for offset in (2, 1, 0))
USERS = 2000
SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 10) { timestamp status } } }
  }
}
"""


@pytest.fixture
def storage_url(postgres_server_url) -> Iterator[str]:
    """A fresh database for Dagster's own storage (runs, events, schedules), apart from the ranking one."""
    url = create_database(postgres_server_url)
    yield url
    drop_database(postgres_server_url, url)


def _trigger(running: Deployment, day: dt.date) -> str:
    launched = subprocess.run(
        [sys.executable, str(TRIGGER), day.isoformat()],
        env={**os.environ, "DAGSTER_URL": running.webserver.url},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert launched.returncode == 0, launched.stderr + running.logs()
    return launched.stdout.strip()


def _sessions_waiting_on_a_lock(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).scalar_one()


def _messages_about(slack, day: dt.date) -> list[str]:
    return [message["text"] for message in slack_messages(slack) if f"business date {day}" in message["text"]]


def _wait_for_failure_sensor_tick_after(running: Deployment, instant: float) -> None:
    """The failure sensor has looked at the runs that ended by ``instant`` (a tick that started later)."""
    selector = {
        "repositoryLocationName": LOCATION_NAME,
        "repositoryName": REPOSITORY_NAME,
        "sensorName": "alert_on_run_failure",
    }

    def ticked() -> bool:
        sensor = running.webserver.graphql(SENSOR_TICKS, {"selector": selector})["sensorOrError"]
        ticks = sensor["sensorState"]["ticks"] if sensor["__typename"] == "Sensor" else []
        return any(t["timestamp"] > instant and t["status"] in ("SUCCESS", "SKIPPED") for t in ticks)

    running.wait_until("a failure-sensor tick after the batch ended", ticked, timeout=180)


def _independent_ranking(engine: sa.Engine, day: dt.date) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": day.isoformat()})]


def _run_worker_pid(running: Deployment, run_id: str) -> int:
    """The pid of the run's own process, from its "Started process for run (pid: N)." event."""
    events = running.webserver.graphql(RUN_LOGS, {"runId": run_id})["logsForRun"]["events"]
    [pid] = [
        int(event["message"].split("pid: ")[1].rstrip(")."))
        for event in events
        if (event.get("message") or "").startswith("Started process for run")
    ]
    return pid


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_the_code_server_while_scoring(
    running: Deployment, engine: sa.Engine, launch: Callable[[], str], whole_host: bool
) -> tuple[str, str, int, bool]:
    """Launches the batch of KILLED and SIGKILLs the code server (``whole_host``: with every process it
    started, as when its host is lost) while the scoring step runs: the step waits on a lock held here by a
    real session, so this happens mid-step whatever the machine's speed. Returns the scoring run's id, its
    status right after the kill, its run worker's pid and whether that was alive right after the kill."""
    with engine.connect() as blocker:
        blocker.exec_driver_sql("BEGIN")
        blocker.exec_driver_sql("LOCK TABLE daily_order_aggregates IN ACCESS EXCLUSIVE MODE")
        scoring_id = launch()
        running.wait_until("the scoring step waits", lambda: _sessions_waiting_on_a_lock(engine) > 0)
        worker = _run_worker_pid(running, scoring_id)
        running.kill_code_server(whole_host=whole_host)
        status_after_kill = running.webserver.run(scoring_id)["status"]
        worker_alive_after_kill = _alive(worker)
        blocker.exec_driver_sql("ROLLBACK")
    running.start_code_server()
    running.wait_until("the restarted code server is loaded", running.reload_location)
    return scoring_id, status_after_kill, worker, worker_alive_after_kill


def _batch_runs(running: Deployment, scoring_id: str) -> list[dict]:
    """The batch's runs once finished: the scoring run, and the ranking run if the scoring succeeded."""
    scoring = running.webserver.wait_for_run(scoring_id, timeout=300)
    if scoring["status"] != "SUCCESS":
        return [scoring]
    return [scoring, running.webserver.wait_for_ranking_after(scoring_id)]


def _messages_about_the_batch(running: Deployment, slack) -> list[str]:
    """The Slack messages about KILLED once its first one arrived and the failure sensor has looked again at
    the runs ended by then (nothing else may follow)."""
    running.wait_until("a message about the batch", lambda: _messages_about(slack, KILLED))
    _wait_for_failure_sensor_tick_after(running, time.time())
    return _messages_about(slack, KILLED)


@contextlib.contextmanager
def _ranked_deployment(tmp_path, database_url, storage_url) -> Iterator[tuple[Deployment, sa.Engine, object]]:
    """The deployment with the stand-in Slack, USERS seeded, every day aggregated and BEFORE ranked."""
    engine = db.get_engine(database_url)
    seed(engine, USERS, end_date=LAST_DAY)
    with fake_slack() as slack:
        settings = {
            "RANKING_DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": "xoxb-test",
            "RANKING_SLACK_API_URL": f"{slack.url}/api/",
        }
        with deployment(tmp_path, storage_url, settings) as running:
            web = running.webserver
            launcher = web.graphql("{ instance { runLauncher { name } } }")["instance"]["runLauncher"]
            assert launcher == {"name": "DefaultRunLauncher"}  # deploy/dagster.production.yaml's
            first_day = LAST_DAY - dt.timedelta(days=31)
            aggregating = web.launch_job(BATCH_000_JOB, batch_000_tags(str(first_day), str(LAST_DAY)))
            assert web.wait_for_run(aggregating)["status"] == "SUCCESS", running.logs()
            ranked_before = web.wait_for_ranking_after(_trigger(running, BEFORE))
            assert ranked_before["status"] == "SUCCESS", running.logs()
            yield running, engine, slack


def test_a_code_server_killed_during_the_nightly_batch(tmp_path, database_url, storage_url):
    """SIGKILL to the code server's process (the OOM killer, kill -9), the batch launched by the trigger."""
    started = time.monotonic()
    with _ranked_deployment(tmp_path, database_url, storage_url) as (running, engine, slack):
        rankings_before = rankings_rows(engine, BEFORE)
        scoring_id, status_after_kill, _, worker_outlived_the_server = _kill_the_code_server_while_scoring(
            running, engine, lambda: _trigger(running, KILLED), whole_host=False
        )
        batch = _batch_runs(running, scoring_id)
        about_killed = _messages_about_the_batch(running, slack)
        ranked_next = running.webserver.wait_for_ranking_after(_trigger(running, NEXT))
        running.wait_until("the next batch's notice", lambda: _messages_about(slack, NEXT))
        about_next = _messages_about(slack, NEXT)
    print(
        f"code server SIGKILLed mid-step: scoring run {status_after_kill}, its run worker "
        f"{'still running' if worker_outlived_the_server else 'gone'}; batch: "
        + ", ".join(f"{run['jobName']} {run['status']}" for run in batch)
        + f"; test took {time.monotonic() - started:.0f} s"
    )

    assert status_after_kill == "STARTED", "the code server died while the batch was running"
    assert worker_outlived_the_server, "the run's own process is not the code server's"
    # recovered: the scoring run finished, the ranking run came from the restarted code server
    assert [run["status"] for run in batch] == ["SUCCESS", "SUCCESS"], running.logs()
    assert len(about_killed) == 1 and "BATCH-001 completed" in about_killed[0], about_killed
    assert rankings_rows(engine, KILLED) == _independent_ranking(engine, KILLED)
    assert rankings_rows(engine, BEFORE) == rankings_before, "earlier rankings are untouched"
    assert ranked_next["status"] == "SUCCESS" and len(about_next) == 1, about_next
    assert "BATCH-001 completed" in about_next[0]
    assert rankings_rows(engine, NEXT) == _independent_ranking(engine, NEXT)


def _scoring_tags(day: dt.date, max_runtime_seconds: int) -> dict[str, str]:
    """The trigger script's tags for the scoring run of ``day``, with a shorter maximum runtime (the
    launchpad's tags can set it) so run monitoring's verdict comes in seconds, not 30 minutes."""
    ranges = [user_range.key for user_range in USER_ID_RANGES]
    return {
        BUSINESS_DATE_TAG: day.isoformat(),
        LAUNCHED_BY_TAG: "launch_batch_001.py",
        "dagster/asset_partition_range_start": f"{day}|{ranges[0]}",
        "dagster/asset_partition_range_end": f"{day}|{ranges[-1]}",
        MAX_RUNTIME_TAG: str(max_runtime_seconds),
    }


def test_a_code_server_host_lost_during_the_nightly_batch(tmp_path, database_url, storage_url):
    """SIGKILL to the code server and every process it started (its run workers): the host is lost."""
    started = time.monotonic()
    with _ranked_deployment(tmp_path, database_url, storage_url) as (running, engine, slack):
        rankings_before = rankings_rows(engine, BEFORE)
        tags = _scoring_tags(KILLED, max_runtime_seconds=30)
        scoring_id, status_after_kill, worker, _ = _kill_the_code_server_while_scoring(
            running, engine, lambda: running.webserver.launch_job(BATCH_001_SCORES_JOB, tags), whole_host=True
        )
        next_id = _trigger(running, NEXT)
        [scoring] = _batch_runs(running, scoring_id)
        about_killed = _messages_about_the_batch(running, slack)
        ranked_next = running.webserver.wait_for_ranking_after(next_id)
        next_scoring = running.webserver.run(next_id)
    print(
        f"code server host lost mid-step: scoring run {scoring['status']} "
        f"{scoring['endTime'] - scoring['startTime']:.0f} s after its start (maximum runtime 30 s); "
        f"the next batch started {next_scoring['startTime'] - scoring['endTime']:.1f} s after it ended; "
        f"test took {time.monotonic() - started:.0f} s"
    )

    assert status_after_kill == "STARTED" and not _alive(worker)
    # failed by run monitoring at its maximum runtime, alerted once, nothing of KILLED published
    assert scoring["status"] == "FAILURE", running.logs()
    assert len(about_killed) == 1, about_killed
    assert f"Critical: batch_001_scores_job timed out after 30 s (business date {KILLED})" in about_killed[0]
    assert rankings_rows(engine, KILLED) == []
    assert rankings_rows(engine, BEFORE) == rankings_before, "earlier rankings are untouched"
    # the next batch waited queued behind the dead run, then ran
    assert next_scoring["startTime"] >= scoring["endTime"]
    assert ranked_next["status"] == "SUCCESS", running.logs()
    assert rankings_rows(engine, NEXT) == _independent_ranking(engine, NEXT)
