"""User-ID ranges that follow the user base: balanced cuts, stored once, re-cut by an operator.

The balance tests seed the sample generator's shape (IDs 1 ... N) and read each range's scored rows of a date
from the asset's own per-partition metadata, as the UI shows them; the re-cut test runs the procedure of
docs/OPERATIONS.md with the command line and reads the partition status back through Dagster's GraphQL API.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster_graphql.test.utils import execute_dagster_graphql

from ranking_pipeline.lib.bulk_seed import seed_bulk
from ranking_pipeline.lib.ranges import (
    BALANCE_LIMIT,
    USER_ID_RANGES,
    RangeCutError,
    all_cuts,
    apply_cut,
    cut_for_scoring,
    cut_in_force,
    legacy_boundaries,
    plan_cut,
)
from ranking_pipeline.lib.schema import ensure_output_tables
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.helpers import (
    cli,
    jst,
    load_inputs,
    materializations,
    project_location_target,
    rankings_rows,
    run_date,
)
from ranking_pipeline_tests.test_against_sql import INDEPENDENT_RANKING
from ranking_pipeline_tests.test_cli import DATABASE_URL_ENV, env_with, plain_url

D = dt.date(2026, 11, 20)


def range_rows(instance: dg.DagsterInstance, business_date: dt.date) -> dict[str, int]:
    """Each range's scored rows of D, from user_scores' per-partition metadata (dagster/row_count)."""
    found = materializations(instance, "user_scores")
    return {slot.key: found[f"{business_date}|{slot.key}"]["dagster/row_count"] for slot in USER_ID_RANGES}


def assert_balanced(rows: dict[str, int]) -> None:
    mean = sum(rows.values()) / len(rows)
    assert max(rows.values()) <= BALANCE_LIMIT * mean, rows


@pytest.mark.parametrize("users", [100_000, 1_000_000])
def test_the_ranges_of_a_date_carry_even_shares_of_the_scored_users(users, engine, instance, definitions):
    if users < 1_000_000:
        seed(engine, users, end_date=D)  # the README's sample data
    else:  # the benchmark's seeding: the same shape, 31 M orders in about a minute
        seed_bulk(engine, users, end_date=D, log=lambda _: None)

    run_date(definitions, instance, D)

    rows = range_rows(instance, D)
    print(f"\n{users:,} users, scored rows per range of {D}: {rows}")
    assert sum(rows.values()) > 0.9 * users
    assert_balanced(rows)
    ranked = materializations(instance, "rankings")[str(D)]
    assert ranked["user_id_range_balance"] <= BALANCE_LIMIT
    with engine.connect() as connection:
        (cut,) = all_cuts(connection)
    assert cut.origin.startswith("automatic at the first scoring")
    assert cut.ranges[-1].first_id < users  # the last range is no longer the one holding the growth
    with engine.connect() as connection:  # a re-cut now would split exactly the users scored for D
        started = time.perf_counter()
        replanned = plan_cut(connection, D)
        print(f"ranges plan: {replanned.describe()} in {time.perf_counter() - started:.2f} s")
    assert (replanned.basis, replanned.basis_users) == ("scored", sum(rows.values()))


def test_a_balanced_cut_puts_an_eighth_of_a_days_users_in_each_range(engine):
    day = D
    load_inputs(engine, [], [])
    ensure_output_tables(engine)
    with engine.begin() as connection:  # users 1 .. 800 ordered on the day, 80 unknown far above them
        connection.execute(
            sa.text(
                "INSERT INTO daily_order_aggregates SELECT :day, id, 1, 1 FROM generate_series(1, 800) AS id "
                "UNION ALL SELECT :day, 10000000 + id, 1, 1 FROM generate_series(1, 80) AS id"
            ),
            {"day": day},
        )
        plan = plan_cut(connection, day + dt.timedelta(days=3))  # the latest aggregated day on or before
    assert (plan.basis, plan.basis_day, plan.basis_users) == ("ordered", day, 880)
    assert plan.boundaries == (111, 221, 331, 441, 551, 661, 771)  # 110 users in each range
    with engine.connect() as connection:
        assert plan_cut(connection, day - dt.timedelta(days=1)).basis_day is None  # nothing: legacy widths


def test_the_first_scorings_store_one_cut_however_many_ask_at_once(engine):
    """Eight sessions (the eight first scorings of eight dates, say) ask for their cut at the same moment,
    with no cut stored: exactly one cut is stored, and every session scores under it."""
    load_inputs(engine, [], [])
    ensure_output_tables(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO daily_order_aggregates SELECT :d, id, 1, 1 FROM generate_series(1, 5000) id"
            ),
            {"d": D},
        )
    start = threading.Barrier(8)
    cuts, errors = [], []

    def first_scoring(offset: int) -> None:
        try:
            start.wait(timeout=30)
            cuts.append(cut_for_scoring(engine, D + dt.timedelta(days=offset)))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=first_scoring, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    with engine.connect() as connection:
        stored = all_cuts(connection)
    assert len(stored) == 1
    assert {cut.cut_id for cut in cuts} == {stored[0].cut_id}
    assert len(cuts) == 8


def test_each_date_is_scored_under_the_cut_in_force_for_it(engine):
    ensure_output_tables(engine)
    first = apply_cut(engine, D, legacy_boundaries(), "test")
    wide = tuple(10 * b for b in legacy_boundaries())
    later = apply_cut(engine, D + dt.timedelta(days=5), wide, "test")
    again = apply_cut(engine, D + dt.timedelta(days=5), wide, "test: replaced before any date used it")

    in_force = {}
    with engine.connect() as connection:
        for offset in (-3, 0, 4, 5, 9):
            in_force[offset] = cut_in_force(connection, D + dt.timedelta(days=offset)).cut_id
    assert in_force == {-3: first.cut_id, 0: first.cut_id, 4: first.cut_id, 5: again.cut_id, 9: again.cut_id}
    assert again.cut_id != later.cut_id  # a replaced cut is a new cut: nothing resumes under the old one
    with pytest.raises(RangeCutError, match="strictly increasing"):
        apply_cut(engine, D + dt.timedelta(days=7), (5, 4, 6, 7, 8, 9, 10), "test")


RANGE_STATUS = """
query Status {
  assetNodeOrError(assetKey: {path: ["user_scores"]}) {
    ... on AssetNode {
      assetPartitionStatuses {
        ... on MultiPartitionStatuses {
          ranges {
            primaryDimStartKey primaryDimEndKey
            secondaryDim { ... on DefaultPartitionStatuses { materializedPartitions failedPartitions } }
          }
        }
      }
    }
  }
  assetOrError(assetKey: {path: ["user_scores"]}) {
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition
        metadataEntries { label ... on TextMetadataEntry { text } }
      }
    }
  }
}
"""


def grow_the_user_base(engine, first_new: int, last_new: int, days: list[dt.date]) -> None:
    """New users (IDs above everyone's) with completed orders on ``days``."""
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO users SELECT id, 'new', 'active', now() FROM generate_series(:a, :b) id"),
            {"a": first_new, "b": last_new},
        )
        for offset, day in enumerate(days):
            at = jst(day.year, day.month, day.day, 12)
            connection.execute(
                sa.text(
                    "INSERT INTO orders SELECT :base + id, id, 10 + id % 7, 'completed', :at "
                    "FROM generate_series(:a, :b) id"
                ),
                {
                    "base": 10**9 * (offset + 1),
                    "a": first_new,
                    "b": last_new,
                    "at": at,
                },
            )


