"""Every mistake is one line on stderr and exit 2, with nothing run or written; no line ever shows a secret
(issue 16, items 1 and 2). Real processes: the installed command, the trigger script, Dagster's own loading of
the code location (in process, as the webserver's workspace does it, and `dagster definitions validate`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import redis
import sqlalchemy as sa
import yaml
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

from ranking_pipeline.lib import db, settings
from ranking_pipeline_tests import fakes
from ranking_pipeline_tests.conftest import PROJECT_ROOT, project_instance_settings
from ranking_pipeline_tests.helpers import cli, code_location_origin

D = "2026-11-27"
TRIGGER = PROJECT_ROOT / "deploy" / "trigger" / "launch_batch_001.py"
TRIGGER_SH = TRIGGER.with_suffix(".sh")  # kept for older cron lines: calls the Python script
CLOSED_DATABASE = "postgresql://rel_user:Zq0closedsekret@127.0.0.1:1/ranking"  # nothing listens on port 1
ENV_PREFIXES = ("RANKING_", "DAGSTER_", "SLACK_BOT_TOKEN", "PAGERDUTY_ROUTING_KEY")
CLI_PREFIX, TRIGGER_PREFIX = "ranking-pipeline: error: ", "launch_batch_001: "
LOAD_ERROR_CLASS = "dagster._core.errors.DagsterInvalidDefinitionError: "

# Each command as a person runs it, then with a bad argument (or date) instead.
COMMANDS = {
    "run": ["run", "--date", D],
    "seed": ["seed", "--users", "5", "--end-date", D],
    "lock status": ["lock", "status"],
    "lock release": ["lock", "release"],
    "ranges show": ["ranges", "show"],
    "ranges apply": ["ranges", "apply", "--from", D],
    "dev": ["dev", "-p", "3999"],
    "bench": ["bench", "--users", "5"],
    "trigger": [D],
    "trigger.sh": [D],
}
BAD_ARGUMENTS = {
    "run": [["run", "--dates", D], ["run", "--date", "2026-02-30"], ["run", "--date", "2099-01-01"]],
    "seed": [["seed", "--users", "many"], ["seed", "--users", "5", "--end-date", "27/11/2026"]],
    "lock status": [["lock", "status", "--force"]],
    "lock release": [["lock", "release", "--process", "BATCH-002"]],
    "ranges show": [["ranges", "show", "--all"]],
    "ranges apply": [["ranges", "apply"], ["ranges", "apply", "--from", "27/11/2026"]],
    "dev": [["dev", "--bogus"], ["dev", "-p", "abc"]],
    "bench": [["bench", "--users", "5", "--runs", "0"]],
    "trigger": [["--bogus"], ["2025-02-30"]],
    "trigger.sh": [["--bogus"]],
}


def _environment(dagster_home: Path, values: dict[str, str]) -> dict[str, str]:
    """This process's environment without any project or Dagster setting, then ``values``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIXES)}
    return {**env, "DAGSTER_HOME": str(dagster_home), **values}


@pytest.fixture
def dagster_home(tmp_path) -> Path:
    """A Dagster instance folder holding only the project's dagster.yaml: any run would leave files in it."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(project_instance_settings()))
    return home


@pytest.fixture
def workdir(tmp_path) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


def _command(name: str, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    if not name.startswith("trigger"):
        return cli(*args, env=env, cwd=str(cwd))
    script = [sys.executable, str(TRIGGER)] if name == "trigger" else ["sh", str(TRIGGER_SH)]
    return subprocess.run([*script, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def _one_line(done: subprocess.CompletedProcess, name: str) -> str:
    """The single line on stderr (nothing on stdout), after the command's prefix."""
    prefix = TRIGGER_PREFIX if name.startswith("trigger") else CLI_PREFIX
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), done.stderr[-3000:]
    assert done.stdout == "", done.stdout[-3000:]
    return lines[0][len(prefix) :]


def _nothing_written(dagster_home: Path, cwd: Path) -> None:
    assert sorted(path.name for path in dagster_home.iterdir()) == ["dagster.yaml"]  # no run, no storage
    assert list(cwd.iterdir()) == []  # no embedded server, no local instance, no scratch folder


def _tables(url: str) -> list[str]:
    with db.get_engine(url).connect() as connection:
        return sa.inspect(connection).get_table_names()


def _bench_databases(url: str) -> set[str]:
    query = sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, 'rp_bench_')")
    with db.get_engine(url).connect() as connection:
        return set(connection.execute(query).scalars())


# --- item 1: every command x every kind of mistake ----------------------------------------------------------

