"""Alert sensors (design 6.1): failure (Slack + mail, + PagerDuty on timeout), completion notice, the
15-minute warning and the row-count anomaly warning. All on by default.

Each sensor gathers a run's facts from the instance and hands them to the pure builders in
``lib/notify/messages.py``. A channel that is not configured or fails is logged in the tick's log and
skipped; it never raises, never blocks the other channels and never touches the run's outcome.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster._time import get_current_timestamp

from ranking_pipeline.constants import (
    BATCH_000_JOB,
    BATCH_001_JOB,
    BUSINESS_DATE_TAG,
    FAILURE_ALERTED_TAG,
    LONG_RUN_WARNED_TAG,
    LONG_RUN_WARNING_SECONDS,
    RANKINGS_ROW_COUNT_ANOMALY_CHECK,
)
from ranking_pipeline.defs.jobs import batch_001_job
from ranking_pipeline.defs.notification_resources import (
    AlertMailer,
    BatchSlackResource,
    DagsterUi,
    PagerDutyEvents,
)
from ranking_pipeline.defs.resources import RankingDatabase
from ranking_pipeline.lib.dates import parse_business_date, yesterday_jst
from ranking_pipeline.lib.notify import messages as m
from ranking_pipeline.lib.notify.rank_movers import previous_ranked, rank_movers, ranked_count

logger = logging.getLogger(__name__)

ANOMALY_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey("rankings"), RANKINGS_ROW_COUNT_ANOMALY_CHECK)


def _deliver(context, channel: str, run_id: str, configured: bool, send: Callable[[], object]) -> str:
    """Send through one channel; 'sent', 'not configured' or 'failed' (logged, never raised)."""
    if not configured:
        context.log.warning(f"{channel} alert for run {run_id} skipped: {channel} is not configured")
        return "not configured"
    try:
        send()
    except Exception as error:
        text = f"{channel} alert for run {run_id} FAILED: {type(error).__name__}: {error}"
        context.log.error(text)
        logger.error(text)
        return "failed"
    return "sent"


def _business_date(run: dg.DagsterRun, created_at: dt.datetime | None) -> tuple[str, dt.date | None]:
    """(text for people, date or None): the run's tag, else what the run computes by default."""
    tagged = run.tags.get(BUSINESS_DATE_TAG)
    if tagged:
        return tagged, parse_business_date(tagged, source=f"run tag {BUSINESS_DATE_TAG}")
    if run.job_name == BATCH_000_JOB and ASSET_PARTITION_RANGE_START_TAG in run.tags:
        days = f"{run.tags[ASSET_PARTITION_RANGE_START_TAG]} .. {run.tags.get(ASSET_PARTITION_RANGE_END_TAG)}"
        return f"aggregation days {days}", None
    if run.tags.get("dagster/partition"):
        return f"partition {run.tags['dagster/partition']}", None
    day = yesterday_jst(created_at or dt.datetime.now(tz=dt.UTC))
    return f"{day} (untagged: last complete JST day)", day


