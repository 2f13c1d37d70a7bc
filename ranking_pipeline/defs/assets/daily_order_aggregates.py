import time

import dagster as dg

from ranking_pipeline.constants import ASSET_GROUP, BATCH_000_PROCESS_ID, OWNERS
from ranking_pipeline.defs.assets._shared import BATCH_RETRY_POLICY, batch_step, column_schema
from ranking_pipeline.defs.partitions import daily_jst_partitions
from ranking_pipeline.defs.resources import BatchLockResource, RankingDatabase
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
    context: dg.AssetExecutionContext, database: RankingDatabase, batch_lock: BatchLockResource
) -> dg.MaterializeResult:
    """BATCH-000: completed orders per user per JST day, from `orders`.

    One partition per JST calendar day (00:00 JST up to the next 00:00 JST). A user with at least one
    completed order that day gets one row: how many and their exact sum; cancelled and refunded orders are
    ignored and user status is not looked at. Materializing a day replaces that day as a whole; several days
    (a backfill) are computed in one run and one pass over `orders`. Holds the lock batch:lock:BATCH-000.
    """
    days = sorted(parse_business_date(key, source="partition key") for key in context.partition_keys)
    span = f"{days[0]} .. {days[-1]}"
    engine = database.ready_engine()
    lock = batch_lock.for_process(BATCH_000_PROCESS_ID, engine)
    started = time.monotonic()
    with batch_step(context, BATCH_000_PROCESS_ID, lock, {"jst_days": span, "day_count": len(days)}) as step:
        with batch_transaction(engine, f"aggregating the orders of {span}") as connection:
            rows_per_day = replace_daily_aggregates(connection, days[0], days[-1])
            for day in days:
                mark_completed(
                    connection, AGGREGATES_ASSET, day, day.isoformat(), context.run.run_id, rows_per_day[day]
                )
            step.fence(connection)
        for day in days:
            context.log.info(
                f"daily_order_aggregates {day}: {rows_per_day[day]:,} users with completed orders"
            )
        step.processed = total = sum(rows_per_day[day] for day in days)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "days": dg.MetadataValue.text(f"{span} ({len(days)} day(s))"),
            "rows_per_day": dg.MetadataValue.md(
                "| JST day | users with completed orders |\n|---|---|\n"
                + "\n".join(f"| {day} | {rows_per_day[day]:,} |" for day in days)
            ),
            "duration_seconds": round(time.monotonic() - started, 3),
        }
    )
