"""`ranking-pipeline dev` (the project's `dagster dev`) stops on SIGTERM, even when started in the background
from a script (SIGINT ignored): its webserver, daemon and code server stop, and so does the embedded
PostgreSQL server its sensors started. Nothing of ours is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil

from ranking_pipeline_tests.dagster_dev import copy_project, free_port
from ranking_pipeline_tests.helpers import wait_until

STARTUP_SECONDS = 120


def _postgres_of(pgdata: Path) -> list[psutil.Process]:
    return [
        process
        for process in psutil.process_iter(["name", "cmdline"])
        if process.info["name"] == "postgres" and str(pgdata) in " ".join(process.info["cmdline"] or [])
    ]


def _ui_answers(port: int) -> bool:
    body = json.dumps({"query": "{ version }"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_sigterm_stops_dagster_dev_and_the_embedded_server_it_started(tmp_path):
    project = copy_project(tmp_path / "project")
    pgdata = project / ".ranking_pipeline" / "pgdata"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKING_") and k != "DAGSTER_HOME"}
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(  # as `ranking-pipeline dev &` in a script: SIGINT ignored from the start
        [str(Path(sys.executable).with_name("ranking-pipeline")), "dev", "-p", str(port)],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:

        def up() -> bool:  # the gate sensor's first tick starts the embedded server
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()
            return bool(_ui_answers(port) and _postgres_of(pgdata))

        wait_until(up, STARTUP_SECONDS, "dagster dev and the embedded server", 1)
        ours = psutil.Process(dev.pid).children(recursive=True) + _postgres_of(pgdata)
        assert any("code-server" in " ".join(p.cmdline()) for p in ours if p.is_running())

        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=90)
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()

    survivors = []
    for process in ours:
        try:
            process.wait(timeout=15)
        except psutil.TimeoutExpired:
            survivors.append(" ".join(process.cmdline()))
        except psutil.NoSuchProcess:
            pass
    assert survivors == [], survivors
    assert _postgres_of(pgdata) == []
    assert " ERROR " not in (tmp_path / "dev.log").read_text()
