"""A hung BATCH-001 batch is stopped by run monitoring at the batch's 30 minutes and escalated: its scoring
run started 29 min 56 s ago, so the real run launcher starts its ranking run (in its own process, from the
project's code location) with 4 s left; the run hangs on a table lock, the real monitoring iteration stops it,
and the failure sensor says it timed out, pages PagerDuty (local stand-in) and mails (local SMTP server)."""

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
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time, poll_for_finished_run
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

from ranking_pipeline.constants import (
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    BATCH_MAX_RUNTIME_SECONDS,
    BUSINESS_DATE_TAG,
    FAILURE_ALERTED_TAG,
    MAX_RUNTIME_TAG,
)
from ranking_pipeline.defs.alerts.failure import alert_on_run_failure
from ranking_pipeline.defs.batch_requests import ranking_tags, remaining_batch_seconds
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.fakes import (
    fake_pagerduty,
    fake_slack,
    fake_smtp,
    mail_resource,
    pagerduty_resource,
    slack_messages,
    slack_resource,
)
from ranking_pipeline_tests.helpers import project_location_target, run_date, wait_until

D = dt.date(2026, 1, 10)
MAX_RUNTIME_SECONDS = 4
ROUTING_KEY = "test-routing-key-0123456789abcdef"


@pytest.fixture
def alert_servers():
    with fake_slack() as slack, fake_pagerduty() as pagerduty, fake_smtp() as smtp:
        yield slack, pagerduty, smtp


def _step_event(instance: dg.DagsterInstance, run_id: str, step_key: str, event_type) -> bool:
    return any(
        entry.dagster_event.step_key == step_key for entry in instance.all_logs(run_id, of_type=event_type)
    )


def _wait_for_step(instance: dg.DagsterInstance, run_id: str, step_key: str, timeout: float = 60) -> None:
    def started() -> bool:
        if _step_event(instance, run_id, step_key, DagsterEventType.STEP_START):
            return True
        run = instance.get_run_by_id(run_id)
        assert not run.is_finished, f"run ended {run.status} before {step_key} started"
        return False

    wait_until(started, timeout, f"the start of {step_key}", 0.2)


def _wait_for_step_failure(
    instance: dg.DagsterInstance, run_id: str, step_key: str, timeout: float = 30
) -> None:
    wait_until(
        lambda: _step_event(instance, run_id, step_key, DagsterEventType.STEP_FAILURE),
        timeout,
        f"the recorded failure of {step_key}",
        0.2,
    )


def _stop_worker(instance: dg.DagsterInstance, run_id: str) -> None:
    """Kill the stopped run's worker process if it is still there (it should have exited), so the code
    server can shut down promptly."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        found = re.search(r"Started process for run \(pid: (\d+)\)", entry.message or "")
        if found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(found.group(1)), signal.SIGKILL)


def _started_scoring_run(
    instance: dg.DagsterInstance, definitions: dg.Definitions, tags: dict
) -> dg.DagsterRun:
    """The batch's scoring run: it started 30 minutes minus MAX_RUNTIME_SECONDS ago and succeeded."""
    job = definitions.resolve_job_def(BATCH_001_SCORES_JOB)
    with freeze_time(time.time() - (BATCH_MAX_RUNTIME_SECONDS - MAX_RUNTIME_SECONDS)):
        run = instance.create_run_for_job(job_def=job, tags={**job.tags, **tags})
        instance.report_dagster_event(
            DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name=job.name), run.run_id
        )
    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.RUN_SUCCESS.value, job_name=job.name), run.run_id
    )
    return run


def test_a_hung_batch_is_stopped_at_its_30_minutes_by_run_monitoring_and_pages_on_call(
    engine, database_url, instance, definitions, alert_servers, monkeypatch
):
    slack, pagerduty, smtp = alert_servers
    seed(engine, 2000, end_date=D)
    run_date(definitions, instance, D)  # aggregates and scores are in place; the ranking run only has to rank
    monkeypatch.setenv(
        "RANKING_DATABASE_URL", database_url
    )  # the code server reads its settings from the environment
    scoring = _started_scoring_run(instance, definitions, {BUSINESS_DATE_TAG: D.isoformat()})
    # the ranking run that follows it, with what the scoring run left of the batch's 30 minutes
    tags = ranking_tags(scoring, [D], remaining_batch_seconds(instance.get_run_record_by_id(scoring.run_id)))

    target = project_location_target()
    # Another session (think: a stuck BATCH-003 transaction) holds the rankings table: the batch hangs.
    blocker = engine.connect()
    blocker.execute(sa.text("LOCK TABLE rankings IN ACCESS EXCLUSIVE MODE"))
    try:
        with create_test_daemon_workspace_context(target, instance) as workspace_context:
            workspace = workspace_context.create_request_context()
            remote_job = (
                workspace.get_code_location("ranking_pipeline")
                .get_repository("__repository__")
                .get_full_job(BATCH_001_RANKINGS_JOB)
            )
            job = definitions.resolve_job_def(BATCH_001_RANKINGS_JOB)
            assert job.tags[MAX_RUNTIME_TAG] == "1800"  # the real limit; the batch has little of it left
            run = instance.create_run_for_job(
                job_def=job,
                remote_job_origin=remote_job.get_remote_origin(),
                job_code_origin=remote_job.get_python_origin(),
                tags={**job.tags, **tags, "dagster/partition": D.isoformat()},
            )
            instance.launch_run(run.run_id, workspace)
            _wait_for_step(instance, run.run_id, "rankings")
            limit = int(instance.get_run_by_id(run.run_id).tags[MAX_RUNTIME_TAG])
            assert limit <= MAX_RUNTIME_SECONDS  # the batch's time left, not a fresh 30 minutes
            time.sleep(limit + 1)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # still hung

            list(execute_run_monitoring_iteration(workspace_context, logging.getLogger("run_monitoring")))
            finished = poll_for_finished_run(instance, run.run_id, timeout=60)
            assert finished.status == dg.DagsterRunStatus.FAILURE

            [failure] = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)[-1:]
            with dg.build_run_status_sensor_context(
                sensor_name="alert_on_run_failure",
                dagster_event=failure.dagster_event,
                dagster_instance=instance,
                dagster_run=finished,
                resources={
                    **definitions.resources,
                    "slack": slack_resource(slack),
                    "mail": mail_resource(smtp),
                    "pagerduty": pagerduty_resource(pagerduty, ROUTING_KEY),
                },
            ) as built:
                context = built.for_run_failure()
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
    assert f"Critical: batch_001_rankings_job timed out after {limit} s (business date {D})" in text
    assert f"TIMED OUT: it exceeded its maximum runtime of {limit} s" in text
    assert "*Running when stopped:* rankings" in text
    assert instance.get_run_by_id(run.run_id).tags[FAILURE_ALERTED_TAG] == "true"

    [page] = pagerduty.posts_to("/v2/enqueue")
    event = page.json()
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"] == text.split("*")[1]
    assert event["dedup_key"] == f"ranking_pipeline/batch_001_rankings_job/{run.run_id}"
    assert event["links"][0]["href"].endswith(f"/runs/{run.run_id}")

    [mail] = smtp.received
    assert "timed out" in mail.message["Subject"]
    assert f"TIMED OUT: exceeded the maximum runtime of {limit} s" in mail.body
