"""No secret anywhere (issue 16, item 2), after real runs: every password and token of a valid, secret-bearing
configuration is searched for in what the command printed, the runs' event logs, the whole of Dagster's
storage (every file of the instance, its SQLite tables value by value, compressed snapshots unpacked), every
table of the ranking database, and every alert the stand-in Slack, SMTP and PagerDuty servers received.

The runs are the command line's (`ranking-pipeline run`, a real process) and, where an outage must be timed
or a retry shortened, the same batch run in this process on the definitions the code location loads from the
environment. The alerts come from the real sensor daemon iteration against the project's code location served
by a code server configured from the same environment, as in production. Scenarios: a batch that succeeds;
the database lost in the middle of scoring (psycopg2's errors may carry the connection's details); Redis
refusing the login while Slack refuses the token, the SMTP server the password and PagerDuty's URL carries
credentials of its own."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import zlib
from pathlib import Path

import dagster as dg
import pytest
import redis
import sqlalchemy as sa
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._daemon.sensor import execute_sensor_iteration

from ranking_pipeline.batch_runner import BatchRunFailed, run_batch
from ranking_pipeline.definitions import defs
from ranking_pipeline.lib import db, errors
from ranking_pipeline.lib.business_date import BusinessDate
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests import test_one_line_errors
from ranking_pipeline_tests.conftest import PROJECT_ROOT, create_database, drop_database
from ranking_pipeline_tests.fakes import fake_pagerduty, fake_slack, fake_smtp, slack_messages, tcp_proxy
from ranking_pipeline_tests.helpers import cli, project_location_target, wait_until
from ranking_pipeline_tests.test_outages import _host_port, _scoring_insert_waits

D = dt.date(2026, 11, 27)
SECRET = re.compile(r"Zq\d+sekret")  # every secret below, and nothing else
ENV_PREFIXES = ("RANKING_", "DAGSTER_", "SLACK_BOT_TOKEN", "PAGERDUTY_ROUTING_KEY")
DATABASE_PASSWORD, REDIS_PASSWORD, SLACK_TOKEN = "Zq81sekret", "Zq82sekret", "xoxb-Zq83sekret"
SMTP_USER, SMTP_PASSWORD, PAGERDUTY_KEY = "mailer", "Zq84sekret", "Zq85sekret"
UI_URL = "http://viewer:Zq86sekret@127.0.0.1:3000"  # a UI behind basic auth, credentials in its URL
PAGERDUTY_URL_PASSWORD, DAGSTER_PG_PASSWORD = "Zq87sekret", "Zq88sekret"

# the fixture: a DAGSTER_HOME holding only the project's instance settings
dagster_home = test_one_line_errors.dagster_home


def _with_password(url: str, password: str) -> str:
    parsed = sa.engine.make_url(url)
    with_password = parsed.set(password=password, username=parsed.username or "postgres")
    return with_password.render_as_string(hide_password=False)


def _redis_with_login(redis_url: str, user: str) -> str:
    parsed = redis.connection.parse_url(redis_url)
    host, port, db = parsed.get("host", "127.0.0.1"), parsed.get("port", 6379), parsed.get("db", 0)
    return f"redis://{user}:{REDIS_PASSWORD}@{host}:{port}/{db}"


def _settings(database_url: str, redis_url: str, slack, smtp, pagerduty, pagerduty_url: str | None = None):
    """Every secret the project knows, in a configuration that loads (the database trusts loopback, so its
    password is carried but not checked; Redis' default user takes any password)."""
    return {
        "RANKING_DATABASE_URL": database_url,
        "RANKING_REDIS_URL": redis_url,
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "RANKING_SLACK_API_URL": f"{slack.url}/api/",
        "RANKING_SMTP_HOST": smtp.host,
        "RANKING_SMTP_PORT": str(smtp.port),
        "RANKING_SMTP_TLS": "none",
        "RANKING_SMTP_USER": SMTP_USER,
        "RANKING_SMTP_PASSWORD": SMTP_PASSWORD,
        "RANKING_ALERT_MAIL_TO": "oncall@example.test",
        "PAGERDUTY_ROUTING_KEY": PAGERDUTY_KEY,
        "RANKING_PAGERDUTY_EVENTS_URL": pagerduty_url or f"{pagerduty.url}/v2/enqueue",
        "RANKING_DAGSTER_UI_URL": UI_URL,
        # the missed-ranking alert is due at once (for the real yesterday): every channel, PagerDuty too
        "RANKING_RANKINGS_DEADLINE_JST": "00:00",
    }


@pytest.fixture
def environment(monkeypatch, dagster_home):
    """Sets this process's settings (the code server and in-process runs read them) from a clean slate."""
    for name in [name for name in os.environ if name.startswith(ENV_PREFIXES)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))

    def configure(values: dict[str, str]) -> dict[str, str]:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return dict(os.environ)

    return configure


