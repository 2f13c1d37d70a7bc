"""The row-count anomaly warning to Slack (in open-source Dagster a failed check does not trigger run-failure
sensors, so this sensor reads the check's evaluations itself)."""

from __future__ import annotations

import json

import dagster as dg

from ranking_pipeline.constants import RANKINGS_ROW_COUNT_ANOMALY_CHECK
from ranking_pipeline.dagster_internals import AssetCheckExecutionRecordStatus
from ranking_pipeline.defs.alerts._delivery import deliver
from ranking_pipeline.defs.notification_resources import BatchSlackResource, DagsterUi
from ranking_pipeline.lib.notify import messages as m

ANOMALY_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey("rankings"), RANKINGS_ROW_COUNT_ANOMALY_CHECK)
PLANNED = AssetCheckExecutionRecordStatus.PLANNED


def _run_finished(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is None or run.is_finished


def _value(metadata: dict, key: str):
    value = metadata.get(key)
    return getattr(value, "value", value)


@dg.sensor(
    name="warn_on_row_count_anomaly",
    description="Warning to Slack when the rankings_row_count_anomaly check fails for a business date. Once "
    "per check evaluation.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def warn_on_row_count_anomaly(
    context: dg.SensorEvaluationContext, slack: BatchSlackResource, dagster_ui: DagsterUi
) -> dg.SkipReason:
    history = context.instance.event_log_storage.get_asset_check_execution_history(
        ANOMALY_CHECK_KEY, limit=100
    )
    if context.cursor is None:
        latest = max((r.id for r in history), default=0)
        context.update_cursor(json.dumps({"after": latest}))
        return dg.SkipReason(f"started: watching check evaluations after record {latest}")
    after = json.loads(context.cursor)["after"]
    resolved = sorted(
        (
            r
            for r in history
            if r.id > after and (r.status != PLANNED or _run_finished(context.instance, r.run_id))
        ),
        key=lambda r: r.id,
    )
    # Move past everything resolved, but never past a still-planned evaluation (it may fail later).
    pending = [
        r.id
        for r in history
        if r.status == PLANNED and r.id > after and not _run_finished(context.instance, r.run_id)
    ]
    for record in resolved:
        if pending and record.id > min(pending):
            break
        if record.status == AssetCheckExecutionRecordStatus.FAILED:
            evaluation = record.event.dagster_event.event_specific_data
            metadata = dict(evaluation.metadata)
            facts = m.AnomalyFacts(
                run_id=record.run_id,
                business_date=str(_value(metadata, "business_date") or evaluation.partition),
                run_url=dagster_ui.run_url(record.run_id),
                description=evaluation.description or "row-count anomaly",
                rows=_value(metadata, "rows"),
                previous_date=_value(metadata, "previous_date"),
                previous_rows=_value(metadata, "previous_rows"),
                ratio=_value(metadata, "ratio"),
                threshold=float(_value(metadata, "threshold") or "nan"),
            )
            deliver(
                context,
                m.SLACK,
                record.run_id,
                slack.is_configured(),
                lambda f=facts: slack.post(m.anomaly_slack_text(f)),
            )
        after = record.id
    context.update_cursor(json.dumps({"after": after}))
    return dg.SkipReason(f"processed check evaluations up to record {after}")
