"""Run-status sensors whose every tick says what it looked at, in the tick's skip reason in the UI.

Dagster's run-status sensors call our function once per run that reached the status since the last tick, and
only then. A tick with no such run reads "Sensor function returned an empty result"; a run our function leaves
alone (it returns None, so Dagster goes on to the next run in the same tick) makes the tick "succeed",
logging "acted on run status" into that run. Returning a SkipReason instead would name the run, but Dagster
ends the tick there (one run per tick). So our functions return None and call ``left_alone`` with the reason,
and these sensors rewrite the finished tick: nothing new -> what they watch and that nothing new came; every
run left alone -> one skip reason naming each run and why. A tick that requested runs, acted on a run (an
alert sent) or failed is left as Dagster made it (the reasons for the other runs are in the tick's log).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

import dagster as dg

# What SensorDefinition.evaluate_tick says when the function yielded nothing (dagster 1.13.27).
DAGSTERS_EMPTY_RESULT = "Sensor function returned an empty result"

_left_alone: ContextVar[dict[str, str] | None] = ContextVar("runs_left_alone", default=None)


def left_alone(context: dg.RunStatusSensorContext, why: str) -> None:
    """The sensor looked at the run and does nothing with it, because ``why``: said in the tick."""
    run = context.dagster_run
    note = f"run {run.run_id} ({run.job_name}): {why}"
    context.log.info(f"{context.sensor_name}: {note}")
    notes = _left_alone.get()
    if notes is not None:
        notes[run.run_id] = note


class ExplainedRunStatusSensor(dg.RunStatusSensorDefinition):
    """A run-status sensor whose ticks say what they checked (see the module's docstring)."""

    nothing_new: str

    def evaluate_tick(self, context: dg.SensorEvaluationContext):
        notes: dict[str, str] = {}
        token = _left_alone.set(notes)
        try:
            data = super().evaluate_tick(context)
        finally:
            _left_alone.reset(token)
        reactions = list(data.dagster_run_reactions or [])
        if data.run_requests:
            return data
        if not reactions and data.skip_message == DAGSTERS_EMPTY_RESULT:
            return _with_skip_reason(data, self.nothing_new)
        if reactions and all(r.error is None and r.dagster_run.run_id in notes for r in reactions):
            return _with_skip_reason(data, "; ".join(notes[r.dagster_run.run_id] for r in reactions))
        return data

    def with_attributes(self, **kwargs) -> ExplainedRunStatusSensor:
        # Dagster rebuilds a sensor when it resolves the job the sensor requests, as a plain
        # RunStatusSensorDefinition: keep it one of these.
        return explained(super().with_attributes(**kwargs), self.nothing_new)


def explained(sensor: dg.RunStatusSensorDefinition, nothing_new: str) -> ExplainedRunStatusSensor:
    """``sensor`` (from @run_status_sensor / @run_failure_sensor), its ticks explained; ``nothing_new``: the
    skip reason of a tick that found no new run."""
    sensor.__class__ = ExplainedRunStatusSensor
    sensor.nothing_new = nothing_new
    return sensor


def ticks_explained(nothing_new: str) -> Callable[[dg.RunStatusSensorDefinition], ExplainedRunStatusSensor]:
    """Above @dg.run_status_sensor or @dg.run_failure_sensor: its ticks say what they checked."""
    return lambda sensor: explained(sensor, nothing_new)


def _with_skip_reason(data, skip_message: str):
    """The tick's data as a skip with this reason (without run reactions: Dagster takes a skip reason only
    alone)."""
    return type(data)(
        run_requests=[],
        skip_message=skip_message,
        cursor=data.cursor,
        dagster_run_reactions=[],
        log_key=data.log_key,
        dynamic_partitions_requests=data.dynamic_partitions_requests,
        asset_events=data.asset_events,
        automation_condition_evaluations=data.automation_condition_evaluations,
    )
