import datetime as dt
import time

import dagster as dg
import sqlalchemy as sa

from ranking_pipeline.constants import ASSET_GROUP, BATCH_000_PROCESS_ID, ORDERS_CONTRACT_CHECK, OWNERS
from ranking_pipeline.defs.assets._shared import (
    BATCH_RETRY_POLICY,
    batch_step,
    column_schema,
    failures_classified,
    run_includes_check,
)
from ranking_pipeline.defs.partitions import aggregation_day_partitions
from ranking_pipeline.defs.resources import BatchLockResource, RankingDatabase
from ranking_pipeline.lib.business_date import check_aggregation_days, dates_of_partition_keys
from ranking_pipeline.lib.contract import daily_overflow, order_defects, raise_if_defects
from ranking_pipeline.lib.queries import batch_transaction, replace_daily_aggregates
from ranking_pipeline.lib.state import AGGREGATES_ASSET, mark_completed

AGGREGATES_KEY = dg.AssetKey("daily_order_aggregates")
ORDERS_CONTRACT_KEY = dg.AssetCheckKey(dg.AssetKey("orders"), ORDERS_CONTRACT_CHECK)
NUMERIC_OVERFLOW = "22003"


@dg.asset(
    partitions_def=aggregation_day_partitions,
    deps=["orders"],
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
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
):
    """BATCH-000: completed orders per user per JST day, from `orders`.

    One partition per JST calendar day (00:00 JST up to the next 00:00 JST); a day that has not ended is not
    a partition. A user with at least one completed order that day gets one row: how many and their exact
    sum; cancelled and refunded orders are ignored and user status is not looked at. Materializing a day
    always re-reads `orders` and replaces that day as a whole; several days (a backfill) are computed in one
    run and one pass over `orders`, and each day reports its own row count. Holds the lock
    batch:lock:BATCH-000.
    """
    with failures_classified():
        days = dates_of_partition_keys(list(context.partition_keys))
        engine = database.ready_engine()
        rows_per_day, seconds = aggregate_span(context, engine, batch_lock, days)
        for day in days:
            yield aggregates_materialization(day, rows_per_day[day], len(days), seconds)


def aggregate_span(
    context: dg.AssetExecutionContext, engine, batch_lock: BatchLockResource, days: list[dt.date]
) -> tuple[dict[dt.date, int], float]:
    """Replace the aggregates of the JST days ``days`` (contiguous) from orders, in one transaction under the
    lock batch:lock:BATCH-000, once those orders meet the contract, and record them as completed by this run;
    (rows per day, seconds)."""
    check_aggregation_days(days[0], days[-1])
    span = f"{days[0]} .. {days[-1]}"
    if not run_includes_check(context, ORDERS_CONTRACT_KEY):  # else that blocking check has just passed
        with engine.connect() as connection:
            raise_if_defects(order_defects(connection, days[0], days[-1]), f"the orders of {span}")
    lock = batch_lock.for_process(BATCH_000_PROCESS_ID, engine)
    started = time.monotonic()
    with batch_step(context, BATCH_000_PROCESS_ID, lock, {"jst_days": span, "day_count": len(days)}) as step:
        try:
            with batch_transaction(engine, f"aggregating the orders of {span}") as connection:
                written = replace_daily_aggregates(connection, days[0], days[-1])
                for day, aggregated in written.items():
                    mark_completed(
                        connection,
                        AGGREGATES_ASSET,
                        day,
                        day.isoformat(),
                        context.run.run_id,
                        aggregated.rows,
                        max_total_amount=aggregated.max_total_amount,
                        max_order_count=aggregated.max_order_count,
                    )
                step.fence(connection)
        except sa.exc.DataError as error:
            if getattr(error.orig, "pgcode", None) != NUMERIC_OVERFLOW:
                raise
            with engine.connect() as connection:
                raise_if_defects(daily_overflow(connection, days[0], days[-1]), f"the orders of {span}")
            raise
        step.processed = sum(aggregated.rows for aggregated in written.values())
    for day in days:
        context.log.info(f"daily_order_aggregates {day}: {written[day].rows:,} users with completed orders")
    return {day: aggregated.rows for day, aggregated in written.items()}, round(time.monotonic() - started, 3)


def aggregates_materialization(
    day: dt.date, rows: int, days_in_run: int, seconds: float
) -> dg.AssetMaterialization:
    return dg.AssetMaterialization(
        asset_key=AGGREGATES_KEY,
        partition=day.isoformat(),
        metadata={
            "dagster/row_count": rows,
            "jst_day": dg.MetadataValue.text(day.isoformat()),
            "days_in_this_run": days_in_run,
            "run_seconds": seconds,
        },
    )
