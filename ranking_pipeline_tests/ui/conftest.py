"""Browser fixtures: `dagster dev` on the project over a seeded database, Debian's Chromium, screenshots.

Chromium is /usr/bin/chromium (RANKING_TEST_CHROMIUM to override). Without it (or without the ui-tests extra)
the browser tests are skipped with the reason on a developer machine, and fail under CI=true.
Screenshots of every journey go to ./screenshots/<test name>/ (RANKING_TEST_SCREENSHOTS to override); a
failing test leaves FAILED.png there, and the dagster dev log is beside them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ranking_pipeline.constants import BATCH_000_JOB
from ranking_pipeline.lib import db
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.conftest import IN_CI, PROJECT_ROOT, create_database, drop_database
from ranking_pipeline_tests.dagster_dev import DagsterDev, batch_000_tags, dagster_dev

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
UI_TIMEOUT_MS = 30_000

# A fixed business date in the past: the UI journeys name it explicitly (run tags), so they do not depend
# on today's date. The seed holds 31 JST days of orders ending on it.
BUSINESS_DATE = dt.date(2025, 6, 30)
SEEDED_USERS = 2000


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


@dataclass
class Journey:
    """A browser tab on the running `dagster dev`, and where its screenshots go."""

    page: object
    url: str
    folder: Path
    shots: list[Path] = field(default_factory=list)

    def open(self, path: str) -> None:
        self.page.goto(self.url + path)

    def shot(self, name: str) -> Path:
        path = self.folder / f"{len(self.shots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path


@pytest.fixture
def journey(request, browser, ui_dev: DagsterDev) -> Iterator[Journey]:
    folder = SCREENSHOTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
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


@pytest.fixture(scope="module")
def ui_database_url(postgres_server_url) -> Iterator[str]:
    """A fresh database with 2,000 seeded users and 31 JST days of orders ending on BUSINESS_DATE."""
    url = create_database(postgres_server_url)
    seed(db.get_engine(url), SEEDED_USERS, end_date=BUSINESS_DATE)
    yield url
    drop_database(postgres_server_url, url)


@pytest.fixture(scope="module")
def ui_dev(ui_database_url, request) -> Iterator[DagsterDev]:
    """`dagster dev` from the project folder (its dagster.yaml, temporary storage) on the seeded database,
    with the 31 daily aggregates before BUSINESS_DATE already materialized (BATCH-000 over GraphQL), so
    that what a person does in the UI is BATCH-001 itself."""
    log = SCREENSHOTS / f"dagster-dev-{request.module.__name__.rsplit('.', 1)[-1]}.log"
    with dagster_dev(PROJECT_ROOT, log, env={db.DATABASE_URL_ENV: ui_database_url}) as dev:
        first_day = BUSINESS_DATE - dt.timedelta(days=30)
        run_id = dev.launch_job(
            BATCH_000_JOB, batch_000_tags(first_day.isoformat(), BUSINESS_DATE.isoformat())
        )
        run = dev.wait_for_run(run_id)
        assert run["status"] == "SUCCESS", f"BATCH-000 setup run failed:\n{dev.log_tail()}"
        yield dev
