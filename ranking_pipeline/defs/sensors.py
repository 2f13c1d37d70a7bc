"""The two sensors that move a night's batch along: the catch-up start when BATCH-000 lands after 03:00, and
the ranking run that follows every successful scoring."""

import dagster as dg

from ranking_pipeline.defs.batch_requests import (
    nightly_start,
    rankings_after,
    scores_not_ready,
    why_no_ranking_follows,
)
from ranking_pipeline.defs.explained_ticks import left_alone, ticks_explained
from ranking_pipeline.defs.jobs import batch_001_rankings_job, batch_001_scores_job
from ranking_pipeline.defs.resources import BatchGate, Clock, RankingDatabase
from ranking_pipeline.lib.business_date import dates_of_run_tags
from ranking_pipeline.lib.gate import CATCH_UP_FROM_JST
from ranking_pipeline.lib.ranges import USER_ID_RANGES

CATCH_UP_SENSOR = "start_batch_001_on_aggregates_landed"
RANKINGS_SENSOR = "start_rankings_on_scores_success"


@dg.sensor(
    name=CATCH_UP_SENSOR,
    job=batch_001_scores_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="BATCH-001's late start: when BATCH-000 lands after the 03:00 schedule skipped, starts the "
    "scoring run of D = yesterday (JST) as soon as every day of W(D) is aggregated, from 03:05 until the "
    "give-up time (09:00 JST, RANKING_GATE_GIVE_UP_AT_JST). Once per date with the schedule, never for a "
    "date already ranked from the same aggregates.",
)
def start_batch_001_on_aggregates_landed(
    context: dg.SensorEvaluationContext, database: RankingDatabase, batch_gate: BatchGate, clock: Clock
) -> dg.RunRequest | dg.SkipReason:
    result = nightly_start(
        context.instance, database, batch_gate, clock.now(), CATCH_UP_SENSOR, not_before=CATCH_UP_FROM_JST
    )
    if isinstance(result, dg.RunRequest):
        context.log.info(f"{CATCH_UP_SENSOR}: the aggregates have landed; starting the scoring run")
    return result


def _still_to_score(day, range_keys: list[str]) -> str:
    return (
        f"no ranking of {day} follows: user_scores of {day} lacks current scores for {len(range_keys)} of "
        f"{len(USER_ID_RANGES)} user-ID ranges ({', '.join(range_keys)}), and the ranking follows once "
        "they are materialized"
    )


@ticks_explained("no run of this code location has succeeded since the last tick")
@dg.run_status_sensor(
    name=RANKINGS_SENSOR,
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=batch_001_rankings_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="The second half of every BATCH-001 batch: when a run that scored user_scores of D succeeds "
    "(the nightly scoring run, a re-run, or a UI materialization of some ranges of D), starts the ranking "
    "run of D, tagged ranking/scored_by with that run: it takes over the batch lock the scoring handed "
    "over and gets what is left of the batch's 30 minutes. A failed scoring starts nothing, nor does one "
    "that leaves a range of D without current scores (one range of a date never scored): the tick names "
    "the ranges still to score. Left alone: runs whose backfill includes rankings, and "
    "`ranking-pipeline run`, which ranks in the same process.",
)
def start_rankings_on_scores_success(context: dg.RunStatusSensorContext, database: RankingDatabase):
    run = context.dagster_run
    why_not = why_no_ranking_follows(context.instance, run)
    if why_not is not None:
        left_alone(context, f"no ranking follows: {why_not}")
        return None  # returning nothing lets the sensor go on to the next run in the same tick
    dates = dates_of_run_tags(dict(run.tags))
    waiting = scores_not_ready(database, dates)
    if waiting:
        left_alone(context, " / ".join(_still_to_score(day, keys) for day, keys in waiting.items()))
    ready = [day for day in dates if day not in waiting]
    if not ready:
        return None
    requests = rankings_after(context.instance, run, ready)
    context.log.info(f"{RANKINGS_SENSOR}: run {run.run_id} scored; ranking {len(requests)} span(s)")
    return requests
