"""The run-status sensors' ticks say what they checked: evaluated as the daemon evaluates them (the code
location's runs on a real instance and database), a tick with no new run says so instead of Dagster's "empty
result", a tick whose runs were all left alone names each run and why (several runs in one tick, as Dagster
processes them), and a tick that alerted stays Dagster's (the alert is the answer)."""

from __future__ import annotations

import datetime as dt

from ranking_pipeline.batch_runner import aggregate_days
from ranking_pipeline.constants import BATCH_001_RANKINGS_JOB, BATCH_001_SCORES_JOB, RANKINGS_CHECKS_JOB
from ranking_pipeline.defs.alerts.failure import alert_on_run_failure
from ranking_pipeline.defs.alerts.success import notify_on_batch_success
from ranking_pipeline.defs.explained_ticks import DAGSTERS_EMPTY_RESULT
from ranking_pipeline.defs.sensors import start_rankings_on_scores_success
from ranking_pipeline.lib.business_date import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    PARTITION_TAG,
)
from ranking_pipeline.lib.ranges import USER_ID_RANGES
from ranking_pipeline.lib.seed import seed
from ranking_pipeline.local_runs import execute_job
from ranking_pipeline_tests.fakes import fake_slack, slack_messages, slack_resource
from ranking_pipeline_tests.helpers import run_date, sensor_tick

D = dt.date(2026, 1, 10)
NEVER_RANKED = D - dt.timedelta(days=3)


def ticks(sensor, instance, definitions, **resources):
    """Evaluate ``sensor`` tick after tick, carrying its cursor as the daemon does."""
    cursor = sensor_tick(sensor, instance, definitions, None, **resources).cursor  # Dagster's own first tick

    def tick():
        nonlocal cursor
        data = sensor_tick(sensor, instance, definitions, cursor, **resources)
        cursor = data.cursor
        return data

    return tick


def test_the_rankings_sensor_says_there_was_no_new_run_then_names_each_run_it_left_alone(
    engine, instance, definitions
):
    seed(engine, 300, end_date=D)
    tick = ticks(start_rankings_on_scores_success, instance, definitions)

    quiet = tick()
    assert quiet.skip_message == start_rankings_on_scores_success.nothing_new != DAGSTERS_EMPTY_RESULT
    assert not quiet.run_requests and not quiet.dagster_run_reactions

    summary = run_date(definitions, instance, D)  # BATCH-000, then the batch's scoring and ranking runs
    run_ids = [run.run_id for run in reversed(instance.get_runs())]  # oldest first
    assert len(run_ids) == 3, summary
    after = tick()

    assert not after.run_requests and not after.dagster_run_reactions  # one skip, naming all three runs
    reasons = after.skip_message.split("; ")
    assert [reason.split(" ")[1] for reason in reasons] == run_ids
    assert "its ranking runs in the same process" in reasons[1]  # the operator's why for the scoring run
    assert tick().skip_message == start_rankings_on_scores_success.nothing_new  # each run looked at once


def test_the_failure_sensor_names_the_runs_it_does_not_alert_on_and_alerts_on_a_batch_failure(
    engine, instance, definitions
):
    seed(engine, 300, end_date=D)
    run_date(definitions, instance, D)
    with fake_slack() as slack:
        tick = ticks(alert_on_run_failure, instance, definitions, slack=slack_resource(slack))
        assert tick().skip_message == alert_on_run_failure.nothing_new

        checks = [
            execute_job(definitions, RANKINGS_CHECKS_JOB, instance, {"dagster/partition": str(NEVER_RANKED)})
            for _ in range(2)
        ]
        assert all(outcome.failure for outcome in checks)
        left_alone = tick()
        assert slack_messages(slack) == []
        assert not left_alone.dagster_run_reactions
        reasons = left_alone.skip_message.split("; ")
        assert [reason.split(" ")[1] for reason in reasons] == [outcome.run_id for outcome in checks]
        assert all(f"({RANKINGS_CHECKS_JOB}): no alert" in reason for reason in reasons)

        batch = execute_job(
            definitions, BATCH_001_RANKINGS_JOB, instance, {"dagster/partition": str(NEVER_RANKED)}
        )
        assert batch.failure is not None  # nothing scored for that date
        alerted = tick()
        assert [message["text"] for message in slack_messages(slack) if batch.run_id[:8] in message["text"]]
        assert alerted.skip_message is None  # Dagster's tick: it acted on the run
        assert [reaction.dagster_run.run_id for reaction in alerted.dagster_run_reactions] == [batch.run_id]


def test_the_completion_notice_sensor_says_there_was_no_new_ranking_run(engine, instance, definitions):
    seed(engine, 300, end_date=D)
    tick = ticks(notify_on_batch_success, instance, definitions)
    quiet = tick()
    assert quiet.skip_message == notify_on_batch_success.nothing_new
    assert BATCH_001_RANKINGS_JOB in quiet.skip_message
    run_date(definitions, instance, D)
    notified = tick()  # the ranking run committed D: it posts (Slack not configured here: logged, skipped)
    assert [reaction.dagster_run.job_name for reaction in notified.dagster_run_reactions] == [
        BATCH_001_RANKINGS_JOB
    ]


def test_a_scoring_that_leaves_ranges_of_its_date_unscored_starts_no_ranking_and_names_them(
    engine, instance, definitions
):
    """One range of a date never scored, materialized on its own: ranking that date would fail (and page
    the on-call), so no ranking run follows and the tick names the ranges left; once they are scored, it
    follows."""
    seed(engine, 300, end_date=D)
    aggregate_days(definitions, instance, NEVER_RANKED - dt.timedelta(days=29), NEVER_RANKED)
    tick = ticks(start_rankings_on_scores_success, instance, definitions)
    first, *others = [user_range.key for user_range in USER_ID_RANGES]

    one = execute_job(definitions, BATCH_001_SCORES_JOB, instance, {PARTITION_TAG: f"{NEVER_RANKED}|{first}"})
    assert one.failure is None
    partial = tick()

    assert not partial.run_requests
    [reason] = partial.skip_message.split("; ")
    assert reason.split(" ")[1] == one.run_id
    assert f"no ranking of {NEVER_RANKED} follows" in reason
    assert f"({', '.join(others)})" in reason and first not in reason

    rest = execute_job(
        definitions,
        BATCH_001_SCORES_JOB,
        instance,
        {
            PARTITION_RANGE_START_TAG: f"{NEVER_RANKED}|{others[0]}",
            PARTITION_RANGE_END_TAG: f"{NEVER_RANKED}|{others[-1]}",
        },
    )
    assert rest.failure is None
    [request] = tick().run_requests
    assert (request.job_name, request.partition_key) == (BATCH_001_RANKINGS_JOB, str(NEVER_RANKED))
