"""Production instance configuration: the shared dagster.yaml plus dagster-postgres storage, proven on
the real PostgreSQL by running the batch with Dagster's own runs and events stored there."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from ranking_pipeline.batch_runner import run_batch
from ranking_pipeline.constants import (
    BATCH_000_JOB,
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    RANKINGS_WRITER_POOL,
    RANKINGS_WRITER_POOL_LIMIT,
)
from ranking_pipeline.lib.business_date import BusinessDate
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.conftest import PROJECT_ROOT, create_database, drop_database

PRODUCTION_YAML = PROJECT_ROOT / "deploy" / "dagster.production.yaml"
D = dt.date(2025, 6, 30)


def _settings(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_production_differs_from_the_shared_settings_only_in_storage():
    shared = _settings(PROJECT_ROOT / "dagster.yaml")
    production = _settings(PRODUCTION_YAML)

    assert shared["storage"] == {  # local: in the project, or in DAGSTER_HOME when it is set
        "custom": {
            "module": "ranking_pipeline.instance",
            "class": "HomeRelativeSqliteStorage",
            "config": {"base_dir": ".ranking_pipeline/dagster"},
        }
    }
    assert {key: value for key, value in production.items() if key != "storage"} == {
        key: value for key, value in shared.items() if key != "storage"
    }
    postgres = production["storage"]["postgres"]["postgres_db"]
    assert postgres["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1 would pick psycopg 3 otherwise
    secrets = {key: value for key, value in postgres.items() if key != "scheme"}
    assert all(set(value) == {"env"} for value in secrets.values()), "credentials come from the environment"


@pytest.fixture
def production_home(tmp_path, postgres_server_url, monkeypatch):
    """A DAGSTER_HOME holding the production dagster.yaml, DAGSTER_PG_* naming a fresh database."""
    storage_url = create_database(postgres_server_url)
    parsed = sa.engine.make_url(storage_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name, value in {
        "DAGSTER_PG_USERNAME": parsed.username or "",
        "DAGSTER_PG_PASSWORD": parsed.password or "",
        "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parsed.port or 5432),
        "DAGSTER_PG_DB": parsed.database,
    }.items():
        monkeypatch.setenv(name, value)
    yield home, storage_url
    drop_database(postgres_server_url, storage_url)


def test_the_batch_runs_with_dagsters_storage_on_postgresql(production_home, engine, definitions):
    home, storage_url = production_home
    seed(engine, 500, end_date=D)

    # The pool limit, set explicitly as docs/DEPLOYMENT.md says, is kept in PostgreSQL.
    limit = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "instance",
            "concurrency",
            "set",
            RANKINGS_WRITER_POOL,
            str(RANKINGS_WRITER_POOL_LIMIT),
        ],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert limit.returncode == 0, limit.stderr

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        summary = run_batch(definitions, instance, BusinessDate.of(D))
    assert summary.ranked_users > 0

    # A new process (the webserver, the daemon) sees the same runs, events and pool limit.
    with dg.DagsterInstance.get() as reopened:
        runs = reopened.get_runs()
        assert sorted(run.job_name for run in runs) == [
            BATCH_000_JOB,
            BATCH_001_RANKINGS_JOB,
            BATCH_001_SCORES_JOB,
        ]
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
        [latest] = reopened.fetch_materializations(dg.AssetKey("rankings"), limit=1).records
        assert latest.asset_materialization.metadata["dagster/row_count"].value == summary.ranked_users
        pool = reopened.event_log_storage.get_concurrency_info(RANKINGS_WRITER_POOL)
        assert pool.slot_count == RANKINGS_WRITER_POOL_LIMIT
    with sa.create_engine(storage_url).connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT pipeline_name, status FROM runs ORDER BY create_timestamp"
        )
        assert [tuple(row) for row in stored] == [
            (BATCH_000_JOB, "SUCCESS"),
            (BATCH_001_SCORES_JOB, "SUCCESS"),
            (BATCH_001_RANKINGS_JOB, "SUCCESS"),
        ]
    assert not list(home.glob("history")), "no SQLite run storage next to the production dagster.yaml"
