"""Sensors of the nightly chain: start BATCH-001 when BATCH-000 lands late."""

import datetime as dt

import dagster as dg

from ranking_pipeline.defs.batch_gate import batch_001_request, decide
from ranking_pipeline.defs.jobs import batch_001_job
from ranking_pipeline.defs.resources import BatchGate, RankingDatabase
from ranking_pipeline.lib.dates import JST, yesterday_jst
from ranking_pipeline.lib.gate import SENSOR_TAKES_OVER_JST


def now_jst() -> dt.datetime:
    return dt.datetime.now(tz=JST)


@dg.sensor(
    job=batch_001_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def start_batch_001_on_aggregates_landed(
    context: dg.SensorEvaluationContext, database: RankingDatabase, batch_gate: BatchGate
) -> dg.RunRequest | dg.SkipReason:
    """The upstream gate after 03:00 JST: when BATCH-000 finishes late, start BATCH-001 for D then (once),
    until the give-up time (09:00 JST unless configured), after which it reports that it gave up."""
    now = now_jst()
    business_date = yesterday_jst(now)
    if now.time() < SENSOR_TAKES_OVER_JST:
        return dg.SkipReason(f"before {SENSOR_TAKES_OVER_JST:%H:%M} JST: the 03:00 schedule decides first")
    decision = decide(context.instance, database.engine(), business_date, now, batch_gate)
    if decision.launch:
        context.log.info(f"start_batch_001_on_aggregates_landed: {decision.reason}")
        return batch_001_request(business_date, launched_by="start_batch_001_on_aggregates_landed")
    if decision.gave_up and context.cursor != business_date.isoformat():
        context.log.error(decision.reason)  # once per date; the cursor remembers
        context.update_cursor(business_date.isoformat())
    return dg.SkipReason(decision.reason)
