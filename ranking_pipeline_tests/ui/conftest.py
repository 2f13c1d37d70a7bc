"""Browser fixtures: the README's path (a copy of the project, its first command, then `dagster dev` there, on
the embedded database), Debian's Chromium, screenshots, and a `dagster dev` log that must stay clean.

Chromium is /usr/bin/chromium (RANKING_TEST_CHROMIUM to override). Without it (or without the ui-tests extra)
the browser tests are skipped with the reason on a developer machine, and fail under CI=true.
Screenshots of every journey go to ./screenshots/<test name>/ (RANKING_TEST_SCREENSHOTS to override), with
the part of the `dagster dev` log written during the journey; a failing journey leaves FAILED.png there.
With RANKING_UPDATE_DOCS_IMAGES=1 the journeys also refresh the README's screenshots in docs/images/.

Every journey fails when the `dagster dev` log written during it holds an ERROR line or a traceback from our
code or our sensors; the log of the start-up and of the whole session is checked too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from ranking_pipeline.lib import db
from ranking_pipeline.lib.embedded_pg import stop_if_unused
from ranking_pipeline_tests.conftest import IN_CI, PROJECT_ROOT
from ranking_pipeline_tests.dagster_dev import (
    DagsterDev,
    copy_project,
    dagster_dev,
    embedded_server_url,
    project_environment,
    scan_log,
    without_local_settings,
)
from ranking_pipeline_tests.fakes import RecordingHttpServer, fake_slack
from ranking_pipeline_tests.helpers import wait_until

CHROMIUM = Path(os.environ.get("RANKING_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SCREENSHOTS = Path(os.environ.get("RANKING_TEST_SCREENSHOTS", PROJECT_ROOT / "screenshots"))
DOCS_IMAGES = PROJECT_ROOT / "docs" / "images"
UPDATE_DOCS_IMAGES = os.environ.get("RANKING_UPDATE_DOCS_IMAGES", "") == "1"
UI_TIMEOUT_MS = 60_000  # other test suites share the 2 cores: be generous

# Fixed dates, so the journeys do not depend on today's. The README's first command seeds 36 JST days of
# orders ending on BUSINESS_DATE, aggregated by BATCH-000 (2025-05-26 .. 2025-06-30), and ranks it: the
# window of each of BUSINESS_DATE and the 6 days before it is complete.
BUSINESS_DATE = dt.date(2025, 6, 30)
# BATCH-000 never aggregated this day, so a batch for it fails (IncompleteWindowError): the failed date.
FAILED_DATE = BUSINESS_DATE + dt.timedelta(days=1)
# The date a person re-runs from the partition picker (README: "One date, in the UI").
PICKED_DATE = BUSINESS_DATE - dt.timedelta(days=1)
# The span of dates a person re-runs as one backfill (README: "A span of dates").
SPAN_DATES = (BUSINESS_DATE - dt.timedelta(days=4), BUSINESS_DATE - dt.timedelta(days=2))
# A date whose window reaches 2 days before the seeded orders: the first launch says which days to aggregate.
OLD_DATE = BUSINESS_DATE - dt.timedelta(days=8)
SEEDED_USERS = 2000
# A secret set in the environment of `dagster dev`: the UI may show its variable's name, never its value.
SLACK_TOKEN = "xoxb-ui-journeys-0000-not-a-real-token"

# Markers of our code in a traceback: the package, and the names of our sensors and schedules.
OUR_CODE = (
    "ranking_pipeline",
    "start_batch_001_on_aggregates_landed",
    "start_rankings_on_scores_success",
    "alert_on_missed_ranking",
    "alert_on_run_failure",
    "warn_on_long_batch_run",
    "warn_on_row_count_anomaly",
    "notify_on_batch_success",
    "batch_000_schedule",
    "batch_001_schedule",
)
# The ERRORs the project logs by design in these journeys: the sample data ends on a fixed date, so the
# rankings of D = yesterday (JST) are never committed, and from 09:00 JST the missed-ranking alert says so,
# once per date (docs/DESIGN.md: "A night that does not happen is an alert"); and the scoring of OLD_DATE,
# whose window reaches before the seeded orders, fails (its traceback) until its missing days are aggregated.
ALLOWED_ERRORS = (
    re.compile(
        r" - alert_on_missed_ranking - Critical: no rankings for business date \d{4}-\d{2}-\d{2} by "
        r"\d{2}:\d{2} JST on \d{4}-\d{2}-\d{2}: BATCH-000 has not aggregated"
    ),
    re.compile(rf"IncompleteWindowError: cannot score {OLD_DATE}: daily_order_aggregates has not been "),
    # *Execute all* on rankings' Checks tab names no date: its run fails at once, by design (README); the
    # journey marks that run with expect_failed_run, this is its stack trace.
    re.compile(r"raise dg\.Failure\(description=NO_DATE, allow_retries=False\)"),
)

# Errors printed without a level (by Python's last-resort handler), from libraries our code drives: the
# embedded PostgreSQL wheel when the server fails to start or stop.
UNLABELLED_ERRORS = (
    re.compile(r"^Failed postgres command"),
    re.compile(r"^Failed to start server\."),
    re.compile(r"^Failed to stop server"),
)

# Runs the two runs of a batch with the CLI's runner in the copy of the project, on its instance and database
# (as `ranking-pipeline run` does), and prints the outcome as JSON.
_RUNNER = """
import datetime as dt, json, sys
from ranking_pipeline.batch_runner import BatchRunFailed, run_batch_runs
from ranking_pipeline.definitions import defs
from ranking_pipeline.instance import project_instance
from ranking_pipeline.lib.business_date import BusinessDate

