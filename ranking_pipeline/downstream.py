"""For jobs that follow BATCH-001 (BATCH-002, the mail batch): start them once D's rankings are committed.

In the downstream job's own code location (sharing the Dagster instance)::

    from ranking_pipeline.downstream import start_on_rankings_committed

    start_batch_002 = start_on_rankings_committed(batch_002_job)

Whenever a run commits the rankings of a business date D (the nightly batch, a re-run by hand, a UI
materialization, the CLI) and ends successfully (so the blocking integrity check of D passed), the sensor
requests one run of the downstream job tagged with D (run tag ``ranking/business_date``) and the run that
ranked it. The run key is per date, so a second ranking of D does not send the mail twice; a person can still
launch it by hand. The sensor starts watching from the moment it is first turned on.
"""

from __future__ import annotations

import dagster as dg

from ranking_pipeline.constants import BUSINESS_DATE_TAG
from ranking_pipeline.lib.business_date import parse_date, run_key

UPSTREAM_RUN_TAG = "ranking/upstream_run_id"
RANKINGS = dg.AssetKey("rankings")


def start_on_rankings_committed(
    downstream_job: dg.JobDefinition, *, name: str | None = None, minimum_interval_seconds: int = 30
) -> dg.SensorDefinition:
    """A sensor starting ``downstream_job`` once per business date after its rankings are committed."""

    @dg.sensor(
        name=name or f"start_{downstream_job.name}_on_rankings_committed",
        job=downstream_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Starts {downstream_job.name} once per business date D, when a run has committed the "
        "rankings of D and succeeded.",
    )
    def _start_downstream(context: dg.SensorEvaluationContext):
        if context.cursor is None:  # start watching now, not from the beginning of history
            latest = context.instance.fetch_materializations(RANKINGS, limit=1).records
            context.update_cursor(str(latest[0].storage_id if latest else 0))
            return dg.SkipReason("started: watching rankings committed from now on")
        after = int(context.cursor)
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=RANKINGS, after_storage_id=after), limit=100, ascending=True
        ).records
        requests: dict[
            str, dg.RunRequest
        ] = {}  # one per date, even if D was ranked twice since the last tick
        for record in records:
            run = context.instance.get_run_by_id(record.run_id)
            if run is not None and not run.is_finished:
                break  # its checks may still fail: look again next tick
            partition = record.asset_materialization.partition
            if run is not None and run.status == dg.DagsterRunStatus.SUCCESS and partition:
                requests[partition] = dg.RunRequest(
                    run_key=run_key(parse_date(partition, source="partition"), downstream_job.name),
                    tags={BUSINESS_DATE_TAG: partition, UPSTREAM_RUN_TAG: record.run_id},
                )
            after = record.storage_id
        context.update_cursor(str(after))
        return list(requests.values()) or dg.SkipReason(f"no new rankings committed (after event {after})")

    return _start_downstream
