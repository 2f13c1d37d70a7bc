"""`dagster dev` seen over HTTP: the shared instance settings in force with no setup, and BATCH-001
launched for a date through the GraphQL API the way cron, EventBridge or a webhook would (deploy/trigger/),
subject to the same run concurrency limit as every other writer of the rankings table."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import yaml

from ranking_pipeline.batch_runner import batch_001_run_tags
from ranking_pipeline.constants import BATCH_000_JOB, BATCH_001_JOB, RANKINGS_WRITER_TAG
from ranking_pipeline.lib import db
from ranking_pipeline.lib.queries import count_rows
from ranking_pipeline.lib.schema import rankings as rankings_table
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.conftest import PROJECT_ROOT, create_database, drop_database
from ranking_pipeline_tests.dagster_dev import FINISHED_STATUSES, DagsterDev, batch_000_tags, dagster_dev

TRIGGER = PROJECT_ROOT / "deploy" / "trigger" / "launch_batch_001.sh"
D = dt.date(2025, 6, 30)
IN_PROGRESS = {"STARTING", "STARTED"}

INSTANCE = """
{ instance {
    info runQueuingSupported
    runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml }
    daemonHealth { allDaemonStatuses { daemonType required healthy } }
} }
"""


def _tags(run: dict) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def _trigger(dev_url: str, business_date: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(TRIGGER), business_date],
        env={**os.environ, "DAGSTER_URL": dev_url},
        capture_output=True,
        text=True,
        timeout=90,
    )


def _aggregate(dev: DagsterDev, first_day: dt.date, last_day: dt.date) -> None:
    run_id = dev.launch_job(BATCH_000_JOB, batch_000_tags(first_day.isoformat(), last_day.isoformat()))
    assert dev.wait_for_run(run_id)["status"] == "SUCCESS", dev.log_tail()


@pytest.fixture(scope="module")
def seeded_url(postgres_server_url) -> Iterator[str]:
    url = create_database(postgres_server_url)
    seed(db.get_engine(url), 2000, end_date=D)
    yield url
    drop_database(postgres_server_url, url)


@pytest.fixture(scope="module")
def dev(seeded_url, tmp_path_factory) -> Iterator[DagsterDev]:
    """`dagster dev` on the seeded database, the 31 days of aggregates in place (for D and D-1)."""
    log = tmp_path_factory.mktemp("dagster-dev") / "dagster-dev.log"
    with dagster_dev(PROJECT_ROOT, log, env={db.DATABASE_URL_ENV: seeded_url}) as running:
        _aggregate(running, D - dt.timedelta(days=30), D)
        yield running


def test_dagster_dev_with_no_setup_runs_the_batch_with_the_shared_instance_settings(tmp_path):
    """A fresh copy of the project, no RANKING_DATABASE_URL, no DAGSTER_HOME: `seed`, then `dagster dev`
    with no arguments; the running instance has dagster.yaml's concurrency and monitoring, and the batch
    runs on the embedded database."""
    project = tmp_path / "ranking_pipeline_copy"
    project.mkdir()
    shutil.copytree(
        PROJECT_ROOT / "ranking_pipeline",
        project / "ranking_pipeline",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "setup.cfg", "workspace.yaml", "dagster.yaml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, project / name)
    plain = {db.DATABASE_URL_ENV: None, db.EMBEDDED_PGDATA_ENV: None, "DAGSTER_HOME": None}
    env = {key: value for key, value in os.environ.items() if key not in plain}
    seeded = subprocess.run(
        [sys.executable, "-m", "ranking_pipeline.cli", "seed", "--users", "300", "--end-date", D.isoformat()],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert seeded.returncode == 0, seeded.stderr
    shared = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())

    with dagster_dev(project, tmp_path / "dagster-dev.log", env=plain) as running:
        deadline = time.monotonic() + 60
        while True:
            instance = running.graphql(INSTANCE)["instance"]
            daemons = {d["daemonType"]: d for d in instance["daemonHealth"]["allDaemonStatuses"]}
            if all(d["healthy"] for d in daemons.values()) or time.monotonic() > deadline:
                break
            time.sleep(2)
        info = yaml.safe_load(instance["info"])

        assert instance["runQueuingSupported"] is True
        limits = yaml.safe_load(instance["runQueueConfig"]["tagConcurrencyLimitsYaml"])
        assert limits == shared["concurrency"]["runs"]["tag_concurrency_limits"]
        assert {"key": RANKINGS_WRITER_TAG, "limit": 1} in limits
        assert (
            instance["runQueueConfig"]["maxConcurrentRuns"]
            == shared["concurrency"]["runs"]["max_concurrent_runs"]
        )
        assert info["concurrency"] == shared["concurrency"]
        assert info["run_monitoring"] == shared["run_monitoring"]
        assert info["run_monitoring"]["enabled"] is True
        assert info["run_retries"] == shared["run_retries"]
        assert daemons["MONITORING"]["required"] and daemons["MONITORING"]["healthy"], daemons
        assert daemons["QUEUED_RUN_COORDINATOR"]["healthy"], daemons
        storage_dir = info["local_artifact_storage"]["config"]["base_dir"]
        assert storage_dir.startswith(str(project / ".tmp_dagster_home_")), storage_dir

        _aggregate(running, D - dt.timedelta(days=29), D)
        batch = running.wait_for_run(running.launch_job(BATCH_001_JOB, batch_001_run_tags(D)))
        assert batch["status"] == "SUCCESS", running.log_tail()
    assert (project / ".ranking_pipeline" / "pgdata").is_dir(), "the embedded database lives in the project"


def test_a_webhook_launches_the_batch_for_a_date_over_http(dev, seeded_url):
    launched = _trigger(dev.url, D.isoformat())

    assert launched.returncode == 0, launched.stderr
    run = dev.wait_for_run(launched.stdout.strip())
    assert run["status"] == "SUCCESS", dev.log_tail()
    assert run["jobName"] == BATCH_001_JOB
    tags = _tags(run)
    assert batch_001_run_tags(D).items() <= tags.items()
    assert RANKINGS_WRITER_TAG in tags
    with db.get_engine(seeded_url).connect() as connection:
        assert count_rows(connection, rankings_table, "ranking_date", D) > 1000


def test_a_second_launch_waits_queued_while_the_first_runs(dev):
    first = _trigger(dev.url, (D - dt.timedelta(days=1)).isoformat())
    second = _trigger(dev.url, D.isoformat())
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    first_id, second_id = first.stdout.strip(), second.stdout.strip()

    seen_queued_behind_first = False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        one, two = dev.run(first_id), dev.run(second_id)
        assert not (one["status"] in IN_PROGRESS and two["status"] in IN_PROGRESS), "both runs ran at once"
        if two["status"] == "QUEUED" and one["status"] in IN_PROGRESS:
            seen_queued_behind_first = True
        if one["status"] in FINISHED_STATUSES and two["status"] in FINISHED_STATUSES:
            break
        time.sleep(0.3)

    assert one["status"] == "SUCCESS" and two["status"] == "SUCCESS", dev.log_tail()
    assert seen_queued_behind_first, "the second run was never seen QUEUED while the first ran"
    assert two["startTime"] >= one["endTime"], "the second run started before the first ended"


def test_the_trigger_refuses_a_malformed_date_without_calling_dagster():
    refused = _trigger("http://127.0.0.1:9", "yesterday")

    assert refused.returncode == 2
    assert "usage" in refused.stderr
