"""The completion notice to Slack once a batch has committed the rankings of D."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from ranking_pipeline.defs.alerts._delivery import deliver
from ranking_pipeline.defs.batch_runs import batch_started_at
from ranking_pipeline.defs.explained_ticks import left_alone, ticks_explained
from ranking_pipeline.defs.jobs import batch_001_rankings_job
from ranking_pipeline.defs.notification_resources import BatchSlackResource, DagsterUi
from ranking_pipeline.defs.resources import RankingDatabase
from ranking_pipeline.lib.business_date import dates_of_run_tags
from ranking_pipeline.lib.checks import previous_ranking_count
from ranking_pipeline.lib.db import explain_database_error
from ranking_pipeline.lib.notify import messages as m
from ranking_pipeline.lib.notify.rank_movers import rank_movers

RANKINGS = dg.AssetKey("rankings")


@ticks_explained(f"no run of {batch_001_rankings_job.name} has succeeded since the last tick")
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
    started = batch_started_at(context.instance, run)
    duration = record.end_time - started if record and record.end_time and started else None

    committed = {
        record.asset_materialization.partition: record.asset_materialization.metadata
        for record in context.instance.fetch_materializations(RANKINGS, limit=50).records
        if record.run_id == run.run_id
    }

    def post(business_date) -> None:
        facts = m.CompletionFacts(
            run_id=run.run_id,
            business_date=business_date.isoformat(),
            run_url=dagster_ui.run_url(run.run_id),
            rows_ranked=committed[business_date.isoformat()]["dagster/row_count"].value,
            duration_seconds=duration,
        )
        try:  # the comparison needs the database; the notice goes out without it if it is unreachable
            with database.engine().connect() as connection:
                previous = previous_ranking_count(connection, business_date)
                climbers, fallers = (
                    rank_movers(connection, business_date, previous[0]) if previous else ([], [])
                )
            facts = replace(
                facts,
                previous_date=previous[0] if previous else None,
                previous_rows=previous[1] if previous else 0,
                climbers=climbers,
                fallers=fallers,
            )
        except Exception as error:
            context.log.warning(f"completion notice for run {run.run_id} without rank movers: {error!r}")
            facts = replace(facts, unavailable=explain_database_error(error, database.describe()))
        slack.post(m.completion_slack_text(facts))

    ranked_dates = [day for day in dates_of_run_tags(dict(run.tags)) if day.isoformat() in committed]
    if not ranked_dates:
        left_alone(context, "no completion notice: it committed no rankings")
        return
    for business_date in ranked_dates:
        deliver(context, m.SLACK, run.run_id, slack.is_configured(), lambda day=business_date: post(day))
