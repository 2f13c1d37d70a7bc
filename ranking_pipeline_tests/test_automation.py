"""The nightly chain: BATCH-000 at 02:00, BATCH-001 at 03:00 behind the upstream gate, the late-landing sensor
with its give-up time, and BATCH-002 started by BATCH-001's success."""

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from ranking_pipeline.batch_runner import aggregate_days
from ranking_pipeline.constants import BUSINESS_DATE_TAG, LAUNCHED_BY_TAG
from ranking_pipeline.definitions import defs
from ranking_pipeline.defs import sensors
from ranking_pipeline.defs.resources import BatchGate, RankingDatabase
from ranking_pipeline.defs.schedules import batch_000_schedule, batch_001_schedule
from ranking_pipeline.downstream import UPSTREAM_RUN_TAG, start_on_batch_001_success
from ranking_pipeline.lib.dates import JST
from ranking_pipeline.lib.schema import ensure_output_tables
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.helpers import run_date

D = dt.date(2026, 11, 27)
RUN_KEY = "BATCH-001:2026-11-27"


def at(hour: int, minute: int = 0) -> dt.datetime:
    """A time on the morning after D, in JST."""
    return dt.datetime(2026, 11, 28, hour, minute, tzinfo=JST)


@pytest.fixture
def definitions():
    return defs()


@pytest.fixture
def upstream_without_d(engine, instance, definitions):
    """Orders for 31 days; BATCH-000 has aggregated D-29 .. D-1 but not D yet."""
    seed(engine, 500, end_date=D, random_seed=2)
    ensure_output_tables(engine)
    aggregate_days(definitions, instance, D - dt.timedelta(days=29), D - dt.timedelta(days=1))
    return engine


def resources():
    return {"database": RankingDatabase(), "batch_gate": BatchGate()}


def evaluate_schedule(instance, definitions, when: dt.datetime):
    with dg.build_schedule_context(  # a context manager: it enters the instance and must leave it
        instance=instance,
        scheduled_execution_time=when,
        resources=resources(),
        repository_def=definitions.get_repository_def(),
    ) as context:
        return batch_001_schedule(context)


def evaluate_sensor(instance, definitions, monkeypatch, when: dt.datetime, cursor: str | None = None):
    monkeypatch.setattr(sensors, "now_jst", lambda: when)  # the clock is the outside world here
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources=resources(),
        repository_def=definitions.get_repository_def(),
    ) as context:
        return sensors.start_batch_001_on_aggregates_landed(context), context.cursor


