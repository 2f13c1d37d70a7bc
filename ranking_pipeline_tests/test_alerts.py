"""Slack, mail and the 15-minute warning, end to end: real batch runs on a real Dagster instance, the
project's sensors evaluated as the sensor daemon evaluates them (in the code location ``ranking_pipeline``,
cursor and all), and the real slack_sdk / smtplib clients talking to local stand-in servers."""

from __future__ import annotations

import datetime as dt
import logging

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.test_utils import freeze_time

from ranking_pipeline.batch_runner import BatchRunFailed, run_batch_runs
from ranking_pipeline.constants import (
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    BUSINESS_DATE_TAG,
    FAILURE_ALERTED_TAG,
    LONG_RUN_WARNED_TAG,
    SCORED_BY_TAG,
)
from ranking_pipeline.defs.alerts.failure import alert_on_run_failure
from ranking_pipeline.defs.alerts.long_run import warn_on_long_batch_run
from ranking_pipeline.defs.alerts.success import notify_on_batch_success
from ranking_pipeline.defs.notification_resources import BatchSlackResource, DagsterUi
from ranking_pipeline.lib.business_date import BusinessDate, scores_partition_tags
from ranking_pipeline.lib.ranges import USER_ID_RANGES
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.fakes import (
    SLACK_TOKEN,
    fake_slack,
    fake_smtp,
    mail_resource,
    slack_messages,
    slack_resource,
)
from ranking_pipeline_tests.helpers import batch_runs, rankings_rows, run_date, sensor_tick

D = dt.date(2026, 1, 10)
UI = "http://dagster.example.test:3000"
UI_RESOURCE = DagsterUi(base_url=UI)


@pytest.fixture
def slack():
    with fake_slack() as server:
        yield server


@pytest.fixture
def smtp():
    with fake_smtp() as server:
        yield server


def test_a_failed_batch_posts_one_critical_message_and_sends_mail(
    engine, instance, definitions, slack, smtp, no_retry_delay
):
    seed(engine, 2000, end_date=D)  # orders, but no daily aggregates: user_scores refuses to run
    channels = {
        "slack": slack_resource(slack),
        "mail": mail_resource(smtp, "oncall@example.test, data@example.test"),
        "dagster_ui": UI_RESOURCE,
    }
    cursor = sensor_tick(alert_on_run_failure, instance, definitions, None, **channels).cursor

    with pytest.raises(BatchRunFailed):
        # the scoring run fails: no ranking run follows
        run_batch_runs(definitions, instance, BusinessDate.of(D))
    for _ in range(3):  # a replayed cursor does not alert twice either
        sensor_tick(alert_on_run_failure, instance, definitions, cursor, **channels)

    [scoring] = batch_runs(instance, BATCH_001_SCORES_JOB)
    assert batch_runs(instance, BATCH_001_RANKINGS_JOB) == []  # a failed scoring starts no ranking
    # deterministic: failed at once, so the alert is not 3 minutes late
    assert not instance.all_logs(scoring.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    [request] = slack.posts_to("/api/chat.postMessage")  # one alert for the batch
    assert request.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    [message] = slack_messages(slack)
    assert message["channel"] == "#batch-logs"
    text = message["text"]
    assert f"Critical: batch_001_scores_job failed (business date {D})" in text
    assert "*Failed step:* user_scores" in text
    assert (
        "IncompleteWindowError: cannot score 2026-01-10: daily_order_aggregates has not been materialized"
        in text
    )
    assert f"<{UI}/runs/{scoring.run_id}|" in text
    assert "TIMED OUT" not in text
    assert instance.get_run_by_id(scoring.run_id).tags[FAILURE_ALERTED_TAG] == "true"

    [mail] = smtp.received
    assert mail.recipients == ["oncall@example.test", "data@example.test"]
    assert (
        mail.message["Subject"].strip()
        == f"[BATCH-001] Critical: batch_001_scores_job failed (business date {D})"
    )
    body = mail.body
    assert "Failed step:   user_scores" in body
    assert "daily_order_aggregates has not been materialized for 30 day(s)" in body
    assert f"{UI}/runs/{scoring.run_id}" in body


def test_a_successful_batch_posts_the_completion_notice_with_rank_movers(
    engine, instance, definitions, slack
):
    seed(engine, 2000, end_date=D)
    previous_date = D - dt.timedelta(days=1)
    run_date(definitions, instance, previous_date)
    channels = {"slack": slack_resource(slack), "dagster_ui": UI_RESOURCE}
    cursor = sensor_tick(notify_on_batch_success, instance, definitions, None, **channels).cursor

    summary = run_date(definitions, instance, D)
    cursor = sensor_tick(notify_on_batch_success, instance, definitions, cursor, **channels).cursor
    sensor_tick(notify_on_batch_success, instance, definitions, cursor, **channels)

    [message] = slack_messages(slack)  # once per batch; the scoring and BATCH-000 runs do not notify
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


def _start_run(
    instance: dg.DagsterInstance, definitions: dg.Definitions, job_name: str, tags: dict
) -> dg.DagsterRun:
    job = definitions.resolve_job_def(job_name)
    run = instance.create_run_for_job(job_def=job, tags={**job.tags, **tags})
    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name=job.name), run.run_id
    )
    return run