def graphql_status(instance, database_url, monkeypatch, partitions: list[str]) -> tuple[dict, dict]:
    """({date: materialized range keys}, {partition: {label: text}}) as the UI reads them."""
    monkeypatch.setenv("RANKING_DATABASE_URL", database_url)
    with create_test_daemon_workspace_context(project_location_target(), instance) as workspace:
        result = execute_dagster_graphql(
            workspace.create_request_context(),
            RANGE_STATUS.replace("query Status {", "query Status($partitions: [String!]) {"),
            {"partitions": partitions},
        )
    assert not result.errors, result.errors
    status = {}
    for span in result.data["assetNodeOrError"]["assetPartitionStatuses"]["ranges"]:
        assert span["secondaryDim"]["failedPartitions"] == []
        first = dt.date.fromisoformat(span["primaryDimStartKey"])
        last = dt.date.fromisoformat(span["primaryDimEndKey"])
        for offset in range((last - first).days + 1):
            status[first + dt.timedelta(days=offset)] = set(span["secondaryDim"]["materializedPartitions"])
    metadata = {}
    for event in reversed(result.data["assetOrError"]["assetMaterializations"]):  # newest wins
        metadata[event["partition"]] = {e["label"]: e.get("text") for e in event["metadataEntries"]}
    return status, metadata


