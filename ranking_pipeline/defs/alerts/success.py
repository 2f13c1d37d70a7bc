"""The completion notice to Slack once a batch has committed the rankings of D."""

from __future__ import annotations

import dagster as dg

from ranking_pipeline.constants import BATCH_ID_TAG
from ranking_pipeline.defs.alerts._delivery import deliver
from ranking_pipeline.defs.batch_runs import batch_started_at
from ranking_pipeline.defs.jobs import batch_001_rankings_job
from ranking_pipeline.defs.notification_resources import BatchSlackResource, DagsterUi
from ranking_pipeline.defs.resources import RankingDatabase
from ranking_pipeline.lib.business_date import dates_of_run_tags
from ranking_pipeline.lib.notify import messages as m
from ranking_pipeline.lib.notify.rank_movers import previous_ranked, rank_movers, ranked_count


@dg.run_status_sensor(
    name="notify_on_batch_success",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[batch_001_rankings_job],
    description="Completion notice to Slack once a BATCH-001 batch has committed the rankings of D: date, "
    "rows ranked, the batch's duration, biggest rank movers.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def notify_on_batch_success(
    context: dg.RunStatusSensorContext,
    slack: BatchSlackResource,
    database: RankingDatabase,
    dagster_ui: DagsterUi,
) -> None:
    run = context.dagster_run
    record = context.instance.get_run_record_by_id(run.run_id)
    batch_id = run.tags.get(BATCH_ID_TAG)
    started = (batch_started_at(context.instance, batch_id) if batch_id else None) or (
        record.start_time if record else None
    )
    duration = record.end_time - started if record and record.end_time and started else None

    def post(business_date) -> None:
        with database.engine().connect() as connection:
            rows = ranked_count(connection, business_date)
            previous = previous_ranked(connection, business_date)
            climbers, fallers = rank_movers(connection, business_date, previous[0]) if previous else ([], [])
        facts = m.CompletionFacts(
            run_id=run.run_id,
            business_date=business_date.isoformat(),
            run_url=dagster_ui.run_url(run.run_id),
            rows_ranked=rows,
            duration_seconds=duration,
            previous_date=previous[0] if previous else None,
            previous_rows=previous[1] if previous else 0,
            climbers=climbers,
            fallers=fallers,
        )
        slack.post(m.completion_slack_text(facts))

    for business_date in dates_of_run_tags(dict(run.tags)):
        deliver(context, m.SLACK, run.run_id, slack.is_configured(), lambda day=business_date: post(day))
