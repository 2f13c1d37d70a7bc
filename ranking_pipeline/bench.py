"""`ranking-pipeline bench`: the pipeline against a plain-SQL baseline, side by side, on one database.

On a new database (random name, on RANKING_DATABASE_URL's server or the embedded one) it seeds the contract's
reference workload (N users, 31 JST days D-30 .. D, N orders a day; lib/bulk_seed.py: binary COPY FREEZE,
the keys and the index built after the load). ``--keep-database NAME`` seeds NAME instead and keeps it
with only users and orders; ``--reuse-database NAME`` runs on such a database without seeding (10,000,000
users take long to seed). Then, per repetition and per case, one side after the other:

- nightly (the daily case): untimed preparation of the side: the pipeline aggregates D-30 .. D-1 through
  its own batch_000_job and runs ``ranking-pipeline run --date D-1``, so W(D)'s other 29 days are aggregated
  and D-1's scores and rankings are present and fresh (what lets the pipeline score D from D-1's scores); the
  baseline aggregates the same days. Timed: the side aggregates D, scores D, replaces the rankings of D.
  After both: the floor (lib/baseline.py ``floor``): one read of D's orders plus one write of D's rankings.
- cold: every aggregate is gone; each side aggregates all 30 days, scores, ranks.
- baseline: lib/baseline.py's plain SQL in one session, into its own copies of the output tables.
- pipeline: a subprocess ``ranking-pipeline run --date D`` (the project's definitions, Dagster in process, on
  a fresh instance), timed start to exit, its peak RSS (VmHWM, polled every 20 ms); per-asset times from
  the run's event log (STEP_START -> STEP_SUCCESS), per-range times from the user_scores step's log.
- the two rankings of D must be identical (rank, user_id, score, order_count), or the benchmark fails.

With ``history_dates`` K > 0, after those cases: user_scores and rankings get K older business dates
(D-31-i for i in range(K), each in its own date partition, D's rows copied set-based), and the nightly case
is timed again on the pipeline side (same preparation), compared with the baseline's rankings of D. Those
runs get RANKING_RETENTION_DAYS = K + 30: D-1's run keeps every copied date and D's run drops the oldest,
as every night does once the tables hold their full retention (restored, untimed, before a next repetition).

Before each timed side the derived tables are vacuumed and analyzed and a checkpoint is taken, and the order
of the two sides alternates between repetitions, so neither inherits the other's dirty pages or cache. After
its timed run a side's aggregates are dropped (the database's size is taken first), so the database holds
one side's 30 days of aggregates at a time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
import yaml

from ranking_pipeline.lib import baseline
from ranking_pipeline.lib.bulk_seed import seed_bulk
from ranking_pipeline.lib.business_date import days_between
from ranking_pipeline.lib.db import describe_url, dispose_engines, get_engine, normalize_url
from ranking_pipeline.lib.partitions import RETENTION_DAYS_ENV, ensure_date_partition, partition_dates
from ranking_pipeline.lib.seed import REFERENCE_DAYS

BENCH_DATE = dt.date(2026, 11, 27)
DATABASE_URL_ENV = "RANKING_DATABASE_URL"
_DATABASE_NAME = re.compile(r"^rp_bench_[0-9a-f]{12}$")
_NAMED_DATABASE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_SYSTEM_DATABASES = {"postgres", "template0", "template1"}
_SEEDED_SHAPE = "SELECT (SELECT count(*) FROM users), (SELECT coalesce(max(order_id), 0) FROM orders)"
_DERIVED_TABLE_NAMES = """
    SELECT quote_ident(c.relname) FROM pg_class AS c
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
      AND NOT c.relispartition AND c.relname NOT IN ('users', 'orders')
