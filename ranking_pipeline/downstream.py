"""For jobs that follow BATCH-001 (BATCH-002, the mail batch): start them when BATCH-001 succeeds.

In the downstream job's own code location::

    from ranking_pipeline.downstream import start_on_batch_001_success

    start_batch_002 = start_on_batch_001_success(
        batch_002_job,
        monitored_jobs=[dg.JobSelector(location_name="ranking_pipeline", job_name="batch_001_job")],
    )

Each successful BATCH-001 run of business date D requests one run of the downstream job tagged with D
(run tag ``ranking/business_date``) and the upstream run id. The run key is per date, so a second success
for the same D (a manual re-run) does not send the mail twice; a person can still launch it by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ranking_pipeline.constants import BATCH_001_JOB, BUSINESS_DATE_TAG

UPSTREAM_RUN_TAG = "ranking/upstream_run_id"


def start_on_batch_001_success(
    downstream_job: dg.JobDefinition,
    *,
    monitored_jobs: Sequence | None = None,
    name: str | None = None,
) -> dg.SensorDefinition:
    """A run-status sensor starting ``downstream_job`` after each successful BATCH-001 run, once per date."""

    @dg.run_status_sensor(
        name=name or f"start_{downstream_job.name}_on_batch_001_success",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=list(monitored_jobs) if monitored_jobs is not None else None,
        request_job=downstream_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _start_downstream(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        if run.job_name != BATCH_001_JOB:
            return dg.SkipReason(f"run {run.run_id} is {run.job_name}, not {BATCH_001_JOB}")
        business_date = run.tags.get(BUSINESS_DATE_TAG)
        if not business_date:
            return dg.SkipReason(f"run {run.run_id} has no {BUSINESS_DATE_TAG} tag")
        return dg.RunRequest(
            run_key=f"{downstream_job.name}:{business_date}",
            tags={BUSINESS_DATE_TAG: business_date, UPSTREAM_RUN_TAG: run.run_id},
        )

    return _start_downstream
