"""The nightly chain: BATCH-000 at 02:00, the BATCH-001 schedule at 03:00 behind the upstream gate, its
catch-up sensor for a late landing (until a give-up time), one batch per date, the ranking run that follows a
successful scoring, and BATCH-002 started once the rankings of D are committed."""

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from ranking_pipeline.batch_runner import aggregate_days
from ranking_pipeline.constants import (
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    BUSINESS_DATE_TAG,
    LAUNCHED_BY_TAG,
    SCORED_BY_TAG,
)
from ranking_pipeline.defs.batch_requests import rankings_after
from ranking_pipeline.defs.resources import BatchGate, Clock, RankingDatabase
from ranking_pipeline.defs.schedules import batch_000_schedule, batch_001_schedule
from ranking_pipeline.defs.sensors import start_batch_001_on_aggregates_landed
from ranking_pipeline.downstream import UPSTREAM_RUN_TAG, start_on_rankings_committed
from ranking_pipeline.lib.business_date import JST
from ranking_pipeline.lib.schema import ensure_output_tables
from ranking_pipeline.lib.seed import seed
from ranking_pipeline.local_runs import execute_job
from ranking_pipeline_tests.helpers import run_date

D = dt.date(2026, 11, 27)


def at(hour: int, minute: int = 0) -> dt.datetime:
    """A time on the morning after D, in JST."""
    return dt.datetime(2026, 11, 28, hour, minute, tzinfo=JST)


@pytest.fixture
def upstream_without_d(engine, instance, definitions):
    """Orders for 31 days; BATCH-000 has aggregated D-29 .. D-1 but not D yet."""
    seed(engine, 500, end_date=D, random_seed=2)
    ensure_output_tables(engine)
    aggregate_days(definitions, instance, D - dt.timedelta(days=29), D - dt.timedelta(days=1))
    return engine


def evaluate_schedule(instance, definitions, when: dt.datetime, **resources):
    """The BATCH-001 schedule's tick at ``when`` (its scheduled execution time)."""
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        resources={"database": definitions.resources["database"], "batch_gate": BatchGate(), **resources},
        repository_def=definitions.get_repository_def(),
    ) as context:
        return batch_001_schedule(context)


def evaluate_catch_up(instance, definitions, when: dt.datetime, **resources):
    """The catch-up sensor's tick at ``when`` (the clock is passed in)."""
    with dg.build_sensor_context(
        instance=instance,
        resources={
            "database": definitions.resources["database"],
            "batch_gate": BatchGate(),
            "clock": Clock(fixed_at=when.isoformat()),
            **resources,
        },
        repository_def=definitions.get_repository_def(),
    ) as context:
        return start_batch_001_on_aggregates_landed(context)


def launch(instance, definitions, request: dg.RunRequest) -> str:
    """What the daemon and the sensor that follows do with a scoring request: the scoring run, then the
    ranking run start_rankings_on_scores_success requests for it."""
    outcome = execute_job(definitions, request.job_name, instance, dict(request.tags))
    assert outcome.failure is None, outcome.failure
    [follow] = rankings_after(instance, instance.get_run_by_id(outcome.run_id))
    ranked = execute_job(
        definitions, follow.job_name, instance, {**follow.tags, "dagster/partition": follow.partition_key}
    )
    assert ranked.failure is None, ranked.failure
    return outcome.run_id


def test_batch_000_runs_at_02_00_jst_for_the_day_just_ended(instance, definitions):
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at(2),
        repository_def=definitions.get_repository_def(),
    ) as context:
        request = batch_000_schedule(context)
    assert request.partition_key == "2026-11-27"
    assert request.run_key == "batch_000_job:2026-11-27"
    assert (batch_000_schedule.cron_schedule, batch_000_schedule.execution_timezone) == (
        "0 2 * * *",
        "Asia/Tokyo",
    )


def test_batch_001_runs_at_03_00_jst_for_yesterday_when_the_window_is_aggregated(
    upstream_without_d, instance, definitions
):
    aggregate_days(definitions, instance, D, D)

    request = evaluate_schedule(instance, definitions, at(3))

    assert request.job_name == BATCH_001_SCORES_JOB
    assert request.run_key == f"{BATCH_001_SCORES_JOB}:{D}"
    assert request.tags["dagster/asset_partition_range_start"] == f"{D}|range_1_of_8"
    assert request.tags["dagster/asset_partition_range_end"] == f"{D}|range_8_of_8"
    assert request.tags[BUSINESS_DATE_TAG] == D.isoformat()
    assert request.tags[LAUNCHED_BY_TAG] == "batch_001_schedule"


def test_at_03_00_the_schedule_skips_naming_the_days_batch_000_has_not_aggregated(
    upstream_without_d, instance, definitions
):
    result = evaluate_schedule(instance, definitions, at(3))

    assert isinstance(result, dg.SkipReason)
    assert "daily_order_aggregates lacks 2026-11-27 of W(2026-11-27)" in result.skip_message
    assert "starts as soon as it lands, until 09:00 JST" in result.skip_message