MISTAKES = [(name, "bad setting", COMMANDS[name]) for name in COMMANDS]
MISTAKES += [(name, "bad argument", args) for name, variants in BAD_ARGUMENTS.items() for args in variants]
MISTAKES += [(name, "unreachable", COMMANDS[name]) for name in COMMANDS]


@pytest.mark.parametrize(
    ("name", "mistake", "args"), MISTAKES, ids=[f"{n}-{m}-{' '.join(a)}" for n, m, a in MISTAKES]
)
def test_every_mistake_is_one_line_and_exit_2_with_nothing_run_or_written(
    name, mistake, args, database_url, dagster_home, workdir
):
    values = {"RANKING_DATABASE_URL": database_url, "DAGSTER_URL": "http://127.0.0.1:1"}
    if mistake == "bad setting":
        values |= {"RANKING_SMTP_PORT": "abc", "DAGSTER_URL": "dagster.internal:3000"}
    if mistake == "unreachable":
        values["RANKING_DATABASE_URL"] = CLOSED_DATABASE
    benches_before = _bench_databases(database_url)

    done = _command(name, args, _environment(dagster_home, values), workdir)

    line = _one_line(done, name)
    if name.startswith("trigger") and mistake == "unreachable":
        # Dagster is the trigger's only store; not reaching it is its documented exit 1, nothing launched
        assert done.returncode == 1 and "nothing was launched" in line
    else:
        assert done.returncode == 2, line
    if mistake == "bad setting":
        expected = (
            "DAGSTER_URL"
            if name.startswith("trigger")
            else "RANKING_SMTP_PORT='abc': expected a TCP port number"
        )
        assert expected in line
    if mistake == "unreachable" and not name.startswith("trigger"):
        assert "cannot reach the database postgresql+psycopg2://rel_user:***@127.0.0.1:1/ranking" in line
        assert "Zq0closedsekret" not in done.stderr
    _nothing_written(dagster_home, workdir)
    assert _tables(database_url) == []
    assert _bench_databases(database_url) == benches_before


@pytest.mark.parametrize("name", ["run", "seed", "lock status", "lock release"])
def test_an_unreachable_redis_is_one_line_at_once_with_nothing_written(
    name, database_url, dagster_home, workdir
):
    values = {
        "RANKING_DATABASE_URL": database_url,
        "RANKING_REDIS_URL": "redis://:Zq0redissekret@127.0.0.1:1/0",
    }

    done = cli(*COMMANDS[name], env=_environment(dagster_home, values), cwd=str(workdir))

    line = _one_line(done, name)
    assert done.returncode == 2
    assert line.startswith("Redis at redis://***@127.0.0.1:1/0 did not answer: ")
    assert "Zq0redissekret" not in done.stderr
    _nothing_written(dagster_home, workdir)
    assert _tables(database_url) == []


@pytest.mark.parametrize("name", ["run", "lock status"])
def test_a_redis_refusing_the_login_is_one_line_at_once_with_nothing_written(
    name, redis_url, database_url, dagster_home, workdir
):
    parsed = redis.connection.parse_url(redis_url)
    where = f"{parsed.get('host', '127.0.0.1')}:{parsed.get('port', 6379)}"
    values = {
        "RANKING_DATABASE_URL": database_url,
        "RANKING_REDIS_URL": f"redis://nobody:Zq0redissekret@{where}/0",  # no such user
    }

    done = cli(*COMMANDS[name], env=_environment(dagster_home, values), cwd=str(workdir))

    line = _one_line(done, name)
    assert done.returncode == 2
    assert line.startswith(f"Redis at redis://***@{where}/0 did not answer: AuthenticationError: "), line
    assert "Zq0redissekret" not in done.stderr
    _nothing_written(dagster_home, workdir)
    assert _tables(database_url) == []


def test_every_wrong_setting_is_named_in_the_one_line(database_url, dagster_home, workdir):
    wrong = {
        "RANKING_FIRST_BUSINESS_DATE": "2020-13-01",
        "RANKING_RETENTION_DAYS": "-1",
        "RANKING_REDIS_URL": "http://127.0.0.1:6379/0",
        "RANKING_GATE_GIVE_UP_AT_JST": "9am",
        "RANKING_RANKINGS_DEADLINE_JST": "25:00",
        "RANKING_SLACK_API_URL": "slack.com/api",
        "RANKING_PAGERDUTY_EVENTS_URL": "ftp://events.pagerduty.com/v2/enqueue",
        "RANKING_SMTP_HOST": "smtp://mail.example.com:25",
        "RANKING_SMTP_PORT": "70000",
        "RANKING_SMTP_TLS": "tls",
        "RANKING_ALERT_MAIL_FROM": "nobody",
        "RANKING_ALERT_MAIL_TO": "ops",
        "RANKING_DAGSTER_UI_URL": "localhost:3000",
    }
    assert set(wrong) == {s.env for s in settings.SETTINGS if s.check} - {"RANKING_DATABASE_URL"}

    done = cli(
        "run", "--date", D, env=_environment(dagster_home, wrong | {"RANKING_DATABASE_URL": database_url})
    )

    line = _one_line(done, "run")
    assert done.returncode == 2
    assert [name for name in wrong if f"{name}=" not in line] == []
    _nothing_written(dagster_home, workdir)
    assert _tables(database_url) == []