class Daemon:
    """The sensor daemon's iteration over the project's code location, its clock stepped past every
    sensor's interval at each tick (the runs themselves run on the real clock)."""

    def __init__(self, workspace) -> None:
        self.workspace = workspace
        self.now = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)  # 00:00 JST after D: nothing is due

    def tick(self) -> None:
        self.now += dt.timedelta(minutes=2)
        with freeze_time(self.now):
            list(execute_sensor_iteration(self.workspace, logging.getLogger("sensors"), None, None))


def _text(value) -> str:
    """A stored value as text; a zlib-compressed one (Dagster's snapshots) unpacked first."""
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        with contextlib.suppress(zlib.error):
            value = zlib.decompress(value)
        return value.decode("utf-8", "replace")
    return str(value)


def _sqlite_values(path: Path) -> list[str]:
    """Every value of every table of a SQLite file, as text."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [
            _text(value)
            for table in tables
            for row in connection.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from the file
            for value in row
        ]


def storage_dump(home: Path, storage_url: str | None = None) -> str:
    """Dagster's storage: every file under DAGSTER_HOME, raw, and its SQLite databases value by value; with
    ``storage_url`` (dagster-postgres), every table of that database too."""
    texts = []
    for path in sorted(home.rglob("*")):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
            if path.suffix == ".db":
                texts += _sqlite_values(path)
    if storage_url is not None:
        texts.append(tables_dump(db.get_engine(storage_url)))
    return "\n".join(texts)


def tables_dump(engine: sa.Engine) -> str:
    """Every value of every table of a PostgreSQL database, as text."""
    with engine.connect() as connection:
        names = connection.execute(
            sa.text(
                "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
        ).scalars()
        return "\n".join(
            _text(value)
            for name in list(names)
            for row in connection.exec_driver_sql(f"SELECT * FROM {name}")  # noqa: S608 - names from the server
            for value in row
        )


def run_logs(instance: dg.DagsterInstance) -> str:
    return "\n".join(
        dg.serialize_value(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id)
    )


def alerts_dump(slack, smtp, pagerduty) -> str:
    """What the stand-ins received, but for the credential each service authenticates with by design
    (Slack's token in the Authorization header, PagerDuty's routing key in the event, the SMTP login)."""
    texts = [request.body.decode("utf-8", "replace") for request in slack.requests]
    texts += [mail.message.as_string() + " ".join([mail.sender, *mail.recipients]) for mail in smtp.received]
    for request in pagerduty.requests:
        event = json.loads(request.body)
        event.pop("routing_key", None)
        texts.append(json.dumps(event))
    return "\n".join(texts)


def everything_shown(printed: str, instance, home: Path, engine, slack, smtp, pagerduty, storage_url=None):
    """Where a secret must never be: what the command printed, then everything the run and alerts left."""
    return {
        "the command's output": printed,
        "run logs": run_logs(instance),
        "Dagster's storage": storage_dump(home, storage_url),
        "the pipeline's tables": tables_dump(engine),
        "alerts": alerts_dump(slack, smtp, pagerduty),
    }


def _assert_no_secret(shown: dict[str, str]) -> None:
    found = {where: sorted(set(SECRET.findall(text))) for where, text in shown.items()}
    assert {where: secrets for where, secrets in found.items() if secrets} == {}, _context(shown)


def _context(shown: dict[str, str]) -> str:
    lines = []
    for where, text in shown.items():
        for match in SECRET.finditer(text):
            lines.append(f"{where}: …{text[max(0, match.start() - 200) : match.end() + 80]!r}")
    return "\n".join(lines[:12])


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, dagster_home, postgres_server_url):
    """Dagster's storage: the project's local SQLite, or the production dagster.yaml's PostgreSQL (its
    password, DAGSTER_PG_PASSWORD, one more secret; the server trusts loopback); the extra settings."""
    if request.param == "sqlite":
        yield None, {}
        return
    storage_url = create_database(postgres_server_url)
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.production.yaml", dagster_home / "dagster.yaml")
    parsed = sa.engine.make_url(storage_url)
    yield (
        storage_url,
        {
            "DAGSTER_PG_USERNAME": parsed.username or "postgres",
            "DAGSTER_PG_PASSWORD": DAGSTER_PG_PASSWORD,
            "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(parsed.port or 5432),
            "DAGSTER_PG_DB": parsed.database,
        },
    )
    drop_database(postgres_server_url, storage_url)


def test_a_batch_run_by_the_command_line_with_every_secret_set_leaves_none_anywhere(
    database_url, redis_url, engine, dagster_home, environment, storage
):
    seed(engine, 300, end_date=D, random_seed=8)
    storage_url, storage_settings = storage
    login = (SMTP_USER, SMTP_PASSWORD)
    with fake_slack() as slack, fake_smtp(login=login) as smtp, fake_pagerduty() as pagerduty:
        env = environment(
            _settings(
                _with_password(database_url, DATABASE_PASSWORD),
                _redis_with_login(redis_url, "default"),
                slack,
                smtp,
                pagerduty,
            )
            | storage_settings
        )
        with (
            dg.DagsterInstance.get() as instance,
            create_test_daemon_workspace_context(project_location_target(), instance) as workspace,
        ):
            daemon = Daemon(workspace)
            daemon.tick()  # the sensors start: they watch what happens from now on
            done = cli("run", "--date", D.isoformat(), "--verbose", env=env, cwd=str(dagster_home))
            daemon.tick()
            daemon.tick()
            printed = done.stdout + done.stderr
            shown = everything_shown(
                printed, instance, dagster_home, engine, slack, smtp, pagerduty, storage_url
            )
        texts = [message["text"] for message in slack_messages(slack)]

    assert done.returncode == 0, done.stderr[-3000:]
    assert [text for text in texts if "BATCH-001 completed" in text and str(D) in text]
    assert pagerduty.requests and smtp.received  # the missed-ranking alert went through every channel
    assert "users scored" in shown["the command's output"] and "rankings" in shown["the pipeline's tables"]
    stored = shown["Dagster's storage"]  # the runs' events and the sensors' tick logs, in either storage
    assert "STEP_SUCCESS" in stored and "no rankings for business date" in stored
    _assert_no_secret(shown)


def _cut_when(condition, proxy) -> threading.Thread:
    """In the background: cut the proxy for good as soon as ``condition()`` holds."""

    def watch() -> None:
        with contextlib.suppress(AssertionError):  # the moment never came in 120 s: cut anyway
            wait_until(condition, 120, "the moment to cut the proxy", every=0.02)
        proxy.cut()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


@pytest.fixture
def failing_fast(monkeypatch):
    """The declared 60 s retry delay and 30 s store patience, shortened: the run fails within seconds."""
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt_num: 0)
    monkeypatch.setattr(errors, "STORE_PATIENCE_SECONDS", 1.0)


def test_a_database_lost_in_the_middle_of_scoring_leaves_no_secret_anywhere(
    database_url, redis_url, engine, dagster_home, environment, failing_fast
):
    seed(engine, 300, end_date=D, random_seed=8)
    login = (SMTP_USER, SMTP_PASSWORD)
    with (
        tcp_proxy(*_host_port(database_url)) as proxy,
        fake_slack() as slack,
        fake_smtp(login=login) as smtp,
        fake_pagerduty() as pagerduty,
    ):
        through = sa.engine.make_url(database_url).set(host="127.0.0.1", port=proxy.port)
        environment(
            _settings(
                _with_password(through.render_as_string(hide_password=False), DATABASE_PASSWORD),
                _redis_with_login(redis_url, "default"),
                slack,
                smtp,
                pagerduty,
            )
        )
        definitions = defs()  # as the code location loads them: every setting from the environment
        with (
            dg.DagsterInstance.get() as instance,
            create_test_daemon_workspace_context(project_location_target(), instance) as workspace,
        ):
            daemon = Daemon(workspace)
            daemon.tick()
            # the window, and a first ranking
            run_batch(definitions, instance, BusinessDate.of(D - dt.timedelta(days=1)))
            watcher = _cut_when(_scoring_insert_waits(engine), proxy)
            with pytest.raises(BatchRunFailed) as failed:
                run_batch(definitions, instance, BusinessDate.of(D))
            watcher.join()
            proxy.restore()
            daemon.tick()
            daemon.tick()
            shown = everything_shown(
                str(failed.value), instance, dagster_home, engine, slack, smtp, pagerduty
            )
        texts = [message["text"] for message in slack_messages(slack)]

    assert failed.value.step == "user_scores" and "127.0.0.1" in str(failed.value)
    assert [text for text in texts if "Critical: batch_001_scores_job failed" in text]
    _assert_no_secret(shown)


def test_redis_refusing_the_login_and_every_alert_channel_failing_leave_no_secret_anywhere(
    database_url, redis_url, engine, dagster_home, environment, failing_fast
):
    seed(engine, 300, end_date=D, random_seed=8)
    refused = (SMTP_USER, "not-the-configured-password")
    with (
        fake_slack(error="invalid_auth") as slack,
        fake_smtp(login=refused) as smtp,
        fake_pagerduty() as pagerduty,
    ):
        host_port = pagerduty.url.removeprefix("http://")
        environment(
            _settings(
                _with_password(database_url, DATABASE_PASSWORD),
                _redis_with_login(redis_url, "nobody"),  # no such user: Redis refuses the login
                slack,
                smtp,
                pagerduty,
                pagerduty_url=f"http://pager:{PAGERDUTY_URL_PASSWORD}@{host_port}/v2/enqueue",
            )
        )
        definitions = defs()
        with (
            dg.DagsterInstance.get() as instance,
            create_test_daemon_workspace_context(project_location_target(), instance) as workspace,
        ):
            daemon = Daemon(workspace)
            daemon.tick()
            with pytest.raises(BatchRunFailed) as failed:
                run_batch(definitions, instance, BusinessDate.of(D))
            daemon.tick()
            daemon.tick()
            shown = everything_shown(
                str(failed.value), instance, dagster_home, engine, slack, smtp, pagerduty
            )

    # at once (a retry cannot fix a refused login): no wait for Redis to answer
    assert {"StoreUnreachableError", "AuthenticationError"} <= failed.value.causes, failed.value
    assert slack.requests and not smtp.received  # Slack was asked (and refused); the mail never got in
    for channel in ("slack", "mail", "pagerduty"):  # each channel's failure is in the sensors' tick logs
        assert f"{channel} alert for run missed ranking" in shown["Dagster's storage"], channel
    _assert_no_secret(shown)
