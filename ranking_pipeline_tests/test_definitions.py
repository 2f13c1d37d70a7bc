"""The code location loads, with exactly the expected assets, each documented and owned."""

import dagster as dg

from ranking_pipeline.constants import (
    BATCH_000_JOB,
    BATCH_001_JOB,
    RANKINGS_INTEGRITY_CHECK,
    RANKINGS_ROW_COUNT_ANOMALY_CHECK,
    RANKINGS_WRITER_POOL,
)
from ranking_pipeline.definitions import defs
from ranking_pipeline.lib.ranges import USER_ID_RANGES


def test_the_location_loads_with_exactly_the_pipeline_assets():
    definitions = defs()
    keys = {key.to_user_string() for key in definitions.resolve_asset_graph().get_all_asset_keys()}

    assert keys == {"daily_order_aggregates", "user_scores", "rankings", "batch_metrics"}
    assert definitions.resolve_job_def(BATCH_000_JOB) is not None
    assert definitions.resolve_job_def(BATCH_001_JOB) is not None


def test_every_asset_explains_itself_in_the_ui():
    graph = defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description and len(node.description) > 80, f"{name} has no real description"
        assert node.owners == ["team:data-platform"], name
        assert node.group_name == "ranking", name
        if name == "batch_metrics":  # a report on the runs, not a table
            assert {"dagster", "matplotlib"} <= node.kinds
            continue
        assert {"postgres", "sql"} <= node.kinds, name
        assert node.metadata["dagster/table_name"] == name
        columns = [column.name for column in node.metadata["dagster/column_schema"].columns]
        assert len(columns) >= 4, name


def test_scores_and_rankings_retry_three_times_a_minute_apart():
    definitions = defs()
    for name in ("daily_order_aggregates", "user_scores", "rankings"):
        op = definitions.get_assets_def(name).op
        assert op.retry_policy == dg.RetryPolicy(max_retries=3, delay=60), name


def test_user_scores_partitions_are_the_user_id_ranges_and_depend_on_the_last_jst_day():
    definitions = defs()
    user_scores = definitions.get_assets_def("user_scores")
    assert user_scores.partitions_def.get_partition_keys() == [r.key for r in USER_ID_RANGES]
    mapping = user_scores.get_partition_mapping(dg.AssetKey("daily_order_aggregates"))
    assert isinstance(mapping, dg.LastPartitionMapping)
    aggregates = definitions.get_assets_def("daily_order_aggregates")
    assert aggregates.partitions_def.timezone == "Asia/Tokyo"


def test_rankings_is_in_the_writers_pool_and_carries_its_checks():
    definitions = defs()
    assert definitions.get_assets_def("rankings").op.pool == RANKINGS_WRITER_POOL
    graph = definitions.resolve_asset_graph()
    checks = {
        key.name: graph.get(key) for key in graph.asset_check_keys if key.asset_key.path == ["rankings"]
    }
    assert set(checks) == {RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK}
    assert checks[RANKINGS_INTEGRITY_CHECK].blocking
    assert not checks[RANKINGS_ROW_COUNT_ANOMALY_CHECK].blocking


def test_the_alert_sensors_are_on_by_default_and_named_for_their_event():
    sensors = {sensor.name: sensor for sensor in defs().sensors}
    assert set(sensors) >= {
        "alert_on_run_failure",
        "notify_on_batch_success",
        "warn_on_long_batch_run",
        "warn_on_row_count_anomaly",
    }
    for name in (
        "alert_on_run_failure",
        "notify_on_batch_success",
        "warn_on_long_batch_run",
        "warn_on_row_count_anomaly",
    ):
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING, name
