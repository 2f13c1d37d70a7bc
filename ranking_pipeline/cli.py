"""`ranking-pipeline`: seed sample data and run the nightly batch from a shell.

Every failure a person can cause (a bad date, an unreachable database, missing tables or columns, a failed
run) ends with one line on stderr naming what is wrong and how to fix it, and a non-zero exit.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import tempfile
from collections.abc import Iterator

from ranking_pipeline.lib.dates import InvalidBusinessDateError, parse_business_date, yesterday_jst
from ranking_pipeline.lib.db import (
    DatabaseConfigError,
    DatabaseUnreachableError,
    check_reachable,
    describe_database,
    get_engine,
)
from ranking_pipeline.lib.schema import InputSchemaError

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2


def _date_argument(text: str) -> dt.date:
    try:
        return parse_business_date(text, source="date")
    except InvalidBusinessDateError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ranking-pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    seed = commands.add_parser(
        "seed", help="replace users and orders with a deterministic synthetic data set"
    )
    seed.add_argument(
        "--users", type=_positive_int, required=True, help="number of users (N orders a day too)"
    )
    seed.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    seed.add_argument(
        "--end-date", type=_date_argument, help="last JST day of orders (default: yesterday JST)"
    )

    run = commands.add_parser("run", help="aggregate what W(D) lacks, then score and rank business date D")
    run.add_argument("--date", type=_date_argument, help="business date D (default: yesterday JST)")
    run.add_argument("--verbose", action="store_true", help="show Dagster's run log on stderr")
    run.add_argument(
        "--force", action="store_true", help="recompute every user-ID range, even those already done for D"
    )

    bench = commands.add_parser(
        "bench",
        help="time the batch against a plain-SQL baseline on a new, seeded database (docs/BENCHMARKS.md)",
    )
    bench.add_argument("--users", type=_positive_int, required=True, help="N users and N orders a day")
    bench.add_argument("--runs", type=_positive_int, default=1, help="repetitions; medians are printed")
    bench.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    return parser


@contextlib.contextmanager
def dagster_instance() -> Iterator:
    """DAGSTER_HOME's instance if set (runs then show in its UI), a temporary one otherwise."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            yield instance
        return
    with (
        tempfile.TemporaryDirectory(prefix="ranking-pipeline-dagster-") as home,
        dg.DagsterInstance.local_temp(home, overrides={"telemetry": {"enabled": False}}) as instance,
    ):
        yield instance


def _seed(args: argparse.Namespace) -> int:
    from ranking_pipeline.lib.seed import seed

    engine = get_engine()
    check_reachable(engine)
    end_date = args.end_date or yesterday_jst()
    summary = seed(engine, args.users, end_date=end_date, random_seed=args.seed)
    print(
        f"seeded {describe_database()}: {summary.users:,} users, {summary.orders:,} orders "
        f"from {summary.first_day} to {summary.last_day} (JST), seed {args.seed}"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from ranking_pipeline.batch_runner import run_batch
    from ranking_pipeline.definitions import defs

    business_date = args.date or yesterday_jst()
    with dagster_instance() as instance:
        summary = run_batch(defs(), instance, business_date, quiet=not args.verbose, force=args.force)
    days = summary.aggregated_days
    print(f"BATCH-001 for business date {business_date}: succeeded in {summary.seconds:.1f} s")
    print(
        f"  daily aggregates computed: {len(days)} day(s)"
        + (f" ({days[0]} .. {days[-1]})" if days else " (the window was complete)")
    )
    print(f"  users scored: {summary.scored_users:,}   users ranked: {summary.ranked_users:,}")
    print(f"  runs: {', '.join(summary.run_ids)}")
    print("  top 10:")
    print(f"  {'rank':>5}  {'user_id':>10}  {'score':>14}  {'orders':>6}")
    for user in summary.top:
        print(f"  {user.rank:>5}  {user.user_id:>10}  {user.score:>14}  {user.order_count:>6}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ranking_pipeline.bench import run_benchmark

    run_benchmark(args.users, args.runs, keep=args.keep, log=lambda line: print(line, flush=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    from ranking_pipeline.batch_runner import BatchRunFailed

    args = build_parser().parse_args(argv)
    handlers = {"seed": _seed, "run": _run, "bench": _bench}
    try:
        return handlers[args.command](args)
    except (
        DatabaseConfigError,
        DatabaseUnreachableError,
        InputSchemaError,
        InvalidBusinessDateError,
    ) as error:
        print(f"ranking-pipeline: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BatchRunFailed as error:
        print(f"ranking-pipeline: error: {error}", file=sys.stderr)
        return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
