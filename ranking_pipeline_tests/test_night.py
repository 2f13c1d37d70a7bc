"""The night as Dagster runs it: the ranking run follows a successful scoring through the real sensor daemon
(and a failed scoring starts nothing), one batch per date however many start at once, and a night that does
not happen is one Critical alert naming why."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._daemon.freshness import FreshnessDaemon
from dagster._daemon.sensor import execute_sensor_iteration
from dagster_graphql.test.utils import execute_dagster_graphql

from ranking_pipeline.batch_runner import aggregate_days
from ranking_pipeline.constants import (
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    BUSINESS_DATE_TAG,
    SCORED_BY_TAG,
)
from ranking_pipeline.defs.alerts.missed_ranking import alert_on_missed_ranking
from ranking_pipeline.defs.batch_requests import rankings_after
from ranking_pipeline.defs.resources import BatchGate, Clock
from ranking_pipeline.lib.business_date import JST, BusinessDate, first_business_date
from ranking_pipeline.lib.lock import PostgresBatchLock, lock_key
from ranking_pipeline.lib.seed import seed
from ranking_pipeline.local_runs import execute_job
from ranking_pipeline_tests.conftest import PROJECT_ROOT, project_instance_settings
from ranking_pipeline_tests.fakes import (
    fake_pagerduty,
    fake_slack,
    fake_smtp,
    mail_resource,
    pagerduty_resource,
    slack_messages,
    slack_resource,
)
from ranking_pipeline_tests.helpers import (
    project_defs,
    project_location_target,
    rankings_rows,
    run_date,
    wait_until,
)
from ranking_pipeline_tests.test_against_sql import INDEPENDENT_RANKING

D = dt.date(2026, 11, 27)
PAIRS = 20


FIRST_BUSINESS_DATE = first_business_date()


def at(hour: int, minute: int = 0) -> dt.datetime:
    """A time on the morning after D, in JST."""
    return dt.datetime(2026, 11, 28, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=9)))


# --- the ranking follows the scores, through the real sensor daemon -----------------------------------


@pytest.fixture
def daemon(engine, database_url, tmp_path, monkeypatch):
    """A Dagster instance in a DAGSTER_HOME, the project's code location loaded as the daemon loads it (its
    settings from the environment), and one sensor daemon iteration at a time on a clock that moves 2 min."""
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(project_instance_settings()))
    monkeypatch.setenv("RANKING_DATABASE_URL", database_url)
    target = project_location_target()
    now = [dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)]  # 00:00 JST: nothing nightly is due
    with (
        dg.DagsterInstance.from_config(str(tmp_path)) as instance,
        create_test_daemon_workspace_context(target, instance) as workspace,
    ):

        def tick() -> None:
            now[0] += dt.timedelta(minutes=2)  # past every sensor's minimum interval
            with freeze_time(now[0]):
                list(execute_sensor_iteration(workspace, logging.getLogger("sensors"), None, None))

        tick()  # the sensors start watching
        yield instance, tick, workspace


def test_the_ranking_run_follows_a_successful_scoring_and_a_failed_scoring_starts_none(engine, daemon):
    instance, tick, _ = daemon
    definitions = project_defs(engine.url.render_as_string(hide_password=False))
    seed(engine, 300, end_date=D, random_seed=5)
    aggregate_days(definitions, instance, D - dt.timedelta(days=29), D)

    scored = execute_job(definitions, BATCH_001_SCORES_JOB, instance, BusinessDate.of(D).scoring_tags())
    failed = execute_job(  # D+1's window lacks its last day: this scoring fails
        definitions, BATCH_001_SCORES_JOB, instance, BusinessDate.of(D + dt.timedelta(days=1)).scoring_tags()
    )
    assert scored.failure is None and failed.failure is not None
    assert instance.get_runs(dg.RunsFilter(job_name=BATCH_001_RANKINGS_JOB)) == []
    tick()
    tick()  # seen again: nothing twice

    [ranking] = instance.get_runs(dg.RunsFilter(job_name=BATCH_001_RANKINGS_JOB))
    assert ranking.tags[SCORED_BY_TAG] == scored.run_id
    assert ranking.tags["dagster/partition"] == D.isoformat()
    assert ranking.tags[BUSINESS_DATE_TAG] == D.isoformat()
    assert ranking.tags["dagster/sensor_name"] == "start_rankings_on_scores_success"
    assert int(ranking.tags["dagster/max_runtime"]) < 30 * 60  # what the scoring left of the 30 minutes
    assert ranking.status == dg.DagsterRunStatus.QUEUED  # in the run queue, like any launched run


def test_a_ui_materialization_of_one_range_republishes_its_date(engine, definitions, instance):
    seed(engine, 300, end_date=D, random_seed=6)
    run_date(definitions, instance, D)
    ui_job = definitions.resolve_implicit_job_def_def_for_assets([dg.AssetKey("user_scores")])
    result = ui_job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("user_scores")],
        partition_key=f"{D}|range_1_of_8",
    )
    assert result.success

    [request] = rankings_after(instance, instance.get_run_by_id(result.run_id))

    assert request.job_name == BATCH_001_RANKINGS_JOB
    assert request.partition_key == D.isoformat()
    assert request.tags[SCORED_BY_TAG] == result.run_id


# --- one batch per date, however many start at once ----------------------------------------------------


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    def appeared() -> bool:
        if path.exists():
            return True
        assert process.poll() is None, process.stderr.read()
        return False

    wait_until(appeared, timeout, f"{path.name}", 0.05)


@pytest.mark.parametrize("backend", ["postgresql", "redis"])
def test_of_simultaneous_starts_of_a_date_exactly_one_batch_completes(
    backend, engine, database_url, tmp_path, request
):
    """Two processes (one as `ranking-pipeline run`, one as the schedule and the sensor) start D together,
    20 times, on one Dagster instance."""
    settings = {"RANKING_DATABASE_URL": database_url}
    if backend == "redis":  # a database of its own, so no other test's lock interferes
        settings["RANKING_REDIS_URL"] = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/9"
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(project_instance_settings()))
    env = {**os.environ, **settings, "DAGSTER_HOME": str(tmp_path)}
    definitions = project_defs(database_url, redis_url=settings.get("RANKING_REDIS_URL"))
    seed(engine, 150, end_date=D, random_seed=7)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        aggregate_days(definitions, instance, D - dt.timedelta(days=29), D)
    with engine.connect() as connection:
        expected = [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": D})]

    modes = ("cli", "launched")
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ranking_pipeline_tests.start_batch_rounds",
                mode,
                str(D),
                str(PAIRS),
                tmp_path,
            ],
            env=env,
            cwd=PROJECT_ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in modes
    ]
    try:
        for mode, process in zip(modes, processes, strict=True):
            _wait_for(tmp_path / f"{mode}.ready", process)
        for pair in range(PAIRS):
            (tmp_path / f"go.{pair}").touch()
            outcomes = []
            for mode, process in zip(modes, processes, strict=True):
                _wait_for(tmp_path / f"{mode}.{pair}.json", process)
                outcomes.append(json.loads((tmp_path / f"{mode}.{pair}.json").read_text()))
            winners = [outcome["runs"] for outcome in outcomes if "runs" in outcome]
            losers = [outcome["error"] for outcome in outcomes if "error" in outcome]
            assert len(winners) == 1 and len(losers) == 1, f"pair {pair}: {outcomes}"
            scoring_id = winners[0][0]
            assert f"held by run {scoring_id}" in losers[0] or f"held by batch {scoring_id}" in losers[0], (
                f"pair {pair}: the loser does not name the winner: {losers[0]}"
            )
            assert "\n" not in losers[0]
            assert rankings_rows(engine, D) == expected, f"pair {pair}: the rankings of D are torn"
    finally:
        for process in processes:
            process.kill()
            process.wait()

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        successes = instance.get_runs(
            dg.RunsFilter(job_name=BATCH_001_RANKINGS_JOB, statuses=[dg.DagsterRunStatus.SUCCESS])
        )
    assert len(successes) == PAIRS  # one completion notice per pair: one successful ranking run each


# --- the night that does not happen --------------------------------------------------------------------


@pytest.fixture
def channels():
    with fake_slack() as slack, fake_smtp() as smtp, fake_pagerduty() as pagerduty:
        yield (
            slack,
            smtp,
            pagerduty,
            {
                "slack": slack_resource(slack),
                "mail": mail_resource(smtp),
                "pagerduty": pagerduty_resource(pagerduty, "routing-key"),
            },
        )


def _deadline_tick(instance, definitions, when: dt.datetime, cursor: str | None, resources: dict):
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            **definitions.resources,
            "batch_gate": BatchGate(),
            "clock": Clock(fixed_at=when.isoformat()),
            **resources,
        },
        repository_def=definitions.get_repository_def(),
    ) as context:
        result = alert_on_missed_ranking(context)
        return result, context.cursor


def test_aggregates_missing_at_the_deadline_page_once_naming_the_days(
    engine, instance, definitions, channels
):
    slack, smtp, pagerduty, resources = channels
    seed(engine, 200, end_date=D, random_seed=9)
    aggregate_days(definitions, instance, D - dt.timedelta(days=29), D - dt.timedelta(days=1))

    early, cursor = _deadline_tick(instance, definitions, at(8, 59), None, resources)
    assert "due by 09:00 JST" in early.skip_message and slack_messages(slack) == []
    _, cursor = _deadline_tick(instance, definitions, at(9, 0), cursor, resources)
    _, cursor = _deadline_tick(instance, definitions, at(9, 1), cursor, resources)  # once per date

    [message] = slack_messages(slack)
    assert "Critical: no rankings for business date 2026-11-27 by 09:00 JST on 2026-11-28" in message["text"]
    assert "BATCH-000 has not aggregated 2026-11-27 of W(2026-11-27)" in message["text"]
    [mail] = smtp.received
    assert "no rankings for business date 2026-11-27" in mail.message["Subject"]
    [page] = pagerduty.posts_to("/v2/enqueue")
    assert page.json()["dedup_key"] == "ranking_pipeline/missed_ranking/2026-11-27"
    assert page.json()["payload"]["severity"] == "critical"


def test_a_failed_batch_not_re_run_pages_naming_its_run_and_step(
    engine, instance, definitions, channels, no_retry_delay
):
    slack, _, pagerduty, resources = channels
    seed(engine, 200, end_date=D, random_seed=9)
    aggregate_days(definitions, instance, D - dt.timedelta(days=29), D)
    with PostgresBatchLock(engine, lock_key("BATCH-001")).held("another-deployment"):  # the run fails on it
        failed = execute_job(definitions, BATCH_001_SCORES_JOB, instance, BusinessDate.of(D).scoring_tags())
    assert failed.failure is not None

    _deadline_tick(instance, definitions, at(9, 5), None, resources)

    [message] = slack_messages(slack)
    assert f"batch_001_scores_job run {failed.run_id} ended FAILURE in user_scores" in message["text"]
    assert len(pagerduty.posts_to("/v2/enqueue")) == 1


def test_nothing_started_pages_saying_so_and_a_good_night_pages_nobody(
    engine, instance, definitions, channels
):
    slack, _, _, resources = channels
    seed(engine, 200, end_date=D, random_seed=9)
    aggregate_days(definitions, instance, D - dt.timedelta(days=29), D)

    _deadline_tick(instance, definitions, at(9, 0), None, resources)
    [message] = slack_messages(slack)
    assert "no BATCH-001 batch was started for 2026-11-27" in message["text"]

    run_date(definitions, instance, D)
    good, _ = _deadline_tick(instance, definitions, at(9, 0), None, resources)  # a fresh cursor: a new day
    assert "are committed" in good.skip_message
    assert len(slack_messages(slack)) == 1


def test_no_page_for_a_day_before_the_first_business_date(engine, instance, definitions, channels):
    """A deployment's first morning: yesterday is no business date, so no ranking of it is due."""
    slack, smtp, pagerduty, resources = channels
    seed(engine, 50, end_date=D, random_seed=9)
    aggregate_days(definitions, instance, D, D)  # the pipeline's tables exist: the check could run
    first_morning = dt.datetime.combine(FIRST_BUSINESS_DATE, dt.time(9, 30), tzinfo=JST)

    quiet, cursor = _deadline_tick(instance, definitions, first_morning, None, resources)

    assert quiet.skip_message is not None and str(FIRST_BUSINESS_DATE) in quiet.skip_message
    assert (slack_messages(slack), smtp.received, pagerduty.posts_to("/v2/enqueue")) == ([], [], [])
    assert cursor is None