day = dt.date.fromisoformat(sys.argv[1])
with project_instance() as (instance, _):
    try:
        run_ids, error = run_batch_runs(defs(), instance, BusinessDate.of(day)), None
    except BatchRunFailed as failure:
        run_ids, error = [], str(failure)
print(json.dumps({"run_ids": run_ids, "error": error}))
"""


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true and the browser cannot start: {reason}", pytrace=False)
    pytest.skip(f"browser test skipped: {reason}")


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Debian's Chromium driven by Playwright (headless)."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:
        _unavailable(f"Playwright is not installed ({error}); pip install -e '.[dev,ui-tests]'")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found; apt-get install -y chromium (or set RANKING_TEST_CHROMIUM)")
    config_home = tmp_path_factory.mktemp("chromium-config")
    playwright = sync_playwright().start()
    try:
        try:
            launched = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                env={**os.environ, "XDG_CONFIG_HOME": str(config_home)},
            )
        except Error as error:
            _unavailable(f"{CHROMIUM} did not start: {error.message.splitlines()[0]}")
        yield launched
        launched.close()
    finally:
        playwright.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


# --- the project, as a new user has it after the README's first command ------------------------------------


@dataclass
class UiProject:
    """A copy of the project in which the README's first command ran (seed, then run for BUSINESS_DATE)."""

    path: Path
    cli_output: str  # of `run`
    cli_run_ids: list[str]  # BATCH-000's run (of `seed`), then the batch's scoring run and ranking run
    ranked_users: int  # as the command printed it

    @property
    def pgdata(self) -> Path:
        return self.path / ".ranking_pipeline" / "pgdata"

    def engine(self) -> sa.Engine:
        """The project's embedded database (running while `dagster dev` runs)."""
        return db.get_engine(embedded_server_url(self.pgdata))

    def run_cli(self, *args: str) -> subprocess.CompletedProcess:
        return self._python("-m", "ranking_pipeline.cli", *args)

    def run_batch(self, day: dt.date) -> dict:
        """The CLI's runner in the copy: the two runs of a batch for ``day``;
        {"run_ids": [...], "error": one line or None}."""
        done = self._python("-c", _RUNNER, day.isoformat())
        assert done.returncode == 0, f"runner {day} crashed:\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    def _python(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args],
            cwd=self.path,
            env=project_environment(without_local_settings()),
            capture_output=True,
            text=True,
            timeout=600,
        )


