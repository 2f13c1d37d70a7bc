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
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ranking_pipeline.constants import BATCH_000_JOB

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in FINISHED_STATUSES:
                return run
            time.sleep(1)
        raise TimeoutError(f"run {run_id} still {run['status']} after {timeout} s\n{self.log_tail()}")

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = [run for run in self.runs() if run["runId"] not in known]
            if fresh:
                return fresh[-1]
            time.sleep(1)
        raise TimeoutError(f"no new run appeared within {timeout} s")


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
    environment = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    for key, value in (env or {}).items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
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
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {process.returncode}:\n{dev.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"dagster dev not ready in {STARTUP_TIMEOUT_SECONDS} s:\n{dev.log_tail()}")
            with contextlib.suppress(urllib.error.URLError, ConnectionError, GraphQLError, KeyError, OSError):
                if _location_loaded(dev):
                    break
            time.sleep(0.5)
        yield dev
    finally:
        _stop(process)


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


__all__ = ["BATCH_000_JOB", "DagsterDev", "batch_000_tags", "copy_project", "dagster_dev", "free_port"]
