"""The business date as Dagster's partition, as the UI reads it: per-date (and per-range) status, dates
outside the deployment's span refused before anything is written, windows reaching before the first order, and
an instance that still holds the history of the old static user-ID-range partitions."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster_graphql.test.utils import execute_dagster_graphql

from ranking_pipeline.batch_runner import BatchRunFailed, aggregate_seeded_days, run_batch_runs
from ranking_pipeline.constants import BATCH_001_RANKINGS_JOB, BATCH_001_SCORES_JOB, BUSINESS_DATE_TAG
from ranking_pipeline.lib.business_date import PARTITION_TAG, BusinessDate, scores_partition_tags
from ranking_pipeline.lib.ranges import USER_ID_RANGES, cut_in_force
from ranking_pipeline.lib.seed import seed
from ranking_pipeline.local_runs import execute_job
from ranking_pipeline_tests.helpers import (
    jst,
    load_inputs,
    project_location_target,
    rankings_rows,
    run_date,
    table_rows,
)
from ranking_pipeline_tests.test_against_sql import INDEPENDENT_RANKING

D = dt.date(2026, 11, 27)
SCORES, RANKINGS = dg.AssetKey("user_scores"), dg.AssetKey("rankings")


def partition_status(instance, definitions, key: dg.AssetKey) -> tuple[set[str], set[str]]:
    """(materialized, failed) partition keys of an asset: what the UI's partition view shows."""
    partitions_def = definitions.get_assets_def(key).partitions_def
    value = get_and_update_asset_status_cache_value(instance, key, partitions_def)
    materialized = set(value.deserialize_materialized_partition_subsets(partitions_def).get_partition_keys())
    failed = set(value.deserialize_failed_partition_subsets(partitions_def).get_partition_keys())
    return materialized, failed


def test_a_failed_scoring_marks_its_own_date_only_and_leaves_its_ranking_missing(
    engine, instance, definitions, no_retry_delay
):
    seed(engine, 1000, end_date=D, random_seed=9)
    run_date(definitions, instance, D)  # aggregates D-29 .. D; D-30 is not aggregated
    previous = D - dt.timedelta(days=1)

    with pytest.raises(BatchRunFailed, match="IncompleteWindowError") as failed:
        # W(D-1) needs D-30: the scoring run fails
        run_batch_runs(definitions, instance, BusinessDate.of(previous))
    # the one line says what to launch, as the launch dialog takes it
    said = str(failed.value)
    assert "open the asset daily_order_aggregates, Materialize… (Show all partitions, if they" in said
    day_before = D - dt.timedelta(days=30)
    assert f"enter {day_before} as the partitions, Launch backfill; then launch {previous} again" in said

    rankings_done, rankings_failed = partition_status(instance, definitions, RANKINGS)
    assert (rankings_done, rankings_failed) == ({str(D)}, set())  # no ranking run follows a failed scoring
    scores_done, scores_failed = partition_status(instance, definitions, SCORES)
    assert scores_done == {f"{D}|{r.key}" for r in USER_ID_RANGES}
    assert scores_failed == {f"{previous}|{r.key}" for r in USER_ID_RANGES}
    assert rankings_rows(engine, previous) == []


def test_each_range_reports_its_own_row_count(engine, instance, definitions):
    seed(engine, 1000, end_date=D, random_seed=9)
    summary = run_date(definitions, instance, D)

    records = instance.fetch_materializations(SCORES, limit=100).records
    counts = {
        r.asset_materialization.partition: r.asset_materialization.metadata["dagster/row_count"].value
        for r in records
        if r.run_id == summary.run_ids[-2]
    }
    with engine.connect() as connection:
        expected = {
            f"{D}|{user_range.key}": connection.execute(
                sa.text(
                    "SELECT count(*) FROM user_scores WHERE score_date = :d AND user_id BETWEEN :a AND :b"
                ),
                {"d": D, "a": user_range.first_id, "b": user_range.last_id},
            ).scalar_one()
            for user_range in cut_in_force(connection, D).ranges
        }
    assert counts == expected
    assert len(set(counts.values())) > 1, "each range reports its own count, not an even share of the total"


@pytest.mark.parametrize("day", ["2019-12-31", "today", "tomorrow", "2099-01-01"])
def test_a_run_tagged_with_a_date_outside_the_span_is_refused_at_once_writing_nothing(
    engine, instance, definitions, day
):
    seed(engine, 300, end_date=D, random_seed=4)
    run_date(definitions, instance, D)
    before = table_rows(engine, "user_scores", "score_date, user_id")
    today = dt.datetime.now(tz=dt.timezone(dt.timedelta(hours=9))).date()
    tagged = {"today": today, "tomorrow": today + dt.timedelta(days=1)}.get(day) or dt.date.fromisoformat(day)
    tags = {
        BUSINESS_DATE_TAG: tagged.isoformat(),
        **scores_partition_tags(D, [r.key for r in USER_ID_RANGES]),
    }

    outcome = execute_job(definitions, BATCH_001_SCORES_JOB, instance, tags)

    assert outcome.failure is not None and "BusinessDateError" in outcome.causes
    assert f"ranking/business_date {tagged}" in outcome.failure
    assert "RANKING_FIRST_BUSINESS_DATE" in outcome.failure
    retries = instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert retries == []  # refused at once, not after three retries
    assert table_rows(engine, "user_scores", "score_date, user_id") == before


