"""The code location loads, with exactly the expected assets, partitions and dependencies, each documented."""

import datetime as dt
import subprocess
import sys

import dagster as dg

from ranking_pipeline.constants import (
    BATCH_000_JOB,
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    ORDERS_CONTRACT_CHECK,
    RANKINGS_INTEGRITY_CHECK,
    RANKINGS_ROW_COUNT_ANOMALY_CHECK,
    RANKINGS_WRITER_POOL,
    RANKINGS_WRITER_TAG,
    USERS_CONTRACT_CHECK,
)
from ranking_pipeline.definitions import defs
from ranking_pipeline.lib.business_date import BusinessDate
from ranking_pipeline.lib.ranges import USER_ID_RANGES
from ranking_pipeline_tests.conftest import PROJECT_ROOT

D = dt.date(2026, 11, 27)
SCORES, RANKINGS, AGGREGATES = (
    dg.AssetKey(name) for name in ("user_scores", "rankings", "daily_order_aggregates")
)


def _subset(partitions_def, keys):
    return partitions_def.empty_subset().with_partition_keys(keys)


def test_the_location_loads_with_exactly_the_pipeline_assets_and_jobs():
    definitions = defs()
    keys = {key.to_user_string() for key in definitions.resolve_asset_graph().get_all_asset_keys()}

    assert keys == {"users", "orders", "daily_order_aggregates", "user_scores", "rankings", "batch_metrics"}
    for job in (BATCH_000_JOB, BATCH_001_SCORES_JOB, BATCH_001_RANKINGS_JOB):
        assert definitions.resolve_job_def(job) is not None
    for job in (BATCH_001_SCORES_JOB, BATCH_001_RANKINGS_JOB):
        assert definitions.resolve_job_def(job).tags[RANKINGS_WRITER_TAG] == "BATCH-001"


def test_every_asset_sensor_and_schedule_explains_itself_in_the_ui():
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description and len(node.description) > 80, f"{name} has no real description"
        assert node.group_name == "ranking", name
        if name in ("users", "orders"):  # the input tables: owned upstream, not materialized here
            assert not node.is_executable and node.owners == ["team:upstream-orders"], name
            assert node.metadata["dagster/table_name"] == name
            continue
        assert node.owners == ["team:data-platform"], name
        if name == "batch_metrics":  # a report on the runs, not a table
            assert {"dagster", "postgres"} <= node.kinds
            continue
        assert {"postgres", "sql"} <= node.kinds, name
        assert node.metadata["dagster/table_name"] == name
        columns = [column.name for column in node.metadata["dagster/column_schema"].columns]
        assert len(columns) >= 4, name
    for automation in [*definitions.sensors, *definitions.schedules]:
        assert automation.description and len(automation.description) > 40, automation.name


def test_the_writing_assets_retry_three_times_a_minute_apart():
    definitions = defs()
    for name in ("daily_order_aggregates", "user_scores", "rankings"):
        assets_def = definitions.get_assets_def(name)
        assert assets_def.op.retry_policy == dg.RetryPolicy(max_retries=3, delay=60), name


def test_scores_are_dated_by_business_date_and_user_id_range():
    definitions = defs()
    scores = definitions.get_assets_def("user_scores").partitions_def
    rankings = definitions.get_assets_def("rankings").partitions_def
    aggregates = definitions.get_assets_def("daily_order_aggregates").partitions_def

    assert isinstance(scores, dg.MultiPartitionsDefinition)
    dimensions = {d.name: d.partitions_def for d in scores.partitions_defs}
    assert dimensions["user_id_range"].get_partition_keys() == [r.key for r in USER_ID_RANGES]
    assert dimensions["date"] == rankings  # the same business dates for scores and rankings
    assert rankings.timezone == aggregates.timezone == "Asia/Tokyo"
    assert rankings.start.date() == dt.date(2020, 1, 1)  # RANKING_FIRST_BUSINESS_DATE's default
    assert aggregates.start.date() == dt.date(2019, 12, 3)  # the first business date's window
    # the last partition is the last JST day that has ended: today (JST) is not a partition yet
    today_jst = dt.datetime.now(tz=dt.timezone(dt.timedelta(hours=9))).date()
    assert rankings.get_last_partition_key() == (today_jst - dt.timedelta(days=1)).isoformat()


def test_dagster_knows_what_each_partition_stands_on():
    graph = defs().resolve_asset_graph()
    scores_def = graph.get(SCORES).partitions_def
    rankings_def = graph.get(RANKINGS).partitions_def
    aggregates_def = graph.get(AGGREGATES).partitions_def
    rankings_mapping = graph.get(RANKINGS).partition_mappings
    scores_mapping = graph.get(SCORES).partition_mappings

    # D's ranking needs all 8 ranges of D ...
    assert isinstance(rankings_mapping[SCORES], dg.MultiToSingleDimensionPartitionMapping)
    needed = rankings_mapping[SCORES].get_upstream_mapped_partitions_result_for_partitions(
        _subset(rankings_def, [D.isoformat()]), rankings_def, scores_def
    )
    assert sorted(needed.partitions_subset.get_partition_keys()) == sorted(
        f"{D}|{r.key}" for r in USER_ID_RANGES
    )
    # ... and the aggregates of its whole window W(D) = D-29 .. D
    assert isinstance(rankings_mapping[AGGREGATES], dg.TimeWindowPartitionMapping)
    window = rankings_mapping[AGGREGATES].get_upstream_mapped_partitions_result_for_partitions(
        _subset(rankings_def, [D.isoformat()]), rankings_def, aggregates_def
    )
    days = sorted(window.partitions_subset.get_partition_keys())
    assert (days[0], days[-1], len(days)) == ("2026-10-29", "2026-11-27", 30)
    first = rankings_mapping[AGGREGATES].get_upstream_mapped_partitions_result_for_partitions(
        _subset(rankings_def, ["2020-01-01"]), rankings_def, aggregates_def
    )
    assert not first.required_but_nonexistent_subset.get_partition_keys()  # the first date's window exists
    # D's scores stand on D's aggregates (explicitly: no inferred identity mapping)
    assert isinstance(scores_mapping[AGGREGATES], dg.MultiToSingleDimensionPartitionMapping)


