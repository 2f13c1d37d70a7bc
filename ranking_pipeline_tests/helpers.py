"""Small builders for hand-made input data and for reading results back."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import dagster as dg
import sqlalchemy as sa

from ranking_pipeline.batch_runner import BatchSummary, run_batch
from ranking_pipeline.definitions import defs
from ranking_pipeline.lib.dates import JST
from ranking_pipeline.lib.seed import create_input_tables


def jst(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0):
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=JST)


def load_inputs(engine: sa.Engine, users: list[tuple[int, str]], orders: list[tuple]) -> None:
    """users: (user_id, status); orders: (user_id, amount text, status, ordered_at)."""
    create_input_tables(engine)
    with engine.begin() as connection:
        if users:
            connection.execute(
                sa.text("INSERT INTO users VALUES (:id, :name, :status, now())"),
                [{"id": uid, "name": f"u{uid}", "status": status} for uid, status in users],
            )
        if orders:
            connection.execute(
                sa.text(
                    "INSERT INTO orders VALUES (:order_id, :user_id, CAST(:amount AS numeric), :status, :at)"
                ),
                [
                    {"order_id": i, "user_id": uid, "amount": amount, "status": status, "at": at}
                    for i, (uid, amount, status, at) in enumerate(orders, start=1)
                ],
            )


def run_date(instance: dg.DagsterInstance, business_date: dt.date, *, force: bool = False) -> BatchSummary:
    return run_batch(defs(), instance, business_date, force=force)


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict:
    """The metadata of the asset's newest materialization, as plain values."""
    record = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records[0]
    return {key: value.value for key, value in record.asset_materialization.metadata.items()}


def run_log_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def rankings_rows(engine: sa.Engine, business_date: dt.date) -> list[tuple[int, int, Decimal, int]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.text(
                    "SELECT rank, user_id, score, order_count FROM rankings WHERE ranking_date = :d "
                    "ORDER BY rank, user_id"
                ),
                {"d": business_date},
            )
        ]


def table_rows(engine: sa.Engine, table: str, order_by: str) -> list[tuple]:
    with engine.connect() as connection:
        statement = f"SELECT * FROM {table} ORDER BY {order_by}"  # noqa: S608 - names come from the test
        return [tuple(row) for row in connection.exec_driver_sql(statement)]