@pytest.mark.parametrize("day", ["2019-12-31", "today", "tomorrow", "2099-01-01"])
def test_the_cli_refuses_a_date_outside_the_span_in_one_line_writing_nothing(database_url, engine, day):
    today = dt.datetime.now(tz=dt.timezone(dt.timedelta(hours=9))).date()
    date = {"today": today, "tomorrow": today + dt.timedelta(days=1)}.get(day) or dt.date.fromisoformat(day)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKING_") and k != "DAGSTER_HOME"}
    done = subprocess.run(
        [sys.executable, "-m", "ranking_pipeline.cli", "run", "--date", date.isoformat()],
        env={**env, "RANKING_DATABASE_URL": database_url},
        cwd=tempfile.mkdtemp(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(
        f"ranking-pipeline: error: --date {date} is not a business date of this deployment"
    )
    assert "nothing was run or written" in line
    with engine.connect() as connection:
        assert sa.inspect(connection).get_table_names() == []  # not even the output tables were created


def test_a_window_reaching_before_the_first_order_ranks_what_there_is(engine, instance, definitions):
    first_day = dt.date(2020, 1, 1)  # the first business date: its window starts 29 days before any order
    load_inputs(
        engine,
        [(1, "active"), (2, "active"), (3, "active")],
        [
            (1, "10.00", "completed", jst(2020, 1, 1, 9)),
            (2, "25.50", "completed", jst(2020, 1, 1, 23, 59, 59)),
            (3, "25.50", "completed", jst(2020, 1, 2, 0, 0, 0)),  # the next day: outside W(2020-01-01)
            (1, "30.00", "completed", jst(2020, 1, 3)),
        ],
    )

    summary = run_date(definitions, instance, first_day)

    assert summary.aggregated_days[0] == dt.date(2019, 12, 3)
    assert rankings_rows(engine, first_day) == [
        (1, 2, dt_decimal("25.50"), 1),
        (2, 1, dt_decimal("10.00"), 1),
    ]
    later = dt.date(2020, 1, 3)
    run_date(definitions, instance, later)
    with engine.connect() as connection:
        expected = [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": later})]
    assert (
        rankings_rows(engine, later)
        == expected
        == [
            (1, 1, dt_decimal("40.00"), 2),
            (2, 2, dt_decimal("25.50"), 1),
            (2, 3, dt_decimal("25.50"), 1),
        ]
    )


def dt_decimal(text: str):
    from decimal import Decimal

    return Decimal(text)


ASSET_PARTITIONS = """
query Partitions($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    __typename
    ... on AssetNode {
      partitionKeysByDimension { name }
      assetPartitionStatuses {
        __typename
        ... on MultiPartitionStatuses { primaryDimensionName ranges { primaryDimStartKey } }
      }
    }
  }
}
"""


def test_an_instance_with_the_old_range_partitions_loads_and_shows_the_new_ones(
    engine, database_url, instance, definitions, monkeypatch
):
    """Before: user_scores was partitioned by user-ID range alone (the first release: keys like
    ``users_min_to_0124999``), then by date x fixed range (``2026-11-26|users_min_to_0124999``). After the
    upgrade to range slots those keys are no partitions any more: they are left out of the partition status
    (Dagster ignores unknown keys) and nothing fails to load."""
    old_keys = ["users_min_to_0124999", "users_0125000_to_0249999", "users_0875000_to_max"]
    for old_key in [*old_keys, *(f"{D - dt.timedelta(days=1)}|{key}" for key in old_keys)]:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=SCORES, partition=old_key))
    seed(engine, 300, end_date=D, random_seed=4)
    run_date(definitions, instance, D)

    materialized, failed = partition_status(instance, definitions, SCORES)
    assert materialized == {f"{D}|{r.key}" for r in USER_ID_RANGES}
    assert failed == set()
    monkeypatch.setenv("RANKING_DATABASE_URL", database_url)
    target = project_location_target()
    with create_test_daemon_workspace_context(target, instance) as workspace:
        result = execute_dagster_graphql(
            workspace.create_request_context(), ASSET_PARTITIONS, {"path": ["user_scores"]}
        )
    assert not result.errors, result.errors
    node = result.data["assetNodeOrError"]
    assert [dimension["name"] for dimension in node["partitionKeysByDimension"]] == ["date", "user_id_range"]
    statuses = node["assetPartitionStatuses"]
    assert statuses["__typename"] == "MultiPartitionStatuses"
    assert [r["primaryDimStartKey"] for r in statuses["ranges"]] == [str(D)]


def test_seeded_days_all_aggregated_let_an_earlier_date_be_scored_and_a_half_scored_date_says_what_to_score(
    engine, instance, definitions
):
    """What `ranking-pipeline seed` leaves (every seeded day aggregated): D-1 scores at once. Ranking a date
    of which only one range is scored fails at once, naming the other ranges and how to launch them."""
    previous = D - dt.timedelta(days=1)
    seed(engine, 1000, end_date=D, random_seed=9, days=31)
    aggregated = aggregate_seeded_days(definitions, instance, D - dt.timedelta(days=30), D)
    assert aggregated.days[0] == previous - dt.timedelta(days=29) and aggregated.days[-1] == D
    first_range, *others = [user_range.key for user_range in USER_ID_RANGES]

    one_range = execute_job(
        definitions, BATCH_001_SCORES_JOB, instance, scores_partition_tags(previous, [first_range])
    )
    assert one_range.failure is None, one_range.failure
    ranking = execute_job(definitions, BATCH_001_RANKINGS_JOB, instance, {PARTITION_TAG: str(previous)})
    assert ranking.failure is not None and "StaleScoresError" in ranking.failure
    assert f"for the user-ID range(s) {', '.join(others)}. To score them, open the asset user_scores" in (
        ranking.failure
    )
    assert f"enter {previous} as the date, pick those ranges in the user-ID range picker" in ranking.failure
    assert rankings_rows(engine, previous) == []

    run_batch_runs(definitions, instance, BusinessDate.of(previous))  # scores the other ranges, then ranks
    assert len(rankings_rows(engine, previous)) > 500
