"""A small-N run of `ranking-pipeline bench` for correctness only (no timing assertions)."""

import pytest
import sqlalchemy as sa

from ranking_pipeline.bench import run_benchmark
from ranking_pipeline.bench_report import HEADER
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


def test_bench_compares_identical_rankings_and_prints_every_step(postgres_server_url, monkeypatch):
    monkeypatch.setenv("RANKING_DATABASE_URL", postgres_server_url)
    before = _bench_databases(postgres_server_url)
    lines: list[str] = []

    report = run_benchmark(2_000, runs=1, log=lines.append)

    for case in ("warm", "cold"):
        (result,) = report.cases[case]
        assert result.differences == 0  # the identical-rankings check ran and found no difference
        assert result.ranked > 1_500
        assert set(result.baseline) == {"aggregate", "score", "rank"}
        assert {"daily_order_aggregates", "user_scores", "rankings"} <= set(result.pipeline.steps)
        assert len(result.pipeline.ranges) == 8  # every user-ID range scored and timed
        assert result.pipeline.peak_mb > 0 and result.pipeline.process_seconds > 0
    steps = [(case, step) for case, step, *_ in report.rows]
    for case in ("warm", "cold"):
        first = "aggregate day D" if case == "warm" else "aggregate 30 days"
        assert [step for c, step in steps if c == case] == [
            first,
            "score D (8 ranges)",
            "rank + replace D",
            "asset checks on rankings",
            "batch work (all steps)",
            "Dagster runs, start to end",
            "process start to exit",
        ]
    assert all(len(row) == len(HEADER) for row in report.rows)
    assert "rankings identical in every run" in report.text
    assert "ms per record" in report.text and "budget 100 ms" in report.text
    assert report.text in lines
    assert _bench_databases(postgres_server_url) == before, "the benchmark database was not dropped"


def test_bench_command_rejects_zero_users(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--users", "0"])
    assert exit_.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
