"""Small builders: the project's definitions on a test's database, hand-made input data, results read back."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from ranking_pipeline.batch_runner import BatchSummary, run_batch
from ranking_pipeline.constants import BATCH_001_RANKINGS_JOB, BATCH_001_SCORES_JOB
from ranking_pipeline.definitions import defs
from ranking_pipeline.defs.resources import BatchLockResource, RankingCache, RankingDatabase, RankingRedis
from ranking_pipeline.lib.business_date import JST, BusinessDate
from ranking_pipeline.lib.cache import DEFAULT_CACHE_KEY_PATTERN
from ranking_pipeline.lib.seed import create_input_tables
from ranking_pipeline.local_runs import DEFINITIONS_MODULE, LOCATION_NAME, REPOSITORY_NAME


def project_defs(
    database_url: str,
    *,
    redis_url: str | None = None,
    cache_key_pattern: str = DEFAULT_CACHE_KEY_PATTERN,
    **resources: dg.ConfigurableResource,
) -> dg.Definitions:
    """The project's definitions, their resources set for a test (database, Redis, anything else given)."""
    project = defs()
    redis = RankingRedis(url=redis_url)
    overrides = {
        "database": RankingDatabase(url=database_url),
        "redis": redis,
        "batch_lock": BatchLockResource(redis=redis),
        "ranking_cache": RankingCache(redis=redis, key_pattern=cache_key_pattern),
        **resources,
    }
    return dg.Definitions(
        assets=project.assets,
        asset_checks=project.asset_checks,
        jobs=project.jobs,
        schedules=project.schedules,
        sensors=project.sensors,
        resources={**project.resources, **overrides},
    )


def jst(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0):
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=JST)


def load_inputs(engine: sa.Engine, users: list[tuple[int, str]], orders: list[tuple]) -> None:
    """users: (user_id, status); orders: (user_id, amount text, status, ordered_at)."""
    create_input_tables(engine)
    with engine.begin() as connection:
        if users:
            connection.execute(
                sa.text("INSERT INTO users VALUES (:id, :name, :status, now())"),
                [{"id": uid, "name": f"u{uid}", "status": status} for uid, status in users],
            )
        if orders:
            connection.execute(
                sa.text(
                    "INSERT INTO orders VALUES (:order_id, :user_id, CAST(:amount AS numeric), :status, :at)"
                ),
                [
                    {"order_id": i, "user_id": uid, "amount": amount, "status": status, "at": at}
                    for i, (uid, amount, status, at) in enumerate(orders, start=1)
                ],
            )


def run_date(
    definitions: dg.Definitions, instance: dg.DagsterInstance, business_date: dt.date, *, force: bool = False
) -> BatchSummary:
    """What `ranking-pipeline run --date D` does: missing aggregates, then the batch's two runs."""
    return run_batch(definitions, instance, BusinessDate.of(business_date), force=force)


def batch_runs(instance: dg.DagsterInstance, job_name: str = BATCH_001_SCORES_JOB) -> list[dg.DagsterRun]:
    """The runs of one of the batch jobs, newest first."""
    return list(instance.get_runs(dg.RunsFilter(job_name=job_name)))


def ranking_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return batch_runs(instance, BATCH_001_RANKINGS_JOB)


def materializations(instance: dg.DagsterInstance, asset: str, run_id: str | None = None) -> dict[str, dict]:
    """partition -> metadata (plain values) of the asset's materializations (in one run when given)."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records
    found: dict[str, dict] = {}
    for record in reversed(records):  # oldest first, so the newest wins
        if run_id is not None and record.run_id != run_id:
            continue
        event = record.asset_materialization
        found[event.partition] = {key: value.value for key, value in event.metadata.items()}
    return found


def current_check_results(instance: dg.DagsterInstance, check: dg.AssetCheckKey) -> dict[str, str]:
    """What the check's Partitions tab in the UI shows: per date, the latest result if it evaluated the
    date's latest materialization (Dagster shows any other date as never checked)."""
    infos = instance.event_log_storage.get_asset_check_partition_info([check])
    return {info.partition_key: info.latest_execution_status.value for info in infos if info.is_current}


def run_log_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def error_classes(error) -> set[str]:
    """The class names of a Dagster error (``SerializableErrorInfo``) and of every error behind it."""
    names: set[str] = set()
    while error is not None:
        names.add(error.cls_name)
        error = error.cause or error.context
    return names


def rankings_rows(engine: sa.Engine, business_date: dt.date) -> list[tuple[int, int, Decimal, int]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.text(
                    "SELECT rank, user_id, score, order_count FROM rankings WHERE ranking_date = :d "
                    "ORDER BY rank, user_id"
                ),
                {"d": business_date},
            )
        ]


def table_rows(engine: sa.Engine, table: str, order_by: str) -> list[tuple]:
    with engine.connect() as connection:
        statement = f"SELECT * FROM {table} ORDER BY {order_by}"  # noqa: S608 - names come from the test
        return [tuple(row) for row in connection.exec_driver_sql(statement)]


def code_location_origin() -> InProcessCodeLocationOrigin:
    """The code location ``ranking_pipeline``, as the daemon's sensors and the CLI's runs name it."""
    target = LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE)
    return InProcessCodeLocationOrigin(target, location_name=LOCATION_NAME)


def project_location_target():
    """The code location ``ranking_pipeline`` loaded from this project as the daemon loads it (for the test
    daemon workspace); its resources come from the environment."""
    from dagster._core.workspace.load_target import ModuleTarget

    return ModuleTarget(
        module_name=DEFINITIONS_MODULE,
        attribute=None,
        working_directory=str(Path(__file__).resolve().parents[1]),
        location_name=LOCATION_NAME,
    )


def sensor_tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    definitions: dg.Definitions,
    cursor: str | None = None,
    **resources: dg.ConfigurableResource,
) -> dg.SensorResult:
    """One evaluation as the sensor daemon makes it: in the code location ``ranking_pipeline`` (so run-status
    sensors see exactly that location's runs), with the project's resources and the stored cursor."""
    with dg.SensorEvaluationContext(
        instance_ref=None,
        cursor=cursor,
        repository_name=REPOSITORY_NAME,
        repository_def=definitions.get_repository_def(),
        instance=instance,
        sensor_name=sensor.name,
        resources={**definitions.resources, **resources},
        code_location_origin=code_location_origin(),
    ) as context:
        return sensor.evaluate_tick(context)


def cli(*args: str, env: dict[str, str], cwd: str | None = None) -> subprocess.CompletedProcess:
    """`ranking-pipeline <args>`, from ``cwd`` (default: a new empty folder, so no dagster.yaml: a temporary
    instance)."""
    return subprocess.run(
        [sys.executable, "-m", "ranking_pipeline.cli", *args],
        env=env,
        cwd=cwd or tempfile.mkdtemp(prefix="rp-cli-"),
        capture_output=True,
        text=True,
        timeout=600,
    )


def wait_until(
    condition: Callable[[], object],
    timeout: float,
    what: str | Callable[[], str],
    every: float = 0.1,
    details: Callable[[], str] | None = None,
) -> float:
    """Wait for an event: poll ``condition`` until it is true and return the seconds it took; fail naming
    ``what`` after ``timeout`` (a callable ``what`` is read then, e.g. to name the last status seen), followed
    by ``details()`` if given (a log's tail). A ``condition`` may itself assert (a process that died, a run
    that ended) to fail at once with its own message."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started >= timeout:
            named = what() if callable(what) else what
            raise AssertionError(f"{named} not within {timeout} s" + (f"\n{details()}" if details else ""))
        time.sleep(every)
    return time.monotonic() - started
