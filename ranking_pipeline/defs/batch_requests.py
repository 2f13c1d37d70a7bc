"""The run requests of a BATCH-001 batch: the scoring run of D that the 03:00 schedule (or its catch-up
sensor) starts, and the ranking run that follows a successful scoring."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ranking_pipeline.constants import (
    BACKFILL_TAG,
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    BATCH_MAX_RUNTIME_SECONDS,
    BUSINESS_DATE_TAG,
    LAUNCHED_BY_TAG,
    MAX_RUNTIME_TAG,
    RANKED_IN_PROCESS_TAG,
    SCORED_BY_TAG,
)
from ranking_pipeline.defs.batch_runs import automated_start_for, lock_holder_id
from ranking_pipeline.defs.resources import BatchGate, RankingDatabase
from ranking_pipeline.lib.business_date import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    BusinessDate,
    BusinessDateError,
    contiguous_spans,
    dates_of_run_tags,
    days_between,
    missing_aggregate_days,
    ranked_from_current_aggregates,
)
from ranking_pipeline.lib.db import explain_database_error
from ranking_pipeline.lib.gate import gate_decision
from ranking_pipeline.lib.score_plan import fresh_scores

PRIORITY_TAG = "dagster/priority"  # the run queue starts higher values first
USER_SCORES = dg.AssetKey("user_scores")
RANKINGS = dg.AssetKey("rankings")


def nightly_start(
    instance: dg.DagsterInstance,
    database: RankingDatabase,
    gate: BatchGate,
    now: dt.datetime,
    launched_by: str,
    *,
    not_before: dt.time | None = None,
) -> dg.RunRequest | dg.SkipReason:
    """The scoring run of D = yesterday (JST) when every day of W(D) is aggregated and automation has not
    started D yet (nor is D ranked from the same aggregates); else why not, naming the missing days."""
    try:
        batch_date = BusinessDate.from_tick(now)
    except BusinessDateError as error:  # yesterday is before the first business date: nothing to rank yet
        return dg.SkipReason(str(error))
    business_date = batch_date.day
    try:
        with database.engine().connect() as connection:
            missing = missing_aggregate_days(connection, business_date)
            ranked_by = ranked_from_current_aggregates(connection, business_date)
    except Exception as error:  # the next evaluation tries again with a fresh connection
        why = explain_database_error(error, database.describe())
        return dg.SkipReason(
            f"BATCH-001 for {business_date} not started: {why}; "
            "checking again in a minute (the catch-up sensor)"
        )
    started = automated_start_for(instance, business_date)
    already = (
        f"already ranked from the same aggregates (run {ranked_by})"
        if ranked_by
        else f"already started automatically (scoring run {started})"
        if started
        else None
    )
    decision = gate_decision(business_date, now, missing, already, gate.give_up_at(), not_before=not_before)
    if not decision.launch:
        return dg.SkipReason(decision.reason)
    return dg.RunRequest(
        run_key=batch_date.run_key(BATCH_001_SCORES_JOB),
        job_name=BATCH_001_SCORES_JOB,
        tags={**batch_date.scoring_tags(), LAUNCHED_BY_TAG: launched_by},
    )


def remaining_batch_seconds(record: dg.RunRecord) -> int:
    """What the batch's 30 minutes leave for the ranking run after the scoring run ``record``."""
    used = (record.end_time or 0) - (record.start_time or record.end_time or 0)
    return max(1, int(BATCH_MAX_RUNTIME_SECONDS - used))


def ranking_tags(scoring: dg.DagsterRun, business_dates: list[dt.date], seconds_left: int) -> dict[str, str]:
    """Tags of the ranking run that follows ``scoring``: the batch it belongs to and its time left."""
    tags = {
        SCORED_BY_TAG: lock_holder_id(scoring),
        MAX_RUNTIME_TAG: str(seconds_left),
        # ahead of any scoring run waiting in the queue: the lock is kept for this ranking
        PRIORITY_TAG: "1",
    }
    if len(business_dates) == 1:
        tags[BUSINESS_DATE_TAG] = business_dates[0].isoformat()
    return tags


def why_no_ranking_follows(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why a successful run needs no ranking run from the sensor; None when it does."""
    selection = run.asset_selection or set()
    if run.job_name != BATCH_001_SCORES_JOB and USER_SCORES not in selection:
        return "it scored nothing"
    if run.tags.get(RANKED_IN_PROCESS_TAG) == "true":
        return "its ranking runs in the same process (ranking-pipeline run)"
    backfill = instance.get_backfill(run.tags[BACKFILL_TAG]) if BACKFILL_TAG in run.tags else None
    if backfill is not None and RANKINGS in (backfill.asset_selection or []):
        return f"its backfill {backfill.backfill_id} ranks the dates itself"
    if not dates_of_run_tags(dict(run.tags)):
        return "it names no business date"
    return None


def scores_not_ready(database: RankingDatabase, dates: list[dt.date]) -> dict[dt.date, list[str]]:
    """The dates whose user_scores still lack up-to-date ranges (their keys): ranking them would fail, e.g.
    after a UI materialization of one range of a date never scored. Unknown (database error): none."""
    try:
        with database.engine().connect() as connection:
            waiting = {day: fresh_scores(connection, day).not_ready for day in dates}
    except Exception:  # the ranking run's own check decides, and says why
        return {}
    return {day: keys for day, keys in waiting.items() if keys}


def rankings_after(
    instance: dg.DagsterInstance, run: dg.DagsterRun, dates: list[dt.date] | None = None
) -> list[dg.RunRequest]:
    """The ranking runs that publish what the successful run ``run`` scored (only ``dates`` of them, if
    given): one per span of dates."""
    record = instance.get_run_record_by_id(run.run_id)
    seconds_left = remaining_batch_seconds(record) if record else BATCH_MAX_RUNTIME_SECONDS
    requests = []
    for first, last in contiguous_spans(dates_of_run_tags(dict(run.tags)) if dates is None else dates):
        tags = ranking_tags(run, days_between(first, last), seconds_left)
        if first != last:  # one run over the span, as a backfill of the span would make
            tags.update(
                {PARTITION_RANGE_START_TAG: first.isoformat(), PARTITION_RANGE_END_TAG: last.isoformat()}
            )
        requests.append(
            dg.RunRequest(
                run_key=f"{BATCH_001_RANKINGS_JOB}:after:{run.run_id}:{first}",
                job_name=BATCH_001_RANKINGS_JOB,
                partition_key=first.isoformat() if first == last else None,
                tags=tags,
            )
        )
    return requests