def test_the_scoring_run_of_d_targets_every_range_of_d():
    definitions = defs()
    tags = BusinessDate.of(D).scoring_tags()
    scores_def = definitions.get_assets_def("user_scores").partitions_def

    key_range = dg.PartitionKeyRange(
        tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
    )
    assert scores_def.get_partition_keys_in_range(key_range) == [f"{D}|{r.key}" for r in USER_ID_RANGES]
    assert tags["ranking/business_date"] == D.isoformat()


def test_batch_001_runs_on_a_schedule_at_03_00_jst_in_the_automation_tab():
    schedules = {schedule.name: schedule for schedule in defs().schedules}
    batch_001 = schedules["batch_001_schedule"]

    assert (batch_001.cron_schedule, batch_001.execution_timezone) == ("0 3 * * *", "Asia/Tokyo")
    assert batch_001.default_status == dg.DefaultScheduleStatus.RUNNING
    assert batch_001.job_name == BATCH_001_SCORES_JOB
    assert "03:00 JST" in batch_001.description
    assert schedules["batch_000_schedule"].cron_schedule == "0 2 * * *"


def test_the_data_contract_is_a_blocking_check_on_each_input_read_in_the_same_run():
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    assert graph.get(AGGREGATES).parent_keys == {dg.AssetKey("orders")}
    assert dg.AssetKey("users") in graph.get(RANKINGS).parent_keys
    for job, check in (
        (BATCH_000_JOB, dg.AssetCheckKey(dg.AssetKey("orders"), ORDERS_CONTRACT_CHECK)),
        (BATCH_001_RANKINGS_JOB, dg.AssetCheckKey(dg.AssetKey("users"), USERS_CONTRACT_CHECK)),
    ):
        assert check in definitions.resolve_job_def(job).asset_layer.asset_graph.asset_check_keys
        assert graph.get(check).blocking


def test_rankings_is_in_the_writers_pool_and_carries_its_checks_per_date():
    definitions = defs()
    rankings = definitions.get_assets_def("rankings")
    assert rankings.op.pool == RANKINGS_WRITER_POOL
    checks = {spec.name: spec for spec in rankings.check_specs}
    assert set(checks) == {RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK}
    assert checks[RANKINGS_INTEGRITY_CHECK].blocking
    assert not checks[RANKINGS_ROW_COUNT_ANOMALY_CHECK].blocking
    for spec in checks.values():
        assert spec.partitions_def == rankings.partitions_def


def test_the_alert_sensors_are_on_by_default_and_named_for_their_event():
    sensors = {sensor.name: sensor for sensor in defs().sensors}
    expected = {
        "alert_on_run_failure",
        "notify_on_batch_success",
        "warn_on_long_batch_run",
        "warn_on_row_count_anomaly",
        "alert_on_missed_ranking",
        "start_batch_001_on_aggregates_landed",
        "start_rankings_on_scores_success",
    }
    assert set(sensors) == expected
    for name in expected:
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING, name


def test_the_resource_view_names_each_setting_and_never_shows_a_secret(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-real-secret-value")
    monkeypatch.setenv("RANKING_DATABASE_URL", "postgresql://batch:hunter2@db.internal:5432/ranking")
    monkeypatch.delenv("RANKING_SMTP_HOST", raising=False)
    resources = defs().resources

    assert resources["slack"].token.env_var_name == "SLACK_BOT_TOKEN"  # the UI shows the variable
    assert isinstance(resources["database"].url, dg.EnvVar)
    assert resources["mail"].host is None  # unset: a skipped channel, not a failing tick
    assert resources["database"].embedded_pgdata == ".ranking_pipeline/pgdata"
    shown = repr(resources)
    assert "xoxb-real-secret-value" not in shown and "hunter2" not in shown


def test_a_wrong_setting_fails_the_code_locations_load_with_one_clear_line():
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env={**_clean_env(), "RANKING_SMTP_TLS": "tls-please", "SLACK_BOT_TOKEN": "xoxb-should-not-show"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "invalid settings: RANKING_SMTP_TLS='tls-please': expected one of none, starttls, ssl" in output, (
        output[-3000:]
    )
    assert "xoxb-should-not-show" not in output


def _clean_env() -> dict[str, str]:
    import os

    return {
        key: value for key, value in os.environ.items() if not key.startswith(("RANKING_", "DAGSTER_HOME"))
    }
