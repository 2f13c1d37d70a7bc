"""What people do in the Dagster UI after the README's first command, in a real browser against `dagster dev`
started in the same folder, on the embedded database.

The journeys run in file order on one `dagster dev` (the failed date of the third is what the fifth reads
checks of; the fourth materializes a new date); each also stands alone. Details are confirmed through the
GraphQL API and the database, the browser is for what a person sees and clicks.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from ranking_pipeline.cli import SAMPLE_DAYS
from ranking_pipeline.constants import (
    BATCH_000_JOB,
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    FAILURE_ALERTED_TAG,
    ORDERS_CONTRACT_CHECK,
    RANKINGS_CHECKS_JOB,
    RANKINGS_INTEGRITY_CHECK,
    RANKINGS_ROW_COUNT_ANOMALY_CHECK,
    SCORED_BY_TAG,
    USERS_CONTRACT_CHECK,
)
from ranking_pipeline.lib.business_date import partition_selection, window_days
from ranking_pipeline.lib.queries import count_rows
from ranking_pipeline.lib.ranges import USER_ID_RANGES, cut_in_force
from ranking_pipeline.lib.schema import rankings as rankings_table
from ranking_pipeline.lib.schema import user_scores as user_scores_table
from ranking_pipeline.lib.state import USER_SCORES_ASSET, partition_runs_for
from ranking_pipeline_tests.dagster_dev import DagsterDev, describe_timeline, run_timeline
from ranking_pipeline_tests.fakes import RecordingHttpServer, slack_messages
from ranking_pipeline_tests.helpers import wait_until
from ranking_pipeline_tests.ui.conftest import (
    BUSINESS_DATE,
    FAILED_DATE,
    OLD_DATE,
    PICKED_DATE,
    SLACK_TOKEN,
    SPAN_DATES,
    Journey,
    UiProject,
    expect_failed_run,
)

expect = pytest.importorskip("playwright.sync_api", reason="the ui-tests extra is not installed").expect

pytestmark = pytest.mark.browser

D, F, E = BUSINESS_DATE.isoformat(), FAILED_DATE.isoformat(), PICKED_DATE.isoformat()
OLD = OLD_DATE.isoformat()
RANGE_KEYS = [user_range.key for user_range in USER_ID_RANGES]
RERUN_RANGE = USER_ID_RANGES[0].key  # the range holding the smallest user IDs
RUN_TIMEOUT = 300
PROJECT_RESOURCES = [
    "batch_gate",
    "batch_lock",
    "clock",
    "dagster_ui",
    "database",
    "mail",
    "pagerduty",
    "ranking_cache",
    "redis",
    "slack",
]
REPOSITORY = {"repositoryLocationName": "ranking_pipeline", "repositoryName": "__repository__"}

ASSET_NODES = """
{ assetNodes(group: {groupName: "ranking", repositoryName: "__repository__",
                     repositoryLocationName: "ranking_pipeline"}) {
    assetKey { path } dependencyKeys { path } isPartitioned
    partitionStats { numPartitions }
    partitionDefinition { type description dimensionTypes { name type } }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
} }
"""

MATERIALIZATIONS = """
query Materializations($path: [String!]!, $partitions: [String!], $limit: Int) {
  assetOrError(assetKey: {path: $path}) { ... on Asset {
    assetMaterializations(partitions: $partitions, limit: $limit) {
      runId partition timestamp
      metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
    }
  } }
}
"""

PARTITION_STATUSES = """
query Statuses($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
    assetPartitionStatuses {
      __typename
      ... on TimePartitionStatuses { ranges { startKey endKey status } }
      ... on MultiPartitionStatuses {
        ranges {
          primaryDimStartKey primaryDimEndKey
          secondaryDim { ... on DefaultPartitionStatuses {
            materializedPartitions failedPartitions materializingPartitions
          } }
        }
      }
    }
  } }
}
"""

CHECKS = """
{ assetNodeOrError(assetKey: {path: ["rankings"]}) { ... on AssetNode {
    assetChecksOrError { ... on AssetChecks { checks { name partitionStatuses {
      __typename ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
    } } } }
} } }
"""

CHECK_EXECUTIONS = """
query Executions($check: String!) {
  assetCheckExecutions(assetKey: {path: ["rankings"]}, checkName: $check, limit: 50) {
    runId status partition
    evaluation { success severity description targetMaterialization { runId } }
  }
}
"""

RESOURCES = """
query Resources($selector: RepositorySelector!) {
  allTopLevelResourceDetailsOrError(repositorySelector: $selector) {
    ... on ResourceDetailsList { results { name configuredValues { key value type } } }
  }
}
"""

BACKFILLS = """
{ partitionBackfillsOrError(limit: 10) { ... on PartitionBackfills { results {
    id status runs(limit: 10) { runId status }
} } } }
"""


# --- reading state: GraphQL and the database ---------------------------------------------------------------


def _metadata(materialization: dict) -> dict:
    return {
        entry["label"]: entry.get("intValue", entry.get("text"))
        for entry in materialization["metadataEntries"]
    }


def _materializations(dev: DagsterDev, asset: str, partitions: list[str] | None = None, limit: int = 100):
    variables = {"path": [asset], "partitions": partitions, "limit": limit}
    return dev.graphql(MATERIALIZATIONS, variables)["assetOrError"]["assetMaterializations"]


def _latest_row_counts(dev: DagsterDev, asset: str, partitions: list[str]) -> dict[str, int]:
    """partition -> dagster/row_count of its latest materialization (newest first from GraphQL)."""
    latest: dict[str, int] = {}
    for materialization in _materializations(dev, asset, partitions):
        latest.setdefault(materialization["partition"], _metadata(materialization)["dagster/row_count"])
    return latest


def _time_statuses(dev: DagsterDev, asset: str) -> dict[str, str]:
    """date -> MATERIALIZED / FAILED / MATERIALIZING: the partition view of a daily asset."""
    found = dev.graphql(PARTITION_STATUSES, {"path": [asset]})["assetNodeOrError"]
    return _expand(found["assetPartitionStatuses"]["ranges"])


def _score_statuses(dev: DagsterDev) -> dict[str, dict[str, str]]:
    """date -> {range -> MATERIALIZED / FAILED / MATERIALIZING}: the date x range view of user_scores."""
    found = dev.graphql(PARTITION_STATUSES, {"path": ["user_scores"]})["assetNodeOrError"]
    statuses: dict[str, dict[str, str]] = {}
    for span in found["assetPartitionStatuses"]["ranges"]:
        first, last = (dt.date.fromisoformat(span[key]) for key in ("primaryDimStartKey", "primaryDimEndKey"))
        secondary = span["secondaryDim"]
        by_range = {key: "MATERIALIZED" for key in secondary["materializedPartitions"]}
        by_range |= {key: "FAILED" for key in secondary["failedPartitions"]}
        by_range |= {key: "MATERIALIZING" for key in secondary["materializingPartitions"]}
        while first <= last:
            statuses[first.isoformat()] = by_range
            first += dt.timedelta(days=1)
    return statuses


def _check_statuses(dev: DagsterDev) -> dict[str, dict[str, str]]:
    """check name -> {date -> SUCCEEDED / FAILED / EXECUTION_FAILED / ...}: the checks' partition views."""
    checks = dev.graphql(CHECKS)["assetNodeOrError"]["assetChecksOrError"]["checks"]
    return {check["name"]: _expand(check["partitionStatuses"]["ranges"]) for check in checks}