"""
_DISK_SIZE = "SELECT pg_database_size(current_database())"
_PROJECT_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"
_RANGE_LINE = re.compile(
    r"user_scores \S+ (range_\d+_of_\d+): ([\d,]+) users scored in ([\d.]+) s "
    r"\(.*?; (from \S+ \+|from the 30 days)"
)
_PIPELINE_TABLES = ("daily_order_aggregates", "user_scores", "rankings", "ranking_partition_runs")
_DERIVED = (*_PIPELINE_TABLES, *baseline.BASELINE_TABLES.values())
_POLL_SECONDS = 0.02
_ENV_OVERRIDES_REMOVED = ("RANKING_REDIS_URL", "DAGSTER_HOME")  # the DB-table lock; a fresh instance per run


class BenchDatabaseError(ValueError):
    """--keep-database / --reuse-database names a database the benchmark cannot use (what, how to fix)."""


class BenchmarkMismatch(RuntimeError):
    """The pipeline's rankings differ from the baseline's."""


@dataclass
class PipelineRun:
    """What one ``ranking-pipeline run`` subprocess took."""

    steps: dict[str, float]  # step key -> STEP_START..STEP_SUCCESS seconds
    ranges: dict[str, tuple[int, float]]  # user-ID range -> (rows, seconds)
    runs_seconds: float  # sum over the Dagster runs of run start -> end
    process_seconds: float  # subprocess start -> exit
    peak_mb: float  # the subprocess's peak RSS (VmHWM)
    ranges_from_previous: int = 0  # ranges scored incrementally from D-1's scores (the nightly path)


CASES = ("nightly", "cold", "history")
TIMED_CASES = ("nightly", "cold")  # the cases --cases chooses from (history: --history-dates)


@dataclass
class CaseResult:
    """One repetition of one case (nightly, cold or history)."""

    baseline: dict[str, baseline.StepTiming]  # empty for history: only the pipeline is timed again
    pipeline: PipelineRun
    differences: int
    ranked: int
    floor: baseline.FloorTiming | None = None  # measured after each nightly repetition
    history_dates_dropped: int | None = None  # history: dates the timed run dropped by retention
    disk_bytes: int = 0  # the database's size after the case's timed runs (the larger of the two sides')
    load_average: float = 0.0  # the machine's 1-minute load average after a timed side (the larger)


@dataclass
class HistoryFill:
    """The older business dates copied into user_scores and rankings before the history case."""

    days: list[dt.date]  # D-31, D-32, ... newest first
    score_rows: int
    ranking_rows: int
    seconds: float

    @property
    def retention_days(self) -> int:
        """RANKING_RETENTION_DAYS for the history runs: D-1's run keeps every copied date, D's run drops the
        oldest one, as every night does once a table holds its full retention."""
        return len(self.days) + 30


@dataclass
class BenchReport:
    users: int
    database: str
    cases: dict[str, list[CaseResult]] = field(default_factory=lambda: {case: [] for case in CASES})
    history: HistoryFill | None = None
    seed_seconds: float | None = None  # None: a reused database (--reuse-database)
    disk_seeded_bytes: int = 0  # pg_database_size after seeding (users, orders, empty derived tables)
    disk_peak_bytes: int = 0  # the largest pg_database_size measured after a case
    bench_peak_mb: float = 0.0  # the bench process's own peak RSS (seeding included)
    figures: dict[str, float] = field(default_factory=dict)  # headline medians (bench_report.summarize)
    rows: list[tuple] = field(default_factory=list)  # the printed table's rows
    text: str = ""


def _env_without(names: tuple[str, ...], **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in names}
    return {**env, **extra}


def _new_instance_home() -> str:
    home = tempfile.mkdtemp(prefix="ranking-bench-dagster-")
    if _PROJECT_DAGSTER_YAML.exists():  # the project's settings, with storage in this temporary home
        settings = yaml.safe_load(_PROJECT_DAGSTER_YAML.read_text())
        settings.pop("storage", None)
        (Path(home) / "dagster.yaml").write_text(yaml.safe_dump(settings))
    else:
        (Path(home) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def _step_and_run_times(
    home: str,
) -> tuple[dict[str, float], dict[str, tuple[int, float]], float, int]:
    """From the run's instance: seconds per step, (rows, seconds) per user-ID range, the runs' seconds and
    how many ranges were scored from D-1's scores rather than from the 30 days."""
    import dagster as dg

    steps: dict[str, float] = {}
    ranges: dict[str, tuple[int, float]] = {}
    runs_seconds = 0.0
    ranges_from_previous = 0
    with dg.DagsterInstance.from_config(home) as instance:
        for record in instance.get_run_records():
            runs_seconds += (record.end_time or 0) - (record.start_time or 0)
            started: dict[str, float] = {}
            for entry in instance.all_logs(record.dagster_run.run_id):
                event = entry.dagster_event
                if event is not None and event.event_type_value == "STEP_START":
                    started[entry.step_key] = entry.timestamp
                elif event is not None and event.event_type_value == "STEP_SUCCESS":
                    key = entry.step_key
                    steps[key] = steps.get(key, 0.0) + entry.timestamp - started[key]
                elif match := _RANGE_LINE.search(entry.user_message or ""):
                    ranges[match[1]] = (int(match[2].replace(",", "")), float(match[3]))
                    ranges_from_previous += bool(match[4] and match[4].endswith("+"))
    return steps, ranges, runs_seconds, ranges_from_previous


