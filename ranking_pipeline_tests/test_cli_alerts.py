"""Runs of `ranking-pipeline run` are alerted like any other run, exactly once, by the sensors of a daemon
that watches the same Dagster instance: the real sensor daemon iteration, the project's code location served
by a real code server (configured from the environment, as in production), Slack and SMTP stand-ins."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._daemon.sensor import execute_sensor_iteration

from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.conftest import project_instance_settings
from ranking_pipeline_tests.fakes import fake_slack, fake_smtp, slack_messages
from ranking_pipeline_tests.helpers import project_location_target

D = dt.date(2026, 11, 27)


@pytest.fixture
def dagster_home(tmp_path):
    """A DAGSTER_HOME with the project's instance settings (storage in the home itself)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(project_instance_settings()))
    return home


def cli(home, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ranking_pipeline.cli", *args],
        env={**env, "DAGSTER_HOME": str(home)},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_failing_and_a_succeeding_cli_run_are_alerted_once_each(
    engine, database_url, dagster_home, monkeypatch
):
    seed(engine, 300, end_date=D, random_seed=8)
    with engine.begin() as connection:  # a day's sum beyond NUMERIC(14,2): BATCH-000 fails on it
        connection.execute(
            sa.text(
                "INSERT INTO orders SELECT 10000000 + n, 3, 9999999999.99, 'completed', :at "
                "FROM generate_series(1, 101) AS n"
            ),
            {"at": dt.datetime(2026, 11, 27, 12, tzinfo=dt.timezone(dt.timedelta(hours=9)))},
        )
    with fake_slack() as slack, fake_smtp() as smtp:
        settings = {
            "RANKING_DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": "xoxb-test",
            "RANKING_SLACK_API_URL": f"{slack.url}/api/",
            "RANKING_SMTP_HOST": smtp.host,
            "RANKING_SMTP_PORT": str(smtp.port),
            "RANKING_SMTP_TLS": "none",
            "RANKING_ALERT_MAIL_TO": "oncall@example.test",
        }
        for name, value in settings.items():  # the code server reads its settings from the environment
            monkeypatch.setenv(name, value)
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
        target = project_location_target()
        now = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)  # 00:00 JST: nothing nightly is due
        with (
            dg.DagsterInstance.from_config(str(dagster_home)) as instance,
            create_test_daemon_workspace_context(target, instance) as workspace,
        ):

            def daemon_tick() -> None:
                nonlocal now
                now += dt.timedelta(minutes=2)  # past every sensor's minimum interval
                with freeze_time(now):
                    list(execute_sensor_iteration(workspace, logging.getLogger("sensors"), None, None))

            daemon_tick()  # the sensors start: they watch what happens from now on
            failed = cli(dagster_home, env, "run", "--date", D.isoformat())
            assert failed.returncode == 2, failed.stderr
            with engine.begin() as connection:  # the upstream team fixes the day
                connection.execute(sa.text("DELETE FROM orders WHERE order_id > 10000000"))
            succeeded = cli(dagster_home, env, "run", "--date", D.isoformat())
            assert succeeded.returncode == 0, succeeded.stderr
            daemon_tick()
            daemon_tick()  # seen again: nothing is sent twice

            runs = instance.get_runs()
        texts = [message["text"] for message in slack_messages(slack)]
        mails = smtp.received

    assert {run.remote_job_origin.location_name for run in runs} == {"ranking_pipeline"}
    # about runs (the code server's missed-ranking alert reads the real clock: it may page for the real day)
    texts = [text for text in texts if "/runs/" in text]
    [failure] = [text for text in texts if "Critical" in text]
    assert "Critical: batch_000_job failed (business date 2026-10-29 .. 2026-11-27)" in failure
    assert "users whose completed orders of one day sum beyond NUMERIC(14,2)" in failure
    [notice] = [text for text in texts if "BATCH-001 completed" in text]
    assert f"for business date {D}" in notice
    assert len(texts) == 2
    [mail] = [mail for mail in mails if "no rankings for" not in mail.message["Subject"]]
    assert "batch_000_job failed" in mail.message["Subject"]