# --- item 2: no secret, whatever the mistake ----------------------------------------------------------------

SECRET = re.compile(r"Zq\d+sekret")
# (settings, what is wrong): each value carries a distinctive secret ZqNsekret where a password or token goes.
_DATABASE_URLS = [
    ("postgresql//rel_user:{}@127.0.0.1/rel_secret", "no colon after the scheme"),
    ("postgresql:/rel_user:{}@127.0.0.1:1/db", "one slash"),
    ("postgresql://rel_user::{}@127.0.0.1:1/db", "doubled colon"),
    ("postgresql://rel_user:{}@127.0.0.2:/db", "empty port"),
    ("postgresql://rel_user:{}@127.0.0.1:abc/db", "port not a number"),
    ("postgresql://rel_user:{}@127.0.0.1:99999/db", "port out of range"),
    ("postgresql://rel_user:p@{}@127.0.0.1:1/db", "raw @ in the password"),
    ("postgresql://rel_user:{}%@127.0.0.1:1/db", "broken % escape"),
    ("postgresql://rel_user:{}%40x@127.0.0.1:1/db", "% escape"),
    ("postgresql://rel_user:a b {}@127.0.0.1:1/db", "spaces"),
    ('"postgresql://rel_user:{}@127.0.0.1:1/db"', "double quotes"),
    ("'postgresql://rel_user:{}@127.0.0.1:1/db'", "single quotes"),
    ("postgresql://rel_user:{}ü€@127.0.0.1:1/db", "unicode"),
    ("postgresql://rel_user:" + "{}" * 300 + "@127.0.0.1:1/db", "very long"),
    ("mysql://rel_user:{}@127.0.0.1/db", "another database"),
    ("redis://rel_user:{}@127.0.0.1/db", "a Redis URL"),
    ("postgresql://:{}@127.0.0.1:1/db", "empty user"),
    ("rel_user:{}@127.0.0.1:1/db", "no scheme"),
    ("//rel_user:{}@127.0.0.1:1/db", "no scheme, slashes"),
    ("postgresql://rel_user:{}/127.0.0.1/db", "no @ before the host"),
    ("postgresql://rel_user:{}", "no host at all"),
    ("postgresql://rel_user:{}@", "nothing after @"),
    ("postgresql://127.0.0.1:1/db?password={}", "password in the query"),
    ("postgresql://rel_user:{}@[::1:1/db", "unclosed IPv6 bracket"),
    ("postgresql://rel_user:{}@host name/db", "space in the host"),
    ("postgresql://rel_user:se/{}@127.0.0.1:1/db", "slash in the password"),
    ("postgresql://rel_user:se#{}@127.0.0.1:1/db", "hash in the password"),
    ("postgresql://rel_user:se?{}@127.0.0.1:1/db", "question mark in the password"),
    ("postgresql://rel_user;{}@127.0.0.1:1/db", "semicolon instead of colon"),
    ("postgresql://rel_user:{}\n@127.0.0.1:1/db", "newline"),
    ("postgresql+asyncpg://rel_user:{}@127.0.0.1:1/db", "another driver"),
    ("postgresql://rel_user:{}@127.0.0.1:1/db@x", "@ in the path"),
    ("postgresql:///db?host=/nonexistent&password={}", "socket folder, password in the query"),
]
_REDIS_URLS = [
    ("redis://:{}@127.0.0.1:abc/0", "port not a number"),
    ("redis://:p@{}@127.0.0.1:1/0", "raw @ in the password"),
    ("redis//:{}@127.0.0.1:1/0", "no colon after the scheme"),
    ("redis://:se/{}@127.0.0.1:1/0", "slash in the password"),
    ("redis://:{}/127.0.0.1", "no @ before the host"),
    ("http://:{}@127.0.0.1:1/0", "another scheme"),
    ("redis://:{}@", "nothing after @"),
    ("redis://user:{}@[::1/0", "unclosed IPv6 bracket"),
    ("redis://:{}@127.0.0.1:1/0", "valid, nothing listening"),
    ("rediss://:{}%ZZ@127.0.0.1:1/0", "broken % escape, nothing listening"),
]
_SECRETS = [
    ({"SLACK_BOT_TOKEN": "xoxb-{}", "RANKING_SMTP_PORT": "abc"}, "Slack token beside a bad port"),
    ({"PAGERDUTY_ROUTING_KEY": "{}", "RANKING_SMTP_TLS": "bogus"}, "PagerDuty key beside a bad TLS mode"),
    ({"RANKING_SMTP_PASSWORD": "{}", "RANKING_SMTP_HOST": "smtp://mail"}, "SMTP password beside a bad host"),
    ({"RANKING_SMTP_PASSWORD": "'{}\n\"", "RANKING_SMTP_PORT": "0"}, "quoted multi-line SMTP password"),
    ({"SLACK_BOT_TOKEN": "{}" * 500, "RANKING_RETENTION_DAYS": "x"}, "very long token"),
    ({"RANKING_SMTP_PASSWORD": "{}", "RANKING_SMTP_PORT": "{}"}, "the password pasted into the port"),
    ({"RANKING_SLACK_API_URL": "htps://bot:{}@slack.example/api/"}, "credentials in a bad Slack URL"),
    ({"RANKING_DAGSTER_UI_URL": "http://ui:{}@dagster:abc/"}, "credentials in a UI URL with a bad port"),
    ({"RANKING_PAGERDUTY_EVENTS_URL": "events.example/v2?token={}"}, "token in a scheme-less URL"),
]
SECRET_CASES = (
    [({"RANKING_DATABASE_URL": url}, f"database URL: {why}") for url, why in _DATABASE_URLS]
    + [({"RANKING_REDIS_URL": url}, f"Redis URL: {why}") for url, why in _REDIS_URLS]
    + [(values, why) for values, why in _SECRETS]
)