def _vm_hwm_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM, kB) so far; 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) if match else 0


def run_pipeline_process(
    database_url: str, business_date: dt.date, extra_env: dict[str, str] | None = None
) -> PipelineRun:
    """`ranking-pipeline run --date D` in a subprocess on a fresh Dagster instance: times and peak RSS."""
    home = _new_instance_home()
    env = _env_without(
        _ENV_OVERRIDES_REMOVED, DAGSTER_HOME=home, **{DATABASE_URL_ENV: database_url}, **(extra_env or {})
    )
    command = [sys.executable, "-m", "ranking_pipeline.cli", "run", "--date", business_date.isoformat()]
    try:
        with tempfile.TemporaryFile() as output:
            started = time.perf_counter()
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
            peak_kb = 0
            while True:  # VmHWM: the child's own high-water mark (ru_maxrss would include the parent's)
                peak_kb = max(peak_kb, _vm_hwm_kb(process.pid))
                pid, status, _ = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(_POLL_SECONDS)
            process_seconds = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                output.seek(0)
                tail = output.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"ranking-pipeline run failed ({process.returncode}):\n{tail}")
        steps, ranges, runs_seconds, ranges_from_previous = _step_and_run_times(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return PipelineRun(steps, ranges, runs_seconds, process_seconds, peak_kb / 1024, ranges_from_previous)


def _aggregate_through_dagster(first: dt.date, last: dt.date) -> None:
    """Untimed preparation: the pipeline's own BATCH-000 for first..last (so the state table knows them)."""
    import dagster as dg

    from ranking_pipeline.batch_runner import aggregate_days
    from ranking_pipeline.definitions import defs

    home = _new_instance_home()
    try:
        with dg.DagsterInstance.from_config(home) as instance:
            aggregate_days(defs(), instance, first, last)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _settle(admin_url: str) -> None:
    """VACUUM ANALYZE the derived tables and CHECKPOINT, so each timed side starts from the same state."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for table in _DERIVED:
                connection.exec_driver_sql(f"VACUUM ANALYZE {table}")  # names are constants above
            # CHECKPOINT needs superuser (or pg_checkpoint); without it the vacuum still levels the field
            with contextlib.suppress(sa.exc.DBAPIError):
                connection.exec_driver_sql("CHECKPOINT")
    finally:
        engine.dispose()


def _baseline_case(
    raw, business_date: dt.date, days: tuple[dt.date, dt.date]
) -> dict[str, baseline.StepTiming]:
    with raw.cursor() as cursor:
        return {
            "aggregate": baseline.aggregate_days(cursor, *days),
            "score": baseline.score(cursor, business_date),
            "rank": baseline.rank(cursor, business_date),
        }


def _prepare_nightly_pipeline(
    url: str,
    business_date: dt.date,
    log: Callable[[str], None],
    extra_env: dict[str, str] | None = None,
) -> None:
    """Untimed: the pipeline aggregates D-30 .. D-1 (batch_000_job) and ranks D-1 itself, in a subprocess,
    so D-1's scores and rankings are present and computed from the aggregates D's batch will find."""
    previous = business_date - dt.timedelta(days=1)
    _aggregate_through_dagster(previous - dt.timedelta(days=29), previous)
    log(f"    preparing: ranking-pipeline run --date {previous} (untimed) ...")
    run_pipeline_process(url, previous, extra_env)


def _compare_rankings(raw, case: str, business_date: dt.date) -> tuple[int, int]:
    """(differing rows, ranked rows of D): fails the benchmark if the two rankings of D differ at all."""
    with raw.cursor() as cursor:
        differences = baseline.ranking_differences(cursor, business_date)
        cursor.execute("SELECT count(*) FROM rankings WHERE ranking_date = %(d)s", {"d": business_date})
        ranked = cursor.fetchone()[0]
    raw.commit()
    if differences:
        raise BenchmarkMismatch(
            f"{case}: {differences} ranking rows differ between the pipeline and baseline"
        )
    return differences, ranked


_DROP_AGGREGATES = {
    "baseline": ("TRUNCATE baseline_daily_order_aggregates",),
    "pipeline": (
        "TRUNCATE daily_order_aggregates",
        "DELETE FROM ranking_partition_runs WHERE asset = 'daily_order_aggregates'",
    ),
}


def _execute(raw, statements: tuple[str, ...]) -> None:
    with raw.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    raw.commit()


def _prepare_nightly_side(url: str, raw, side: str, business_date: dt.date, log) -> None:
    """Untimed: the side's aggregates of D-30 .. D-1 (the pipeline also ranks D-1, see above)."""
    if side == "baseline":
        previous = business_date - dt.timedelta(days=1)
        with raw.cursor() as cursor:  # the same aggregate days as the pipeline's preparation
            # day by day: one statement over the 30 days ran for over 45 minutes at 10,000,000 users
            for day in days_between(previous - dt.timedelta(days=29), previous):
                baseline.aggregate_days(cursor, day, day)
    else:
        _prepare_nightly_pipeline(url, business_date, log)


def _side_figures(result: dict[str, baseline.StepTiming] | PipelineRun) -> str:
    """One side's figures as soon as it is timed (a run cut short keeps what it measured in its log)."""
    if isinstance(result, PipelineRun):
        steps = ", ".join(f"{key} {seconds:.2f} s" for key, seconds in result.steps.items())
        return (
            f"{steps}; runs {result.runs_seconds:.2f} s, process {result.process_seconds:.2f} s, "
            f"peak {result.peak_mb:.0f} MB, {result.ranges_from_previous} ranges from D-1"
        )
    return ", ".join(
        f"{step} {timing.seconds:.2f} s ({timing.rows:,} rows)" for step, timing in result.items()
    )


def _run_case(
    url: str, raw, case: str, repetition: int, business_date: dt.date, log: Callable[[str], None]
) -> CaseResult:
    """One repetition of the nightly or the cold case: both sides timed, rankings compared.

    One side after the other: (nightly: its untimed preparation,) settle, the timed run, the database's size,
    then that side's aggregates are dropped, so the database never holds both sides' 30 days of aggregates
    (11 GB each at 10,000,000 users) at once."""
    first = business_date - dt.timedelta(days=29)
    days = (business_date, business_date) if case == "nightly" else (first, business_date)
    _execute(raw, ("TRUNCATE " + ", ".join(_DERIVED),) if case == "nightly" else _DROP_AGGREGATES["pipeline"])
    results: dict[str, object] = {}
    disk, load = 0, 0.0
    sides = ["baseline", "pipeline"] if repetition % 2 == 0 else ["pipeline", "baseline"]
    for side in sides:
        if case == "nightly":
            _prepare_nightly_side(url, raw, side, business_date, log)
        _settle(url)
        log(f"  {case} #{repetition + 1}: {side} ...")
        if side == "baseline":
            results[side] = _baseline_case(raw, business_date, days)
        else:
            results[side] = run_pipeline_process(url, business_date)
        log(f"  {case} #{repetition + 1}: {side} took {_side_figures(results[side])}")
        disk, load = max(disk, _disk_bytes(raw)), max(load, os.getloadavg()[0])
        _execute(raw, _DROP_AGGREGATES[side])
    differences, ranked = _compare_rankings(raw, case, business_date)
    floor = None
    if case == "nightly":
        _settle(url)
        log(f"  {case} #{repetition + 1}: floor ...")
        with raw.cursor() as cursor:
            floor = baseline.floor(cursor, business_date)
        log(f"  {case} #{repetition + 1}: floor took {floor.seconds:.2f} s")
    return CaseResult(
        results["baseline"],
        results["pipeline"],
        differences,
        ranked,
        floor,
        disk_bytes=disk,
        load_average=load,
    )


_COPY_SCORES = sa.text(
    "INSERT INTO user_scores (score_date, user_id, order_count, total_amount, score) "
    "SELECT :day, user_id, order_count, total_amount, score FROM user_scores WHERE score_date = :source"
)
_COPY_RANKINGS = sa.text(
    "INSERT INTO rankings (ranking_date, rank, user_id, score, order_count) "
    "SELECT :day, rank, user_id, score, order_count FROM rankings WHERE ranking_date = :source"
)


def _copy_dates(engine: sa.Engine, source: dt.date, days: list[dt.date]) -> tuple[int, int]:
    """Copy the user_scores and rankings of ``source`` under each of ``days`` (one transaction per date,
    each into its own date partition, created first); returns the rows copied (scores, rankings)."""
    score_rows = ranking_rows = 0
    for day in days:
        with engine.begin() as connection:
            ensure_date_partition(connection, "user_scores", day)
            ensure_date_partition(connection, "rankings", day)
            params = {"day": day, "source": source}
            score_rows += connection.execute(_COPY_SCORES, params).rowcount
            ranking_rows += connection.execute(_COPY_RANKINGS, params).rowcount
    return score_rows, ranking_rows


def _history_dates_present(engine: sa.Engine, history: HistoryFill) -> set[dt.date]:
    with engine.connect() as connection:
        return set(partition_dates(connection, "rankings")) & set(history.days)


def fill_history(
    engine: sa.Engine, business_date: dt.date, dates: int, log: Callable[[str], None]
) -> HistoryFill:
    """Copy D's user_scores and rankings under the K business dates D-31, D-32, ..., all strictly older
    than W(D-1)'s first day D-30, so D-1's scores stay fresh for the nightly path."""
    started = time.perf_counter()
    days = [business_date - dt.timedelta(days=31 + i) for i in range(dates)]
    score_rows = ranking_rows = 0
    for first in range(0, dates, 50):
        scores, rankings = _copy_dates(engine, business_date, days[first : first + 50])
        score_rows, ranking_rows = score_rows + scores, ranking_rows + rankings
        if first + 50 < dates:
            log(f"    history: {first + 50} of {dates} dates copied ...")
    return HistoryFill(days, score_rows, ranking_rows, time.perf_counter() - started)


def _run_history_case(
    url: str,
    engine: sa.Engine,
    raw,
    history: HistoryFill,
    repetition: int,
    business_date: dt.date,
    log: Callable[[str], None],
) -> CaseResult:
    """The nightly case again on the pipeline side, with the history in user_scores and rankings.

    Untimed: history dates a previous repetition's retention dropped are copied again from D; D's and
    D-1's rows, the aggregates and the state rows are removed; D-30 .. D-1 aggregated and D-1 ranked by the
    pipeline (the nightly preparation). Timed: the run for D, with RANKING_RETENTION_DAYS = K + 30 (it drops
    the oldest history date, as every night does). Then compared with the baseline's rankings of D (same
    orders, same users, computed in the cases before)."""
    missing = sorted(set(history.days) - _history_dates_present(engine, history))
    if missing:
        log(f"    history: restoring {len(missing)} date(s) retention dropped (untimed) ...")
        _copy_dates(engine, business_date, missing)
    previous = business_date - dt.timedelta(days=1)
    with raw.cursor() as cursor:
        cursor.execute("TRUNCATE daily_order_aggregates, ranking_partition_runs")
        dates = {"d": business_date, "previous": previous}
        cursor.execute("DELETE FROM user_scores WHERE score_date IN (%(previous)s, %(d)s)", dates)
        cursor.execute("DELETE FROM rankings WHERE ranking_date IN (%(previous)s, %(d)s)", dates)
    raw.commit()
    retention = {RETENTION_DAYS_ENV: str(history.retention_days)}
    _prepare_nightly_pipeline(url, business_date, log, retention)
    _settle(url)
    log(f"  history #{repetition + 1}: pipeline ...")
    present = _history_dates_present(engine, history)
    pipeline = run_pipeline_process(url, business_date, retention)
    dropped = len(present - _history_dates_present(engine, history))
    differences, ranked = _compare_rankings(raw, "history", business_date)
    return CaseResult({}, pipeline, differences, ranked, history_dates_dropped=dropped)


def _server_url():
    """The server of the project's database (RANKING_DATABASE_URL, or the embedded one)."""
    from ranking_pipeline.defs.resources import project_resources

    return project_resources()["database"].process_config_and_initialize().engine().url


def _check_database_name(name: str, server: sa.engine.URL) -> None:
    """A name for --keep-database / --reuse-database: a plain identifier, not the project's own database."""
    if not _NAMED_DATABASE.match(name):
        raise BenchDatabaseError(
            f"--keep-database/--reuse-database {name!r}: use lower-case letters, digits and _ "
            "(at most 63, starting with a letter), e.g. bench_10m"
        )
    if name in _SYSTEM_DATABASES or name == server.database:
        raise BenchDatabaseError(
            f"--keep-database/--reuse-database {name!r} is the server's own or the project's database; "
            "name a database for the benchmark, e.g. bench_10m"
        )


def _database_exists(server: sa.engine.URL, name: str) -> bool:
    admin = sa.create_engine(server)
    try:
        with admin.connect() as connection:
            found = connection.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            return found.first() is not None
    finally:
        admin.dispose()


def _create_database(name: str | None = None) -> tuple[str, str]:
    """(server URL, URL of a new database): ``name``, or a random rp_bench_ name."""
    server = _server_url()
    if name is None:
        name = f"rp_bench_{secrets.token_hex(6)}"
        if not _DATABASE_NAME.match(name):  # the only identifier interpolated into SQL
            raise ValueError(f"unexpected database name {name!r}")
    else:
        _check_database_name(name, server)
        if _database_exists(server, name):
            raise BenchDatabaseError(
                f"--keep-database {name}: the database exists already; re-run on it with "
                f"--reuse-database {name}, or drop it first (DROP DATABASE {name})"
            )
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')  # checked just above
    finally:
        admin.dispose()
    return server.render_as_string(hide_password=False), server.set(database=name).render_as_string(
        hide_password=False
    )


def _existing_database(name: str, users: int) -> tuple[str, str]:
    """(server URL, URL) of a database an earlier ``--keep-database`` run seeded with ``users`` users."""
    server = _server_url()
    _check_database_name(name, server)
    if not _database_exists(server, name):
        raise BenchDatabaseError(
            f"--reuse-database {name}: no such database on {describe_url(server)}; seed it once with "
            f"--keep-database {name}"
        )
    url = server.set(database=name)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            seeded = connection.execute(sa.text(_SEEDED_SHAPE)).first()
    except sa.exc.ProgrammingError:
        seeded = None
    finally:
        engine.dispose()
    if seeded is None or tuple(seeded) != (users, users * REFERENCE_DAYS):
        found = "no users/orders tables" if seeded is None else f"{seeded[0]:,} users, {seeded[1]:,} orders"
        raise BenchDatabaseError(
            f"--reuse-database {name}: it holds {found}, not {users:,} users and "
            f"{users * REFERENCE_DAYS:,} orders; pass the --users it was seeded with, or seed a new one with "
            "--keep-database"
        )
    return server.render_as_string(hide_password=False), url.render_as_string(hide_password=False)


def _drop_derived_tables(url: str) -> None:
    """Leave only the seeded input in a kept database: every other table goes (the derived ones hold 30 days
    of aggregates twice), and a later --reuse-database run creates them with its own release's schema."""
    engine = sa.create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            tables = connection.execute(sa.text(_DERIVED_TABLE_NAMES)).scalars().all()
            for table in tables:  # quoted by quote_ident in the query
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table} CASCADE")
    finally:
        engine.dispose()


