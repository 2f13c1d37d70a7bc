"""The output tables' physical layout: `user_scores` and `rankings` are partitioned by date.

Each business date lives in its own PostgreSQL partition (``rankings_20261127`` holds ranking_date
2026-11-27), plus a DEFAULT partition (``rankings_default``) for rows of dates that have none: another
writer's rows (BATCH-003) or the rows of a table created by a release before partitioning, which becomes
that DEFAULT partition as it is. Why:

- The nightly batch touches one date: with a partition per date its reads, writes and index builds cost the
  rows of that date, however many dates the table holds (issue 12: no slower after a year of history).
- The rankings of D are replaced by building the new rows in a table of their own, indexing them once and
  swapping that table in for D's partition (`replace_date_partition`), in one transaction: readers see the
  old ranking until the commit and the new one after it, never a mix or nothing, as with DELETE + INSERT,
  without the index churn and dead rows of deleting and re-inserting a million rows.
- Retention drops whole partitions (`drop_dates_before`): no DELETE of millions of rows, no bloat, no vacuum.

Partition names are ``<table>_<YYYYMMDD>``; each per-date partition also carries a CHECK constraint on its
date, so attaching it needs no scan of its rows. All DDL here runs inside the caller's transaction. Table,
column and partition names in the SQL come only from the two PartitionedTable constants and dates (never
from input); values are bind parameters.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ranking_pipeline.lib import settings

RETENTION_DAYS_ENV = "RANKING_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = int(settings.default("RANKING_RETENTION_DAYS"))

# Serializes partition creation across sessions (two ranges or two runs creating D's partition at once).
_PARTITION_ADVISORY_LOCK_ID = 0x52414E50  # "RANP"
_DATE_CHECK = "partition_date"  # the CHECK constraint's name on each per-date partition


@dataclass(frozen=True)
class PartitionedTable:
    name: str
    date_column: str

    @property
    def default_partition(self) -> str:
        return f"{self.name}_default"

    def partition(self, day: dt.date) -> str:
        return f"{self.name}_{day:%Y%m%d}"


USER_SCORES = PartitionedTable("user_scores", "score_date")
RANKINGS = PartitionedTable("rankings", "ranking_date")
PARTITIONED_TABLES = {table.name: table for table in (USER_SCORES, RANKINGS)}


def retention_days(environ: dict[str, str] | None = None) -> int:
    """How many business dates of user_scores and rankings are kept: RANKING_RETENTION_DAYS, else 400."""
    value = (os.environ if environ is None else environ).get(RETENTION_DAYS_ENV, "").strip()
    if not value:
        return DEFAULT_RETENTION_DAYS
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"{RETENTION_DAYS_ENV}={value!r}: expected a whole number of business dates of at least 1, "
            f"e.g. {DEFAULT_RETENTION_DAYS}"
        )
    return int(value)


def _table(table: str | PartitionedTable) -> PartitionedTable:
    return table if isinstance(table, PartitionedTable) else PARTITIONED_TABLES[table]


def _exists(connection: Connection, relation: str) -> bool:
    return connection.execute(sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": relation}).scalar()


def _bounds(day: dt.date) -> str:
    # Dates only ever come from datetime.date objects, so their ISO form is a safe literal; DDL takes no
    # bind parameters.
    return f"FROM ('{day.isoformat()}') TO ('{(day + dt.timedelta(days=1)).isoformat()}')"


def _date_check(table: PartitionedTable, day: dt.date) -> str:
    column = table.date_column
    return f"CHECK ({column} >= DATE '{day.isoformat()}' AND {column} < DATE '{day + dt.timedelta(days=1)}')"


def adopt_plain_table(connection: Connection, table: PartitionedTable) -> None:
    """A plain table of ``table``'s name (created by a release before partitioning) is renamed to be its
    DEFAULT partition, rows and key kept; `ensure_default_partition` attaches it once the partitioned table
    exists."""
    kind = connection.execute(
        sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"), {"name": table.name}
    ).scalar()
    if kind == "r":
        connection.execute(sa.text(f"ALTER TABLE {table.name} RENAME TO {table.default_partition}"))
        connection.execute(
            sa.text(f"ALTER INDEX IF EXISTS {table.name}_pkey RENAME TO {table.default_partition}_pkey")
        )


def ensure_default_partition(connection: Connection, table: PartitionedTable) -> None:
    """The partitioned ``table`` has its DEFAULT partition: created empty, or the adopted plain table."""
    attached = connection.execute(
        sa.text("SELECT relispartition FROM pg_class WHERE oid = to_regclass(:name)"),
        {"name": table.default_partition},
    ).scalar()
    if attached is None:
        connection.execute(
            sa.text(f"CREATE TABLE {table.default_partition} PARTITION OF {table.name} DEFAULT")
        )
    elif not attached:
        connection.execute(
            sa.text(f"ALTER TABLE {table.name} ATTACH PARTITION {table.default_partition} DEFAULT")
        )


def _move_out_of_default(connection: Connection, table: PartitionedTable, day: dt.date, target: str) -> None:
    """Rows of ``day`` in the DEFAULT partition move to ``target`` (they would block attaching it)."""
    connection.execute(
        sa.text(
            f"WITH moved AS (DELETE FROM {table.default_partition} WHERE {table.date_column} = :day "  # noqa: S608
            f"RETURNING *) INSERT INTO {target} SELECT * FROM moved"
        ),
        {"day": day},
    )


def ensure_date_partition(connection: Connection, table: str | PartitionedTable, day: dt.date) -> None:
    """Create the partition of ``day`` if it is missing (moving that day's rows out of the DEFAULT
    partition). Attaching takes only a SHARE UPDATE EXCLUSIVE lock on the table: readers and writers of
    other dates go on."""
    table = _table(table)
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PARTITION_ADVISORY_LOCK_ID})
    name = table.partition(day)
    if _exists(connection, name):
        return
    connection.execute(sa.text(f"CREATE TABLE {name} (LIKE {table.name} INCLUDING DEFAULTS)"))
    connection.execute(sa.text(f"ALTER TABLE {name} ADD CONSTRAINT {_DATE_CHECK} {_date_check(table, day)}"))
    _move_out_of_default(connection, table, day, name)
    connection.execute(sa.text(f"ALTER TABLE {table.name} ATTACH PARTITION {name} FOR VALUES {_bounds(day)}"))


def analyze_date(connection: Connection, table: str | PartitionedTable, day: dt.date) -> None:
    """Gather the planner's statistics for the partition of ``day`` (if it has one): a partition written a
    moment ago has none, and the planner would take it for nearly empty."""
    name = _table(table).partition(day)
    if _exists(connection, name):
        connection.execute(sa.text(f"ANALYZE {name}"))


def staging_table(table: str | PartitionedTable, day: dt.date) -> str:
    """The name of the table the next rows of ``day`` are built in before `replace_date_partition`."""
    return f"{_table(table).partition(day)}_next"


def create_staging_table(connection: Connection, table: str | PartitionedTable, day: dt.date) -> str:
    """An empty table shaped like ``table`` (no index yet), to fill with the new rows of ``day``."""
    table = _table(table)
    name = staging_table(table, day)
    connection.execute(sa.text(f"CREATE TABLE {name} (LIKE {table.name} INCLUDING DEFAULTS)"))
    return name


def replace_date_partition(connection: Connection, table: str | PartitionedTable, day: dt.date) -> None:
    """Swap the filled staging table of ``day`` in as the partition of ``day``: its primary key is built
    once over the new rows, the old partition (if any) is detached and dropped, rows of ``day`` in the
    DEFAULT partition are deleted. Inside the caller's transaction: nobody sees the swap before the commit.

    Detaching takes an ACCESS EXCLUSIVE lock on the table until the commit, so readers wait for the swap's
    last milliseconds instead of reading a half-replaced date; the first replace of a date detaches nothing
    and blocks no reader at all."""
    table = _table(table)
    staging, name = staging_table(table, day), table.partition(day)
    connection.execute(
        sa.text(
            f"ALTER TABLE {staging} ADD CONSTRAINT {staging}_pkey "
            f"PRIMARY KEY ({table.date_column}, user_id), "
            f"ADD CONSTRAINT {_DATE_CHECK} {_date_check(table, day)}"
        )
    )
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PARTITION_ADVISORY_LOCK_ID})
    if _exists(connection, name):
        connection.execute(sa.text(f"ALTER TABLE {table.name} DETACH PARTITION {name}"))
        connection.execute(sa.text(f"DROP TABLE {name}"))
    connection.execute(
        sa.text(f"DELETE FROM {table.default_partition} WHERE {table.date_column} = :day"),  # noqa: S608
        {"day": day},
    )
    connection.execute(sa.text(f"ALTER TABLE {staging} RENAME TO {name}"))
    connection.execute(sa.text(f"ALTER INDEX {staging}_pkey RENAME TO {name}_pkey"))
    connection.execute(sa.text(f"ALTER TABLE {table.name} ATTACH PARTITION {name} FOR VALUES {_bounds(day)}"))


_PARTITION_NAME = re.compile(r"^(?P<table>[a-z_]+)_(?P<day>\d{8})$")


def partition_dates(connection: Connection, table: str | PartitionedTable) -> list[dt.date]:
    """The dates that have a partition of their own in ``table``, ascending."""
    table = _table(table)
    names = connection.execute(
        sa.text(
            "SELECT child.relname FROM pg_inherits "
            "JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid "
            "WHERE pg_inherits.inhparent = to_regclass(:table)"
        ),
        {"table": table.name},
    ).scalars()
    dates = []
    for name in names:
        match = _PARTITION_NAME.match(name)
        if match and match["table"] == table.name:
            dates.append(dt.datetime.strptime(match["day"], "%Y%m%d").date())
    return sorted(dates)


def drop_dates_before(
    connection: Connection, table: str | PartitionedTable, cutoff: dt.date
) -> list[dt.date]:
    """Drop every date of ``table`` before ``cutoff``: whole partitions, and such rows left in the DEFAULT
    partition. Returns the partitions' dates dropped. Other dates are untouched."""
    table = _table(table)
    dropped = [day for day in partition_dates(connection, table) if day < cutoff]
    for day in dropped:
        connection.execute(sa.text(f"DROP TABLE {table.partition(day)}"))
    connection.execute(
        sa.text(f"DELETE FROM {table.default_partition} WHERE {table.date_column} < :cutoff"),  # noqa: S608
        {"cutoff": cutoff},
    )
    return dropped
