"""rankings_checks_job: the checks of rankings for the business dates you pick in the UI, without re-ranking.

Dagster 1.13 cannot run the checks of a partitioned asset on their own for a date: on the asset's Checks tab
*Execute* is disabled for partitioned assets, and an asset job that selects only checks gets no partitions
(the job's partitions come from its selected assets). This job is partitioned by business date instead: its
one step reads the committed rankings of its date and reports both checks' results against `rankings` for
that date, naming the materialization they evaluated, so they show on the Checks tab like the batch's own.
It reads and never writes; it is not the batch, so its failures never alert.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from ranking_pipeline.constants import RANKINGS_CHECKS_JOB
from ranking_pipeline.defs.assets.rankings import (
    ANOMALY_KEY,
    INTEGRITY_KEY,
    NO_DATE,
    RankingsConfig,
    rankings_check_evaluations,
)
from ranking_pipeline.defs.partitions import business_date_partitions
from ranking_pipeline.defs.resources import RankingDatabase
from ranking_pipeline.lib.business_date import BusinessDate
from ranking_pipeline.lib.queries import count_rows
from ranking_pipeline.lib.schema import rankings as rankings_table


def nothing_to_check(business_date: dt.date) -> str:
    return (
        f"no rankings of {business_date} are committed, so there is nothing to check: rank the date first "
        f"(rankings > Materialize..., or `ranking-pipeline run --date {business_date}`); nothing was written"
    )


@dg.op(
    out={},
    description="Evaluates rankings_integrity and rankings_row_count_anomaly on the committed rankings of "
    "the run's business date and reports them against rankings for that date. Reads only.",
)
def check_rankings_of_date(
    context: dg.OpExecutionContext, config: RankingsConfig, database: RankingDatabase
) -> Iterator[dg.AssetCheckEvaluation]:
    if not context.has_partition_key:
        raise dg.Failure(description=NO_DATE, allow_retries=False)
    business_date = BusinessDate.from_partition_key(context.partition_key).day
    with database.ready_engine().connect() as connection:
        ranked = count_rows(connection, rankings_table, "ranking_date", business_date)
    if not ranked:
        raise dg.Failure(description=nothing_to_check(business_date), allow_retries=False)
    context.log.info(f"rankings {business_date}: checking {ranked:,} ranked users (read only)")
    yield from rankings_check_evaluations(
        context, database, config.row_count_anomaly_threshold, business_date, (INTEGRITY_KEY, ANOMALY_KEY)
    )


@dg.job(
    name=RANKINGS_CHECKS_JOB,
    partitions_def=business_date_partitions,
    executor_def=dg.in_process_executor,
    description="The checks of rankings for the business dates you pick, without re-ranking them: "
    "Launchpad, pick the date under Partition, Launch Run (several dates: Partitions tab, Launch "
    "backfill..., one run per date). Each run reports rankings_integrity and rankings_row_count_anomaly for "
    "its date on rankings' Checks tab. Reads only; never alerts (a failed integrity check fails the run, and "
    "shows on the tab).",
)
def rankings_checks_job():
    check_rankings_of_date()