@pytest.fixture(scope="module")
def ui_project(tmp_path_factory) -> UiProject:
    """A copy of the project (no RANKING_* settings, no DAGSTER_HOME: the embedded database in the copy) in
    which the README's first command ran: `seed --users 2000 --end-date D`, then `run --date D`."""
    path = copy_project(tmp_path_factory.mktemp("ui-project") / "ranking_pipeline")
    project = UiProject(path=path, cli_output="", cli_run_ids=[], ranked_users=0)
    date_text = BUSINESS_DATE.isoformat()
    seeded = project.run_cli("seed", "--users", str(SEEDED_USERS), "--end-date", date_text)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    ready = f"complete window (ready to run or re-run): {BUSINESS_DATE - dt.timedelta(days=6)} .. {date_text}"
    assert ready in seeded.stdout, seeded.stdout
    ran = project.run_cli("run", "--date", BUSINESS_DATE.isoformat())
    assert ran.returncode == 0, ran.stdout + ran.stderr
    project.cli_output = ran.stdout
    project.cli_run_ids = [re.search(r"daily_order_aggregates .*: run ([\w-]+), recorded", seeded.stdout)[1]]
    project.cli_run_ids += re.search(r"runs: ([\w, -]+), recorded in", ran.stdout).group(1).split(", ")
    project.ranked_users = int(re.search(r"users ranked: ([\d,]+)", ran.stdout).group(1).replace(",", ""))
    assert "what `dagster dev` here shows" in ran.stdout, ran.stdout
    assert (project.pgdata / "PG_VERSION").exists(), "the embedded database lives in the copy"
    return project


@pytest.fixture(scope="module")
def slack_api() -> Iterator[RecordingHttpServer]:
    """Slack's Web API on 127.0.0.1: the alert sensors post to it with the secret token."""
    with fake_slack() as server:
        yield server


# The runs a journey made fail on purpose: their ERROR lines (the step's and the run's failure) are allowed.
_FAILED_ON_PURPOSE: list[re.Pattern] = []


def expect_failed_run(run_id: str) -> None:
    """The run ``run_id`` failed as the journey meant it to: its lines in the log are no problem."""
    _FAILED_ON_PURPOSE.append(re.compile(rf" - {re.escape(run_id)} - "))


_RUN_ID = re.compile(r" - ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) - ")


def _runs_failed_by_design(text: str) -> tuple[re.Pattern, ...]:
    """The runs whose error is one of ALLOWED_ERRORS: their step and run failure lines are allowed too,
    whichever journey's log window they land in (a backfill's run may fail after its journey ended)."""
    run_ids = {
        found.group(1)
        for line in text.splitlines()
        if any(pattern.search(line) for pattern in ALLOWED_ERRORS) and (found := _RUN_ID.search(line))
    }
    return tuple(re.compile(rf" - {re.escape(run_id)} - ") for run_id in sorted(run_ids))