def _expand(ranges: list[dict]) -> dict[str, str]:
    """{date: status} from ranges of consecutive dates sharing a status ({startKey, endKey, status})."""
    statuses = {}
    for span in ranges:
        first, last = dt.date.fromisoformat(span["startKey"]), dt.date.fromisoformat(span["endKey"])
        while first <= last:
            statuses[first.isoformat()] = span["status"]
            first += dt.timedelta(days=1)
    return statuses


def _score_runs(project: UiProject, day: dt.date) -> dict[str, str]:
    """user-ID range -> id of the run that last computed it for ``day`` (the management table)."""
    with project.engine().connect() as connection:
        found = partition_runs_for(connection, USER_SCORES_ASSET, [day])
    return {key: run.run_id for (_, key), run in found.items()}


def _rows_per_range(project: UiProject, day: dt.date) -> dict[str, int]:
    """(day, range) -> rows of user_scores, counted in the table itself."""
    counts = {}
    with project.engine().connect() as connection:
        for user_range in cut_in_force(connection, day).ranges:
            counts[f"{day}|{user_range.key}"] = connection.execute(
                sa.select(sa.func.count())
                .select_from(user_scores_table)
                .where(
                    user_scores_table.c.score_date == day,
                    user_scores_table.c.user_id.between(user_range.first_id, user_range.last_id),
                )
            ).scalar_one()
    return counts


def _ranked(project: UiProject, day: dt.date) -> int:
    with project.engine().connect() as connection:
        return count_rows(connection, rankings_table, "ranking_date", day)


def _backfills(dev: DagsterDev) -> list[dict]:
    """The latest backfills, newest first: id, status, runs."""
    return dev.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]


def _backfill_of(dev: DagsterDev, run_id: str) -> dict:
    """The backfill that launched the run ``run_id``."""
    backfill_id = {t["key"]: t["value"] for t in dev.run(run_id)["tags"]}["dagster/backfill"]
    return next(backfill for backfill in _backfills(dev) if backfill["id"] == backfill_id)


def _wait_for_new_run(dev: DagsterDev, known: set[str], timeout: float = 120) -> dict:
    run = dev.wait_for_new_run(known, timeout=timeout)
    finished = dev.wait_for_run(run["runId"], timeout=RUN_TIMEOUT)
    assert finished["status"] == "SUCCESS", f"run {run['runId']} {finished['status']}:\n{dev.log_tail()}"
    return finished


def _wait_for(condition, what: str, timeout: float = 120, every: float = 2):
    """``condition()``'s first true value, polled with ``wait_until``."""
    seen = []

    def holds() -> bool:
        seen[:] = [condition()]
        return bool(seen[0])

    wait_until(holds, timeout, what, every=every)
    return seen[0]


# --- what a person does in the browser -------------------------------------------------------------------


def _graph_node(journey: Journey, name: str):
    """The asset's node in the lineage graph (the rightmost visible element titled exactly ``name``; the
    asset list on the left repeats the names)."""
    candidates = journey.page.get_by_text(name, exact=True).filter(visible=True)
    expect(candidates.last).to_be_visible()
    return max(candidates.all(), key=lambda element: element.bounding_box()["x"])


def _show_dates(journey: Journey, asset: str, first: str, last: str) -> None:
    """The asset's Partitions tab, narrowed to the dates first .. last with its date filter."""
    journey.open(f"/assets/{asset}?view=partitions")
    page = journey.page
    date_filter = page.locator("input[value^='[']").first
    expect(date_filter).to_be_visible()
    handle = date_filter.element_handle()  # its value (and so the locator) changes as it is typed into
    handle.fill(f"[{first}...{last}]")
    handle.press("Enter")
    expect(page.get_by_text(re.compile(r"^\d+ Partitions Selected$"))).to_be_visible()


def _status_filter(journey: Journey, status: str):
    """A status checkbox of the partition view (e.g. "Failed (1)")."""
    return journey.page.get_by_text(re.compile(rf"^{status} \(\d+\)$")).first


