"""A hung BATCH-001 run is stopped by run monitoring and escalated: the real run launcher starts the run in
its own process from the project's code location, the real monitoring iteration stops it when it exceeds a
max runtime of a few seconds, and the failure sensor says it timed out, pages PagerDuty (local stand-in)
and mails (local SMTP server)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import signal
import time

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.events import DagsterEventType
from dagster._core.test_utils import create_test_daemon_workspace_context, poll_for_finished_run
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

from ranking_pipeline.batch_runner import batch_001_run_tags
from ranking_pipeline.constants import BATCH_001_JOB, FAILURE_ALERTED_TAG
from ranking_pipeline.definitions import defs
from ranking_pipeline.defs.alerts import alert_on_run_failure
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.conftest import PROJECT_ROOT
from ranking_pipeline_tests.fakes import fake_pagerduty, fake_slack, fake_smtp, slack_messages
from ranking_pipeline_tests.helpers import run_date

D = dt.date(2026, 1, 10)
MAX_RUNTIME_SECONDS = 4
ROUTING_KEY = "test-routing-key-0123456789abcdef"


@pytest.fixture
def alert_servers(monkeypatch):
    with fake_slack() as slack, fake_pagerduty() as pagerduty, fake_smtp() as smtp:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("RANKING_SLACK_API_URL", f"{slack.url}/api/")
        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
        monkeypatch.setenv("RANKING_PAGERDUTY_EVENTS_URL", f"{pagerduty.url}/v2/enqueue")
        monkeypatch.setenv("RANKING_SMTP_HOST", smtp.host)
        monkeypatch.setenv("RANKING_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("RANKING_SMTP_TLS", "none")
        monkeypatch.setenv("RANKING_ALERT_MAIL_TO", "oncall@example.test")
        yield slack, pagerduty, smtp


def _wait_for_step(instance: dg.DagsterInstance, run_id: str, step_key: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
        if any(entry.dagster_event.step_key == step_key for entry in started):
            return
        run = instance.get_run_by_id(run_id)
        assert not run.is_finished, f"run ended {run.status} before {step_key} started"
        time.sleep(0.2)
    raise AssertionError(f"{step_key} did not start within {timeout} s")


def _wait_for_step_failure(
    instance: dg.DagsterInstance, run_id: str, step_key: str, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        failed = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
        if any(entry.dagster_event.step_key == step_key for entry in failed):
            return
        time.sleep(0.2)
    raise AssertionError(f"{step_key} did not record its failure within {timeout} s")


def _stop_worker(instance: dg.DagsterInstance, run_id: str) -> None:
    """Kill the stopped run's worker process if it is still there (it should have exited), so the code
    server can shut down promptly."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        found = re.search(r"Started process for run \(pid: (\d+)\)", entry.message or "")
        if found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(found.group(1)), signal.SIGKILL)


def test_a_hung_batch_run_is_stopped_by_run_monitoring_and_pages_on_call(engine, instance, alert_servers):
    slack, pagerduty, smtp = alert_servers
    seed(engine, 2000, end_date=D)
    run_date(instance, D)  # aggregates and scores are in place; the re-run below only has to rank

    target = ModuleTarget(
        module_name="ranking_pipeline.definitions",
        attribute=None,
        working_directory=str(PROJECT_ROOT),
        location_name="ranking_pipeline",
    )
    # Another session (think: a stuck BATCH-003 transaction) holds the rankings table: the batch hangs.
    blocker = engine.connect()
    blocker.execute(sa.text("LOCK TABLE rankings IN ACCESS EXCLUSIVE MODE"))
    try:
        with create_test_daemon_workspace_context(target, instance) as workspace_context:
            workspace = workspace_context.create_request_context()
            remote_job = (
                workspace.get_code_location("ranking_pipeline")
                .get_repository("__repository__")
                .get_full_job(BATCH_001_JOB)
            )
            job = defs().resolve_job_def(BATCH_001_JOB)
            assert job.tags["dagster/max_runtime"] == "1800"  # the real limit; this run gets a short one
            run = instance.create_run_for_job(
                job_def=job,
                remote_job_origin=remote_job.get_remote_origin(),
                job_code_origin=remote_job.get_python_origin(),
                tags={**job.tags, **batch_001_run_tags(D), "dagster/max_runtime": str(MAX_RUNTIME_SECONDS)},
            )
            instance.launch_run(run.run_id, workspace)
            _wait_for_step(instance, run.run_id, "rankings")
            time.sleep(MAX_RUNTIME_SECONDS + 1)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # still hung

            list(execute_run_monitoring_iteration(workspace_context, logging.getLogger("run_monitoring")))
            finished = poll_for_finished_run(instance, run.run_id, timeout=60)
            assert finished.status == dg.DagsterRunStatus.FAILURE

            [failure] = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)[-1:]
            context = dg.build_run_status_sensor_context(
                sensor_name="alert_on_run_failure",
                dagster_event=failure.dagster_event,
                dagster_instance=instance,
                dagster_run=finished,
                resources=defs().resources,
            ).for_run_failure()
            alert_on_run_failure(context)
            alert_on_run_failure(context)  # the same event seen again: no second alert
            blocker.rollback()
            _wait_for_step_failure(instance, run.run_id, "rankings")
            retries = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
            assert retries == [], "a stopped run must not retry its step"
            _stop_worker(instance, run.run_id)
    finally:
        blocker.rollback()
        blocker.close()

    [message] = slack_messages(slack)
    text = message["text"]
    assert f"Critical: batch_001_job timed out after {MAX_RUNTIME_SECONDS} s (business date {D})" in text
    assert f"TIMED OUT: it exceeded its maximum runtime of {MAX_RUNTIME_SECONDS} s" in text
    assert "*Running when stopped:* rankings" in text
    assert instance.get_run_by_id(run.run_id).tags[FAILURE_ALERTED_TAG] == "true"

    [page] = pagerduty.posts_to("/v2/enqueue")
    event = page.json()
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"] == text.split("*")[1]
    assert event["dedup_key"] == f"ranking_pipeline/batch_001_job/{run.run_id}"
    assert event["links"][0]["href"].endswith(f"/runs/{run.run_id}")

    [mail] = smtp.received
    assert "timed out" in mail.message["Subject"]
    assert f"TIMED OUT: exceeded the maximum runtime of {MAX_RUNTIME_SECONDS} s" in mail.body
