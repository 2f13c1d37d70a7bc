"""The input tables `users` and `orders`, owned upstream, and the data contract as blocking checks on them."""

import dagster as dg

from ranking_pipeline.constants import ASSET_GROUP, ORDERS_CONTRACT_CHECK, USERS_CONTRACT_CHECK
from ranking_pipeline.defs.assets._shared import column_schema
from ranking_pipeline.defs.resources import RankingDatabase
from ranking_pipeline.lib.business_date import dates_of_run_tags, last_complete_day
from ranking_pipeline.lib.contract import order_defects, user_defects

UPSTREAM_OWNERS = ["team:upstream-orders"]

users = dg.AssetSpec(
    "users",
    description=(
        "Every user, owned upstream and read only here. The contract: user_id BIGINT PRIMARY KEY, name TEXT "
        "NOT "
        "NULL, status TEXT NOT NULL in ('active', 'suspended', 'deleted'), created_at TIMESTAMPTZ NOT NULL. "
        "Only existing, active users are ranked."
    ),
    group_name=ASSET_GROUP,
    owners=UPSTREAM_OWNERS,
    kinds={"postgres"},
    metadata={
        "dagster/table_name": "users",
        "dagster/column_schema": column_schema(
            ("user_id", "BIGINT", "primary key"),
            ("name", "TEXT", "NOT NULL"),
            ("status", "TEXT", "NOT NULL: active, suspended or deleted"),
            ("created_at", "TIMESTAMPTZ", "NOT NULL"),
        ),
    },
)

orders = dg.AssetSpec(
    "orders",
    description=(
        "Every order, owned upstream and read only here (by BATCH-000, one JST day at a time). The contract: "
        "order_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL (no foreign key: unknown users are scored, "
        "never "
        "ranked), amount NUMERIC(12,2) NOT NULL, status TEXT NOT NULL in ('completed', 'cancelled', "
        "'refunded'), ordered_at TIMESTAMPTZ NOT NULL."
    ),
    group_name=ASSET_GROUP,
    owners=UPSTREAM_OWNERS,
    kinds={"postgres"},
    metadata={
        "dagster/table_name": "orders",
        "dagster/column_schema": column_schema(
            ("order_id", "BIGINT", "primary key"),
            ("user_id", "BIGINT", "NOT NULL"),
            ("amount", "NUMERIC(12,2)", "NOT NULL, exact to the cent"),
            ("status", "TEXT", "NOT NULL: completed, cancelled or refunded"),
            ("ordered_at", "TIMESTAMPTZ", "NOT NULL; its JST day is the order's day"),
        ),
    },
)


def _result(defects, where: str, rows_note: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not defects,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(defect.describe() for defect in defects) or f"{where}: {rows_note}",
        metadata={defect.what: defect.rows for defect in defects},
    )


@dg.asset_check(asset="orders", name=ORDERS_CONTRACT_CHECK, blocking=True)
def orders_meet_the_contract(context: dg.AssetCheckExecutionContext, database: RankingDatabase):
    """The orders of the days being aggregated (in a BATCH-000 run: its days; run alone: yesterday, JST) have
    no NULLs, only the contract's statuses and at most 2 decimals. ERROR and blocking: BATCH-000 does not
    aggregate orders that fail it."""
    days = dates_of_run_tags(dict(context.run.tags)) or [last_complete_day()]
    with database.ready_engine().connect() as connection:
        defects = order_defects(connection, days[0], days[-1])
    return _result(defects, f"orders of {days[0]} .. {days[-1]}", "meet the contract")


@dg.asset_check(asset="users", name=USERS_CONTRACT_CHECK, blocking=True)
def users_meet_the_contract(context: dg.AssetCheckExecutionContext, database: RankingDatabase):
    """Every user row has no NULLs, a contract status and a user_id of its own. ERROR and blocking: the
    rankings are not replaced from users that fail it."""
    with database.ready_engine().connect() as connection:
        defects = user_defects(connection)
    return _result(defects, "users", "meet the contract")
