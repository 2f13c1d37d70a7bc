"""What people do in the Dagster UI, in a real browser against `dagster dev` on a seeded database.

The journeys run in file order on one `dagster dev` (the batch materialized in the second is what the third
re-runs a range of and the fourth reads checks of); each also stands alone. Details are confirmed through the
GraphQL API and the database, the browser is for what a person sees and clicks.
"""

from __future__ import annotations

import re

import pytest

from ranking_pipeline.batch_runner import batch_001_run_tags
from ranking_pipeline.constants import (
    BATCH_001_JOB,
    BUSINESS_DATE_TAG,
    RANKINGS_INTEGRITY_CHECK,
    RANKINGS_ROW_COUNT_ANOMALY_CHECK,
)
from ranking_pipeline.lib import db
from ranking_pipeline.lib.queries import count_rows, read_rankings
from ranking_pipeline.lib.ranges import USER_ID_RANGES
from ranking_pipeline.lib.schema import rankings as rankings_table
from ranking_pipeline.lib.state import USER_SCORES_ASSET, partition_runs_for
from ranking_pipeline_tests.dagster_dev import DagsterDev
from ranking_pipeline_tests.ui.conftest import BUSINESS_DATE, Journey

expect = pytest.importorskip("playwright.sync_api", reason="the ui-tests extra is not installed").expect

pytestmark = pytest.mark.browser

D = BUSINESS_DATE.isoformat()
RERUN_RANGE = USER_ID_RANGES[1].key
PIPELINE = ("daily_order_aggregates", "user_scores", "rankings")

ASSET_NODES = """
{ assetNodes(group: {groupName: "ranking", repositoryName: "__repository__",
                     repositoryLocationName: "ranking_pipeline"}) {
    assetKey { path } dependencyKeys { path } isPartitioned
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
} }
"""

LATEST_MATERIALIZATIONS = """
query Latest($path: [String!]!, $limit: Int) {
  assetOrError(assetKey: {path: $path}) { ... on Asset {
    assetMaterializations(limit: $limit) {
      runId partition
      metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
    }
  } }
}
"""

CHECK_EXECUTIONS = """
query Checks($check: String!) {
  assetCheckExecutions(assetKey: {path: ["rankings"]}, checkName: $check, limit: 1) {
    runId status evaluation { success severity description }
  }
}
"""


def _engine(ui_database_url: str):
    return db.get_engine(ui_database_url)


def _materializations(dev: DagsterDev, asset: str, limit: int = 20) -> list[dict]:
    return dev.graphql(LATEST_MATERIALIZATIONS, {"path": [asset], "limit": limit})["assetOrError"][
        "assetMaterializations"
    ]


def _metadata(materialization: dict) -> dict:
    return {
        entry["label"]: entry.get("intValue", entry.get("text"))
        for entry in materialization["metadataEntries"]
    }


def _score_runs(ui_database_url: str) -> dict[str, str]:
    """user-ID range -> id of the run that last computed it for D (the pipeline's management table)."""
    with _engine(ui_database_url).connect() as connection:
        found = partition_runs_for(connection, USER_SCORES_ASSET, [BUSINESS_DATE])
    return {key: run.run_id for (_, key), run in found.items()}


def _graph_node(journey: Journey, name: str):
    """The asset's node in the lineage graph (the rightmost visible element titled exactly ``name``; the
    asset list on the left repeats the names)."""
    candidates = journey.page.get_by_text(name, exact=True).filter(visible=True)
    expect(candidates.last).to_be_visible()
    return max(candidates.all(), key=lambda element: element.bounding_box()["x"])


def _add_tag(journey: Journey, opener, key: str, value: str) -> None:
    """Fill the "Add tags to run" dialog that ``opener`` opens."""
    opener.click()
    tags = journey.page.get_by_role("dialog").filter(has_text="Add tags to run")
    tags.get_by_placeholder("Tag Key").fill(key)
    tags.get_by_placeholder("Tag Value").fill(value)
    tags.get_by_role("button", name="Apply").click()
    expect(tags).to_be_hidden()


def _ensure_batch_done(dev: DagsterDev, ui_database_url: str) -> None:
    """BATCH-001 for D, launched over GraphQL, unless a journey already produced it."""
    with _engine(ui_database_url).connect() as connection:
        if count_rows(connection, rankings_table, "ranking_date", BUSINESS_DATE):
            return
    run = dev.wait_for_run(dev.launch_job(BATCH_001_JOB, batch_001_run_tags(BUSINESS_DATE)))
    assert run["status"] == "SUCCESS", dev.log_tail()


