"""A small-N run of `ranking-pipeline bench` (nightly, cold, floor, 3 history dates) for correctness only:
no timing assertions beyond "measured and positive"."""

import secrets

import pytest
import sqlalchemy as sa

from ranking_pipeline.bench import run_benchmark
from ranking_pipeline.bench_report import HEADER, TARGETS, verdicts
from ranking_pipeline.cli import main
from ranking_pipeline.lib import db


def _bench_databases(server_url: str) -> set[str]:
    engine = sa.create_engine(db.normalize_url(server_url))
    try:
        with engine.connect() as connection:
            return set(
                connection.execute(
                    sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, :prefix)"),
                    {"prefix": "rp_bench_"},
                ).scalars()
            )
    finally:
        engine.dispose()


_CASE_STEPS = [
    "score D (8 ranges)",
    "rank + replace D",
    "asset checks on rankings",
    "batch work (all steps)",
    "Dagster runs, start to end",
    "process start to exit",
]


def test_bench_compares_identical_rankings_and_prints_every_step(postgres_server_url, monkeypatch):
    monkeypatch.setenv("RANKING_DATABASE_URL", postgres_server_url)
    lines: list[str] = []

    report = run_benchmark(1_000, runs=1, history_dates=3, log=lines.append)

    for case in ("nightly", "cold", "history"):
        (result,) = report.cases[case]
        assert result.differences == 0  # the identical-rankings check ran and found no difference
        assert result.ranked > 750
        assert {"daily_order_aggregates", "user_scores", "rankings"} <= set(result.pipeline.steps)
        assert len(result.pipeline.ranges) == 8  # every user-ID range scored and timed
        assert result.pipeline.peak_mb > 0 and result.pipeline.process_seconds > 0
    for case in ("nightly", "cold"):
        assert set(report.cases[case][0].baseline) == {"aggregate", "score", "rank"}
    assert report.cases["history"][0].baseline == {}  # history times the pipeline only

    (nightly,) = report.cases["nightly"]
    assert nightly.floor is not None
    assert nightly.floor.read.rows > 0 and nightly.floor.read.seconds > 0
    assert nightly.floor.write.rows == nightly.ranked and nightly.floor.write.seconds > 0
    assert "orders" in nightly.floor.read_plan
    assert report.history is not None and len(report.history.days) == 3
    assert report.cases["history"][0].history_dates_dropped == 1  # retention K + 30: the oldest date
    for case in ("nightly", "history"):  # the nightly path: every range scored from D-1's scores
        assert report.cases[case][0].pipeline.ranges_from_previous == 8, case
    assert report.history.score_rows > 0 and report.history.ranking_rows == 3 * nightly.ranked
    for figure in (
        "floor_seconds",
        "nightly_work_vs_floor",
        "history_work_seconds",
        "history_ratio",
        "peak_mb",
    ):
        assert report.figures[figure] > 0, figure

    steps = [(case, step) for case, step, *_ in report.rows]
    first_steps = {"nightly": "aggregate day D", "cold": "aggregate 30 days", "history": "aggregate day D"}
    for case, first in first_steps.items():
        assert [step for c, step in steps if c == case] == [first, *_CASE_STEPS]
    assert [step for c, step in steps if c == "floor"] == [
        "read D's orders once",
        "write D's rankings once",
        "floor (read + write)",
    ]
    assert all(len(row) == len(HEADER) for row in report.rows)
    per_m_users = HEADER.index("s/M users")
    for case, step, *_ in report.rows:  # every step's seconds per million users, baseline rows/s beside
        row = next(r for r in report.rows if r[:2] == (case, step))
        assert row[per_m_users] > 0, (case, step)
    rates = {(r[0], r[1]): (r[HEADER.index("rows/s")], r[HEADER.index("base rows/s")]) for r in report.rows}
    assert all(value > 0 for value in rates[("cold", "aggregate 30 days")])
    assert report.figures["nightly_work_seconds_per_m_users"] == pytest.approx(
        report.figures["nightly_work_seconds"] * 1000
    )
    # the 30-minute extrapolation: the batch work scaled linearly in N, the rest of the process held fixed
    work, process = report.figures["nightly_work_seconds"], report.figures["nightly_process_seconds"]
    assert report.figures["nightly_budget_users"] == pytest.approx(1_000 * (1800 - (process - work)) / work)
    assert "nightly: extrapolated, not measured: about" in report.text
    assert report.seed_seconds > 0 and report.bench_peak_mb > 0
    assert 0 < report.disk_seeded_bytes <= report.disk_peak_bytes
    assert "machine: 1-minute load average up to" in report.text
    assert f"disk: the database took {report.disk_seeded_bytes / 1024**3:.1f} GB after seeding" in report.text
    assert "rankings identical in every run" in report.text
    assert "ms per record" in report.text and "budget 100 ms" in report.text
    assert "history: 3 older business dates (2026-10-25 .. 2026-10-27)" in report.text
    for target in TARGETS:  # every target gets a verdict line (for reference at this size)
        assert f"reference {target.description}" in report.text
    assert report.text in lines
    # its own database is gone (other sessions' benchmarks may have theirs at the same time)
    assert report.database.rsplit("/", 1)[1] not in _bench_databases(postgres_server_url)