HTTP_URL_SETTINGS = ("RANKING_SLACK_API_URL", "RANKING_PAGERDUTY_EVENTS_URL", "RANKING_DAGSTER_UI_URL")


def _with_secret(values: dict[str, str], index: int) -> tuple[dict[str, str], str]:
    secret = f"Zq{index + 1}sekret"
    return {name: value.replace("{}", secret) for name, value in values.items()}, secret


def test_no_description_of_a_url_holds_its_secret():
    """What logs, run metadata, messages and alert links show of a URL (lib/redact.py, lib/db.py,
    lib/cache.py)."""
    from ranking_pipeline.lib.cache import describe_redis_url
    from ranking_pipeline.lib.redact import public_url, url_location

    for index, (values, why) in enumerate(SECRET_CASES):
        values, secret = _with_secret(values, index)
        for name, value in values.items():
            shown = [url_location(value)]
            shown += [db.describe_url(value)] if name == "RANKING_DATABASE_URL" else []
            shown += [describe_redis_url(value)] if name == "RANKING_REDIS_URL" else []
            shown += [public_url(value)] if name in HTTP_URL_SETTINGS else []
            assert not [text for text in shown if secret in text], (why, shown)


ROTATION = [COMMANDS[name] for name in ("run", "seed", "lock status", "bench", "dev", "lock release")]


@pytest.mark.parametrize(
    ("index", "values"),
    list(enumerate(values for values, _ in SECRET_CASES)),
    ids=[why for _, why in SECRET_CASES],
)
def test_no_secret_reaches_the_command_line_whatever_the_mistake(index, values, dagster_home, workdir):
    values, secret = _with_secret(values, index)
    # the lock command reaches Redis first; the others reach the (closed) database first
    args = COMMANDS["lock status"] if "RANKING_REDIS_URL" in values else ROTATION[index % len(ROTATION)]
    env = _environment(dagster_home, {"RANKING_DATABASE_URL": CLOSED_DATABASE, **values})

    done = cli(*args, env=env, cwd=str(workdir))

    line = _one_line(done, args[0])
    assert done.returncode == 2, line
    assert secret not in done.stdout + done.stderr and not SECRET.search(done.stdout + done.stderr), line
    _nothing_written(dagster_home, workdir)