def _open_materialize_dialog(journey: Journey, asset: str):
    journey.open(f"/assets/{asset}")
    journey.page.get_by_role("button", name=re.compile(r"Materialize…$")).click()
    dialog = journey.page.get_by_role("dialog").filter(has_text=f"Launch runs to materialize {asset}")
    expect(dialog).to_be_visible()
    return dialog


def _pick_score_partitions(
    journey: Journey, dialog, day: str, range_key: str | None, *, dates: int = 1
) -> None:
    """In user_scores' launch dialog: the date (or dates, as typed), then one range (or all of them)."""
    date_input = dialog.get_by_placeholder(re.compile(r"^ex: "))
    date_input.fill(day)
    date_input.press("Enter")
    if range_key is None:
        dialog.get_by_role("button", name="All", exact=True).nth(1).click()  # the range dimension's "All"
        if dates == 1:  # (a dialog of two assets counts no partitions)
            expect(dialog.get_by_text(f"{len(RANGE_KEYS)} partitions", exact=True)).to_be_visible()
        return
    dialog.locator("[aria-haspopup=dialog]").first.click()  # the range picker
    picker = journey.page.locator("[data-radix-popper-content-wrapper]")
    picker.get_by_role("menuitem").filter(has_text=range_key).click()
    dialog.get_by_text("Launch runs to materialize").click()  # close the picker
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()


# --- the journeys ------------------------------------------------------------------------------------------


def test_the_readme_first_command_shows_its_ranking_in_dagster_dev(
    journey: Journey, ui_dev: DagsterDev, ui_project: UiProject
):
    """The README's first command ran in this folder before `dagster dev` started: the UI shows its runs and
    the rankings of D with that run's row count, on the embedded database in the folder."""
    page = journey.page
    ranking_run = ui_project.cli_run_ids[-1]
    ranked = _ranked(ui_project, BUSINESS_DATE)
    assert ranked == ui_project.ranked_users > 1000

    journey.open("/assets/rankings")
    expect(page.get_by_text("Row count").first).to_be_visible()
    expect(page.get_by_text(f"{ranked:,}", exact=True).first).to_be_visible()
    expect(page.get_by_text(D, exact=True).first).to_be_visible()  # the partition it materialized
    journey.shot("rankings-after-the-readme-command")

    journey.open(f"/assets/rankings?view=partitions&partition={D}")
    expect(page.get_by_text(ranking_run[:8], exact=True).first).to_be_visible()
    expect(page.get_by_text(BATCH_001_RANKINGS_JOB, exact=True).first).to_be_visible()
    expect(page.get_by_role("cell", name=str(ranked), exact=True).first).to_be_visible()
    journey.shot("rankings-partition-of-the-readme-command")

    journey.open("/runs")
    for run_id in ui_project.cli_run_ids:
        expect(page.get_by_text(run_id[:8], exact=True).first).to_be_visible()
    journey.shot("the-cli-runs")

    [latest] = _materializations(ui_dev, "rankings", [D], limit=1)
    assert (latest["runId"], latest["partition"]) == (ranking_run, D)
    assert _metadata(latest)["dagster/row_count"] == ranked
    runs = [ui_dev.run(run_id) for run_id in ui_project.cli_run_ids]
    assert [(run["jobName"], run["status"]) for run in runs] == [
        (BATCH_000_JOB, "SUCCESS"),
        (BATCH_001_SCORES_JOB, "SUCCESS"),
        (BATCH_001_RANKINGS_JOB, "SUCCESS"),
    ]
    # No database configured anywhere: dagster dev's own processes use the embedded server in the folder.
    environment = Path(f"/proc/{ui_dev.process.pid}/environ").read_bytes().split(b"\0")
    assert not [v for v in environment if v.startswith((b"RANKING_DATABASE_URL=", b"DAGSTER_HOME="))]
    holders = set(json.loads((ui_project.pgdata / ".handle_pids.json").read_text()))
    dev_processes = {child.pid for child in psutil.Process(ui_dev.process.pid).children(recursive=True)}
    assert holders & dev_processes, f"no process of dagster dev uses {ui_project.pgdata} ({holders})"


def test_lineage_shows_inputs_aggregates_scores_rankings_with_checks_and_partitions(
    journey: Journey, ui_dev: DagsterDev
):
    page = journey.page
    journey.open("/")
    page.get_by_role("link", name="Lineage").click()
    names = ("orders", "users", "daily_order_aggregates", "user_scores", "rankings")
    x = {name: _graph_node(journey, name).bounding_box()["x"] for name in names}
    assert x["orders"] < x["daily_order_aggregates"] < x["user_scores"] < x["rankings"], x
    assert x["users"] < x["rankings"], x

    nodes = {node["assetKey"]["path"][0]: node for node in ui_dev.graphql(ASSET_NODES)["assetNodes"]}
    counts = {name: (nodes[name]["partitionStats"] or {}).get("numPartitions") for name in names}
    # One partition per JST day (aggregates reach 29 days further back, for the first window), and one per
    # date x user-ID range for the scores.
    assert counts["user_scores"] == len(RANGE_KEYS) * counts["rankings"]
    assert counts["daily_order_aggregates"] == counts["rankings"] + 29
    for name in ("daily_order_aggregates", "user_scores", "rankings"):
        expect(page.get_by_text(f"{counts[name]:,} partitions", exact=True)).to_be_visible()
    journey.shot("lineage")

    _graph_node(journey, "rankings").click()  # its checks are listed beside the graph
    for check in (RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK):
        expect(page.get_by_text(check, exact=True).filter(visible=True).first).to_be_visible()
    journey.shot("rankings-selected-with-checks")

    assert {name: sorted(d["path"][0] for d in nodes[name]["dependencyKeys"]) for name in names} == {
        "orders": [],
        "users": [],
        "daily_order_aggregates": ["orders"],
        "user_scores": ["daily_order_aggregates"],
        "rankings": ["daily_order_aggregates", "user_scores", "users"],
    }
    assert {name: nodes[name]["assetChecksOrError"]["checks"] for name in names} == {
        "orders": [{"name": ORDERS_CONTRACT_CHECK, "blocking": True}],
        "users": [{"name": USERS_CONTRACT_CHECK, "blocking": True}],
        "daily_order_aggregates": [],
        "user_scores": [],
        "rankings": [
            {"name": RANKINGS_INTEGRITY_CHECK, "blocking": True},
            {"name": RANKINGS_ROW_COUNT_ANOMALY_CHECK, "blocking": False},
        ],
    }
    for name in ("daily_order_aggregates", "rankings"):
        assert nodes[name]["partitionDefinition"]["type"] == "TIME_WINDOW"
        assert "Asia/Tokyo" in nodes[name]["partitionDefinition"]["description"]
    scores = nodes["user_scores"]["partitionDefinition"]
    assert scores["type"] == "MULTIPARTITIONED"
    assert scores["dimensionTypes"] == [
        {"name": "date", "type": "TIME_WINDOW"},
        {"name": "user_id_range", "type": "STATIC"},
    ]


