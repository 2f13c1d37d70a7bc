"""The night's two schedules: BATCH-000 at 02:00 JST, BATCH-001 at 03:00 JST."""

import dagster as dg

from ranking_pipeline.constants import BATCH_000_JOB, LAUNCHED_BY_TAG
from ranking_pipeline.defs.batch_requests import nightly_start
from ranking_pipeline.defs.jobs import batch_000_job, batch_001_scores_job
from ranking_pipeline.defs.resources import BatchGate, RankingDatabase
from ranking_pipeline.lib.business_date import JST, last_complete_day, run_key

BATCH_001_SCHEDULE = "batch_001_schedule"


@dg.schedule(
    job=batch_000_job,
    cron_schedule="0 2 * * *",
    execution_timezone=JST.key,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="BATCH-000 at 02:00 JST: aggregate the completed orders of the JST day that just ended "
    "(done well before 03:00, when BATCH-001 looks for it). One run per day.",
)
def batch_000_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = last_complete_day(context.scheduled_execution_time)
    return dg.RunRequest(
        run_key=run_key(day, BATCH_000_JOB),
        partition_key=day.isoformat(),
        tags={LAUNCHED_BY_TAG: "batch_000_schedule"},
    )


@dg.schedule(
    name=BATCH_001_SCHEDULE,
    job=batch_001_scores_job,
    cron_schedule="0 3 * * *",
    execution_timezone=JST.key,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="BATCH-001 at 03:00 JST: starts the batch for D = yesterday (JST), a scoring run of every "
    "user-ID range of D (the ranking run follows it, started by start_rankings_on_scores_success), when "
    "BATCH-000 has aggregated every day of W(D). Otherwise it skips, naming the missing days, and "
    "start_batch_001_on_aggregates_landed starts the batch as soon as they land. One batch per date.",
)
def batch_001_schedule(
    context: dg.ScheduleEvaluationContext, database: RankingDatabase, batch_gate: BatchGate
) -> dg.RunRequest | dg.SkipReason:
    return nightly_start(
        context.instance, database, batch_gate, context.scheduled_execution_time, BATCH_001_SCHEDULE
    )
