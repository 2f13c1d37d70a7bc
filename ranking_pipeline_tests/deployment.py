"""Dagster's multi-host shape, as separate local processes that talk only over TCP: the code location's own
code server (`dagster code-server start`), `dagster-webserver` and `dagster-daemon run` loading
deploy/workspace.production.yaml, Dagster's storage in a PostgreSQL database (deploy/dagster.production.yaml).

Only the code server gets the project's settings (RANKING_*, Slack): it loads the code, evaluates the
schedules and sensors for the daemon and starts the runs. The webserver and the daemon get DAGSTER_HOME, the
storage's DAGSTER_PG_* and the code server's address, nothing else. Each process runs in a session of its
own, so the code server can be killed alone and its leftovers (its run workers) stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ranking_pipeline.constants import RANKINGS_WRITER_POOL, RANKINGS_WRITER_POOL_LIMIT
from ranking_pipeline_tests.dagster_dev import (
    LOCATION_NAME,
    STARTUP_TIMEOUT_SECONDS,
    DagsterDev,
    GraphQLError,
    free_port,
)
from ranking_pipeline_tests.helpers import wait_until

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_YAML = PROJECT_ROOT / "deploy" / "dagster.production.yaml"
WORKSPACE_YAML = PROJECT_ROOT / "deploy" / "workspace.production.yaml"
BIN = Path(sys.executable).parent

LOCATION_STATUS = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""
RELOAD_LOCATION = """
mutation Reload($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry { loadStatus locationOrLoadError { __typename } }
  }
}
"""
DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"


def storage_environment(storage_url: str, home: Path) -> dict[str, str]:
    """DAGSTER_HOME and the DAGSTER_PG_* that deploy/dagster.production.yaml reads."""
    parsed = sa.engine.make_url(storage_url)
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_USERNAME": parsed.username or "",
        "DAGSTER_PG_PASSWORD": parsed.password or "",
        "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parsed.port or 5432),
        "DAGSTER_PG_DB": parsed.database or "",
    }


def _base_environment() -> dict[str, str]:
    """This process's environment without any project or Dagster setting."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RANKING_", "DAGSTER_", "SLACK_", "PAGERDUTY_"))
    }


def _stop_group(process: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM then SIGKILL to the process's whole session (it may be gone while its children live on)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
        if not _group_alive(process.pid):
            return


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Deployment:
    """The running processes; ``webserver`` is the GraphQL client operators and the trigger script use."""

    folder: Path
    storage: dict[str, str]
    code_server_env: dict[str, str]
    code_server_port: int
    webserver: DagsterDev | None = None
    code_server: subprocess.Popen | None = None
    daemon: subprocess.Popen | None = None
    sessions: list[subprocess.Popen] = field(default_factory=list)

    def _start(self, name: str, command: list[str], env: Mapping[str, str]) -> subprocess.Popen:
        log_path = self.folder / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                cwd=self.folder,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.sessions.append(process)
        return process

    def _dagster_env(self) -> dict[str, str]:
        """What the webserver and the daemon get: the instance and where the code server is."""
        return (
            _base_environment()
            | self.storage
            | {
                "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
                "DAGSTER_CODE_SERVER_PORT": str(self.code_server_port),
            }
        )

    def log(self, name: str, lines: int = 80) -> str:
        path = self.folder / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return f"--- {name}.log\n" + "\n".join(text.splitlines()[-lines:])

    def logs(self) -> str:
        return "\n".join(self.log(name) for name in ("code-server", "webserver", "daemon"))

    def start_code_server(self) -> None:
        self.code_server = self._start(
            "code-server",
            [
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.code_server_port),
                "-m",
                "ranking_pipeline.definitions",
                "--location-name",
                LOCATION_NAME,
            ],
            _base_environment() | self.storage | self.code_server_env,
        )

    def kill_code_server(self, whole_host: bool = False) -> None:
        """SIGKILL to the code server's own process, as when it is OOM-killed; ``whole_host``: to every
        process it started too (its gRPC server child and the run workers), as when its host is lost."""
        assert self.code_server is not None
        if whole_host:
            os.killpg(self.code_server.pid, signal.SIGKILL)
        else:
            os.kill(self.code_server.pid, signal.SIGKILL)
        self.code_server.wait(timeout=30)

    def start_webserver(self) -> None:
        port = free_port()
        command = [
            str(BIN / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(WORKSPACE_YAML),
        ]
        process = self._start("webserver", command, self._dagster_env())
        self.webserver = DagsterDev(
            url=f"http://127.0.0.1:{port}", log_path=self.folder / "webserver.log", process=process
        )

    def start_daemon(self) -> None:
        command = [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE_YAML)]
        self.daemon = self._start("daemon", command, self._dagster_env())

    def set_pool_limit(self) -> None:
        command = [
            str(BIN / "dagster"),
            "instance",
            "concurrency",
            "set",
            RANKINGS_WRITER_POOL,
            str(RANKINGS_WRITER_POOL_LIMIT),
        ]
        done = subprocess.run(command, env=self._dagster_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    def wait_until(self, what: str, ready, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Polls ``ready()`` until it is true; fails with the processes' logs after ``timeout``."""

        def condition() -> bool:
            for process in (self.webserver and self.webserver.process, self.daemon):
                if process is not None:
                    assert process.poll() is None, (
                        f"a Dagster process exited ({process.args[0]}):\n{self.logs()}"
                    )
            with contextlib.suppress(urllib.error.URLError, ConnectionError, GraphQLError, OSError):
                return bool(ready())
            return False

        wait_until(condition, timeout, what, every=0.5, details=self.logs)

    def location_loaded(self) -> bool:
        assert self.webserver is not None
        entries = self.webserver.graphql(LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
        [entry] = [entry for entry in entries if entry["name"] == LOCATION_NAME]
        return entry["loadStatus"] == "LOADED" and entry["locationOrLoadError"]["__typename"] != "PythonError"

    def daemons_healthy(self) -> bool:
        assert self.webserver is not None
        health = self.webserver.graphql(DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return all(status["healthy"] for status in health if status["required"])

    def reload_location(self) -> bool:
        """What the UI's "Reload" button does; true once the webserver has loaded the location again."""
        assert self.webserver is not None
        self.webserver.graphql(RELOAD_LOCATION, {"name": LOCATION_NAME})
        return self.location_loaded()

    def stop(self) -> None:
        for process in reversed(self.sessions):
            _stop_group(process)


@contextlib.contextmanager
def deployment(folder: Path, storage_url: str, code_server_env: Mapping[str, str]) -> Iterator[Deployment]:
    """Code server, webserver and daemon on free local ports, Dagster's storage in ``storage_url``;
    yields once the webserver has loaded the code location and every daemon is healthy."""
    home = folder / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    running = Deployment(
        folder=folder,
        storage=storage_environment(storage_url, home),
        code_server_env=dict(code_server_env),
        code_server_port=free_port(),
    )
    try:
        running.set_pool_limit()
        running.start_code_server()
        running.start_webserver()
        running.start_daemon()
        running.wait_until("the webserver loads the code location", running.location_loaded)
        running.wait_until("every daemon is healthy", running.daemons_healthy)
        yield running
    finally:
        running.stop()