def _check_log(text: str, where: str) -> None:
    allowed = ALLOWED_ERRORS + tuple(_FAILED_ON_PURPOSE) + _runs_failed_by_design(text)
    scan = scan_log(text, OUR_CODE, allowed, UNLABELLED_ERRORS)
    for line in scan.allowed:
        print(f"dagster dev log ({where}), allowed by design: {line}")
    if scan.problems:
        pytest.fail(
            f"the dagster dev log {where} holds {len(scan.problems)} ERROR line(s) or traceback(s) from our "
            f"code:\n\n{scan.report()}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def ui_dev(ui_project: UiProject, slack_api: RecordingHttpServer, request) -> Iterator[DagsterDev]:
    """`dagster dev` started in the copy with DAGSTER_HOME and every RANKING_* setting unset (so the
    embedded database and the runs the CLI recorded there), plus a Slack token pointing at a local Slack."""
    log = SCREENSHOTS / f"dagster-dev-{request.module.__name__.rsplit('.', 1)[-1]}.log"
    env = without_local_settings() | {
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "RANKING_SLACK_API_URL": f"{slack_api.url}/api/",
    }
    try:
        with dagster_dev(ui_project.path, log, env=env) as dev:
            _check_log(dev.log_since(0), "while dagster dev started")
            yield dev
            whole = dev.log_since(0)
        _check_log(whole, "of the whole session")
    finally:
        db.dispose_engines()
        if stop_if_unused(ui_project.pgdata):
            print(f"the embedded PostgreSQL of {ui_project.pgdata} outlived dagster dev: stopped it")


@pytest.fixture(scope="module")
def failed_batch(ui_project: UiProject, ui_dev: DagsterDev) -> dict:
    """A batch for FAILED_DATE run with the CLI's runner while `dagster dev` runs: W(FAILED_DATE) lacks
    FAILED_DATE's aggregates, so its scoring run fails and no ranking run follows."""
    _wait_for_first_tick(ui_dev, "alert_on_run_failure")  # so the sensor sees the failure as new
    outcome = ui_project.run_batch(FAILED_DATE)
    assert outcome["error"] and "IncompleteWindowError" in outcome["error"], outcome
    return outcome


SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { ... on Sensor { sensorState { ticks(limit: 1) { status } } } }
}
"""


def _wait_for_first_tick(dev: DagsterDev, sensor: str, timeout: float = 120) -> None:
    selector = {"repositoryLocationName": "ranking_pipeline", "repositoryName": "__repository__"}

    def ticked() -> bool:
        found = dev.graphql(SENSOR_TICKS, {"selector": {**selector, "sensorName": sensor}})["sensorOrError"]
        return bool(found.get("sensorState", {}).get("ticks"))

    wait_until(ticked, timeout, f"a first tick of sensor {sensor}", every=1)


# --- a journey: a browser tab, its screenshots, and its part of the log ------------------------------------


@dataclass
class Journey:
    """A browser tab on the running `dagster dev`, and where its screenshots go."""

    page: object
    url: str
    folder: Path
    shots: list[Path] = field(default_factory=list)

    def open(self, path: str) -> None:
        self.page.goto(self.url + path)

    def settle(self, timeout_ms: int = 15_000) -> None:
        """Wait (a while, not failing) until the page shows no loading spinner."""
        from playwright.sync_api import expect

        with contextlib.suppress(AssertionError):
            expect(self.page.get_by_role("progressbar")).to_have_count(0, timeout=timeout_ms)

    def shot(self, name: str, *, docs_image: str | None = None) -> Path:
        """A screenshot in the journey's folder; ``docs_image``: also the README's docs/images/<name> (when
        RANKING_UPDATE_DOCS_IMAGES=1)."""
        path = self.folder / f"{len(self.shots) + 1:02d}-{name}.png"
        self.settle()
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        if docs_image and UPDATE_DOCS_IMAGES:
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS_IMAGES / docs_image)
        return path


@pytest.fixture
def journey(request, browser, ui_dev: DagsterDev) -> Iterator[Journey]:
    folder = SCREENSHOTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    log_start = ui_dev.log_offset()
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    # Assertions wait as long as actions: the lineage's partition counts (about 20,000 date x range keys)
    # can take longer than Playwright's default 5 s to load on a busy 2-core machine.
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    page = context.new_page()
    current = Journey(page=page, url=ui_dev.url, folder=folder)
    try:
        yield current
    finally:
        failed = any(
            getattr(request.node, f"report_{when}", None) is not None
            and getattr(request.node, f"report_{when}").failed
            for when in ("setup", "call")
        )
        if failed:
            page.screenshot(path=str(folder / "FAILED.png"), full_page=True)
        context.close()
    written = ui_dev.log_since(log_start)
    (folder / "dagster-dev.log").write_text(written)
    _check_log(written, f"written during {request.node.name}")
