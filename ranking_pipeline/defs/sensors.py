"""The nightly start of BATCH-001: from 03:00 JST, as soon as BATCH-000 has aggregated W(D)."""

import datetime as dt

import dagster as dg

from ranking_pipeline.constants import BATCH_001_RANKINGS_JOB, BATCH_001_SCORES_JOB
from ranking_pipeline.defs.batch_runs import automated_batch_for
from ranking_pipeline.defs.jobs import batch_001_rankings_job, batch_001_scores_job
from ranking_pipeline.defs.resources import BatchGate, RankingDatabase
from ranking_pipeline.lib.business_date import (
    JST,
    batch_tags,
    last_complete_day,
    missing_aggregate_days,
    new_batch_id,
    ranked_from_current_aggregates,
    run_key,
    scores_partition_tags,
)
from ranking_pipeline.lib.db import explain_database_error
from ranking_pipeline.lib.gate import gate_decision
from ranking_pipeline.lib.ranges import USER_ID_RANGES

SENSOR_NAME = "start_batch_001_on_aggregates_landed"


def now_jst() -> dt.datetime:
    return dt.datetime.now(tz=JST)


def batch_run_requests(business_date: dt.date, launched_by: str) -> list[dg.RunRequest]:
    """The two runs of one batch for D: every user-ID range of user_scores, then the rankings of D."""
    tags = batch_tags(business_date, new_batch_id(business_date), launched_by=launched_by)
    return [
        dg.RunRequest(
            run_key=run_key(business_date, BATCH_001_SCORES_JOB),
            job_name=BATCH_001_SCORES_JOB,
            tags={**tags, **scores_partition_tags(business_date, [r.key for r in USER_ID_RANGES])},
        ),
        dg.RunRequest(
            run_key=run_key(business_date, BATCH_001_RANKINGS_JOB),
            job_name=BATCH_001_RANKINGS_JOB,
            partition_key=business_date.isoformat(),
            tags=tags,
        ),
    ]


@dg.sensor(
    name=SENSOR_NAME,
    jobs=[batch_001_scores_job, batch_001_rankings_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="BATCH-001's start (design 1): at 03:00 JST, or as soon after as BATCH-000 has aggregated "
    "every day of W(D), starts the batch for D = yesterday (JST): a scoring run, then a ranking run. Once "
    "per "
    "date, never for a date already ranked from the same aggregates; gives up at 09:00 JST (configurable).",
)
def start_batch_001_on_aggregates_landed(
    context: dg.SensorEvaluationContext, database: RankingDatabase, batch_gate: BatchGate
) -> list[dg.RunRequest] | dg.SkipReason:
    now = now_jst()
    business_date = last_complete_day(now)
    try:
        with database.engine().connect() as connection:
            missing = missing_aggregate_days(connection, business_date)
            ranked_by = ranked_from_current_aggregates(connection, business_date)
    except Exception as error:  # the next tick tries again with a fresh connection
        return dg.SkipReason(
            f"BATCH-001 for {business_date} not started: "
            f"{explain_database_error(error, database.describe())}; "
            "checking again in a minute"
        )
    automated = automated_batch_for(context.instance, business_date)
    already = (
        f"already ranked from the same aggregates (run {ranked_by})"
        if ranked_by
        else f"already started automatically (batch {automated})"
        if automated
        else None
    )
    decision = gate_decision(business_date, now, missing, already, batch_gate.give_up_at())
    if decision.launch:
        context.log.info(f"{SENSOR_NAME}: {decision.reason}")
        return batch_run_requests(business_date, launched_by=SENSOR_NAME)
    if decision.gave_up and context.cursor != business_date.isoformat():
        context.log.error(decision.reason)  # once per date; the cursor remembers
        context.update_cursor(business_date.isoformat())
    return dg.SkipReason(decision.reason)