def test_lineage_shows_aggregates_then_scores_then_rankings_with_checks_and_partitions(journey, ui_dev):
    page = journey.page
    journey.open("/")
    page.get_by_role("link", name="Lineage").click()
    nodes = [_graph_node(journey, name) for name in PIPELINE]
    xs = [node.bounding_box()["x"] for node in nodes]
    assert xs == sorted(xs), f"lineage is not left to right aggregates -> scores -> rankings: {xs}"
    expect(page.get_by_text("8 partitions", exact=True)).to_be_visible()  # user_scores: the ID ranges
    expect(page.get_by_text(re.compile(r"^[\d,]{4,} partitions$"))).to_be_visible()  # one per JST day
    journey.shot("lineage")

    nodes[2].click()  # the rankings node: its checks are listed beside the graph
    sidebar_checks = page.get_by_text(RANKINGS_INTEGRITY_CHECK, exact=True).filter(visible=True)
    expect(sidebar_checks.first).to_be_visible()
    expect(
        page.get_by_text(RANKINGS_ROW_COUNT_ANOMALY_CHECK, exact=True).filter(visible=True).first
    ).to_be_visible()
    journey.shot("rankings-selected-with-checks")

    everything = {node["assetKey"]["path"][0]: node for node in ui_dev.graphql(ASSET_NODES)["assetNodes"]}
    by_key = {key: everything[key] for key in PIPELINE}  # the group may hold more (e.g. metrics)
    assert {key: [d["path"][0] for d in node["dependencyKeys"]] for key, node in by_key.items()} == {
        "daily_order_aggregates": [],
        "user_scores": ["daily_order_aggregates"],
        "rankings": ["user_scores"],
    }
    assert {key: node["isPartitioned"] for key, node in by_key.items()} == {
        "daily_order_aggregates": True,
        "user_scores": True,
        "rankings": False,
    }
    assert by_key["rankings"]["assetChecksOrError"]["checks"] == [
        {"name": RANKINGS_INTEGRITY_CHECK, "blocking": True},
        {"name": RANKINGS_ROW_COUNT_ANOMALY_CHECK, "blocking": False},
    ]


def test_a_person_materializes_the_batch_for_a_date_and_reads_the_ranking(journey, ui_dev, ui_database_url):
    page = journey.page
    known = {run["runId"] for run in ui_dev.runs()}

    journey.open(f"/locations/ranking_pipeline/jobs/{BATCH_001_JOB}")
    page.get_by_role("button", name=re.compile(r"Materialize all")).first.click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    dialog.get_by_role("button", name="All", exact=True).click()
    expect(dialog.get_by_text("8 partitions selected")).to_be_visible()
    dialog.get_by_text("Tags", exact=True).click()
    _add_tag(journey, dialog.get_by_role("button", name="Add tags"), BUSINESS_DATE_TAG, D)
    expect(dialog.get_by_text(f"{BUSINESS_DATE_TAG}: {D}")).to_be_visible()
    journey.shot("launch-dialog-all-ranges-for-the-date")
    dialog.get_by_role("button", name=re.compile(r"^Launch")).click()
    expect(page.get_by_text(re.compile(r"Created backfill|Launched run"))).to_be_visible()
    journey.shot("launched")

    run = ui_dev.wait_for_run(ui_dev.wait_for_new_run(known)["runId"])
    assert run["status"] == "SUCCESS", ui_dev.log_tail()
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert tags[BUSINESS_DATE_TAG] == D
    assert sorted(key["path"][0] for key in run["assetSelection"]) == ["rankings", "user_scores"]

    with _engine(ui_database_url).connect() as connection:
        ranked = count_rows(connection, rankings_table, "ranking_date", BUSINESS_DATE)
        top = read_rankings(connection, BUSINESS_DATE, limit=10)
    assert ranked > 1000, "2,000 seeded users should give well over 1,000 ranked users"
    assert set(_score_runs(ui_database_url)) == {user_range.key for user_range in USER_ID_RANGES}

    journey.open("/assets/rankings")
    expect(page.get_by_text("Row count")).to_be_visible()
    expect(page.get_by_text(f"{ranked:,}", exact=True).first).to_be_visible()
    for column in ("ranking_date", "rank", "user_id", "score", "order_count"):
        expect(page.get_by_role("cell", name=column, exact=True).first).to_be_visible()
    top_table = page.get_by_role("row").filter(has_text=str(top[0].score))
    expect(top_table.first).to_be_visible()  # the leader's score, in the top-10 metadata table
    expect(page.get_by_role("cell", name=str(top[0].user_id), exact=True).first).to_be_visible()
    journey.shot("rankings-row-count-columns-top-10")

    latest = _metadata(_materializations(ui_dev, "rankings", limit=1)[0])
    assert latest["dagster/row_count"] == ranked
    assert latest["business_date"] == D


