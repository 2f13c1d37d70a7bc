"""The management table (design 5.2): what was computed for which business date, by which run.

One row per (asset, business date, partition key) in ``ranking_partition_runs``: status ``running`` →
``completed`` or ``failed``, the run id, rows written, the inputs' fingerprint, times and the error. A
completed row is written in the same transaction as the data it describes, so the two never disagree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from ranking_pipeline.lib.schema import partition_runs

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
AGGREGATES_ASSET = "daily_order_aggregates"
USER_SCORES_ASSET = "user_scores"
RANKINGS_ASSET = "rankings"


@dataclass(frozen=True)
class PartitionRun:
    partition_key: str
    run_id: str
    status: str
    row_count: int | None
    input_fingerprint: str | None
    finished_at: dt.datetime | None
    error: str | None
    range_cut: int | None = None  # user_scores: the cut of user-ID ranges it was computed under


def _now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


def _upsert(connection: Connection, values: dict) -> None:
    statement = insert(partition_runs).values(**values)
    update = {
        key: statement.excluded[key]
        for key in values
        if key not in ("asset", "business_date", "partition_key")
    }
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["asset", "business_date", "partition_key"], set_=update
        )
    )


def mark_running(engine: Engine, asset: str, business_date: dt.date, partition_key: str, run_id: str) -> None:
    with engine.begin() as connection:
        _upsert(
            connection,
            {
                "asset": asset,
                "business_date": business_date,
                "partition_key": partition_key,
                "run_id": run_id,
                "status": RUNNING,
                "row_count": None,
                "input_fingerprint": None,
                "started_at": _now(),
                "finished_at": None,
                "error": None,
            },
        )


def mark_completed(
    connection: Connection,
    asset: str,
    business_date: dt.date,
    partition_key: str,
    run_id: str,
    row_count: int,
    input_fingerprint: str | None = None,
    **extra,
) -> None:
    """Record success inside the caller's transaction (the one that wrote the data); ``extra``: more columns
    (e.g. an aggregated day's max_total_amount and max_order_count)."""
    statement = (
        sa.update(partition_runs)
        .where(
            partition_runs.c.asset == asset,
            partition_runs.c.business_date == business_date,
            partition_runs.c.partition_key == partition_key,
        )
        .values(
            run_id=run_id,
            status=COMPLETED,
            row_count=row_count,
            input_fingerprint=input_fingerprint,
            finished_at=_now(),
            error=None,
            **extra,
        )
    )
    if connection.execute(statement).rowcount == 0:
        _upsert(
            connection,
            {
                "asset": asset,
                "business_date": business_date,
                "partition_key": partition_key,
                "run_id": run_id,
                "status": COMPLETED,
                "row_count": row_count,
                "input_fingerprint": input_fingerprint,
                "started_at": _now(),
                "finished_at": _now(),
                "error": None,
                **extra,
            },
        )


def mark_failed(
    engine: Engine, asset: str, business_date: dt.date, partition_key: str, run_id: str, error: str
) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.update(partition_runs)
            .where(
                partition_runs.c.asset == asset,
                partition_runs.c.business_date == business_date,
                partition_runs.c.partition_key == partition_key,
                partition_runs.c.run_id == run_id,
            )
            .values(status=FAILED, finished_at=_now(), error=error[:4000])
        )


def partition_runs_for(connection: Connection, asset: str, business_dates: list[dt.date]) -> dict:
    """{(business_date, partition_key): PartitionRun} for the asset on those dates."""
    rows = connection.execute(
        sa.select(
            partition_runs.c.business_date,
            partition_runs.c.partition_key,
            partition_runs.c.run_id,
            partition_runs.c.status,
            partition_runs.c.row_count,
            partition_runs.c.input_fingerprint,
            partition_runs.c.finished_at,
            partition_runs.c.error,
            partition_runs.c.range_cut,
        ).where(partition_runs.c.asset == asset, partition_runs.c.business_date.in_(business_dates))
    )
    return {(row[0], row[1]): PartitionRun(*row[1:]) for row in rows}


def aggregates_fingerprint(connection: Connection, window: list[dt.date]) -> str:
    """A digest of which aggregate run produced each day of the window: changes whenever a day is redone."""
    runs = partition_runs_for(connection, AGGREGATES_ASSET, window)
    parts = []
    for day in window:
        run = runs.get((day, day.isoformat()))
        done = run is not None and run.status == COMPLETED
        parts.append(f"{day}:{run.run_id}:{run.finished_at.isoformat()}" if done else f"{day}:-")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def completed_days(connection: Connection, days: list[dt.date]) -> set[dt.date]:
    runs = partition_runs_for(connection, AGGREGATES_ASSET, days)
    return {day for day in days if (run := runs.get((day, day.isoformat()))) and run.status == COMPLETED}


def forget_dates_before(connection: Connection, cutoff: dt.date, assets: tuple[str, ...]) -> None:
    """Delete the state rows of ``assets`` for dates before ``cutoff``, whose rows retention has dropped."""
    connection.execute(
        sa.delete(partition_runs).where(
            partition_runs.c.asset.in_(assets), partition_runs.c.business_date < cutoff
        )
    )