def test_the_partition_views_show_each_dates_status(
    journey: Journey,
    ui_dev: DagsterDev,
    ui_project: UiProject,
    failed_batch: dict,
    slack_api: RecordingHttpServer,
):
    """D ranked by the README's command, FAILED_DATE's scoring failed (its window was never aggregated, so no
    ranking run followed), every other date missing: per date for rankings, per date and range for
    user_scores."""
    page = journey.page
    statuses = _time_statuses(ui_dev, "rankings")
    assert (statuses.get(D), statuses.get(F, "MISSING")) == ("MATERIALIZED", "MISSING"), statuses
    assert not [
        run
        for run in ui_dev.runs()
        if run["jobName"] == BATCH_001_RANKINGS_JOB
        and {"key": "dagster/partition", "value": F} in run["tags"]
    ], "a ranking run followed a failed scoring"
    shown = [(BUSINESS_DATE + dt.timedelta(days=offset)).isoformat() for offset in range(-6, 4)]
    in_view = [statuses.get(day, "MISSING") for day in shown]

    _show_dates(journey, "rankings", shown[0], shown[-1])
    expect(_status_filter(journey, "Materialized")).to_have_text(
        f"Materialized ({in_view.count('MATERIALIZED')})"
    )
    expect(_status_filter(journey, "Missing")).to_have_text(f"Missing ({in_view.count('MISSING')})")
    page.get_by_text(D, exact=True).first.click()
    expect(page.get_by_role("cell", name=str(ui_project.ranked_users), exact=True).first).to_be_visible()
    journey.shot("rankings-partitions", docs_image="rankings-partitions.png")

    scores = _score_statuses(ui_dev)
    assert scores[D] == dict.fromkeys(RANGE_KEYS, "MATERIALIZED"), scores.get(D)
    assert scores[F] == dict.fromkeys(RANGE_KEYS, "FAILED"), scores.get(F)
    _show_dates(journey, "user_scores", (BUSINESS_DATE - dt.timedelta(days=2)).isoformat(), F)
    page.get_by_text(D, exact=True).first.click()
    page.get_by_text(RERUN_RANGE, exact=True).first.click()
    expect(page.get_by_text(f"{D}|{RERUN_RANGE}", exact=True).first).to_be_visible()
    rows = _rows_per_range(ui_project, BUSINESS_DATE)[f"{D}|{RERUN_RANGE}"]
    expect(page.get_by_role("cell", name=str(rows), exact=True).first).to_be_visible()  # its own row count
    journey.shot("user-scores-partitions", docs_image="user-scores-partitions.png")

    # Alerted once, as a run from any path is: the failed batch of the CLI's runner reached Slack, naming its
    # date and its first failed run, with the token from the environment.
    scoring_run = re.search(r"run ([0-9a-f-]{36}) failed", failed_batch["error"]).group(1)

    def handled() -> bool:  # the sensor tags each failed run it has dealt with
        return {"key": FAILURE_ALERTED_TAG, "value": "true"} in ui_dev.run(scoring_run)["tags"]

    _wait_for(handled, "the failure sensor handling the failed scoring run", timeout=150)
    alerts = [message for message in slack_messages(slack_api) if F in message["text"]]
    assert len(alerts) == 1, alerts
    assert "IncompleteWindowError" in alerts[0]["text"] and scoring_run[:8] in alerts[0]["text"], alerts
    assert all(r.headers["authorization"] == f"Bearer {SLACK_TOKEN}" for r in slack_api.requests)