def test_rematerializing_one_user_id_range_reruns_only_that_range(journey, ui_dev, ui_database_url):
    _ensure_batch_done(ui_dev, ui_database_url)
    page = journey.page
    before = _score_runs(ui_database_url)
    with _engine(ui_database_url).connect() as connection:
        ranking_before = read_rankings(connection, BUSINESS_DATE, limit=100_000)
    known = {run["runId"] for run in ui_dev.runs()}

    journey.open("/assets/user_scores")
    page.get_by_role("button", name=re.compile(r"Materialize…$")).click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    dialog.get_by_role("button", name="Custom", exact=True).click()
    dialog.locator("[aria-haspopup=dialog]").first.click()  # the partition picker
    picker = page.locator("[data-radix-popper-content-wrapper]")
    select_all = picker.get_by_role("menuitem").filter(has_text=re.compile(r"^Select all"))
    if select_all.locator("input[type=checkbox]").is_checked():
        select_all.click()
    picker.get_by_role("menuitem").filter(has_text=RERUN_RANGE).click()
    dialog.get_by_text("Launch runs to materialize").click()  # close the picker
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    dialog.get_by_text("Tags", exact=True).click()
    _add_tag(journey, dialog.get_by_role("button", name="Add tags"), BUSINESS_DATE_TAG, D)
    journey.shot("one-range-selected")
    dialog.get_by_role("button", name="Launch 1 run").click()
    journey.shot("range-launched")

    range_run = ui_dev.wait_for_run(ui_dev.wait_for_new_run(known)["runId"])
    assert range_run["status"] == "SUCCESS", ui_dev.log_tail()
    known.add(range_run["runId"])
    after = _score_runs(ui_database_url)
    assert after[RERUN_RANGE] == range_run["runId"]
    assert {key: run for key, run in after.items() if key != RERUN_RANGE} == {
        key: run for key, run in before.items() if key != RERUN_RANGE
    }, "other user-ID ranges were recomputed"
    in_run = [m for m in _materializations(ui_dev, "user_scores") if m["runId"] == range_run["runId"]]
    assert [m["partition"] for m in in_run] == [RERUN_RANGE]

    journey.open("/assets/rankings")
    materialize = page.get_by_role("button", name=re.compile(r"Materialize$"))
    expect(materialize).to_be_enabled()
    page.get_by_role("button", name="arrow_drop_down").first.click()
    page.get_by_text("Open launchpad").click()
    launchpad = page.get_by_role("dialog").filter(has_text="Launchpad")
    _add_tag(journey, launchpad.get_by_role("button", name="Edit tags"), BUSINESS_DATE_TAG, D)
    journey.shot("rankings-launchpad-with-date")
    launchpad.get_by_role("button", name="Materialize").click()

    rankings_run = ui_dev.wait_for_run(ui_dev.wait_for_new_run(known)["runId"])
    assert rankings_run["status"] == "SUCCESS", ui_dev.log_tail()
    assert {t["key"]: t["value"] for t in rankings_run["tags"]}[BUSINESS_DATE_TAG] == D
    assert _score_runs(ui_database_url) == after, "rankings must not recompute any scores"
    with _engine(ui_database_url).connect() as connection:
        assert read_rankings(connection, BUSINESS_DATE, limit=100_000) == ranking_before
    journey.open(f"/runs/{rankings_run['runId']}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    journey.shot("rankings-run-succeeded")


def test_rankings_check_results_are_on_its_checks_tab(journey, ui_dev, ui_database_url):
    _ensure_batch_done(ui_dev, ui_database_url)
    page = journey.page
    journey.open("/assets/rankings")
    page.get_by_role("link", name="Checks").or_(page.get_by_role("tab", name="Checks")).first.click()
    expect(page.get_by_text("Checks (2)")).to_be_visible()
    for check in (RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK):
        row = page.get_by_role("row").filter(has_text=check)
        expect(row.first.or_(page.get_by_text(check).first)).to_be_visible()
    expect(page.get_by_text("Succeeded").first).to_be_visible()
    with _engine(ui_database_url).connect() as connection:
        ranked = count_rows(connection, rankings_table, "ranking_date", BUSINESS_DATE)
    expect(page.get_by_text(f"{ranked:,} rows for {D} consistent")).to_be_visible()
    expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()
    journey.shot("checks-tab-integrity")

    page.get_by_text(RANKINGS_ROW_COUNT_ANOMALY_CHECK, exact=True).first.click()
    expect(page.get_by_text("Passed").first).to_be_visible()
    journey.shot("checks-tab-row-count-anomaly")

    for check, severity in ((RANKINGS_INTEGRITY_CHECK, "ERROR"), (RANKINGS_ROW_COUNT_ANOMALY_CHECK, "WARN")):
        [execution] = ui_dev.graphql(CHECK_EXECUTIONS, {"check": check})["assetCheckExecutions"]
        assert execution["status"] == "SUCCEEDED"
        assert execution["evaluation"]["success"] is True
        assert execution["evaluation"]["severity"] == severity
