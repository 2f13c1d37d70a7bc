"""A BATCH-001 batch as Dagster records it: a scoring run of D, and the ranking run started after it succeeded
(tagged ranking/scored_by with the scoring run's id, or both runs in one backfill). Read from the instance
by the steps (who holds the batch lock) and by the alerts (when the batch began)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ranking_pipeline.constants import (
    BACKFILL_TAG,
    BATCH_001_SCORES_JOB,
    BUSINESS_DATE_TAG,
    LAUNCHED_BY_TAG,
    SCORED_BY_TAG,
)


def lock_holder_id(run: dg.DagsterRun) -> str:
    """Whom a run's writing step holds the batch lock for: the backfill the run belongs to, else the scoring
    run it ranks the scores of, else the run itself. The two runs of one batch share it."""
    return run.tags.get(BACKFILL_TAG) or run.tags.get(SCORED_BY_TAG) or run.run_id


def batch_has_ended(instance: dg.DagsterInstance, holder_id: str) -> bool:
    """Whether the batch ``holder_id`` names can no longer write: its run failed or was canceled, or it
    succeeded and the ranking run that followed it has ended, or its backfill has ended. Unknown ids (another
    instance's runs) are not known to have ended."""
    run = instance.get_run_by_id(holder_id)
    if run is not None:
        if not run.is_finished:
            return False
        if run.status != dg.DagsterRunStatus.SUCCESS:
            return True
        followers = instance.get_runs(dg.RunsFilter(tags={SCORED_BY_TAG: holder_id}))
        return any(follower.is_finished for follower in followers)
    backfill = instance.get_backfill(holder_id)  # its status type is not public API: compare the value
    return backfill is not None and backfill.status.value != "REQUESTED"


def batch_started_at(instance: dg.DagsterInstance, run: dg.DagsterRun) -> float | None:
    """When the run's batch began: the start of the scoring run it ranks, else of the run itself."""
    scored_by = run.tags.get(SCORED_BY_TAG)
    for run_id in (scored_by, run.run_id):
        record = instance.get_run_record_by_id(run_id) if run_id else None
        if record is not None and record.start_time is not None:
            return record.start_time
    return None


def automated_start_for(instance: dg.DagsterInstance, business_date: dt.date) -> str | None:
    """The scoring run automation (schedule or catch-up sensor) already started for D, if any."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=BATCH_001_SCORES_JOB, tags={BUSINESS_DATE_TAG: business_date.isoformat()})
    )
    return next((r.dagster_run.run_id for r in records if LAUNCHED_BY_TAG in r.dagster_run.tags), None)