def _drop_database(server_url: str, url: str, named: str | None = None) -> None:
    """Drop a random-named benchmark database, or the database ``named`` this run created."""
    dispose_engines()
    name = sa.engine.make_url(url).database
    if not (_DATABASE_NAME.match(name or "") or (named and name == named and _NAMED_DATABASE.match(name))):
        raise ValueError(f"refusing to drop {name!r}: not a benchmark database")
    admin = sa.create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def _disk_bytes(raw) -> int:
    """pg_database_size of the benchmark database."""
    with raw.cursor() as cursor:
        cursor.execute(_DISK_SIZE)
        size = cursor.fetchone()[0]
    raw.commit()
    return size


def _open_database(
    users: int, keep_database: str | None, reuse_database: str | None
) -> tuple[str, str, bool]:
    """(server URL, database URL, seeded already?) for the run: a reused, a named new or a random new one."""
    if keep_database and reuse_database:
        raise BenchDatabaseError("--keep-database and --reuse-database: give one of them, not both")
    if reuse_database:
        return (*_existing_database(reuse_database, users), True)
    return (*_create_database(keep_database), False)


def _seed_or_reuse(engine: sa.Engine, report: BenchReport, seeded: bool, log: Callable[[str], None]) -> None:
    users = report.users
    if seeded:
        log(f"benchmark database {report.database}: reusing its {users:,} users, {users * 31:,} orders")
    else:
        log(f"benchmark database {report.database}: seeding {users:,} users, {users * 31:,} orders ...")
        started = time.perf_counter()
        seed_bulk(engine, users, end_date=BENCH_DATE, log=log)
        report.seed_seconds = time.perf_counter() - started
        log(f"seeded in {report.seed_seconds:.1f} s")
    from ranking_pipeline.lib.schema import ensure_output_tables

    ensure_output_tables(engine)


