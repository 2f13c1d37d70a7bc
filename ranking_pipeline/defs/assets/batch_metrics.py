import datetime as dt
from collections import defaultdict

import dagster as dg

from ranking_pipeline.constants import ASSET_GROUP, BATCH_001_JOBS, OWNERS, SCORED_BY_TAG
from ranking_pipeline.dagster_internals import get_current_datetime
from ranking_pipeline.defs.resources import RankingDatabase
from ranking_pipeline.lib import metrics
from ranking_pipeline.lib.business_date import JST

RUN_HISTORY_LIMIT = 5000


def _batch_facts(instance: dg.DagsterInstance) -> list[metrics.RunFact]:
    """One fact per BATCH-001 batch (its scoring and ranking runs together; a run outside a batch alone)."""
    by_batch: dict[str, list[dg.RunRecord]] = defaultdict(list)
    for job_name in BATCH_001_JOBS:
        for record in instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=RUN_HISTORY_LIMIT):
            by_batch[record.dagster_run.tags.get(SCORED_BY_TAG) or record.dagster_run.run_id].append(record)

    def when(timestamp: float | None) -> dt.datetime | None:
        return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC) if timestamp else None

    facts = []
    for batch_id, records in by_batch.items():
        statuses = {r.dagster_run.status.value for r in records}
        status = next(
            (s for s in ("FAILURE", "CANCELED", "STARTED", "QUEUED", "STARTING") if s in statuses), "SUCCESS"
        )
        starts = [r.start_time for r in records if r.start_time]
        ends = [r.end_time for r in records if r.end_time]
        finished = status in ("SUCCESS", "FAILURE", "CANCELED")
        facts.append(
            metrics.RunFact(
                batch_id,
                status,
                when(min(starts) if starts else None),
                when(max(ends) if ends and finished else None),
            )
        )
    return facts


@dg.asset(
    owners=OWNERS,
    group_name=ASSET_GROUP,
    kinds={"dagster", "postgres"},
)
def batch_metrics(context: dg.AssetExecutionContext, database: RankingDatabase) -> dg.MaterializeResult:
    """Design 6.3 metrics of BATCH-001: runs per day, mean run time over the last 30 days, failure rate per
    month and the processed-count trend by ISO week, with a small chart shown inline.

    Run figures come from this Dagster instance's history of BATCH-001 batches (a batch is its scoring run
    and its ranking run; JST days and months of its start); processed counts from the management table
    `ranking_partition_runs` (users scored and ranked per business date). Each materialization records the
    headline numbers as metadata, which the asset's Plots tab draws over time; materialize it from the UI
    whenever you want fresh figures.
    """
    runs = _batch_facts(context.instance)
    with database.ready_engine().connect() as connection:
        processed = metrics.read_processed(connection)
    now = get_current_datetime()  # (a test can freeze it)
    per_day = metrics.runs_per_day(runs)
    mean_seconds = metrics.mean_duration_seconds(runs, now)
    per_month = metrics.failure_rate_by_month(runs)
    per_week = metrics.processed_by_week(processed)
    this_month = per_month.get(now.astimezone(JST).strftime("%Y-%m"), metrics.MonthRate(0, 0))
    last_week = list(per_week.values())[-1] if per_week else metrics.WeekCount(0, 0, 0)
    tables = metrics.markdown_tables(per_day, per_month, per_week)
    context.log.info(
        f"batch_metrics: {len(runs)} BATCH-001 batch(es), {len(processed)} business date(s) processed"
    )
    return dg.MaterializeResult(
        metadata={
            "chart": dg.MetadataValue.md(
                metrics.chart_markdown(per_day, per_week, now.astimezone(JST).date())
            ),
            **{name: dg.MetadataValue.md(table) for name, table in tables.items()},
            "runs_recorded": len(runs),
            "runs_today_jst": per_day.get(now.astimezone(JST).date(), 0),
            **({"mean_duration_seconds_30d": round(mean_seconds, 3)} if mean_seconds is not None else {}),
            "failure_rate_this_month": round(this_month.rate, 4),
            "users_scored_latest_week": last_week.users_scored,
        }
    )