def test_verdicts_apply_targets_at_their_size_only():
    figures = {"nightly_work_ratio": 0.7, "peak_mb": 300.0}
    at_100k = verdicts(figures, 100_000)
    assert "  met       nightly batch work <= 0.8 x baseline at 100,000 users: 0.70" in at_100k
    assert any(line.startswith("  reference nightly batch work <= 0.6") for line in at_100k)
    at_1m = verdicts(figures, 1_000_000)
    assert "  NOT MET   nightly batch work <= 0.6 x baseline at 1,000,000 users: 0.70" in at_1m
    assert "  NOT MET   peak RSS of the batch process < 300 MB at 1,000,000 users: 300.00" in at_1m
    assert any(line.startswith("  not run   cold batch work") for line in at_1m)


def _drop(server_url: str, name: str) -> None:
    engine = sa.create_engine(db.normalize_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def _tables(server_url: str, name: str) -> set[str]:
    engine = sa.create_engine(sa.engine.make_url(db.normalize_url(server_url)).set(database=name))
    try:
        with engine.connect() as connection:
            return set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_a_kept_database_is_benchmarked_again_without_seeding(postgres_server_url, monkeypatch, capsys):
    monkeypatch.setenv("RANKING_DATABASE_URL", postgres_server_url)
    name = f"bench_test_{secrets.token_hex(4)}"
    try:
        first = run_benchmark(300, cases=("nightly",), keep_database=name, log=lambda line: None)
        assert first.seed_seconds > 0 and first.cases["cold"] == []
        assert _tables(postgres_server_url, name) == {"users", "orders"}  # the derived tables went

        lines: list[str] = []
        again = run_benchmark(300, cases=("nightly",), reuse_database=name, log=lines.append)
        assert again.seed_seconds is None  # no seeding: the orders are the kept ones
        assert "reused (--reuse-database), not seeded" in again.text
        assert again.cases["nightly"][0].differences == 0
        assert again.cases["nightly"][0].ranked == first.cases["nightly"][0].ranked
        assert f"ranking-pipeline bench --users 300 --reuse-database {name}" in lines[-1]
        assert _tables(postgres_server_url, name) == {"users", "orders"}

        assert main(["bench", "--users", "400", "--reuse-database", name]) == 2  # seeded with 300
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and "300 users" in error and "--users it was seeded with" in error
        assert main(["bench", "--users", "300", "--keep-database", name]) == 2  # exists already
        assert f"--reuse-database {name}" in capsys.readouterr().err
    finally:
        _drop(postgres_server_url, name)


def test_bench_command_refuses_to_reuse_a_missing_or_system_database(
    postgres_server_url, monkeypatch, capsys
):
    monkeypatch.setenv("RANKING_DATABASE_URL", postgres_server_url)
    assert main(["bench", "--users", "10", "--reuse-database", "bench_no_such_db"]) == 2
    assert "no such database" in capsys.readouterr().err
    assert main(["bench", "--users", "10", "--keep-database", "postgres"]) == 2
    assert "the server's own or the project's database" in capsys.readouterr().err
    assert main(["bench", "--users", "10", "--keep-database", "Bad-Name"]) == 2
    assert "lower-case letters, digits and _" in capsys.readouterr().err


def test_bench_command_rejects_zero_users(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--users", "0"])
    assert exit_.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_bench_command_rejects_negative_history_dates(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--users", "10", "--history-dates", "-1"])
    assert exit_.value.code == 2
    assert "must be at least 0" in capsys.readouterr().err