def _error_chain(error) -> list[str]:
    """Root cause first (what went wrong), then the wrapping errors' first lines."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause
    return [chain[-1].message] + [e.message.splitlines()[0] for e in reversed(chain[:-1]) if e.message]


def failure_facts(instance: dg.DagsterInstance, run: dg.DagsterRun, ui: DagsterUi) -> m.FailureFacts:
    logs = instance.all_logs(run.run_id)
    events = [entry.dagster_event for entry in logs if entry.dagster_event is not None]

    def steps(*types: DagsterEventType) -> list[str]:
        return list(dict.fromkeys(e.step_key for e in events if e.event_type in types and e.step_key))

    failures = [e for e in events if e.event_type == DagsterEventType.STEP_FAILURE]
    retries = [e for e in events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    timed_out = m.timeout_seconds(entry.message for entry in logs if entry.dagster_event is not None)
    texts: list[str] = []
    if timed_out is not None:
        texts.append(f"Exceeded the maximum runtime of {timed_out} s; stopped by run monitoring.")
        if retries:
            texts += [f"Last error before that (step {retries[-1].step_key}, retrying):"]
            texts += _error_chain(retries[-1].step_retry_data.error)
    elif failures:
        texts += _error_chain(failures[0].step_failure_data.error)
    else:
        run_failures = [e for e in events if e.event_type == DagsterEventType.RUN_FAILURE]
        for event in run_failures[:1]:
            data = event.event_specific_data
            texts += _error_chain(data.error) if getattr(data, "error", None) else [event.message or ""]
    finished = steps(
        DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_SKIPPED
    )
    record = instance.get_run_record_by_id(run.run_id)
    date_text, _ = _business_date(run, record.create_timestamp if record else None)
    return m.FailureFacts(
        job_name=run.job_name,
        run_id=run.run_id,
        business_date=date_text,
        run_url=ui.run_url(run.run_id),
        failed_steps=[e.step_key for e in failures if e.step_key],
        error_lines=m.error_lines(texts),
        timed_out_after_seconds=timed_out,
        running_steps=[key for key in steps(DagsterEventType.STEP_START) if key not in finished],
    )


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    description="Critical alert for a failed batch run or UI materialization: Slack + mail; a timeout "
    "also pages on-call through PagerDuty. Once per run (run tag ranking/failure_alerted).",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def alert_on_run_failure(
    context: dg.RunFailureSensorContext,
    slack: BatchSlackResource,
    mail: AlertMailer,
    pagerduty: PagerDutyEvents,
    dagster_ui: DagsterUi,
) -> None:
    run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    if not m.alerts_on_failure(run.job_name, dict(run.tags), FAILURE_ALERTED_TAG):
        context.log.info(f"run {run.run_id} ({run.job_name}): no alert (other job, retrying or already sent)")
        return
    facts = failure_facts(context.instance, run, dagster_ui)
    subject, body = m.failure_mail(facts)
    senders = {
        m.SLACK: (slack.is_configured(), lambda: slack.post(m.failure_slack_text(facts))),
        m.MAIL: (mail.is_configured(), lambda: mail.send(subject, body)),
        m.PAGERDUTY: (
            pagerduty.is_configured(),
            lambda: pagerduty.trigger(m.pagerduty_trigger(facts, pagerduty.routing_key_or_none() or "")),
        ),
    }
    outcome = {
        channel: _deliver(context, channel, run.run_id, *senders[channel])
        for channel in m.failure_channels(facts)
    }
    # Marked whatever the outcome: a half-delivered alert is not repeated (pages stay single).
    context.instance.add_run_tags(run.run_id, {FAILURE_ALERTED_TAG: "true"})
    context.log.info(f"failure alert for run {run.run_id}: {outcome}")


@dg.run_status_sensor(
    name="notify_on_batch_success",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[batch_001_job],
    description="Completion notice to Slack after BATCH-001 succeeds: date, rows ranked, duration, movers.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def notify_on_batch_success(
    context: dg.RunStatusSensorContext,
    slack: BatchSlackResource,
    database: RankingDatabase,
    dagster_ui: DagsterUi,
) -> None:
    run = context.dagster_run
    record = context.instance.get_run_record_by_id(run.run_id)
    date_text, business_date = _business_date(run, record.create_timestamp if record else None)
    duration = (
        record.end_time - record.start_time if record and record.start_time and record.end_time else None
    )

    def post() -> None:
        with database.engine().connect() as connection:
            rows = ranked_count(connection, business_date)
            previous = previous_ranked(connection, business_date)
            climbers, fallers = rank_movers(connection, business_date, previous[0]) if previous else ([], [])
        facts = m.CompletionFacts(
            run_id=run.run_id,
            business_date=date_text,
            run_url=dagster_ui.run_url(run.run_id),
            rows_ranked=rows,
            duration_seconds=duration,
            previous_date=previous[0] if previous else None,
            previous_rows=previous[1] if previous else 0,
            climbers=climbers,
            fallers=fallers,
        )
        slack.post(m.completion_slack_text(facts))

    _deliver(context, m.SLACK, run.run_id, slack.is_configured(), post)


@dg.sensor(
    name="warn_on_long_batch_run",
    description="Warning to Slack when a BATCH-001 run has been running for over 15 minutes, once per run "
    "(run tag ranking/long_run_warned).",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def warn_on_long_batch_run(
    context: dg.SensorEvaluationContext, slack: BatchSlackResource, dagster_ui: DagsterUi
) -> dg.SkipReason:
    records = context.instance.get_run_records(
        dg.RunsFilter(job_name=BATCH_001_JOB, statuses=[dg.DagsterRunStatus.STARTED])
    )
    started = {r.dagster_run.run_id: r.start_time for r in records if r.start_time is not None}
    warned = {r.dagster_run.run_id for r in records if r.dagster_run.tags.get(LONG_RUN_WARNED_TAG)}
    now = get_current_timestamp()
    late = m.overdue_runs(started, now, LONG_RUN_WARNING_SECONDS, warned)
    by_id = {r.dagster_run.run_id: r.dagster_run for r in records}
    for run_id in late:
        run = by_id[run_id]
        max_runtime = run.tags.get("dagster/max_runtime")
        facts = m.LongRunFacts(
            job_name=run.job_name,
            run_id=run_id,
            business_date=_business_date(run, dt.datetime.fromtimestamp(started[run_id], tz=dt.UTC))[0],
            run_url=dagster_ui.run_url(run_id),
            running_seconds=now - started[run_id],
            threshold_seconds=LONG_RUN_WARNING_SECONDS,
            max_runtime_seconds=int(float(max_runtime)) if max_runtime else None,
        )
        if (
            _deliver(
                context,
                m.SLACK,
                run_id,
                slack.is_configured(),
                lambda f=facts: slack.post(m.long_run_slack_text(f)),
            )
            == "sent"
        ):
            context.instance.add_run_tags(run_id, {LONG_RUN_WARNED_TAG: "true"})
    return dg.SkipReason(f"{len(started)} BATCH-001 run(s) in progress, {len(late)} newly over 15 min")


def _run_finished(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is None or run.is_finished


def _metadata_value(metadata: dict, key: str):
    value = metadata.get(key)
    return getattr(value, "value", value)


@dg.sensor(
    name="warn_on_row_count_anomaly",
    description="Warning to Slack when the rankings_row_count_anomaly check fails (OSS: check failures do "
    "not trigger run-failure sensors). Once per check evaluation.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def warn_on_row_count_anomaly(
    context: dg.SensorEvaluationContext, slack: BatchSlackResource, dagster_ui: DagsterUi
) -> dg.SkipReason:
    history = context.instance.event_log_storage.get_asset_check_execution_history(
        ANOMALY_CHECK_KEY, limit=100
    )
    resolved = [
        r
        for r in history
        if r.status != AssetCheckExecutionRecordStatus.PLANNED or _run_finished(context.instance, r.run_id)
    ]
    if context.cursor is None:
        latest = max((r.id for r in history), default=0)
        context.update_cursor(json.dumps({"after": latest}))
        return dg.SkipReason(f"started: watching check evaluations after record {latest}")
    after = json.loads(context.cursor)["after"]
    new = sorted((r for r in resolved if r.id > after), key=lambda r: r.id)
    # Move past everything resolved, but never past a still-planned evaluation (it may fail later).
    pending = [
        r.id
        for r in history
        if r.status == AssetCheckExecutionRecordStatus.PLANNED
        and r.id > after
        and not _run_finished(context.instance, r.run_id)
    ]
    for record in new:
        if pending and record.id > min(pending):
            break
        if record.status == AssetCheckExecutionRecordStatus.FAILED:
            evaluation = record.event.dagster_event.event_specific_data
            metadata = dict(evaluation.metadata)
            facts = m.AnomalyFacts(
                run_id=record.run_id,
                business_date=str(_metadata_value(metadata, "business_date")),
                run_url=dagster_ui.run_url(record.run_id),
                description=evaluation.description or "row-count anomaly",
                rows=_metadata_value(metadata, "rows"),
                previous_date=_metadata_value(metadata, "previous_date"),
                previous_rows=_metadata_value(metadata, "previous_rows"),
                ratio=_metadata_value(metadata, "ratio"),
                threshold=_metadata_value(metadata, "threshold"),
            )
            _deliver(
                context,
                m.SLACK,
                record.run_id,
                slack.is_configured(),
                lambda f=facts: slack.post(m.anomaly_slack_text(f)),
            )
        after = record.id
    context.update_cursor(json.dumps({"after": after}))
    return dg.SkipReason(f"processed check evaluations up to record {after}")