def test_readme_recipe_one_date_in_the_ui(journey: Journey, ui_dev: DagsterDev, ui_project: UiProject):
    """README "One date, in the UI", on the first command's data as it left it: on user_scores,
    Materialize…, the date, every range, launch; the ranking of the date follows. Then rankings of that date
    again, from its own date picker."""
    page = journey.page
    known = {run["runId"] for run in ui_dev.runs()}

    # user_scores for E, every user-ID range: one backfill, one run (single-run backfill policy).
    dialog = _open_materialize_dialog(journey, "user_scores")
    _pick_score_partitions(journey, dialog, E, None)
    journey.shot("user-scores-one-date-all-ranges")
    dialog.get_by_role("button", name="Launch backfill").click()
    expect(page.get_by_text(re.compile(r"Created backfill"))).to_be_visible()
    scores_run = _wait_for_new_run(ui_dev, known, timeout=180)
    known.add(scores_run["runId"])
    assert _score_runs(ui_project, PICKED_DATE) == dict.fromkeys(RANGE_KEYS, scores_run["runId"])
    # the daemon's sensor publishes E's ranking once the scores succeeded
    published = ui_dev.wait_for_ranking_after(scores_run["runId"])
    assert published["status"] == "SUCCESS", ui_dev.log_tail()
    assert {t["key"]: t["value"] for t in published["tags"]}["dagster/partition"] == E
    known.add(published["runId"])
    assert _time_statuses(ui_dev, "rankings")[E] == "MATERIALIZED"

    # rankings for E again, picked in the date picker.
    dialog = _open_materialize_dialog(journey, "rankings")
    dialog.get_by_role("button", name="Show all partitions").click()  # E is older than the last 90 days
    date_input = dialog.locator("input[type=text]").first
    date_input.fill(E)
    date_input.press("Enter")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    journey.shot("rankings-one-date-picked")
    dialog.get_by_role("button", name="Launch 1 run").click()
    expect(page.get_by_text(re.compile(r"Launched run"))).to_be_visible()
    rankings_run = _wait_for_new_run(ui_dev, known)
    assert {t["key"]: t["value"] for t in rankings_run["tags"]}["dagster/partition"] == E
    ranked = _ranked(ui_project, PICKED_DATE)
    assert ranked > 1000
    [materialization] = _materializations(ui_dev, "rankings", [E], limit=1)
    assert materialization["runId"] == rankings_run["runId"]
    assert _metadata(materialization)["dagster/row_count"] == ranked
    timeline = describe_timeline(run_timeline(ui_dev, rankings_run["runId"]))
    (journey.folder / "timing-rankings-run.txt").write_text(timeline + "\n")
    print(f"UI materialization of rankings {E} (run {rankings_run['runId']}):\n{timeline}")


def test_readme_recipe_one_range_of_a_date(journey: Journey, ui_dev: DagsterDev, ui_project: UiProject):
    """README "One user-ID range of a date": on user_scores, one (date, range) cell of the date the first
    command ranked; only it is recomputed, and the ranking of the date is republished."""
    page = journey.page
    known = {run["runId"] for run in ui_dev.runs()}
    before = _score_runs(ui_project, BUSINESS_DATE)
    dialog = _open_materialize_dialog(journey, "user_scores")
    _pick_score_partitions(journey, dialog, D, RERUN_RANGE)
    journey.shot("user-scores-one-date-one-range")
    dialog.get_by_role("button", name="Launch 1 run").click()
    range_run = _wait_for_new_run(ui_dev, known)
    after = _score_runs(ui_project, BUSINESS_DATE)
    assert after == before | {RERUN_RANGE: range_run["runId"]}, "another range of D was recomputed"
    in_run = [m for m in _materializations(ui_dev, "user_scores") if m["runId"] == range_run["runId"]]
    assert [m["partition"] for m in in_run] == [f"{D}|{RERUN_RANGE}"]
    republished = ui_dev.wait_for_ranking_after(range_run["runId"])  # D's ranking follows the one range
    assert republished["status"] == "SUCCESS", ui_dev.log_tail()
    assert {t["key"]: t["value"] for t in republished["tags"]}["dagster/partition"] == D

    # Each (date, range) carries its own row count: the rows of that range, not the run's total.
    counted = _rows_per_range(ui_project, BUSINESS_DATE)
    assert _latest_row_counts(ui_dev, "user_scores", list(counted)) == counted
    assert len(set(counted.values())) > 1, counted
    _show_dates(journey, "user_scores", (BUSINESS_DATE - dt.timedelta(days=1)).isoformat(), D)
    page.get_by_text(D, exact=True).first.click()
    page.get_by_text(RERUN_RANGE, exact=True).first.click()
    expect(page.get_by_role("link", name=range_run["runId"][:8]).first).to_be_visible()
    expect(
        page.get_by_role("cell", name=str(counted[f"{D}|{RERUN_RANGE}"]), exact=True).first
    ).to_be_visible()
    journey.shot("user-scores-range-rerun")


def test_readme_recipe_a_span_of_dates(journey: Journey, ui_dev: DagsterDev, ui_project: UiProject):
    """README "A span of dates": user_scores and rankings selected in the lineage, the span of dates typed
    once, every range: one backfill, one scoring run per date, then one ranking run for the span."""
    page = journey.page
    first, last = SPAN_DATES
    days = [first + dt.timedelta(days=offset) for offset in range((last - first).days + 1)]
    known_backfills = {backfill["id"] for backfill in _backfills(ui_dev)}
    journey.open("/")
    page.get_by_role("link", name="Lineage").click()
    _graph_node(journey, "user_scores").click()
    _graph_node(journey, "rankings").click(modifiers=["Shift"])
    page.get_by_role("button", name="Materialize selected (2)…").click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize 2 assets")
    _pick_score_partitions(journey, dialog, f"[{first}...{last}]", None, dates=len(days))
    journey.shot("span-of-dates-picked")
    dialog.get_by_role("button", name="Launch backfill").click()
    launched = time.monotonic()
    expect(page.get_by_text(re.compile(r"Created backfill"))).to_be_visible()

    def finished() -> dict | None:
        fresh = [b for b in _backfills(ui_dev) if b["id"] not in known_backfills]
        return fresh[0] if fresh and fresh[0]["status"] not in ("REQUESTED",) else None

    backfill = _wait_for(finished, "the backfill of the span", timeout=600, every=5)
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    runs = [ui_dev.run(run["runId"]) for run in backfill["runs"]]
    assert all(run["status"] == "SUCCESS" for run in runs), runs
    scoring = [run for run in runs if run["assetSelection"] == [{"path": ["user_scores"]}]]
    ranking = [run for run in runs if run["assetSelection"] == [{"path": ["rankings"]}]]
    # one ranking run per group of dates whose scores ended by the same backfill iteration
    assert len(scoring) == len(days) and 1 <= len(ranking) <= len(days), runs
    assert max(run["startTime"] for run in ranking) >= max(run["endTime"] for run in scoring), runs
    figures = (
        f"backfill of {first} .. {last}: {len(scoring)} scoring run(s), {len(ranking)} ranking run(s), "
        f"{time.monotonic() - launched:.0f} s from Launch backfill to {backfill['status']}"
    )
    (journey.folder / "timing-span-backfill.txt").write_text(figures + "\n")
    print(figures)
    for day in days:
        assert set(_score_runs(ui_project, day).values()) <= {run["runId"] for run in scoring}
        assert len(_score_runs(ui_project, day)) == len(RANGE_KEYS)
        assert _ranked(ui_project, day) > 1000
    statuses = _time_statuses(ui_dev, "rankings")
    assert [statuses.get(day.isoformat()) for day in days] == ["MATERIALIZED"] * len(days)
    # the backfill ranks the dates itself: the sensor starts no second ranking run for its scoring runs
    followers = [
        run
        for run in ui_dev.runs()
        if run["jobName"] == BATCH_001_RANKINGS_JOB
        and {t["key"]: t["value"] for t in run["tags"]}.get(SCORED_BY_TAG) == backfill["id"]
    ]
    assert followers == [], followers
    _show_dates(journey, "rankings", first.isoformat(), last.isoformat())
    expect(_status_filter(journey, "Materialized")).to_have_text(f"Materialized ({len(days)})")
    journey.shot("span-of-dates-ranked")