def expected_rankings(engine, business_date: dt.date) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": business_date})]


def test_the_recut_procedure_end_to_end(engine, database_url, instance, definitions, monkeypatch):
    """Cut (automatically), run dates, the user base quadruples, the nightly reports the imbalance, the
    operator re-cuts from the next date, runs it, and re-runs old and new dates: every date keeps its cut,
    its rankings equal an independent SQL ranking, and the UI shows every range of every date materialized."""
    seed(engine, 2_000, end_date=D + dt.timedelta(days=1), random_seed=5)
    grow_the_user_base(engine, 2_001, 8_000, [D, D + dt.timedelta(days=1)])
    before, recut, after = D - dt.timedelta(days=1), D, D + dt.timedelta(days=1)
    env = env_with(**{DATABASE_URL_ENV: plain_url(database_url)})

    run_date(definitions, instance, before)  # the first scoring stores a cut balanced for 2,000 users
    assert_balanced(range_rows(instance, before))
    run_date(definitions, instance, recut)  # 6,000 new users land in the last range
    assert materializations(instance, "rankings")[str(recut)]["user_id_range_balance"] > BALANCE_LIMIT
    shown = cli("ranges", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"{recut}: largest range / mean" in shown.stdout and "OUT OF BALANCE" in shown.stdout

    refused = cli("ranges", "apply", "--from", str(recut), env=env)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and f"apply it from {after} or later" in refused.stderr
    planned = cli("ranges", "plan", env=env)
    assert planned.returncode == 0, planned.stderr
    assert f"users scored for {recut}" in planned.stdout.splitlines()[0], planned.stdout
    assert planned.stdout.splitlines()[-1].endswith(": balanced"), planned.stdout
    applied = cli("ranges", "apply", "--from", str(after), env=env)
    assert applied.returncode == 0, applied.stderr
    assert f"stored cut 2 (from {after})" in applied.stdout

    run_date(definitions, instance, after)  # under cut 2, from D's scores across the change of cut
    assert_balanced(range_rows(instance, after))
    run_date(definitions, instance, recut, force=True)  # an old date re-run: still under cut 1
    last = USER_ID_RANGES[-1].key
    dg.materialize(  # one range of the old date, from the partition picker
        [definitions.get_assets_def("user_scores")],
        partition_key=f"{recut}|{last}",
        instance=instance,
        resources=definitions.resources,
    )
    run_date(definitions, instance, recut)  # ranks it again (the scores are up to date: resumed)

    with engine.connect() as connection:
        cuts = {day: cut_in_force(connection, day) for day in (before, recut, after)}
    assert [cuts[day].cut_id for day in (before, recut, after)] == [1, 1, 2]
    for day in (before, recut, after):
        assert rankings_rows(engine, day) == expected_rankings(engine, day)
    partitions = [f"{recut}|{last}", f"{after}|{last}"]
    status, metadata = graphql_status(instance, database_url, monkeypatch, partitions)
    every_range = {slot.key for slot in USER_ID_RANGES}
    assert {day: status.get(day) for day in (before, recut, after)} == dict.fromkeys(
        (before, recut, after), every_range
    )
    assert metadata[f"{recut}|{last}"]["range_cut"] == f"cut 1 (from {before})"
    assert metadata[f"{recut}|{last}"]["user_ids"] == cuts[recut].ranges[-1].describe()
    assert metadata[f"{after}|{last}"]["range_cut"] == f"cut 2 (from {after})"
    assert metadata[f"{after}|{last}"]["user_ids"] == cuts[after].ranges[-1].describe()