FRESHNESS = """
{ assetNodes(assetKeys: [{path: ["rankings"]}]) {
    freshnessStatusInfo { freshnessStatus }
    internalFreshnessPolicy { ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds timezone } }
} }
"""


def test_the_ui_shows_rankings_degraded_after_a_missed_night_and_healthy_after_a_good_one(daemon):
    instance, _, workspace = daemon

    def freshness_at(when: dt.datetime) -> dict:
        with freeze_time(when):
            list(FreshnessDaemon().run_iteration(workspace))  # the daemon's evaluation, one iteration
        answer = execute_dagster_graphql(workspace.create_request_context(), FRESHNESS)
        assert not answer.errors, answer.errors
        [node] = answer.data["assetNodes"]
        return node

    def ranked(business_date: dt.date) -> None:  # that night's ranking lands at 03:12 JST
        with freeze_time(at(3, 12) + (business_date - D)):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key="rankings", partition=business_date.isoformat())
            )

    ranked(D - dt.timedelta(days=1))
    missed = freshness_at(at(9, 5))  # nothing committed for D by 09:00 JST
    ranked(D + dt.timedelta(days=1))
    healthy = freshness_at(at(9, 5) + dt.timedelta(days=1))

    assert missed["internalFreshnessPolicy"] == {
        "deadlineCron": "0 9 * * *",
        "lowerBoundDeltaSeconds": 6 * 3600,
        "timezone": "Asia/Tokyo",
    }
    assert missed["freshnessStatusInfo"]["freshnessStatus"] == "DEGRADED"
    assert healthy["freshnessStatusInfo"]["freshnessStatus"] == "HEALTHY"