def test_a_date_whose_window_is_incomplete_says_which_aggregates_to_launch(
    journey: Journey, ui_dev: DagsterDev, ui_project: UiProject
):
    """A date outside the seeded windows: its scoring fails at once, and the run's failure names the days of
    daily_order_aggregates to launch as the text the launch dialog takes. Pasting it there, then launching
    the date again, ranks it: nothing to find in a stack trace."""
    page = journey.page
    first_seeded = BUSINESS_DATE - dt.timedelta(days=SAMPLE_DAYS - 1)
    missing = [day for day in window_days(OLD_DATE) if day < first_seeded]
    selection = partition_selection(missing)
    known = {run["runId"] for run in ui_dev.runs()}
    dialog = _open_materialize_dialog(journey, "user_scores")
    _pick_score_partitions(journey, dialog, OLD, None)
    dialog.get_by_role("button", name="Launch backfill").click()
    launched = time.monotonic()
    failed = ui_dev.wait_for_run(ui_dev.wait_for_new_run(known, timeout=180)["runId"])
    assert failed["status"] == "FAILURE", failed
    seconds_to_failed_run = time.monotonic() - launched
    expect_failed_run(failed["runId"])
    known.add(failed["runId"])
    _wait_for(lambda: _backfill_of(ui_dev, failed["runId"])["status"] != "REQUESTED", "the backfill's end")
    backfill_status = _backfill_of(ui_dev, failed["runId"])["status"]
    figures = (
        f"scoring {OLD} failed in {failed['endTime'] - failed['startTime']:.1f} s; after Launch backfill: "
        f"the run FAILURE in {seconds_to_failed_run:.0f} s, the backfill {backfill_status} in "
        f"{time.monotonic() - launched:.0f} s"
    )

    journey.open("/runs")
    page.get_by_text("Show runs within backfills").click()
    page.get_by_text(failed["runId"][:8], exact=True).first.click()
    said = page.get_by_text(
        re.compile(r"^dagster\._core\.definitions\.events\.Failure: IncompleteWindowError")
    )
    expect(said.first).to_be_visible()
    line = said.first.inner_text().splitlines()[0]
    assert f"enter {selection} as the partitions, Launch backfill" in line, line
    assert "open the asset daily_order_aggregates, Materialize…" in line, line
    journey.shot("incomplete-window-names-the-partitions")

    dialog = _open_materialize_dialog(journey, "daily_order_aggregates")
    dialog.get_by_role("button", name="Show all partitions").click()
    days_input = dialog.locator("input[type=text]").first
    days_input.fill(re.search(r"enter (.+?) as the partitions", line)[1])  # as a person pastes it
    days_input.press("Enter")
    expect(dialog.get_by_text(f"{len(missing)} partitions", exact=True)).to_be_visible()
    journey.shot("aggregates-of-the-missing-days-picked")
    dialog.get_by_role("button", name="Launch backfill").click()
    aggregated = _wait_for_new_run(ui_dev, known, timeout=180)
    known.add(aggregated["runId"])
    statuses = _time_statuses(ui_dev, "daily_order_aggregates")
    assert [statuses.get(day.isoformat()) for day in missing] == ["MATERIALIZED"] * len(missing)

    dialog = _open_materialize_dialog(journey, "user_scores")  # "then launch the date again"
    _pick_score_partitions(journey, dialog, OLD, None)
    dialog.get_by_role("button", name="Launch backfill").click()
    scores_run = _wait_for_new_run(ui_dev, known, timeout=180)
    assert ui_dev.wait_for_ranking_after(scores_run["runId"])["status"] == "SUCCESS", ui_dev.log_tail()
    assert _ranked(ui_project, OLD_DATE) > 1000
    (journey.folder / "timing-failed-backfill.txt").write_text(figures + "\n")
    print(figures)


