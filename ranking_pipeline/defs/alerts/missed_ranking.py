"""Critical alert when the night did not happen: the rankings of D = yesterday (JST) are still not committed
at the deadline (default the gate's give-up time, 09:00 JST). Slack + mail + PagerDuty, once per date."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ranking_pipeline.constants import BATCH_001_JOBS, BUSINESS_DATE_TAG
from ranking_pipeline.defs.alerts._delivery import deliver
from ranking_pipeline.defs.alerts.failure import failure_facts
from ranking_pipeline.defs.notification_resources import (
    AlertMailer,
    BatchSlackResource,
    DagsterUi,
    PagerDutyEvents,
)
from ranking_pipeline.defs.resources import BatchGate, Clock, RankingDatabase
from ranking_pipeline.lib.business_date import (
    JST,
    BusinessDate,
    BusinessDateError,
    describe_days,
    missing_aggregate_days,
)
from ranking_pipeline.lib.db import explain_database_error
from ranking_pipeline.lib.notify import messages as m
from ranking_pipeline.lib.state import COMPLETED, RANKINGS_ASSET, partition_runs_for

SENSOR_NAME = "alert_on_missed_ranking"


def why_not_ranked(
    instance: dg.DagsterInstance, dagster_ui: DagsterUi, missing: list[dt.date], business_date: dt.date
) -> tuple[str, dg.DagsterRun | None]:
    """Why D has no rankings, in one line, and the batch's run it names (the newest run for D)."""
    if missing:
        return (
            f"BATCH-000 has not aggregated {describe_days(missing)} of W({business_date}), so no batch could "
            "start",
            None,
        )
    runs = [
        run
        for run in instance.get_runs(dg.RunsFilter(tags={BUSINESS_DATE_TAG: business_date.isoformat()}))
        if run.job_name in BATCH_001_JOBS
    ]
    if not runs:
        return f"no BATCH-001 batch was started for {business_date}", None
    run = runs[0]  # newest first
    if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        facts = failure_facts(instance, run, dagster_ui)
        step = ", ".join(facts.failed_steps) or "no step (the run itself)"
        error = facts.error_lines[0] if facts.error_lines else "see the run's event log"
        return f"the batch's {run.job_name} run {run.run_id} ended {run.status.value} in {step}: {error}", run
    if not run.is_finished:
        return f"the batch's {run.job_name} run {run.run_id} is still {run.status.value}", run
    return (
        f"the batch's {run.job_name} run {run.run_id} succeeded, but no ranking of {business_date} followed "
        "(is the sensor start_rankings_on_scores_success running?)",
        run,
    )


def _page(
    context: dg.SensorEvaluationContext,
    facts: m.MissedRankingFacts,
    slack: BatchSlackResource,
    mail: AlertMailer,
    pagerduty: PagerDutyEvents,
) -> dict[str, str]:
    """Slack, mail and PagerDuty, each on its own: one channel failing does not stop the others."""
    subject, body = m.missed_ranking_mail(facts)
    key = f"missed ranking {facts.business_date}"
    return {
        m.SLACK: deliver(
            context,
            m.SLACK,
            key,
            slack.is_configured(),
            lambda: slack.post(m.missed_ranking_slack_text(facts)),
        ),
        m.MAIL: deliver(context, m.MAIL, key, mail.is_configured(), lambda: mail.send(subject, body)),
        m.PAGERDUTY: deliver(
            context,
            m.PAGERDUTY,
            key,
            pagerduty.is_configured(),
            lambda: pagerduty.trigger(m.missed_ranking_pagerduty(facts, pagerduty.routing_key or "")),
        ),
    }


@dg.sensor(
    name=SENSOR_NAME,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Critical alert (Slack + mail + PagerDuty) when the rankings of D = yesterday (JST) are not "
    "committed by the deadline (RANKING_RANKINGS_DEADLINE_JST, default the gate's give-up time 09:00 JST), "
    "naming why: the days of W(D) not aggregated, the batch's failed run and step, or that nothing started. "
    "Once per date (the cursor keeps the last date alerted).",
)
def alert_on_missed_ranking(
    context: dg.SensorEvaluationContext,
    database: RankingDatabase,
    batch_gate: BatchGate,
    clock: Clock,
    slack: BatchSlackResource,
    mail: AlertMailer,
    pagerduty: PagerDutyEvents,
    dagster_ui: DagsterUi,
) -> dg.SkipReason:
    now = clock.now().astimezone(JST)
    try:
        business_date = BusinessDate.from_tick(now).day
    except BusinessDateError as error:  # yesterday is before the first business date: no ranking is due
        return dg.SkipReason(str(error))
    deadline = dt.datetime.combine(now.date(), batch_gate.rankings_deadline(), tzinfo=JST)
    if now < deadline:
        return dg.SkipReason(f"the rankings of {business_date} are due by {deadline:%H:%M} JST")
    if context.cursor == business_date.isoformat():
        return dg.SkipReason(f"the missed rankings of {business_date} were alerted already")
    try:
        with database.engine().connect() as connection:
            ranked = partition_runs_for(connection, RANKINGS_ASSET, [business_date]).get(
                (business_date, "all")
            )
            missing = missing_aggregate_days(connection, business_date)
    except Exception as error:  # the next tick looks again
        why = explain_database_error(error, database.describe())
        return dg.SkipReason(f"cannot check the rankings of {business_date}: {why}")
    if ranked is not None and ranked.status == COMPLETED:
        return dg.SkipReason(f"the rankings of {business_date} are committed (run {ranked.run_id})")
    reason, run = why_not_ranked(context.instance, dagster_ui, missing, business_date)
    facts = m.MissedRankingFacts(
        business_date=business_date.isoformat(),
        deadline=f"{deadline:%H:%M} JST on {deadline:%Y-%m-%d}",
        reason=reason,
        run_id=run.run_id if run else None,
        run_url=dagster_ui.run_url(run.run_id) if run else None,
    )
    outcome = _page(context, facts, slack, mail, pagerduty)
    context.update_cursor(business_date.isoformat())  # once per date, whatever the channels did
    context.log.error(f"{m.missed_ranking_title(facts)}: {reason}")
    return dg.SkipReason(f"alerted: {m.missed_ranking_title(facts)} ({reason}); {outcome}")