def test_a_batch_over_15_minutes_warns_once_counting_from_its_scoring_run(instance, definitions, slack):
    start = dt.datetime(2026, 1, 11, 3, 0, tzinfo=dt.UTC)
    tags = {BUSINESS_DATE_TAG: D.isoformat()}
    scores = scores_partition_tags(D, [r.key for r in USER_ID_RANGES])
    with freeze_time(start):
        scoring = _start_run(instance, definitions, BATCH_001_SCORES_JOB, {**tags, **scores})
    with freeze_time(start + dt.timedelta(minutes=9)):
        instance.report_dagster_event(  # the scores succeeded: the batch goes on with its ranking run
            DagsterEvent(event_type_value=DagsterEventType.RUN_SUCCESS.value, job_name=BATCH_001_SCORES_JOB),
            scoring.run_id,
        )
        ranking = _start_run(
            instance,
            definitions,
            BATCH_001_RANKINGS_JOB,
            {**tags, SCORED_BY_TAG: scoring.run_id, "dagster/partition": str(D)},
        )
    with freeze_time(start + dt.timedelta(minutes=10)):
        other = _start_run(instance, definitions, BATCH_001_SCORES_JOB, {**tags, **scores})
    channels = {"slack": slack_resource(slack), "dagster_ui": UI_RESOURCE}
    for minutes in (14, 16, 17, 20):
        with freeze_time(start + dt.timedelta(minutes=minutes)):
            sensor_tick(warn_on_long_batch_run, instance, definitions, None, **channels)
        if minutes == 14:
            assert slack_messages(slack) == []

    [message] = slack_messages(slack)  # the ranking run is 7 min old at 16, but its batch is 16
    assert message["channel"] == "#batch-logs"
    assert f"still running after 16 min 00 s* (business date {D})" in message["text"]
    assert "it will be stopped at 30 min 00 s" in message["text"]
    assert f"{UI}/runs/{ranking.run_id}" in message["text"]
    assert instance.get_run_by_id(ranking.run_id).tags[LONG_RUN_WARNED_TAG] == "true"
    assert LONG_RUN_WARNED_TAG not in instance.get_run_by_id(other.run_id).tags  # 10 min old at 20


def test_a_slack_outage_is_logged_and_mail_still_carries_the_error(
    engine, instance, definitions, smtp, caplog, no_retry_delay
):
    seed(engine, 2000, end_date=D)
    with fake_slack(status=500) as down:
        channels = {"slack": slack_resource(down), "mail": mail_resource(smtp)}
        cursor = sensor_tick(alert_on_run_failure, instance, definitions, None, **channels).cursor
        with pytest.raises(BatchRunFailed):
            run_batch_runs(definitions, instance, BusinessDate.of(D))
        with caplog.at_level(logging.ERROR, logger="ranking_pipeline.alerts"):
            sensor_tick(alert_on_run_failure, instance, definitions, cursor, **channels)  # does not raise

    assert len(down.posts_to("/api/chat.postMessage")) == 1  # tried once, answered 500
    [scoring] = batch_runs(instance, BATCH_001_SCORES_JOB)
    assert scoring.status == dg.DagsterRunStatus.FAILURE  # unchanged
    [logged] = [r.getMessage() for r in caplog.records if "slack alert" in r.getMessage()]
    assert f"slack alert for run {scoring.run_id} FAILED: SlackApiError" in logged
    assert "internal_error" in logged
    assert SLACK_TOKEN not in caplog.text
    [mail] = smtp.received  # the other channel still delivered the original error
    assert "IncompleteWindowError" in mail.body


def test_without_a_slack_token_the_sensors_skip_slack_and_do_not_fail(engine, instance, definitions):
    seed(engine, 2000, end_date=D)
    run_date(definitions, instance, D - dt.timedelta(days=1))
    unset = {"slack": BatchSlackResource()}
    cursor = sensor_tick(notify_on_batch_success, instance, definitions, None, **unset).cursor
    run_date(definitions, instance, D)
    result = sensor_tick(notify_on_batch_success, instance, definitions, cursor, **unset)
    assert result.cursor != cursor  # evaluated and moved on, no error


def test_an_smtp_server_refusing_mail_is_logged_and_slack_still_alerts(
    engine, instance, definitions, slack, caplog, no_retry_delay
):
    seed(engine, 2000, end_date=D)
    with fake_smtp(refuse=True) as refusing:
        channels = {"slack": slack_resource(slack), "mail": mail_resource(refusing)}
        cursor = sensor_tick(alert_on_run_failure, instance, definitions, None, **channels).cursor
        with pytest.raises(BatchRunFailed):
            run_batch_runs(definitions, instance, BusinessDate.of(D))
        with caplog.at_level(logging.ERROR, logger="ranking_pipeline.alerts"):
            sensor_tick(alert_on_run_failure, instance, definitions, cursor, **channels)

    assert refusing.received == []
    [scoring] = batch_runs(instance, BATCH_001_SCORES_JOB)
    assert f"mail alert for run {scoring.run_id} FAILED: NotificationError" in caplog.text
    assert "550" in caplog.text
    [message] = slack_messages(slack)
    assert "IncompleteWindowError" in message["text"]


def test_a_failed_ui_materialization_alerts_naming_its_partition(
    engine, instance, definitions, slack, no_retry_delay
):
    seed(engine, 200, end_date=D)  # nothing scored yet: rankings alone refuses to run
    channels = {"slack": slack_resource(slack)}
    cursor = sensor_tick(alert_on_run_failure, instance, definitions, None, **channels).cursor

    ui_job = definitions.resolve_implicit_job_def_def_for_assets([dg.AssetKey("rankings")])  # __ASSET_JOB
    result = ui_job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("rankings")],
        partition_key=D.isoformat(),
        raise_on_error=False,
    )
    assert not result.success
    # an in-process run has no code location: as the daemon would see a UI run, give the context none either
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={**definitions.resources, **channels}
    ) as context:
        alert_on_run_failure.evaluate_tick(context)

    [message] = slack_messages(slack)
    assert f"Critical: __ASSET_JOB failed (business date {D})" in message["text"]
    assert "StaleScoresError: cannot rank" in message["text"]