def test_rankings_checks_tab_shows_each_dates_check_results(
    journey: Journey, ui_dev: DagsterDev, ui_project: UiProject, failed_batch: dict
):
    page = journey.page
    checked = {
        check: {
            e["partition"]: e
            for e in ui_dev.graphql(CHECK_EXECUTIONS, {"check": check})["assetCheckExecutions"]
        }
        for check in (RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK)
    }
    ranked = _ranked(ui_project, BUSINESS_DATE)
    integrity = checked[RANKINGS_INTEGRITY_CHECK][D]
    assert integrity["status"] == "SUCCEEDED"
    assert integrity["evaluation"]["description"] == f"{ranked:,} rows for {D} consistent"
    assert integrity["evaluation"]["severity"] == "ERROR"
    assert checked[RANKINGS_ROW_COUNT_ANOMALY_CHECK][D]["evaluation"]["severity"] == "WARN"
    assert F not in checked[RANKINGS_INTEGRITY_CHECK]  # its scoring failed: nothing ranked, nothing checked
    statuses = _check_statuses(ui_dev)
    for check in (RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK):
        assert statuses[check].get(D) == "SUCCEEDED", statuses[check]
        assert F not in statuses[check], statuses[check]

    journey.open("/assets/rankings?view=checks")
    expect(page.get_by_text("Checks (2)")).to_be_visible()
    expect(page.get_by_text(RANKINGS_ROW_COUNT_ANOMALY_CHECK, exact=True).first).to_be_visible()
    expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()
    journey.shot("checks-tab-integrity")

    page.get_by_role("tab", name="Execution history").click()
    for execution in checked[RANKINGS_INTEGRITY_CHECK].values():
        if execution["evaluation"]:
            expect(page.get_by_text(execution["evaluation"]["description"]).first).to_be_visible()
    journey.shot("checks-tab-integrity-per-date")

    page.get_by_role("tab", name="Partitions").last.click()  # the check's own partition view
    succeeded = list(statuses[RANKINGS_INTEGRITY_CHECK].values()).count("SUCCEEDED")
    expect(page.get_by_text(f"Passed ({succeeded})", exact=True)).to_be_visible()
    journey.shot("checks-tab-integrity-partitions")

    page.get_by_text(RANKINGS_ROW_COUNT_ANOMALY_CHECK, exact=True).first.click()
    page.get_by_role("tab", name="Execution history").click()
    for execution in checked[RANKINGS_ROW_COUNT_ANOMALY_CHECK].values():
        if execution["evaluation"]:
            expect(page.get_by_text(execution["evaluation"]["description"]).first).to_be_visible()
    journey.shot("checks-tab-row-count-anomaly-per-date")


