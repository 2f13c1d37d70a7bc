import time

import dagster as dg

from ranking_pipeline.constants import ASSET_GROUP, OWNERS
from ranking_pipeline.defs.assets._shared import BATCH_RETRY_POLICY, column_schema
from ranking_pipeline.defs.partitions import daily_jst_partitions
from ranking_pipeline.defs.resources import RankingDatabase
from ranking_pipeline.lib.dates import parse_business_date
from ranking_pipeline.lib.queries import batch_transaction, replace_daily_aggregates
from ranking_pipeline.lib.state import AGGREGATES_ASSET, mark_completed


@dg.asset(
    partitions_def=daily_jst_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=BATCH_RETRY_POLICY,
    owners=OWNERS,
    group_name=ASSET_GROUP,
    kinds={"postgres", "sql"},
    metadata={
        "dagster/table_name": "daily_order_aggregates",
        "dagster/column_schema": column_schema(
            ("agg_date", "DATE", "JST calendar day of the orders (primary key, with user_id)"),
            ("user_id", "BIGINT", "user who placed the orders"),
            ("order_count", "INT", "completed orders that day"),
            ("total_amount", "NUMERIC(14,2)", "exact sum of the completed orders' amounts"),
        ),
    },
)
def daily_order_aggregates(
    context: dg.AssetExecutionContext, database: RankingDatabase
) -> dg.MaterializeResult:
    """BATCH-000: completed orders per user per JST day, from `orders`.

    One partition per JST calendar day (00:00 JST up to the next 00:00 JST). A user with at least one
    completed order that day gets one row: how many and their exact sum; cancelled and refunded orders are
    ignored and user status is not looked at. Materializing a day replaces that day as a whole; several days
    (a backfill) are computed in one run and one pass over `orders`.
    """
    days = sorted(parse_business_date(key, source="partition key") for key in context.partition_keys)
    engine = database.ready_engine()
    started = time.monotonic()
    with batch_transaction(engine) as connection:
        rows_per_day = replace_daily_aggregates(connection, days[0], days[-1])
        for day in days:
            mark_completed(
                connection, AGGREGATES_ASSET, day, day.isoformat(), context.run.run_id, rows_per_day[day]
            )
    seconds = time.monotonic() - started
    total = sum(rows_per_day[day] for day in days)
    context.log.info(f"daily_order_aggregates: {total} rows for {len(days)} JST day(s) in {seconds:.2f} s")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "days": dg.MetadataValue.text(f"{days[0]} .. {days[-1]} ({len(days)} day(s))"),
            "rows_per_day": dg.MetadataValue.md(
                "| JST day | users with completed orders |\n|---|---|\n"
                + "\n".join(f"| {day} | {rows_per_day[day]:,} |" for day in days)
            ),
            "duration_seconds": round(seconds, 3),
        }
    )
