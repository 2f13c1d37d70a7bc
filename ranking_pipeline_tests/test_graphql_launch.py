"""`dagster dev` seen over HTTP: the shared instance settings in force with no setup, and BATCH-001 launched
for a date through the GraphQL API the way cron, EventBridge or a webhook would (deploy/trigger/), queued like
every other writer of the rankings table; dates outside the deployment's span refused before anything is
launched."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import yaml

from ranking_pipeline.constants import (
    BATCH_000_JOB,
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    BUSINESS_DATE_TAG,
    RANKINGS_WRITER_TAG,
    SCORED_BY_TAG,
)
from ranking_pipeline.lib import db
from ranking_pipeline.lib.queries import count_rows
from ranking_pipeline.lib.schema import rankings as rankings_table
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.conftest import PROJECT_ROOT, create_database, drop_database
from ranking_pipeline_tests.dagster_dev import (
    DagsterDev,
    batch_000_tags,
    copy_project,
    dagster_dev,
)
from ranking_pipeline_tests.helpers import jst, rankings_rows, wait_until
from ranking_pipeline_tests.test_against_sql import INDEPENDENT_RANKING

TRIGGER = PROJECT_ROOT / "deploy" / "trigger" / "launch_batch_001.py"
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


def _trigger(dev_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TRIGGER), *args],
        env={**os.environ, "DAGSTER_URL": dev_url, **env},
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
    """`dagster dev` on the seeded database, the aggregates of W(D-2) .. W(D) in place."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    with dagster_dev(
        project, project / "dagster-dev.log", env={"RANKING_DATABASE_URL": seeded_url}
    ) as running:
        _aggregate(running, D - dt.timedelta(days=31), D)
        yield running


def test_dagster_dev_with_no_setup_runs_the_batch_with_the_shared_instance_settings(tmp_path):
    """A fresh copy of the project, no RANKING_DATABASE_URL, no DAGSTER_HOME: `seed`, then `dagster dev`
    with no arguments; the running instance has dagster.yaml's concurrency and monitoring, keeps its runs in
    the project's local storage, and the batch runs on the embedded database."""
    project = copy_project(tmp_path / "ranking_pipeline_copy")
    plain = {name: None for name in os.environ if name.startswith("RANKING_")} | {"DAGSTER_HOME": None}
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
        seen: dict = {}

        def daemons_healthy() -> bool:
            seen["instance"] = running.graphql(INSTANCE)["instance"]
            return all(d["healthy"] for d in seen["instance"]["daemonHealth"]["allDaemonStatuses"])

        with contextlib.suppress(AssertionError):  # an unhealthy daemon is reported by name below
            wait_until(daemons_healthy, 60, "every daemon healthy", every=2)
        instance = seen["instance"]
        daemons = {d["daemonType"]: d for d in instance["daemonHealth"]["allDaemonStatuses"]}
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

        _aggregate(running, D - dt.timedelta(days=29), D)
        launched = _trigger(running.url, D.isoformat())
        assert launched.returncode == 0, launched.stderr
        ranking = running.wait_for_ranking_after(launched.stdout.strip())
        assert ranking["status"] == "SUCCESS", running.log_tail()
    assert (project / ".ranking_pipeline" / "pgdata").is_dir(), "the embedded database lives in the project"
    assert (project / ".ranking_pipeline" / "dagster").is_dir(), "so do the runs, for the next `dagster dev`"