def _run_cases(
    url: str,
    engine: sa.Engine,
    report: BenchReport,
    cases: tuple[str, ...],
    runs: int,
    history_dates: int,
    log,
) -> None:
    raw = engine.raw_connection()
    try:
        baseline.create_tables(raw)
        report.disk_seeded_bytes = report.disk_peak_bytes = _disk_bytes(raw)
        for repetition in range(runs):
            for case in cases:
                result = _run_case(url, raw, case, repetition, BENCH_DATE, log)
                report.cases[case].append(result)
                report.disk_peak_bytes = max(report.disk_peak_bytes, result.disk_bytes)
        if history_dates:
            log(f"history: copying D's scores and rankings under {history_dates} older dates ...")
            report.history = fill_history(engine, BENCH_DATE, history_dates, log)
            log(f"history: filled in {report.history.seconds:.1f} s")
            for repetition in range(runs):
                result = _run_history_case(url, engine, raw, report.history, repetition, BENCH_DATE, log)
                report.cases["history"].append(result)
            report.disk_peak_bytes = max(report.disk_peak_bytes, _disk_bytes(raw))
    finally:
        raw.close()


def run_benchmark(
    users: int,
    runs: int = 1,
    *,
    keep: bool = False,
    keep_database: str | None = None,
    reuse_database: str | None = None,
    cases: tuple[str, ...] = TIMED_CASES,
    history_dates: int = 0,
    log: Callable[[str], None] = print,
) -> BenchReport:
    """Seed (or reuse a seeded database), run both sides ``runs`` times per case, check the rankings, and
    build the table (medians). With ``history_dates`` K > 0, then fill K older dates and time the nightly
    case ``runs`` times again.

    The database: a new one with a random name, dropped at the end unless ``keep``; ``keep_database`` NAME
    creates NAME and keeps it with only users and orders; ``reuse_database`` NAME runs on such a database
    without seeding (its derived tables are dropped again at the end)."""
    from ranking_pipeline.bench_report import build_table

    server_url, url, seeded = _open_database(users, keep_database, reuse_database)
    report = BenchReport(users=users, database=describe_url(url))
    named = keep_database or reuse_database
    saved_env = {name: os.environ.get(name) for name in (DATABASE_URL_ENV, *_ENV_OVERRIDES_REMOVED)}
    os.environ[DATABASE_URL_ENV] = url
    for name in _ENV_OVERRIDES_REMOVED:
        os.environ.pop(name, None)
    try:
        engine = get_engine(url)
        _seed_or_reuse(engine, report, seeded, log)
        _run_cases(url, engine, report, cases, runs, history_dates, log)
        report.bench_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report.rows, report.text = build_table(report, statistics.median)
        log(report.text)
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if named:
            dispose_engines()
            if seeded or report.seed_seconds is not None:  # a seeding cut short: nothing worth reusing
                _drop_derived_tables(url)
                log(
                    f"kept the benchmark database {report.database} (users and orders only); re-run on it "
                    f"with: ranking-pipeline bench --users {users} --reuse-database {named}"
                )
            else:
                _drop_database(server_url, url, named)
        elif keep:
            log(f"kept the benchmark database {report.database}")
        else:
            _drop_database(server_url, url)
    return report