SENSOR_TICK_REASONS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { ... on Sensor { sensorState { ticks(limit: 20) {
    status skipReason
  } } } }
}
"""


def _failure_sensor_skipped(dev: DagsterDev, run_id: str) -> str | None:
    """The skip reason of the alert_on_run_failure tick that looked at ``run_id`` and sent nothing, if any."""
    selector = {**REPOSITORY, "sensorName": "alert_on_run_failure"}
    sensor = dev.graphql(SENSOR_TICK_REASONS, {"selector": selector})["sensorOrError"]
    reasons = [tick["skipReason"] or "" for tick in sensor["sensorState"]["ticks"]]
    return next((reason for reason in reasons if run_id in reason), None)


def _critical_about(slack_api: RecordingHttpServer, run: dict) -> list[str]:
    """The Critical messages in the stand-in Slack naming the run (every alert links to its run; the job's
    name alone would also match other journeys' runs: every UI materialization is an `__ASSET_JOB` run)."""
    texts = [message["text"] for message in slack_messages(slack_api)]
    return [text for text in texts if "Critical" in text and run["runId"] in text]


def _pick_launchpad_partition(journey: Journey, key: str) -> None:
    """The Launchpad's Partition box: type the key, pick it from the suggestions (typed again if the box was
    typed into before its partition list had loaded)."""
    box, suggestion = (
        journey.page.get_by_placeholder("Partition"),
        journey.page.get_by_role("menuitem", name=key),
    )
    for _ in range(3):
        box.click()
        box.fill("")
        box.press_sequentially(key)
        try:
            expect(suggestion).to_be_visible(timeout=10_000)
        except AssertionError:
            continue
        suggestion.click()
        expect(box).to_have_value(key)
        return
    raise AssertionError(f"the Launchpad never suggested the partition {key}")


def test_a_person_checks_rankings_of_one_date_with_the_checks_job_without_re_ranking_it(
    journey: Journey, ui_dev: DagsterDev, ui_project: UiProject, slack_api: RecordingHttpServer
):
    """The README: on rankings' Checks tab *Execute* is disabled; the check names rankings_checks_job, whose
    Launchpad evaluates both checks for the date picked, shown on the Checks tab; D is not re-ranked."""
    page = journey.page
    known = {run["runId"] for run in ui_dev.runs()}
    [ranking_before] = _materializations(ui_dev, "rankings", [D], limit=1)
    ranked = _ranked(ui_project, BUSINESS_DATE)

    journey.open("/assets/rankings?view=checks")
    expect(page.get_by_role("button", name=re.compile(r"Execute$"))).to_be_disabled()  # not "Execute all"
    expect(page.get_by_text(re.compile(rf"Jobs > {RANKINGS_CHECKS_JOB}")).first).to_be_visible()
    journey.shot("checks-tab-names-the-checks-job")

    journey.open("/jobs")
    page.get_by_text(RANKINGS_CHECKS_JOB, exact=True).first.click()
    page.get_by_text("Launchpad", exact=True).first.click()
    _pick_launchpad_partition(journey, D)
    journey.shot("checks-job-launchpad-one-date")
    page.get_by_role("button", name="Launch Run").click()
    run = _wait_for_new_run(ui_dev, known)
    assert run["jobName"] == RANKINGS_CHECKS_JOB
    assert {t["key"]: t["value"] for t in run["tags"]}["dagster/partition"] == D

    executions = {
        check: ui_dev.graphql(CHECK_EXECUTIONS, {"check": check})["assetCheckExecutions"]
        for check in (RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK)
    }
    for check in (RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK):
        [ours] = [e for e in executions[check] if e["runId"] == run["runId"]]
        assert (ours["status"], ours["partition"]) == ("SUCCEEDED", D), ours
        # It evaluated D's current rankings: the materialization of the README's command.
        assert ours["evaluation"]["targetMaterialization"]["runId"] == ranking_before["runId"]
    assert _check_statuses(ui_dev)[RANKINGS_INTEGRITY_CHECK][D] == "SUCCEEDED"

    journey.open("/assets/rankings?view=checks")
    page.get_by_role("tab", name="Execution history").click()
    consistent = f"{ranked:,} rows for {D} consistent"  # the batch's evaluations of D, and now ours
    listed = [
        e
        for e in executions[RANKINGS_INTEGRITY_CHECK]
        if (e["evaluation"] or {}).get("description") == consistent
    ]
    assert run["runId"] in {e["runId"] for e in listed} and len(listed) >= 2
    expect(page.get_by_text(consistent, exact=True)).to_have_count(len(listed))
    journey.shot("checks-tab-with-the-checks-jobs-result")

    # Read only: D was not re-ranked or republished, and nothing Critical reached Slack.
    assert _materializations(ui_dev, "rankings", [D], limit=1) == [ranking_before]
    assert _ranked(ui_project, BUSINESS_DATE) == ranked
    assert not [
        r for r in ui_dev.runs() if r["jobName"] == BATCH_001_RANKINGS_JOB and r["runId"] not in known
    ]
    assert _critical_about(slack_api, run) == []


def test_execute_all_on_the_checks_tab_fails_at_once_saying_how_to_check_a_date_and_alerts_nobody(
    journey: Journey, ui_dev: DagsterDev, slack_api: RecordingHttpServer
):
    page = journey.page
    known = {run["runId"] for run in ui_dev.runs()}
    journey.open("/assets/rankings?view=checks")
    page.get_by_role("button", name="Execute all").click()
    expect(page.get_by_text(re.compile(r"Launched run"))).to_be_visible()
    run = ui_dev.wait_for_run(ui_dev.wait_for_new_run(known)["runId"], timeout=RUN_TIMEOUT)
    assert run["status"] == "FAILURE"
    expect_failed_run(run["runId"])  # by design: its failure lines in the log are no problem

    journey.open(f"/runs/{run['runId']}")
    how = f"open Jobs > {RANKINGS_CHECKS_JOB} > Launchpad, pick it under Partition, Launch Run"
    expect(page.get_by_text(re.compile(re.escape(how))).first).to_be_visible()
    journey.shot("execute-all-says-how-to-check-a-date")
    timeline = run_timeline(ui_dev, run["runId"])
    print(f"Execute all (run {run['runId']}):\n{describe_timeline(timeline)}")

    # The failure sensor looked at the run and said why it sent nothing, in its tick.
    reason = _wait_for(
        lambda: _failure_sensor_skipped(ui_dev, run["runId"]), "the failure sensor's tick", 150
    )
    assert "no alert" in reason, reason
    assert _critical_about(slack_api, run) == []


def test_the_resource_view_lists_the_resources_and_shows_a_secret_only_by_name(
    journey: Journey, ui_dev: DagsterDev
):
    page = journey.page
    journey.open("/locations/ranking_pipeline/resources")
    for name in PROJECT_RESOURCES:
        expect(page.locator(f"a[href$='/resources/{name}']").first).to_be_visible()
    journey.shot("resources")

    page.locator("a[href$='/resources/slack']").first.click()
    token_row = page.get_by_role("row").filter(has_text="SLACK_BOT_TOKEN: the bot token")
    expect(token_row.get_by_text("SLACK_BOT_TOKEN", exact=True)).to_be_visible()
    expect(token_row.get_by_text("Env var", exact=True)).to_be_visible()
    assert SLACK_TOKEN not in page.content()
    journey.shot("slack-token-by-name")

    journey.open("/locations/ranking_pipeline/resources/database")
    url_row = page.get_by_role("row").filter(has_text="RANKING_DATABASE_URL")
    expect(url_row.get_by_text("Default", exact=True)).to_be_visible()  # unset: the embedded server
    journey.shot("database-embedded-default")

    resources = ui_dev.graphql(RESOURCES, {"selector": REPOSITORY})["allTopLevelResourceDetailsOrError"]
    by_name = {r["name"]: {v["key"]: v for v in r["configuredValues"]} for r in resources["results"]}
    assert sorted(by_name) == PROJECT_RESOURCES
    assert by_name["slack"]["token"] == {"key": "token", "value": "SLACK_BOT_TOKEN", "type": "ENV_VAR"}
    assert SLACK_TOKEN not in str(resources)
    assert SLACK_TOKEN not in ui_dev.log_since(0), "the token was written to the dagster dev log"


SCHEDULES = """
query Schedules($selector: RepositorySelector!) {
  schedulesOrError(repositorySelector: $selector) {
    ... on Schedules { results { name cronSchedule executionTimezone scheduleState { status } } }
  }
}
"""


def test_the_automation_tab_shows_batch_001_at_03_00_jst(journey: Journey, ui_dev: DagsterDev):
    page = journey.page
    journey.open("/automation")
    for name in ("batch_001_schedule", "start_rankings_on_scores_success", "alert_on_missed_ranking"):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    expect(page.get_by_text("Scheduled At 03:00 AM GMT+9", exact=True)).to_be_visible()  # BATCH-001
    journey.shot("automation")

    schedules = ui_dev.graphql(SCHEDULES, {"selector": REPOSITORY})["schedulesOrError"]["results"]
    by_name = {schedule["name"]: schedule for schedule in schedules}
    batch_001 = by_name["batch_001_schedule"]
    assert (batch_001["cronSchedule"], batch_001["executionTimezone"]) == ("0 3 * * *", "Asia/Tokyo")
    assert batch_001["scheduleState"]["status"] == "RUNNING"
