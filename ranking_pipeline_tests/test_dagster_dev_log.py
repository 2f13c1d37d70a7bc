"""The check the browser journeys run on their `dagster dev` log: ERROR lines, unlabelled errors and
tracebacks from our code fail a journey; Dagster's own chatter, others' tracebacks and allowed errors do
not."""

from __future__ import annotations

import re

from ranking_pipeline_tests.dagster_dev import scan_log

OURS = ("ranking_pipeline", "start_batch_001_on_aggregates_landed")

INFO = (
    "\x1b[32m2026-11-28 22:12:28 +0000\x1b[0m - dagster.daemon.SensorDaemon - \x1b[34mINFO\x1b[0m - Sensor "
    "warn_on_long_batch_run skipped: 0 BATCH-001 run(s) in progress"
)
RUN_DEBUG = (
    "2026-11-28 22:01:26 +0000 - dagster - DEBUG - __ASSET_JOB - 6a39a9a0 - 29718 - user_scores - "
    'STEP_SUCCESS - Finished execution of step "user_scores" in 328ms.'
)
COLORED_ERROR = (
    "\x1b[32m2026-11-28 22:03:50 +0000\x1b[0m - dagster.daemon.SensorDaemon - \x1b[31mERROR\x1b[0m - Sensor "
    "daemon caught an error for sensor alert_on_run_failure"
)
SENSOR_ERROR = (
    "2026-11-28 22:03:50 +0000 - dagster - ERROR - __repository__ - alert_on_run_failure - slack alert for "
    "run e07cf403 FAILED: URLError: <urlopen error [Errno -2] Name or service not known>"
)
MISSED = (
    "2026-11-28 22:03:50 +0000 - dagster - ERROR - __repository__ - alert_on_missed_ranking - Critical: "
    "no rankings for business date 2026-11-28 by 09:00 JST on 2026-11-29: BATCH-000 has not aggregated "
    "2026-11-28"
)
OUR_TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/srv/ranking_pipeline/defs/sensors.py", line 61, in start_batch_001_on_aggregates_landed',
    "    missing = missing_aggregate_days(connection, business_date)",
    'sqlalchemy.exc.ProgrammingError: relation "ranking_partition_runs" does not exist',
]
OTHER_TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/usr/lib/python3.11/asyncio/events.py", line 80, in _run',
    "ConnectionResetError: [Errno 104] Connection reset by peer",
]
UNLABELLED = "Failed postgres command (-11, ('pg_ctl', '-w', 'start')) with kwargs: `{'user': 'pgserver'}`:"


def test_a_clean_log_has_no_problems():
    assert scan_log("\n".join([INFO, RUN_DEBUG, INFO]), OURS).problems == []


def test_error_lines_fail_whatever_their_logger_and_colours():
    scan = scan_log("\n".join([INFO, COLORED_ERROR, RUN_DEBUG, SENSOR_ERROR]), OURS)

    assert len(scan.problems) == 2
    assert "Sensor daemon caught an error for sensor alert_on_run_failure" in scan.problems[0]
    assert "\x1b" not in scan.report()
    assert scan.problems[1] == SENSOR_ERROR


def test_a_traceback_through_our_code_fails_with_all_its_lines_and_others_do_not():
    text = "\n".join([INFO, *OUR_TRACEBACK, INFO, *OTHER_TRACEBACK, RUN_DEBUG])

    scan = scan_log(text, OURS)

    assert scan.problems == ["\n".join(OUR_TRACEBACK)]


def test_allowed_errors_are_listed_apart_and_unlabelled_ones_fail():
    allowed = (re.compile(r" - alert_on_missed_ranking - Critical: no rankings for business date "),)
    unlabelled = (re.compile(r"^Failed postgres command"),)

    scan = scan_log("\n".join([MISSED, UNLABELLED, INFO]), OURS, allowed, unlabelled)

    assert scan.allowed == [MISSED]
    assert scan.problems == [UNLABELLED]


def test_a_traceback_of_an_allowed_error_is_listed_apart():
    allowed = (re.compile(r'relation "ranking_partition_runs" does not exist'),)

    scan = scan_log("\n".join([INFO, *OUR_TRACEBACK, *OTHER_TRACEBACK]), OURS, allowed)

    assert scan.problems == []
    assert scan.allowed == [OUR_TRACEBACK[0]]
