"""The 15-minute warning (design 6.1), counted over the whole batch (its scoring run's start onwards)."""

from __future__ import annotations

import dagster as dg

from ranking_pipeline.constants import (
    BATCH_001_JOBS,
    BATCH_MAX_RUNTIME_SECONDS,
    LONG_RUN_WARNED_TAG,
    LONG_RUN_WARNING_SECONDS,
    SCORED_BY_TAG,
)
from ranking_pipeline.dagster_internals import get_current_timestamp
from ranking_pipeline.defs.alerts._delivery import SENT, deliver
from ranking_pipeline.defs.batch_runs import batch_started_at
from ranking_pipeline.defs.notification_resources import BatchSlackResource, DagsterUi
from ranking_pipeline.lib.business_date import describe_run_dates
from ranking_pipeline.lib.notify import messages as m


@dg.sensor(
    name="warn_on_long_batch_run",
    description="Warning to Slack when a BATCH-001 batch has been running for over 15 minutes (from the "
    "start of its scoring run), once per batch (run tag ranking/long_run_warned).",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def warn_on_long_batch_run(
    context: dg.SensorEvaluationContext, slack: BatchSlackResource, dagster_ui: DagsterUi
) -> dg.SkipReason:
    in_progress = [
        record
        for job_name in BATCH_001_JOBS
        for record in context.instance.get_run_records(
            dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.STARTED])
        )
        if record.start_time is not None
    ]
    now = get_current_timestamp()
    warned = 0
    for record in in_progress:
        run = record.dagster_run
        scoring = context.instance.get_run_by_id(run.tags.get(SCORED_BY_TAG, ""))
        batch_runs = [run] + ([scoring] if scoring is not None else [])
        if any(r.tags.get(LONG_RUN_WARNED_TAG) for r in batch_runs):
            continue
        started = batch_started_at(context.instance, run) or record.start_time
        if now - started <= LONG_RUN_WARNING_SECONDS:
            continue
        facts = m.LongRunFacts(
            job_name=run.job_name,
            run_id=run.run_id,
            business_date=describe_run_dates(dict(run.tags)),
            run_url=dagster_ui.run_url(run.run_id),
            running_seconds=now - started,
            threshold_seconds=LONG_RUN_WARNING_SECONDS,
            max_runtime_seconds=BATCH_MAX_RUNTIME_SECONDS,
        )
        if (
            deliver(
                context,
                m.SLACK,
                run.run_id,
                slack.is_configured(),
                lambda f=facts: slack.post(m.long_run_slack_text(f)),
            )
            == SENT
        ):
            for batch_run in batch_runs:
                context.instance.add_run_tags(batch_run.run_id, {LONG_RUN_WARNED_TAG: "true"})
            warned += 1
    return dg.SkipReason(f"{len(in_progress)} BATCH-001 run(s) in progress, {warned} newly over 15 min")
