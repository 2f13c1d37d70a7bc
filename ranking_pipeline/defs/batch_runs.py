"""The runs of one BATCH-001 batch (a scoring run, then a ranking run, sharing the run tag ranking/batch_id),
read from the Dagster instance: for the ranking step, the alerts and the gate."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ranking_pipeline.constants import (
    BATCH_001_JOBS,
    BATCH_001_SCORES_JOB,
    BATCH_ID_TAG,
    BATCH_MAX_RUNTIME_SECONDS,
    BUSINESS_DATE_TAG,
    LAUNCHED_BY_TAG,
    MAX_RUNTIME_TAG,
)


def runs_of_batch(instance: dg.DagsterInstance, batch_id: str) -> list[dg.RunRecord]:
    """The batch's run records, oldest first."""
    records = instance.get_run_records(dg.RunsFilter(tags={BATCH_ID_TAG: batch_id}))
    return sorted(
        (r for r in records if r.dagster_run.job_name in BATCH_001_JOBS), key=lambda r: r.create_timestamp
    )


def scoring_run_of_batch(instance: dg.DagsterInstance, batch_id: str) -> dg.RunRecord | None:
    return next(
        (r for r in runs_of_batch(instance, batch_id) if r.dagster_run.job_name == BATCH_001_SCORES_JOB), None
    )


def batch_started_at(instance: dg.DagsterInstance, batch_id: str) -> float | None:
    """When the batch began: the start of its first run (a run waiting in the queue has not begun)."""
    starts = [r.start_time for r in runs_of_batch(instance, batch_id) if r.start_time is not None]
    return min(starts) if starts else None


def remaining_batch_seconds(instance: dg.DagsterInstance, batch_id: str, now: float) -> float | None:
    started = batch_started_at(instance, batch_id)
    return None if started is None else BATCH_MAX_RUNTIME_SECONDS - (now - started)


def limit_run_to_batch_deadline(instance: dg.DagsterInstance, run_id: str, batch_id: str) -> float | None:
    """Give a later run of a batch only the time the batch has left: its ``dagster/max_runtime`` becomes the
    batch's 30 minutes minus what the earlier runs used, so run monitoring stops the batch at 30 minutes in
    all. Returns the new limit in seconds (None when the batch has no earlier run)."""
    record = instance.get_run_record_by_id(run_id)
    started = batch_started_at(instance, batch_id)
    if record is None or record.start_time is None or started is None or started >= record.start_time:
        return None
    limit = max(1.0, BATCH_MAX_RUNTIME_SECONDS - (record.start_time - started))
    current = float(record.dagster_run.tags.get(MAX_RUNTIME_TAG) or "inf")
    if limit < current:
        instance.add_run_tags(run_id, {MAX_RUNTIME_TAG: str(int(limit))})
    return limit


def automated_batch_for(instance: dg.DagsterInstance, business_date: dt.date) -> str | None:
    """The id of the batch automation already started for D, if any."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=BATCH_001_SCORES_JOB, tags={BUSINESS_DATE_TAG: business_date.isoformat()})
    )
    return next(
        (r.dagster_run.tags.get(BATCH_ID_TAG) for r in records if LAUNCHED_BY_TAG in r.dagster_run.tags), None
    )
