"""Slack, mail and the 15-minute warning, end to end: real batch runs on a real Dagster instance, the
project's sensors evaluated through Dagster's sensor code path (cursor and all), and the real slack_sdk /
smtplib clients talking to local stand-in servers."""

from __future__ import annotations

import datetime as dt
import logging

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.test_utils import freeze_time

from ranking_pipeline.batch_runner import batch_001_run_tags
from ranking_pipeline.constants import BATCH_001_JOB, FAILURE_ALERTED_TAG, LONG_RUN_WARNED_TAG
from ranking_pipeline.definitions import defs
from ranking_pipeline.defs.alerts import alert_on_run_failure, notify_on_batch_success, warn_on_long_batch_run
from ranking_pipeline.lib.dates import yesterday_jst
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.fakes import fake_slack, fake_smtp, slack_messages
from ranking_pipeline_tests.helpers import rankings_rows, run_date

D = dt.date(2026, 1, 10)
TOKEN = "xoxb-test-token-not-a-secret"
UI = "http://dagster.example.test:3000"


@pytest.fixture
def slack(monkeypatch):
    with fake_slack() as server:
        monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("RANKING_SLACK_API_URL", f"{server.url}/api/")
        monkeypatch.setenv("RANKING_DAGSTER_UI_URL", UI)
        yield server


@pytest.fixture
def smtp(monkeypatch):
    with fake_smtp() as server:
        monkeypatch.setenv("RANKING_SMTP_HOST", server.host)
        monkeypatch.setenv("RANKING_SMTP_PORT", str(server.port))
        monkeypatch.setenv("RANKING_SMTP_TLS", "none")
        monkeypatch.setenv("RANKING_ALERT_MAIL_TO", "oncall@example.test, data@example.test")
        yield server


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None) -> str | None:
    """One evaluation as the sensor daemon does it: the project's resources, the stored cursor."""
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs().resources) as context:
        return sensor.evaluate_tick(context).cursor


def run_batch_001(instance: dg.DagsterInstance, business_date: dt.date) -> dg.ExecuteInProcessResult:
    return (
        defs()
        .resolve_job_def(BATCH_001_JOB)
        .execute_in_process(instance=instance, tags=batch_001_run_tags(business_date), raise_on_error=False)
    )


@pytest.fixture
def no_retry_delay(monkeypatch):
    """The declared 60 s retry delay (asserted in test_definitions) is not run config: make it 0 here."""
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt_num: 0)


def test_a_failed_batch_run_posts_one_critical_message_and_sends_mail(
    engine, instance, slack, smtp, no_retry_delay
):
    seed(engine, 2000, end_date=D)  # orders, but no daily aggregates: user_scores refuses to run
    cursor = tick(alert_on_run_failure, instance, None)  # the sensor starts: cursor at the newest event

    result = run_batch_001(instance, D)
    assert not result.success
    cursor = tick(alert_on_run_failure, instance, cursor)
    tick(alert_on_run_failure, instance, cursor)
    tick(alert_on_run_failure, instance, cursor)  # a replayed cursor does not alert twice either

    [request] = slack.posts_to("/api/chat.postMessage")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    [message] = slack_messages(slack)
    assert message["channel"] == "#batch-logs"
    text = message["text"]
    assert f"Critical: batch_001_job failed (business date {D})" in text
    assert "*Failed step:* user_scores" in text
    assert (
        "IncompleteWindowError: cannot score 2026-01-10: daily_order_aggregates has not been materialized"
        in text
    )
    assert f"<{UI}/runs/{result.run_id}|" in text
    assert "TIMED OUT" not in text
    assert instance.get_run_by_id(result.run_id).tags[FAILURE_ALERTED_TAG] == "true"

    [mail] = smtp.received
    assert mail.recipients == ["oncall@example.test", "data@example.test"]
    assert mail.message["Subject"] == f"[BATCH-001] Critical: batch_001_job failed (business date {D})"
    body = mail.body
    assert "Failed step:   user_scores" in body
    assert "daily_order_aggregates has not been materialized for 30 day(s)" in body
    assert f"{UI}/runs/{result.run_id}" in body


def test_a_successful_batch_posts_the_completion_notice_with_rank_movers(engine, instance, slack):
    seed(engine, 2000, end_date=D)
    previous_date = D - dt.timedelta(days=1)
    run_date(instance, previous_date)
    cursor = tick(notify_on_batch_success, instance, None)

    summary = run_date(instance, D)
    cursor = tick(notify_on_batch_success, instance, cursor)
    tick(notify_on_batch_success, instance, cursor)

    [message] = slack_messages(slack)  # only BATCH-001 notifies; the BATCH-000 runs before it do not
    text = message["text"]
    assert f"*BATCH-001 completed* for business date {D}: {summary.ranked_users:,} users ranked in " in text
    before = {user: rank for rank, user, _, _ in rankings_rows(engine, previous_date)}
    after = {user: rank for rank, user, _, _ in rankings_rows(engine, D)}
    assert f"Compared with {previous_date} ({len(before):,} ranked)" in text
    moves = sorted(
        ((before[u] - after[u], -after[u], -u) for u in after if u in before and before[u] != after[u]),
        reverse=True,
    )
    change, minus_rank, minus_user = moves[0]  # the biggest climb, ties to the better current rank
    user, rank = -minus_user, -minus_rank
    assert f"*Biggest climbers:* user {user} {before[user]}→{rank} ({change:+d})" in text
    change, rank, user = min((before[u] - after[u], after[u], u) for u in after if u in before)
    assert f"*Biggest fallers:* user {user} {before[user]}→{rank} ({change:+d})" in text
    assert f"<{UI}/runs/{summary.run_ids[-1]}|" in text


