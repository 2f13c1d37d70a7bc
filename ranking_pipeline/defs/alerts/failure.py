"""Critical alert for a failed run: Slack + mail; a timeout also pages on-call through PagerDuty."""

from __future__ import annotations

import dagster as dg

from ranking_pipeline.constants import FAILURE_ALERTED_TAG
from ranking_pipeline.defs.alerts._delivery import deliver
from ranking_pipeline.defs.explained_ticks import left_alone, ticks_explained
from ranking_pipeline.defs.notification_resources import (
    AlertMailer,
    BatchSlackResource,
    DagsterUi,
    PagerDutyEvents,
)
from ranking_pipeline.lib.business_date import describe_run_dates
from ranking_pipeline.lib.notify import messages as m


def _error_chain(error) -> list[str]:
    """Root cause first (what went wrong), then the wrapping errors' first lines."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause
    return [chain[-1].message] + [e.message.splitlines()[0] for e in reversed(chain[:-1]) if e.message]


def failure_facts(instance: dg.DagsterInstance, run: dg.DagsterRun, ui: DagsterUi) -> m.FailureFacts:
    logs = instance.all_logs(run.run_id)
    events = [entry.dagster_event for entry in logs if entry.dagster_event is not None]

    def steps(*types: dg.DagsterEventType) -> list[str]:
        return list(dict.fromkeys(e.step_key for e in events if e.event_type in types and e.step_key))

    failures = [e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    retries = [e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    timed_out = m.timeout_seconds(entry.message for entry in logs if entry.dagster_event is not None)
    texts: list[str] = []
    if timed_out is not None:
        texts.append(f"Exceeded the maximum runtime of {timed_out} s; stopped by run monitoring.")
        if retries:
            texts += [f"Last error before that (step {retries[-1].step_key}, retrying):"]
            texts += _error_chain(retries[-1].step_retry_data.error)
    elif failures:
        texts += _error_chain(failures[0].step_failure_data.error)
    else:
        run_failures = [e for e in events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
        for event in run_failures[:1]:
            data = event.event_specific_data
            texts += _error_chain(data.error) if getattr(data, "error", None) else [event.message or ""]
    finished = steps(
        dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED
    )
    return m.FailureFacts(
        job_name=run.job_name,
        run_id=run.run_id,
        business_date=describe_run_dates(dict(run.tags)),
        run_url=ui.run_url(run.run_id),
        failed_steps=[e.step_key for e in failures if e.step_key],
        error_lines=m.error_lines(texts),
        timed_out_after_seconds=timed_out,
        running_steps=[key for key in steps(dg.DagsterEventType.STEP_START) if key not in finished],
    )


@ticks_explained("no run of this code location has failed since the last tick")
@dg.run_failure_sensor(
    name="alert_on_run_failure",
    description="Critical alert for a failed batch run or UI materialization: Slack + mail; a timeout also "
    "pages on-call through PagerDuty. Once per run (run tag ranking/failure_alerted); a batch alerts once, "
    "since a failed scoring run starts no ranking run.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def alert_on_run_failure(
    context: dg.RunFailureSensorContext,
    slack: BatchSlackResource,
    mail: AlertMailer,
    pagerduty: PagerDutyEvents,
    dagster_ui: DagsterUi,
) -> None:
    run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    checks_only = not run.asset_selection and bool(run.asset_check_selection)
    why_not = m.why_no_failure_alert(
        run.job_name, dict(run.tags), FAILURE_ALERTED_TAG, checks_only=checks_only
    )
    if why_not is not None:
        left_alone(context, f"no alert: {why_not}")
        return  # returning nothing lets the sensor go on to the next failed run in the same tick
    facts = failure_facts(context.instance, run, dagster_ui)
    subject, body = m.failure_mail(facts)
    senders = {
        m.SLACK: (slack.is_configured(), lambda: slack.post(m.failure_slack_text(facts))),
        m.MAIL: (mail.is_configured(), lambda: mail.send(subject, body)),
        m.PAGERDUTY: (
            pagerduty.is_configured(),
            lambda: pagerduty.trigger(m.pagerduty_trigger(facts, pagerduty.routing_key or "")),
        ),
    }
    outcome = {
        channel: deliver(context, channel, run.run_id, *senders[channel])
        for channel in m.failure_channels(facts)
    }
    # Marked whatever the outcome: a half-delivered alert is not repeated (pages stay single).
    context.instance.add_run_tags(run.run_id, {FAILURE_ALERTED_TAG: "true"})
    context.log.info(f"failure alert for run {run.run_id}: {outcome}")
