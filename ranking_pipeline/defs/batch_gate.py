"""The gate's inputs for the schedule and the sensor, read from the database and the instance."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ranking_pipeline.batch_runner import batch_001_run_tags
from ranking_pipeline.constants import BATCH_001_JOB, BUSINESS_DATE_TAG, LAUNCHED_BY_TAG
from ranking_pipeline.defs.resources import BatchGate
from ranking_pipeline.lib.dates import window_days
from ranking_pipeline.lib.gate import GateDecision, gate_decision
from ranking_pipeline.lib.state import completed_days


def automated_run_for(instance: dg.DagsterInstance, business_date: dt.date) -> str | None:
    """The run automation already started for D, if any."""
    runs = instance.get_runs(
        dg.RunsFilter(job_name=BATCH_001_JOB, tags={BUSINESS_DATE_TAG: business_date.isoformat()})
    )
    return next((run.run_id for run in runs if LAUNCHED_BY_TAG in run.tags), None)


def decide(
    instance: dg.DagsterInstance, engine, business_date: dt.date, now: dt.datetime, gate: BatchGate
) -> GateDecision:
    window = window_days(business_date)
    with engine.connect() as connection:
        missing = sorted(set(window) - completed_days(connection, window))
    return gate_decision(
        business_date, now, missing, automated_run_for(instance, business_date), gate.give_up_at()
    )


def batch_001_request(business_date: dt.date, launched_by: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"BATCH-001:{business_date}",
        tags={**batch_001_run_tags(business_date), LAUNCHED_BY_TAG: launched_by},
    )
