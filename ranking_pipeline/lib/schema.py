"""Tables: the contract's input tables (read only) and the pipeline's output and state tables."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine

from ranking_pipeline.lib.partitions import PARTITIONED_TABLES, adopt_plain_table, ensure_default_partition

metadata = sa.MetaData()

daily_order_aggregates = sa.Table(
    "daily_order_aggregates",
    metadata,
    sa.Column("agg_date", sa.Date, primary_key=True),
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("order_count", sa.Integer, nullable=False),
    sa.Column("total_amount", sa.Numeric(14, 2), nullable=False),
)

user_scores = sa.Table(
    "user_scores",
    metadata,
    sa.Column("score_date", sa.Date, primary_key=True),
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("order_count", sa.Integer, nullable=False),
    sa.Column("total_amount", sa.Numeric(14, 2), nullable=False),
    sa.Column("score", sa.Numeric(14, 2), nullable=False),
    postgresql_partition_by="RANGE (score_date)",  # one partition per date: lib/partitions.py
)

rankings = sa.Table(
    "rankings",
    metadata,
    sa.Column("ranking_date", sa.Date, primary_key=True),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("score", sa.Numeric(14, 2), nullable=False),
    sa.Column("order_count", sa.Integer, nullable=False),
    postgresql_partition_by="RANGE (ranking_date)",  # one partition per date: lib/partitions.py
)

# The pipeline's own bookkeeping: one row per (asset, business date, partition) it computed, so a retry or a
# re-run can resume and an operator can see what happened (issue: resumable state).
partition_runs = sa.Table(
    "ranking_partition_runs",
    metadata,
    sa.Column("asset", sa.Text, primary_key=True),
    sa.Column("business_date", sa.Date, primary_key=True),
    sa.Column("partition_key", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("row_count", sa.BigInteger),
    sa.Column("input_fingerprint", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("error", sa.Text),
    # aggregated days: the largest per-user sum and count of the day (bounds the window's sums cheaply)
    sa.Column("max_total_amount", sa.Numeric(14, 2)),
    sa.Column("max_order_count", sa.BigInteger),
    # user_scores: the user-ID range cut (ranking_range_cuts.cut_id) the slot was computed under
    sa.Column("range_cut", sa.BigInteger),
)

# Which user IDs each user_scores range slot holds, from a first business date on (lib/ranges.py).
range_cuts = sa.Table(
    "ranking_range_cuts",
    metadata,
    sa.Column("cut_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("first_date", sa.Date, nullable=False, unique=True),
    sa.Column("boundaries", ARRAY(sa.BigInteger), nullable=False),  # the first user ID of slots 2 ... 8
    sa.Column("origin", sa.Text, nullable=False),  # automatic or applied, and what it was computed from
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# The PostgreSQL backend of the batch lock (lib/lock.py): one row per lock key.
batch_locks = sa.Table(
    "ranking_batch_locks",
    metadata,
    sa.Column("lock_key", sa.Text, primary_key=True),
    sa.Column("token", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
)

# Columns added after the first release, for databases created by it: (table, column, type).
_ADDED_COLUMNS = (
    ("ranking_batch_locks", "lease_until", "TIMESTAMPTZ"),
    ("ranking_partition_runs", "max_total_amount", "NUMERIC(14,2)"),
    ("ranking_partition_runs", "max_order_count", "BIGINT"),
    ("ranking_partition_runs", "range_cut", "BIGINT"),
)

# Columns the pipeline reads from the upstream tables, with the type family each must have.
REQUIRED_INPUT_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "users": {"user_id": ("bigint", "integer"), "status": ("text", "character varying")},
    "orders": {
        "user_id": ("bigint", "integer"),
        "amount": ("numeric",),
        "status": ("text", "character varying"),
        "ordered_at": ("timestamp with time zone",),
    },
}

# Serializes CREATE TABLE IF NOT EXISTS across processes (concurrent creates race on pg_type).
_SCHEMA_ADVISORY_LOCK_ID = 0x52414E4B  # "RANK"


class InputSchemaError(RuntimeError):
    """An upstream table or column the pipeline reads is missing or has the wrong type."""


def ensure_output_tables(engine: Engine) -> None:
    """Create the output and state tables if they are missing (user_scores and rankings partitioned by date,
    lib/partitions.py), and bring tables an earlier release created up to date: the columns added since,
    and a plain user_scores or rankings becomes the DEFAULT partition of the partitioned table, rows kept."""
    with engine.begin() as connection:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_ADVISORY_LOCK_ID})
        for table in PARTITIONED_TABLES.values():
            adopt_plain_table(connection, table)
        metadata.create_all(connection, checkfirst=True)
        for table in PARTITIONED_TABLES.values():
            ensure_default_partition(connection, table)
        existing = {
            (table, column)
            for table, column in connection.execute(
                sa.text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema()"
                )
            )
        }
        for table, column, type_name in _ADDED_COLUMNS:
            if (table, column) not in existing:  # names are the constants above
                connection.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {type_name}"))


def validate_input_tables(connection: Connection) -> None:
    """Raise InputSchemaError naming every missing or mistyped input table and column."""
    rows = connection.execute(
        sa.text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name IN :tables"
        ).bindparams(sa.bindparam("tables", expanding=True)),
        {"tables": list(REQUIRED_INPUT_COLUMNS)},
    ).all()
    found: dict[str, dict[str, str]] = {}
    for table_name, column_name, data_type in rows:
        found.setdefault(table_name, {})[column_name] = data_type
    problems = []
    for table_name, columns in REQUIRED_INPUT_COLUMNS.items():
        if table_name not in found:
            problems.append(f"table {table_name!r} is missing")
            continue
        for column_name, allowed_types in columns.items():
            actual = found[table_name].get(column_name)
            if actual is None:
                problems.append(f"column {table_name}.{column_name} is missing")
            elif actual not in allowed_types:
                problems.append(
                    f"column {table_name}.{column_name} is {actual}, expected {' or '.join(allowed_types)}"
                )
    if problems:
        database = connection.engine.url.database
        raise InputSchemaError(
            f"input tables in database {database!r} do not match the data contract: {'; '.join(problems)}. "
            "Create them as in the contract (or load sample data with `ranking-pipeline seed`)"
        )