def test_a_webhook_launches_the_batch_for_a_date_over_http(dev, seeded_url):
    launched = _trigger(dev.url, D.isoformat())

    assert launched.returncode == 0, launched.stderr
    [scoring_id] = launched.stdout.split()  # the scoring run; the daemon's sensor starts the ranking run
    ranking = dev.wait_for_ranking_after(scoring_id)
    scoring = dev.run(scoring_id)
    assert (scoring["status"], ranking["status"]) == ("SUCCESS", "SUCCESS"), dev.log_tail()
    assert (scoring["jobName"], ranking["jobName"]) == (BATCH_001_SCORES_JOB, BATCH_001_RANKINGS_JOB)
    scoring_tags, ranking_tags = _tags(scoring), _tags(ranking)
    assert scoring_tags[BUSINESS_DATE_TAG] == ranking_tags[BUSINESS_DATE_TAG] == D.isoformat()
    assert ranking_tags[SCORED_BY_TAG] == scoring_id
    assert ranking_tags["dagster/sensor_name"] == "start_rankings_on_scores_success"
    # the ranking follows the scores' success within a minute (the sensor ticks every 10 s)
    assert ranking["creationTime"] - scoring["endTime"] < 60, (scoring, ranking)
    print(
        f"ranking run created {ranking['creationTime'] - scoring['endTime']:.1f} s after the scores' success"
    )
    assert scoring_tags["dagster/asset_partition_range_start"] == f"{D}|range_1_of_8"
    assert ranking_tags["dagster/partition"] == D.isoformat()
    assert RANKINGS_WRITER_TAG in scoring_tags and RANKINGS_WRITER_TAG in ranking_tags
    assert ranking["startTime"] >= scoring["endTime"]  # the ranking run waited for its scoring run
    with db.get_engine(seeded_url).connect() as connection:
        assert count_rows(connection, rankings_table, "ranking_date", D) > 1000


def test_a_second_batch_never_overlaps_the_first_nor_takes_its_lock_between_scoring_and_ranking(dev):
    first = _trigger(dev.url, (D - dt.timedelta(days=1)).isoformat())
    second = _trigger(dev.url, D.isoformat())
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    [first_scoring], [second_scoring] = first.stdout.split(), second.stdout.split()

    first_ranking = dev.wait_for_ranking_after(first_scoring)
    second_scored = dev.wait_for_run(second_scoring)
    assert first_ranking["status"] == "SUCCESS", dev.log_tail()
    runs = [dev.run(first_scoring), first_ranking, second_scored]
    if second_scored["status"] == "SUCCESS":  # it started after the first batch's ranking: a batch of its own
        runs.append(dev.wait_for_ranking_after(second_scoring))
        assert runs[-1]["status"] == "SUCCESS", dev.log_tail()
    else:  # it started between the first batch's scoring and ranking: refused at once, naming that batch
        assert second_scored["endTime"] - second_scored["startTime"] < 30
        assert first_ranking["startTime"] >= second_scored["endTime"]
        messages = dev.graphql(RUN_LOGS, {"runId": second_scoring})["logsForRun"]["events"]
        assert any(f"is held by batch {first_scoring}" in (event.get("message") or "") for event in messages)
    runs.sort(key=lambda run: run["startTime"])
    for earlier, later in itertools.pairwise(runs):
        assert later["startTime"] >= earlier["endTime"], "two writers of the rankings table overlapped"


RUN_LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events { ... on MessageEvent { message } } } }
}
"""


LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}
"""
MATERIALIZED = """
query Materialized($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 100) { runId partition } }
  }
}
"""