# The trigger's own secrets: DAGSTER_AUTH's header value and credentials written into DAGSTER_URL.
TRIGGER_SECRET_CASES = [
    ({"DAGSTER_URL": "http://ops:{}@dagster.internal:3000"}, 2, "credentials in DAGSTER_URL"),
    ({"DAGSTER_URL": "ops:{}@dagster.internal:abc"}, 2, "no scheme, credentials and a bad port"),
    ({"DAGSTER_URL": "http://ops:{}@[::1:3000"}, 2, "credentials before an unclosed IPv6 bracket"),
    ({"DAGSTER_AUTH": "Bearer {}"}, 2, "a token without its header name"),
    ({"DAGSTER_AUTH": "Authorization: Bearer {}\r\nX-Other: 1"}, 2, "two headers"),
    ({"DAGSTER_AUTH": "Authorization: Bearer {}", "DAGSTER_URL": "http://127.0.0.1:1"}, 1, "Dagster down"),
    ({"DAGSTER_AUTH": "Authorization: Bearer {}"}, 1, "a proxy quoting the token in its refusal"),
]


@pytest.mark.parametrize(
    ("index", "values", "code"),
    [(index, values, code) for index, (values, code, _) in enumerate(TRIGGER_SECRET_CASES)],
    ids=[why for _, _, why in TRIGGER_SECRET_CASES],
)
def test_no_secret_reaches_the_trigger_scripts_line(index, values, code, dagster_home, workdir):
    secret = f"Zq{index + 201}sekret"
    values = {name: value.replace("{}", secret) for name, value in values.items()}
    with fakes.recording_http_server(answer={"errors": [{"message": f"refused: Bearer {secret}"}]}) as proxy:
        env = _environment(dagster_home, {"DAGSTER_URL": proxy.url, **values})

        done = _command("trigger", [D], env, workdir)

    line = _one_line(done, "trigger")
    assert done.returncode == code, line
    assert secret not in done.stdout + done.stderr and not SECRET.search(done.stdout + done.stderr), line


@pytest.fixture(scope="module")
def load_instance():
    with dg.instance_for_test() as instance:
        yield instance


def _load(instance: dg.DagsterInstance):
    """The code location ``ranking_pipeline`` loaded by Dagster's workspace as the webserver loads it (here in
    process: the same definitions function, the same error boundary and serialization)."""
    target = InProcessWorkspaceLoadTarget([code_location_origin()])
    with WorkspaceProcessContext(instance, target) as context:
        entry = context.create_request_context().get_code_location_entries()["ranking_pipeline"]
        if entry.load_error is not None:
            return entry.load_error, None
        resources = entry.code_location.get_repository("__repository__").get_resources()
        return None, repr([resource.configured_values for resource in resources])


@pytest.mark.filterwarnings("ignore:Error loading repository location:UserWarning")
@pytest.mark.parametrize(
    ("index", "values"),
    list(enumerate(values for values, _ in SECRET_CASES)),
    ids=[why for _, why in SECRET_CASES],
)
def test_no_secret_reaches_the_code_locations_load_error_or_resource_view(
    index, values, load_instance, monkeypatch
):
    values, secret = _with_secret(values, index)
    for name in [name for name in os.environ if name.startswith(ENV_PREFIXES)]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    try:
        settings.validate()
        sentence = None
    except settings.SettingsError as error:
        sentence = str(error)

    load_error, resource_view = _load(load_instance)

    if sentence is None:  # a value that parses: the location loads, and the UI shows variable names only
        assert load_error is None
        assert secret not in resource_view and "EnvVar" in resource_view
        return
    assert load_error is not None
    shown = load_error.to_string()
    assert shown.splitlines()[0] == LOAD_ERROR_CLASS + sentence
    assert secret not in shown and not SECRET.search(shown)


VALIDATED = [
    "database URL: no colon after the scheme",
    "database URL: raw @ in the password",
    "database URL: no scheme",
    "Redis URL: port not a number",
    "SMTP password beside a bad host",
]


@pytest.mark.parametrize("why", VALIDATED)
def test_dagster_definitions_validate_starts_with_the_same_line_and_shows_no_secret(
    why, dagster_home, workdir
):
    """The real command (it loads the location in a code server process, as `dagster dev` does), on an
    instance of its own rather than the project folder's."""
    index = [case_why for _, case_why in SECRET_CASES].index(why)
    values, secret = _with_secret(SECRET_CASES[index][0], index)
    env = _environment(dagster_home, values)
    command_line = cli("lock", "status", env=env, cwd=str(workdir))
    _nothing_written(dagster_home, workdir)

    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 1
    sentence = _one_line(command_line, "lock")
    after = output.split("Validation failed for code location ranking_pipeline:")[1].lstrip("\n")
    assert after.splitlines()[0] == LOAD_ERROR_CLASS + sentence, output[-3000:]
    assert secret not in output and not SECRET.search(output)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_runs_count() == 0
