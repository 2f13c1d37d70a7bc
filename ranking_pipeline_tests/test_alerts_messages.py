"""The pure parts of alerting: who is told, when, and what the messages say."""

from __future__ import annotations

import datetime as dt

from ranking_pipeline.constants import FAILURE_ALERTED_TAG
from ranking_pipeline.lib.notify import messages as m

FACTS = m.FailureFacts(
    job_name="batch_001_rankings_job",
    run_id="0123456789abcdef",
    business_date="2026-01-10",
    run_url="http://ui/runs/0123456789abcdef",
    failed_steps=["rankings"],
    error_lines=["LockTimeoutError: waited 10s for a lock"],
)


def test_failures_alert_for_the_batch_jobs_and_ui_materializations_only_once_and_not_before_a_retry():
    assert m.alerts_on_failure("batch_001_scores_job", {}, FAILURE_ALERTED_TAG)
    assert m.alerts_on_failure("batch_001_rankings_job", {}, FAILURE_ALERTED_TAG)
    assert m.alerts_on_failure("batch_000_job", {}, FAILURE_ALERTED_TAG)
    assert m.alerts_on_failure("__ASSET_JOB", {}, FAILURE_ALERTED_TAG)
    assert not m.alerts_on_failure("someone_elses_job", {}, FAILURE_ALERTED_TAG)
    assert not m.alerts_on_failure(
        "batch_001_scores_job", {"dagster/will_retry": "true"}, FAILURE_ALERTED_TAG
    )
    assert m.alerts_on_failure("batch_001_scores_job", {"dagster/will_retry": "false"}, FAILURE_ALERTED_TAG)
    assert not m.alerts_on_failure("batch_001_scores_job", {FAILURE_ALERTED_TAG: "true"}, FAILURE_ALERTED_TAG)


def test_only_a_timeout_pages_on_call():
    assert m.failure_channels(FACTS) == [m.SLACK, m.MAIL]
    timed_out = m.FailureFacts(**{**FACTS.__dict__, "timed_out_after_seconds": 1800})
    assert m.failure_channels(timed_out) == [m.SLACK, m.MAIL, m.PAGERDUTY]
    assert "timed out after 1800 s" in m.failure_slack_text(timed_out)


def test_a_timeout_is_recognised_from_run_monitoring_messages():
    assert m.timeout_seconds(["Sending run termination request.", None]) is None
    assert m.timeout_seconds(["Canceling due to exceeding maximum runtime of 1800 seconds."]) == 1800
    assert m.timeout_seconds(["Exceeded maximum runtime of 4 seconds."]) == 4


def test_error_lines_keep_the_first_lines_readable():
    lines = m.error_lines(["first\n\n  second", "x" * 400, "4\n5\n6\n7"])
    assert lines[:2] == ["first", "  second"]
    assert lines[2] == "x" * 300 + "…"
    assert len(lines) == m.MAX_ERROR_LINES


def test_the_failure_message_names_job_date_step_error_and_link():
    text = m.failure_slack_text(FACTS)
    assert text.startswith(
        ":rotating_light: *Critical: batch_001_rankings_job failed (business date 2026-01-10)*"
    )
    assert "*Failed step:* rankings" in text
    assert "```\nLockTimeoutError: waited 10s for a lock\n```" in text
    assert text.endswith("<http://ui/runs/0123456789abcdef|Open run 01234567 in Dagster>")


def test_the_completion_notice_lists_climbers_and_fallers():
    facts = m.CompletionFacts(
        run_id="r" * 16,
        business_date="2026-01-10",
        run_url="http://ui/runs/r",
        rows_ranked=1234,
        duration_seconds=605,
        previous_date=dt.date(2026, 1, 9),
        previous_rows=1200,
        climbers=[m.Mover(7, 50, 3)],
        fallers=[m.Mover(9, 2, 40)],
    )
    text = m.completion_slack_text(facts)
    assert "1,234 users ranked in 10 min 05 s" in text
    assert "*Biggest climbers:* user 7 50→3 (+47)" in text
    assert "*Biggest fallers:* user 9 2→40 (-38)" in text