def launch(instance, definitions, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the daemon does with a RunRequest: run the job with its tags."""
    job = definitions.resolve_job_def("batch_001_job")
    return job.execute_in_process(instance=instance, tags=request.tags)


def test_batch_000_runs_at_02_00_jst_for_the_day_just_ended(instance, definitions):
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=at(2), repository_def=definitions.get_repository_def()
    ) as context:
        request = batch_000_schedule(context)
    assert request.partition_key == "2026-11-27"
    assert request.run_key == "BATCH-000:2026-11-27"
    assert (batch_000_schedule.cron_schedule, batch_000_schedule.execution_timezone) == (
        "0 2 * * *",
        "Asia/Tokyo",
    )


def test_the_03_00_schedule_skips_with_the_reason_when_batch_000_has_not_finished(
    upstream_without_d, instance, definitions
):
    result = evaluate_schedule(instance, definitions, at(3))

    assert isinstance(result, dg.SkipReason)
    assert "BATCH-000 has not finished: daily_order_aggregates lacks 2026-11-27 of W(2026-11-27)" in (
        result.skip_message
    )
    assert "starts as soon as it lands, until 09:00 JST" in result.skip_message


def test_the_03_00_schedule_starts_d_equal_yesterday_once_the_window_is_complete(
    upstream_without_d, instance, definitions
):
    aggregate_days(definitions, instance, D, D)

    request = evaluate_schedule(instance, definitions, at(3))

    assert isinstance(request, dg.RunRequest)
    assert request.run_key == RUN_KEY
    assert request.tags[BUSINESS_DATE_TAG] == "2026-11-27"
    assert request.tags["dagster/asset_partition_range_start"] == "users_min_to_0124999"
    assert request.tags["dagster/asset_partition_range_end"] == "users_0875000_to_max"
    assert (batch_001_schedule.cron_schedule, batch_001_schedule.execution_timezone) == (
        "0 3 * * *",
        "Asia/Tokyo",
    )


def test_when_the_aggregates_land_late_the_sensor_starts_the_batch_exactly_once(
    upstream_without_d, engine, instance, definitions, monkeypatch
):
    assert isinstance(evaluate_schedule(instance, definitions, at(3)), dg.SkipReason)
    waiting, _ = evaluate_sensor(instance, definitions, monkeypatch, at(3, 30))
    assert isinstance(waiting, dg.SkipReason)
    assert "lacks 2026-11-27" in waiting.skip_message

    aggregate_days(definitions, instance, D, D)  # BATCH-000 finishes at 04:00
    request, _ = evaluate_sensor(instance, definitions, monkeypatch, at(4, 1))
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == RUN_KEY
    assert request.tags[LAUNCHED_BY_TAG] == "start_batch_001_on_aggregates_landed"
    assert launch(instance, definitions, request).success

    again, _ = evaluate_sensor(instance, definitions, monkeypatch, at(4, 2))
    assert isinstance(again, dg.SkipReason)
    assert "already started automatically" in again.skip_message
    late_schedule = evaluate_schedule(instance, definitions, at(3))  # e.g. a catch-up tick
    assert isinstance(late_schedule, dg.SkipReason)
    with engine.connect() as connection:
        ranked = connection.execute(
            sa.text("SELECT count(*) FROM rankings WHERE ranking_date = :d"), {"d": D}
        )
        assert ranked.scalar_one() > 0


def test_after_the_give_up_time_the_sensor_reports_once_that_it_gave_up(
    upstream_without_d, instance, definitions, monkeypatch
):
    monkeypatch.setenv("RANKING_GATE_GIVE_UP_AT_JST", "08:30")

    result, cursor = evaluate_sensor(instance, definitions, monkeypatch, at(8, 31))

    assert isinstance(result, dg.SkipReason)
    assert result.skip_message.startswith("gave up on BATCH-001 for 2026-11-27 at 08:30 JST")
    assert cursor == "2026-11-27"  # reported once: the next evaluation sees the cursor
    assert not instance.get_runs(dg.RunsFilter(job_name="batch_001_job"))


def test_a_person_running_d_by_hand_does_not_stop_the_nightly_run(upstream_without_d, instance, definitions):
    run_date(instance, D)  # manual, no launched_by tag
    request = evaluate_schedule(instance, definitions, at(3))
    assert isinstance(request, dg.RunRequest)


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


@dg.job(resource_defs={"database": RankingDatabase()})
def batch_002_job():
    send_ranking_mail()


def test_batch_002_is_started_once_per_date_by_batch_001s_success(engine, instance):
    seed(engine, 500, end_date=D, random_seed=3)
    run_date(instance, D)
    batch_001_run = instance.get_runs(dg.RunsFilter(job_name="batch_001_job"), limit=1)[0]
    success = instance.get_records_for_run(batch_001_run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
    sensor = start_on_batch_001_success(batch_002_job)

    with dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=batch_001_run,
        dagster_event=success.records[0].event_log_entry.dagster_event,
    ) as context:
        request = sensor(context)

    assert request.run_key == "batch_002_job:2026-11-27"  # a second success for D reuses the key
    assert request.tags == {BUSINESS_DATE_TAG: "2026-11-27", UPSTREAM_RUN_TAG: batch_001_run.run_id}
    mail = batch_002_job.execute_in_process(instance=instance, tags=request.tags)
    assert mail.success
    assert mail.output_for_node("send_ranking_mail") > 0