def _start_run(instance: dg.DagsterInstance, business_date: dt.date) -> dg.DagsterRun:
    job = defs().resolve_job_def(BATCH_001_JOB)
    run = instance.create_run_for_job(job_def=job, tags={**job.tags, **batch_001_run_tags(business_date)})
    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name=job.name), run.run_id
    )
    return run


def test_a_batch_run_over_15_minutes_warns_once(instance, slack):
    start = dt.datetime(2026, 1, 11, 3, 0, tzinfo=dt.UTC)
    with freeze_time(start):
        long_run = _start_run(instance, D)
    with freeze_time(start + dt.timedelta(minutes=10)):
        later_run = _start_run(instance, D + dt.timedelta(days=1))
    for minutes in (14, 16, 17, 20):
        with freeze_time(start + dt.timedelta(minutes=minutes)):
            tick(warn_on_long_batch_run, instance, None)
        if minutes == 14:
            assert slack_messages(slack) == []

    [message] = slack_messages(slack)
    assert message["channel"] == "#batch-logs"
    assert f"Warning: batch_001_job still running after 16 min 00 s* (business date {D})" in message["text"]
    assert "it will be stopped at 30 min 00 s" in message["text"]
    assert f"{UI}/runs/{long_run.run_id}" in message["text"]
    assert instance.get_run_by_id(long_run.run_id).tags[LONG_RUN_WARNED_TAG] == "true"
    assert LONG_RUN_WARNED_TAG not in instance.get_run_by_id(later_run.run_id).tags  # 10 min old at 20


def test_a_slack_outage_is_logged_and_mail_still_carries_the_error(
    engine, instance, smtp, monkeypatch, caplog, no_retry_delay
):
    seed(engine, 2000, end_date=D)
    with fake_slack(status=500) as down:
        monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("RANKING_SLACK_API_URL", f"{down.url}/api/")
        cursor = tick(alert_on_run_failure, instance, None)
        result = run_batch_001(instance, D)
        with caplog.at_level(logging.ERROR, logger="ranking_pipeline.defs.alerts"):
            tick(alert_on_run_failure, instance, cursor)  # does not raise

    assert len(down.posts_to("/api/chat.postMessage")) == 1  # tried once, answered 500
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE  # unchanged
    [logged] = [r.getMessage() for r in caplog.records if "slack alert" in r.getMessage()]
    assert f"slack alert for run {result.run_id} FAILED: SlackApiError" in logged
    assert "internal_error" in logged
    assert TOKEN not in caplog.text
    [mail] = smtp.received  # the other channel still delivered the original error
    assert "IncompleteWindowError" in mail.body


def test_without_slack_bot_token_the_sensors_skip_slack_and_do_not_fail(engine, instance, monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    seed(engine, 2000, end_date=D)
    run_date(instance, D - dt.timedelta(days=1))
    cursor = tick(notify_on_batch_success, instance, None)
    run_date(instance, D)
    assert tick(notify_on_batch_success, instance, cursor) != cursor  # evaluated and moved on, no error


def test_an_smtp_server_refusing_mail_is_logged_and_slack_still_alerts(
    engine, instance, slack, monkeypatch, caplog, no_retry_delay
):
    seed(engine, 2000, end_date=D)
    with fake_smtp(refuse=True) as refusing:
        monkeypatch.setenv("RANKING_SMTP_HOST", refusing.host)
        monkeypatch.setenv("RANKING_SMTP_PORT", str(refusing.port))
        monkeypatch.setenv("RANKING_SMTP_TLS", "none")
        monkeypatch.setenv("RANKING_ALERT_MAIL_TO", "oncall@example.test")
        cursor = tick(alert_on_run_failure, instance, None)
        result = run_batch_001(instance, D)
        with caplog.at_level(logging.ERROR, logger="ranking_pipeline.defs.alerts"):
            tick(alert_on_run_failure, instance, cursor)

    assert refusing.received == []
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE
    assert f"mail alert for run {result.run_id} FAILED: NotificationError" in caplog.text
    assert "550" in caplog.text
    [message] = slack_messages(slack)
    assert "IncompleteWindowError" in message["text"]


def test_a_failed_ui_materialization_without_a_date_tag_alerts_with_the_default_date(
    engine, instance, slack, no_retry_delay
):
    seed(engine, 200, end_date=D)  # nothing scored yet: rankings alone refuses to run
    cursor = tick(alert_on_run_failure, instance, None)
    definitions = defs()

    ui_job = definitions.resolve_implicit_job_def_def_for_assets([dg.AssetKey("rankings")])  # __ASSET_JOB
    result = ui_job.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("rankings")], raise_on_error=False
    )
    assert not result.success
    tick(alert_on_run_failure, instance, cursor)

    [message] = slack_messages(slack)
    record = instance.get_run_record_by_id(result.run_id)
    expected = yesterday_jst(record.create_timestamp)
    assert f"(business date {expected} (untagged: last complete JST day))" in message["text"]
    assert "StaleScoresError: cannot rank" in message["text"]