def test_the_catch_up_leaves_03_00_to_the_schedule(upstream_without_d, instance, definitions):
    aggregate_days(definitions, instance, D, D)

    result = evaluate_catch_up(instance, definitions, at(3, 1))

    assert isinstance(result, dg.SkipReason)
    assert "before 03:05 JST" in result.skip_message


def test_when_the_aggregates_land_late_the_batch_starts_exactly_once(
    upstream_without_d, engine, instance, definitions
):
    assert isinstance(evaluate_schedule(instance, definitions, at(3)), dg.SkipReason)
    waiting = evaluate_catch_up(instance, definitions, at(3, 30))
    assert isinstance(waiting, dg.SkipReason)
    assert "lacks 2026-11-27" in waiting.skip_message

    aggregate_days(definitions, instance, D, D)  # BATCH-000 finishes at 04:00
    request = evaluate_catch_up(instance, definitions, at(4, 1))
    assert request.job_name == BATCH_001_SCORES_JOB
    assert request.tags[LAUNCHED_BY_TAG] == "start_batch_001_on_aggregates_landed"
    scoring_id = launch(instance, definitions, request)

    again = evaluate_catch_up(instance, definitions, at(4, 2))
    assert isinstance(again, dg.SkipReason)
    assert "already ranked from the same aggregates" in again.skip_message
    [ranking] = instance.get_runs(dg.RunsFilter(job_name=BATCH_001_RANKINGS_JOB))
    assert ranking.tags[SCORED_BY_TAG] == scoring_id
    with engine.connect() as connection:
        ranked = connection.execute(
            sa.text("SELECT count(*) FROM rankings WHERE ranking_date = :d"), {"d": D}
        )
        assert ranked.scalar_one() > 0


def test_a_started_batch_is_not_started_again_by_the_catch_up(upstream_without_d, instance, definitions):
    aggregate_days(definitions, instance, D, D)
    request = evaluate_schedule(instance, definitions, at(3))
    execute_job(definitions, request.job_name, instance, dict(request.tags))  # the 03:00 batch runs

    result = evaluate_catch_up(instance, definitions, at(3, 10))

    assert isinstance(result, dg.SkipReason)
    assert "already" in result.skip_message


def test_a_date_already_ranked_by_hand_from_the_same_aggregates_is_not_started_again(
    upstream_without_d, engine, instance, definitions
):
    run_date(definitions, instance, D)  # a person ran D by hand (it aggregated D itself)

    result = evaluate_schedule(instance, definitions, at(3))

    assert isinstance(result, dg.SkipReason)
    assert "already ranked from the same aggregates" in result.skip_message
    aggregate_days(definitions, instance, D, D)  # late orders: BATCH-000 re-aggregated D
    rerun = evaluate_catch_up(instance, definitions, at(3, 10))
    assert rerun.job_name == BATCH_001_SCORES_JOB


def test_after_the_give_up_time_the_catch_up_stops_waiting(upstream_without_d, instance, definitions):
    result = evaluate_catch_up(instance, definitions, at(8, 31), batch_gate=BatchGate(give_up_at_jst="08:30"))

    assert isinstance(result, dg.SkipReason)
    assert result.skip_message.startswith("gave up on BATCH-001 for 2026-11-27 at 08:30 JST")
    assert not instance.get_runs(dg.RunsFilter(job_name=BATCH_001_SCORES_JOB))


@dg.op(required_resource_keys={"database"})
def send_ranking_mail(context) -> int:
    """Stands in for BATCH-002: reads the rankings of the run's business date."""
    business_date = context.run.tags[BUSINESS_DATE_TAG]
    with context.resources.database.engine().connect() as connection:
        ranked = connection.execute(
            sa.text("SELECT count(*) FROM rankings WHERE ranking_date = :d"), {"d": business_date}
        ).scalar_one()
    context.log.info(f"mailing {ranked} ranked users for {business_date}")
    return ranked


@dg.job
def batch_002_job():
    send_ranking_mail()


def test_batch_002_is_started_once_per_date_when_the_rankings_of_d_are_committed(
    engine, instance, definitions
):
    seed(engine, 500, end_date=D, random_seed=3)
    sensor = start_on_rankings_committed(batch_002_job)

    def tick(cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
            result = sensor.evaluate_tick(context)
            return result.run_requests, context.cursor

    requests, cursor = tick(None)  # turned on: watches from now
    assert requests == []
    summary = run_date(definitions, instance, D)
    requests, cursor = tick(cursor)
    [request] = requests
    assert request.run_key == "batch_002_job:2026-11-27"  # a second ranking of D reuses the key
    assert request.tags[BUSINESS_DATE_TAG] == "2026-11-27"
    assert request.tags[UPSTREAM_RUN_TAG] == summary.run_ids[-1]  # the ranking run
    assert tick(cursor)[0] == []  # nothing new

    database = definitions.resources["database"]
    mail = batch_002_job.execute_in_process(
        instance=instance, tags=request.tags, resources={"database": database}
    )
    assert mail.success
    assert mail.output_for_node("send_ranking_mail") > 0
    assert isinstance(database, RankingDatabase)
