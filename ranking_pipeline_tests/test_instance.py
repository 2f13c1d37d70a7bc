"""One Dagster instance per DAGSTER_HOME, whichever folder each process starts in; without DAGSTER_HOME, the
project folder's local instance, shared by `dagster dev` and the command line started there."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

from ranking_pipeline.constants import BATCH_000_JOB
from ranking_pipeline.instance import storage_folder
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.conftest import PROJECT_ROOT
from ranking_pipeline_tests.dagster_dev import (
    DAGSTER_BIN,
    batch_000_tags,
    copy_project,
    dagster_dev,
    project_environment,
    without_local_settings,
)
from ranking_pipeline_tests.helpers import cli

D = dt.date(2026, 11, 27)

# What a process started in another folder finds in the instance: its runs and the daemons that reported.
_READ_INSTANCE = """
import json
import dagster as dg
with dg.DagsterInstance.get() as instance:
    print(json.dumps({
        "runs": [run.run_id for run in instance.get_runs()],
        "daemons": sorted(instance.get_daemon_heartbeats()),
    }))
"""


def _run_ids(cli_stdout: str) -> set[str]:
    [line] = [line for line in cli_stdout.splitlines() if line.strip().startswith("runs: ")]
    return set(line.split("runs: ", 1)[1].split(", recorded in ")[0].split(", "))


def _read_instance(cwd: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _READ_INSTANCE], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_relative_storage_folder_is_relative_to_dagster_home_when_it_is_set(monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert storage_folder(".ranking_pipeline/dagster") == str(tmp_path / "home" / ".ranking_pipeline/dagster")
    assert storage_folder("/srv/dagster/storage") == "/srv/dagster/storage"

    monkeypatch.delenv("DAGSTER_HOME")
    assert storage_folder(".ranking_pipeline/dagster") == str(tmp_path / ".ranking_pipeline/dagster")


def test_every_process_of_one_dagster_home_records_into_one_instance_from_any_folder(
    tmp_path, database_url, engine
):
    """The project's dagster.yaml copied into DAGSTER_HOME, as Dagster's docs say: the command line in folder
    X, `dagster dev` (webserver, daemon, run workers) in the project, `dagster run list` and a plain Python
    process in folder Y all use the instance in DAGSTER_HOME, and nothing is stored in those folders."""
    seed(engine, 300, end_date=D)
    home, x, y = tmp_path / "home", tmp_path / "x", tmp_path / "y"
    for folder in (home, x, y):
        folder.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    project = copy_project(tmp_path / "project")
    settings = without_local_settings() | {"DAGSTER_HOME": str(home), "RANKING_DATABASE_URL": database_url}
    env = project_environment(settings)

    done = cli("run", "--date", D.isoformat(), env=env, cwd=str(x))
    assert done.returncode == 0, done.stderr
    assert f"recorded in the Dagster instance in DAGSTER_HOME={home}" in done.stdout
    from_the_cli = _run_ids(done.stdout)

    with dagster_dev(project, tmp_path / "dagster-dev.log", env=settings) as running:
        assert from_the_cli <= {run["runId"] for run in running.runs()}, "the UI shows the CLI's runs"
        launched = running.launch_job(BATCH_000_JOB, batch_000_tags(D.isoformat(), D.isoformat()))
        assert running.wait_for_run(launched)["status"] == "SUCCESS", running.log_tail()
        seen_from_y = _read_instance(y, env)
    assert "SCHEDULER" in seen_from_y["daemons"], "the daemon of `dagster dev` reports into DAGSTER_HOME"
    assert set(seen_from_y["runs"]) == from_the_cli | {launched}

    listed = subprocess.run(
        [str(DAGSTER_BIN), "run", "list"], cwd=y, env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert {line.split("Run: ")[1] for line in listed.stdout.splitlines() if "Run: " in line} == set(
        seen_from_y["runs"]
    )
    assert (home / ".ranking_pipeline" / "dagster" / "history" / "runs.db").is_file()
    for folder in (x, y, project):
        assert not (folder / ".ranking_pipeline" / "dagster").exists(), folder


# How `dagster dev` opens its instance when DAGSTER_HOME is unset (./dagster.yaml, temporary scratch home).
_DAGSTER_DEVS_INSTANCE = """
import json
from dagster._cli.utils import get_possibly_temporary_instance_for_cli
with get_possibly_temporary_instance_for_cli("dagster dev") as instance:
    print(json.dumps([run.run_id for run in instance.get_runs()]))
"""


def test_without_dagster_home_the_cli_and_dagster_dev_in_the_project_share_its_local_instance(
    tmp_path, database_url, engine
):
    seed(engine, 300, end_date=D)
    project = copy_project(tmp_path / "project")
    env = project_environment(without_local_settings() | {"RANKING_DATABASE_URL": database_url})

    done = cli("run", "--date", D.isoformat(), env=env, cwd=str(project))
    assert done.returncode == 0, done.stderr
    assert f"recorded in the Dagster instance of {project / 'dagster.yaml'}" in done.stdout

    opened = subprocess.run(
        [sys.executable, "-c", _DAGSTER_DEVS_INSTANCE],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert opened.returncode == 0, opened.stderr
    assert set(json.loads(opened.stdout.splitlines()[-1])) == _run_ids(done.stdout)
    assert (project / ".ranking_pipeline" / "dagster" / "history" / "runs.db").is_file()