def test_a_backfill_of_three_dates_from_the_uis_api_materializes_exactly_those_dates(dev, seeded_url):
    first = D - dt.timedelta(days=2)
    params = {
        "partitionsByAssets": [
            {
                "assetKey": {"path": ["user_scores"]},
                "partitions": {"range": {"start": f"{first}|range_1_of_8", "end": f"{D}|range_8_of_8"}},
            },
            {
                "assetKey": {"path": ["rankings"]},
                "partitions": {"range": {"start": str(first), "end": str(D)}},
            },
        ]
    }
    launched = dev.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    seen: dict = {}

    def backfill_ended() -> bool:
        seen["status"] = dev.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]["status"]
        return seen["status"] not in ("REQUESTED", "CANCELING")

    wait_until(
        backfill_ended,
        300,
        lambda: f"the end of backfill {backfill_id} (still {seen['status']})",
        every=2,
        details=dev.log_tail,
    )
    assert seen["status"] == "COMPLETED_SUCCESS", dev.log_tail()

    runs = {
        run["runId"] for run in dev.runs() if {"key": "dagster/backfill", "value": backfill_id} in run["tags"]
    }
    by_asset: dict[str, list[dict]] = {"user_scores": [], "rankings": []}
    for run_id in runs:
        run = dev.run(run_id)
        by_asset[run["assetSelection"][0]["path"][0]].append(run)
    [ranking_run] = by_asset["rankings"]  # one run ranks the three dates
    gap = ranking_run["startTime"] - max(run["endTime"] for run in by_asset["user_scores"])
    print(
        f"backfill of 3 dates: {len(by_asset['user_scores'])} user_scores run(s), 1 rankings run, "
        f"started {gap:.0f} s after the last scoring run ended"
    )
    assert 1 <= len(by_asset["user_scores"]) <= 3
    assert gap >= 0
    dates = [str(first + dt.timedelta(days=offset)) for offset in range(3)]
    for asset, expected in (
        ("rankings", set(dates)),
        ("user_scores", {f"{day}|{user_range}" for day in dates for user_range in _ranges()}),
    ):
        materialized = dev.graphql(MATERIALIZED, {"path": [asset]})["assetOrError"]["assetMaterializations"]
        assert {m["partition"] for m in materialized if m["runId"] in runs} == expected, asset
    engine = db.get_engine(seeded_url)
    for day in dates:
        with engine.connect() as connection:
            expected_rows = [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": day})]
        assert rankings_rows(engine, dt.date.fromisoformat(day)) == expected_rows and expected_rows


def _ranges() -> list[str]:
    from ranking_pipeline.lib.ranges import USER_ID_RANGES

    return [user_range.key for user_range in USER_ID_RANGES]


@pytest.mark.parametrize("argument", ["yesterday", "2025-02-30"])
def test_the_trigger_refuses_a_malformed_date_without_calling_dagster(argument):
    refused = _trigger("http://127.0.0.1:9", argument)

    assert refused.returncode == 2
    assert refused.stderr.startswith("launch_batch_001: ")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_the_trigger_refuses_a_bad_wait_setting_for_force_without_calling_dagster():
    refused = _trigger("http://127.0.0.1:9", "--force", D.isoformat(), DAGSTER_WAIT_SECONDS="1h")

    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("launch_batch_001: DAGSTER_WAIT_SECONDS='1h'")


@pytest.mark.parametrize("day", ["2019-12-31", "today", "tomorrow", "2099-01-01"])
def test_the_trigger_refuses_a_date_outside_the_deployments_span_before_launching(dev, day):
    today = dt.datetime.now(tz=dt.timezone(dt.timedelta(hours=9))).date()
    date = {"today": today, "tomorrow": today + dt.timedelta(days=1)}.get(day) or dt.date.fromisoformat(day)
    before = {run["runId"] for run in dev.runs()}

    refused = _trigger(dev.url, date.isoformat())

    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert f"{date} is not a business date of this deployment" in line
    assert "dates run from 2020-01-01 (RANKING_FIRST_BUSINESS_DATE)" in line
    assert "nothing was launched" in line
    assert {run["runId"] for run in dev.runs()} == before


def test_the_trigger_with_force_re_aggregates_the_window_before_scoring_it_again(dev, seeded_url):
    """A late order for D arrives after W(D) was aggregated: --force re-reads the 30 days in a BATCH-000 run,
    waits for it, then scores every range again; the published ranking counts the late order."""
    engine = db.get_engine(seeded_url)
    with engine.begin() as connection:
        user_id = connection.execute(
            sa.text("SELECT min(user_id) FROM users WHERE status = 'active'")
        ).scalar_one()
        connection.execute(
            sa.text(
                "INSERT INTO orders SELECT max(order_id) + 1, :user_id, 9999.99, 'completed', :at FROM orders"
            ),
            {"user_id": user_id, "at": jst(D.year, D.month, D.day, 12)},
        )
        expected = [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": D})]

    forced = _trigger(dev.url, "--force", D.isoformat())

    assert forced.returncode == 0, forced.stderr
    [scoring_id] = forced.stdout.split()
    [aggregation_id] = re.findall(r"batch_000_job run (\S+) re-aggregates", forced.stderr)
    aggregation, ranking = dev.run(aggregation_id), dev.wait_for_ranking_after(scoring_id)
    scoring = dev.run(scoring_id)
    assert (aggregation["jobName"], aggregation["status"]) == (BATCH_000_JOB, "SUCCESS")
    assert _tags(aggregation)["dagster/asset_partition_range_start"] == str(D - dt.timedelta(days=29))
    assert _tags(scoring)["ranking/force_recompute"] == "true"
    assert scoring["startTime"] >= aggregation["endTime"], "scored before the window was re-read"
    assert ranking["status"] == "SUCCESS", dev.log_tail()
    assert rankings_rows(engine, D) == expected
    assert user_id in {row[1] for row in expected}
