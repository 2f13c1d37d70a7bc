"""Schedules (Asia/Tokyo): BATCH-000 at 02:00 for the day just ended, BATCH-001 at 03:00 for D = yesterday."""

import dagster as dg

from ranking_pipeline.constants import BATCH_000_PROCESS_ID, BUSINESS_DATE_TAG, LAUNCHED_BY_TAG
from ranking_pipeline.defs.batch_gate import batch_001_request, decide
from ranking_pipeline.defs.jobs import batch_000_job, batch_001_job
from ranking_pipeline.defs.resources import BatchGate, RankingDatabase
from ranking_pipeline.lib.dates import JST, yesterday_jst


@dg.schedule(
    job=batch_000_job,
    cron_schedule="0 2 * * *",
    execution_timezone=JST.key,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def batch_000_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """BATCH-000 at 02:00 JST: aggregate the JST day that just ended (done well before 02:30)."""
    day = yesterday_jst(context.scheduled_execution_time)
    return dg.RunRequest(
        run_key=f"{BATCH_000_PROCESS_ID}:{day}",
        partition_key=day.isoformat(),
        tags={BUSINESS_DATE_TAG: day.isoformat(), LAUNCHED_BY_TAG: "batch_000_schedule"},
    )


@dg.schedule(
    job=batch_001_job,
    cron_schedule="0 3 * * *",
    execution_timezone=JST.key,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def batch_001_schedule(
    context: dg.ScheduleEvaluationContext, database: RankingDatabase, batch_gate: BatchGate
) -> dg.RunRequest | dg.SkipReason:
    """BATCH-001 at 03:00 JST for D = yesterday (JST), one run per date, only if BATCH-000 has aggregated
    every day of W(D); otherwise it skips with the reason and the sensor start_batch_001_on_aggregates_landed
    starts the batch when the aggregates land."""
    business_date = yesterday_jst(context.scheduled_execution_time)
    decision = decide(
        context.instance, database.engine(), business_date, context.scheduled_execution_time, batch_gate
    )
    context.log.info(f"batch_001_schedule for {business_date}: {decision.reason}")
    if not decision.launch:
        return dg.SkipReason(decision.reason)
    return batch_001_request(business_date, launched_by="batch_001_schedule")
