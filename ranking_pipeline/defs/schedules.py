"""BATCH-000 at 02:00 JST (Asia/Tokyo) for the JST day that just ended."""

import dagster as dg

from ranking_pipeline.constants import BATCH_000_JOB, LAUNCHED_BY_TAG
from ranking_pipeline.defs.jobs import batch_000_job
from ranking_pipeline.lib.business_date import JST, last_complete_day, run_key


@dg.schedule(
    job=batch_000_job,
    cron_schedule="0 2 * * *",
    execution_timezone=JST.key,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="BATCH-000 at 02:00 JST: aggregate the completed orders of the JST day that just ended "
    "(done well before 02:30, when BATCH-001's gate looks for it). One run per day.",
)
def batch_000_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = last_complete_day(context.scheduled_execution_time)
    return dg.RunRequest(
        run_key=run_key(day, BATCH_000_JOB),
        partition_key=day.isoformat(),
        tags={LAUNCHED_BY_TAG: "batch_000_schedule"},
    )
