"""`ranking-pipeline`: seed sample data, run the nightly batch, look after its locks, start the UI.

Every mistake a person can make (a bad date or argument, a wrong setting, an unreachable database, input that
breaks the data contract, a failed run) ends with one line on stderr naming what is wrong and what to do, and
a non-zero exit: 2 when nothing was run or written, 1 when a run failed. Arguments, then settings, then the
database are checked before a command does anything; no line ever shows a secret (``lib/redact.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from ranking_pipeline.lib.business_date import (
    WINDOW_DAYS,
    BusinessDate,
    BusinessDateError,
    last_complete_day,
    parse_date,
)

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
# `seed`: the 30 days of a window plus 6, so the window of each of the last 7 seeded days is complete and any
# of those business dates can be run or re-run at once, from the UI too.
SAMPLE_DAYS = WINDOW_DAYS + 6


def _date_argument(text: str) -> dt.date:
    try:
        return parse_date(text, source="date")
    except BusinessDateError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _whole_number_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _parse_any_date(text: str) -> dt.date:
    """A calendar date, past or future (a cut may be applied from a date that has not come yet)."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _positive_int(text: str) -> int:
    return _whole_number_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole_number_at_least(text, 0)


class _OneLineParser(argparse.ArgumentParser):
    """Every mistake on the command line is one line on stderr (and exit 2), not usage plus an error."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"ranking-pipeline: error: {message} (see `{self.prog} --help`)\n")


def _add_batch_commands(commands) -> None:
    """``seed`` and ``run``."""
    seed = commands.add_parser(
        "seed",
        help="replace users and orders with a deterministic synthetic data set, aggregated by BATCH-000",
    )
    seed.add_argument(
        "--users", type=_positive_int, required=True, help="number of users (N orders a day too)"
    )
    seed.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    seed.add_argument(
        "--end-date", type=_date_argument, help="last JST day of orders (default: yesterday JST)"
    )
    seed.add_argument(
        "--days",
        type=_positive_int,
        default=SAMPLE_DAYS,
        help=f"JST days of orders, all aggregated by BATCH-000 (default {SAMPLE_DAYS}: the window of each of "
        f"the last {SAMPLE_DAYS - WINDOW_DAYS + 1} days is complete)",
    )

    run = commands.add_parser("run", help="aggregate what W(D) lacks, then score and rank business date D")
    run.add_argument("--date", type=_date_argument, help="business date D (default: yesterday JST)")
    run.add_argument("--verbose", action="store_true", help="show Dagster's run log on stderr")
    run.add_argument(
        "--force",
        action="store_true",
        help="recompute from orders: re-aggregate every day of W(D) and score every user-ID range again",
    )


def _add_admin_commands(commands) -> None:
    """``lock`` and ``ranges``."""
    lock = commands.add_parser("lock", help="show or release the batch locks (batch:lock:BATCH-000/001)")
    lock_commands = lock.add_subparsers(dest="lock_command", required=True, parser_class=_OneLineParser)
    lock_commands.add_parser(
        "status", help="who holds each lock, until when, and whether their run has ended"
    )
    release = lock_commands.add_parser(
        "release", help="release a lock whose holder is gone (its run ended); --force: whoever holds it"
    )
    release.add_argument("--process", choices=("BATCH-001", "BATCH-000"), default="BATCH-001")
    release.add_argument("--force", action="store_true", help="release even a live holder's lock")

    ranges = commands.add_parser(
        "ranges", help="show, plan or apply the cut of user-ID ranges user_scores is partitioned by"
    )
    range_commands = ranges.add_subparsers(dest="ranges_command", required=True, parser_class=_OneLineParser)
    range_commands.add_parser("show", help="the stored cuts and the latest scored date's rows per range")
    range_commands.add_parser("plan", help="a balanced cut from today's user base (nothing is stored)")
    apply = range_commands.add_parser(
        "apply", help="store a balanced cut for business dates from --from on (scored dates keep theirs)"
    )
    apply.add_argument(
        "--from",
        dest="first_date",
        type=_parse_any_date,
        required=True,
        help="first business date scored under the new cut (YYYY-MM-DD; no date on or after it scored yet)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="ranking-pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    _add_batch_commands(commands)
    _add_admin_commands(commands)

    dev = commands.add_parser(
        "dev",
        help="`dagster dev` on this project (stops on Ctrl-C and SIGTERM, with the embedded server it "
        "started)",
    )
    dev.epilog = "Any further arguments are passed on to `dagster dev` (e.g. -p 3001)."

    _add_bench_parser(commands)
    return parser


def _add_bench_parser(commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="time the batch against a plain-SQL baseline on a new, seeded database (docs/BENCHMARKS.md)",
    )
    bench.add_argument("--users", type=_positive_int, required=True, help="N users and N orders a day")
    bench.add_argument("--runs", type=_positive_int, default=1, help="repetitions; medians are printed")
    bench.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    named = bench.add_mutually_exclusive_group()
    named.add_argument(
        "--keep-database",
        metavar="NAME",
        help="seed a new database NAME and keep it afterwards (users and orders only), for --reuse-database",
    )
    named.add_argument(
        "--reuse-database",
        metavar="NAME",
        help="run on NAME, seeded by an earlier --keep-database run with the same --users (no seeding)",
    )
    bench.add_argument(
        "--cases",
        nargs="+",
        choices=("nightly", "cold"),
        default=["nightly", "cold"],
        help="the timed cases to run (default: nightly cold)",
    )
    bench.add_argument(
        "--history-dates",
        type=_non_negative_int,
        default=0,
        help="then fill user_scores and rankings with K older business dates and time the nightly case "
        "again (default 0: skip; the docs use 400 at 100,000 users)",
    )


class DevArgumentError(ValueError):
    """An argument `ranking-pipeline dev` would pass on to `dagster dev` is wrong."""


def _check_dev_arguments(arguments: list[str]) -> None:
    """`dagster dev`'s own parser on the arguments passed on to it: a mistake is one line before anything
    starts (rather than dagster dev's usage text after the instance was prepared)."""
    import click

    from ranking_pipeline.dagster_internals import dev_command

    try:
        context = dev_command.make_context("dagster dev", list(arguments))
    except click.exceptions.Exit:  # --version and the like: dagster dev shows it
        return
    except click.ClickException as error:
        raise DevArgumentError(f"dagster dev: {error.format_message()}") from None
    port = context.params.get("port")
    if port is not None and not (str(port).isdigit() and 0 < int(port) < 65536):
        raise DevArgumentError(f"dagster dev: option -p/--port: expected a TCP port number, got {port!r}")


def _database(*, start_embedded: bool = True):
    """The project's database resource, configured from the environment as the code location is, once it has
    answered at once (the embedded server is started for that only with ``start_embedded``)."""
    from ranking_pipeline.defs.resources import project_resources
    from ranking_pipeline.lib.db import check_reachable

    database = project_resources()["database"].process_config_and_initialize()
    if database.url or start_embedded:
        check_reachable(database.engine(), database.describe())
    return database


def _redis_answers() -> None:
    """A configured Redis answers at once (a run would otherwise wait for it, then fail)."""
    from ranking_pipeline.defs.resources import project_resources

    with project_resources()["redis"].process_config_and_initialize_cm() as redis:
        if redis.configured:
            redis.client(patience=0)


def _seed(args: argparse.Namespace) -> int:
    from ranking_pipeline.batch_runner import aggregate_seeded_days
    from ranking_pipeline.definitions import defs
    from ranking_pipeline.instance import project_instance
    from ranking_pipeline.lib.seed import seed

    database = _database()
    _redis_answers()  # BATCH-000's lock lives there when it is configured
    engine = database.engine()
    end_date = args.end_date or last_complete_day()
    definitions = defs()
    with project_instance() as (instance, where):
        summary = seed(engine, args.users, end_date=end_date, random_seed=args.seed, days=args.days)
        print(
            f"seeded {database.describe()}: {summary.users:,} users, {summary.orders:,} orders "
            f"from {summary.first_day} to {summary.last_day} (JST), seed {args.seed}"
        )
        aggregated = aggregate_seeded_days(definitions, instance, summary.first_day, summary.last_day)
    if aggregated.run_id is None:
        print("  no seeded day has ended yet in JST: nothing aggregated")
        return 0
    first, last = aggregated.days[0], aggregated.days[-1]
    print(f"  daily_order_aggregates {first} .. {last}: run {aggregated.run_id}, recorded in {where}")
    complete = first + dt.timedelta(days=WINDOW_DAYS - 1)
    if complete <= last:
        print(f"  business dates with a complete window (ready to run or re-run): {complete} .. {last}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from ranking_pipeline.batch_runner import run_batch
    from ranking_pipeline.definitions import defs
    from ranking_pipeline.instance import project_instance

    business_date = BusinessDate.from_command_line(args.date)
    _database()
    _redis_answers()
    definitions = defs()
    with project_instance() as (instance, where):
        summary = run_batch(definitions, instance, business_date, quiet=not args.verbose, force=args.force)
    days = summary.aggregated_days
    print(f"BATCH-001 for business date {business_date}: succeeded in {summary.seconds:.1f} s")
    print(
        f"  daily aggregates computed: {len(days)} day(s)"
        + (f" ({days[0]} .. {days[-1]})" if days else " (the window was complete)")
    )
    print(f"  users scored: {summary.scored_users:,}   users ranked: {summary.ranked_users:,}")
    print(f"  runs: {', '.join(summary.run_ids)}, recorded in {where}")
    print("  top 10:")
    print(f"  {'rank':>5}  {'user_id':>10}  {'score':>14}  {'orders':>6}")
    for user in summary.top:
        print(f"  {user.rank:>5}  {user.user_id:>10}  {user.score:>14}  {user.order_count:>6}")
    return 0


def _lock(args: argparse.Namespace) -> int:
    from ranking_pipeline.lock_admin import lock_status, release_lock

    if args.lock_command == "status":
        for line in lock_status():
            print(line)
        return 0
    print(release_lock(args.process, force=args.force))
    return 0


def _ranges(args: argparse.Namespace) -> int:
    from ranking_pipeline import range_admin
    from ranking_pipeline.lib.schema import ensure_output_tables

    engine = _database().engine()
    ensure_output_tables(engine)
    if args.ranges_command == "show":
        lines = range_admin.show(engine)
    elif args.ranges_command == "plan":
        lines = range_admin.plan(engine)[1]
    else:
        lines = range_admin.apply(engine, args.first_date)
    print("\n".join(lines))
    return 0


def _dev(args: argparse.Namespace) -> int:
    from ranking_pipeline.dev import run_dagster_dev

    _database(start_embedded=False)  # a configured server must answer; the embedded one starts on first use
    return run_dagster_dev(args.dagster_args)


def _bench(args: argparse.Namespace) -> int:
    from ranking_pipeline.bench import run_benchmark

    _database()  # its server is where the benchmark database is created
    run_benchmark(
        args.users,
        args.runs,
        keep=args.keep,
        keep_database=args.keep_database,
        reuse_database=args.reuse_database,
        cases=tuple(dict.fromkeys(args.cases)),
        history_dates=args.history_dates,
        log=lambda line: print(line, flush=True),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from ranking_pipeline.batch_runner import BatchRunFailed
    from ranking_pipeline.bench import BenchDatabaseError
    from ranking_pipeline.instance import DagsterHomeError
    from ranking_pipeline.lib.contract import InputContractError
    from ranking_pipeline.lib.db import DatabaseConfigError, DatabaseUnreachableError
    from ranking_pipeline.lib.errors import StoreUnreachableError
    from ranking_pipeline.lib.ranges import RangeCutError
    from ranking_pipeline.lib.redact import scrub
    from ranking_pipeline.lib.schema import InputSchemaError
    from ranking_pipeline.lib.settings import SettingsError, secret_pieces_of, validate
    from ranking_pipeline.lock_admin import LockAdminError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "dev":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.dagster_args = extra
    handlers = {"seed": _seed, "run": _run, "lock": _lock, "ranges": _ranges, "dev": _dev, "bench": _bench}

    def say(error: BaseException) -> None:
        line = " ".join(str(error).splitlines())  # one line, whatever the error's text
        print(f"ranking-pipeline: error: {scrub(line, secret_pieces_of())}", file=sys.stderr)

    try:
        if args.command == "dev":
            _check_dev_arguments(extra)
        validate()  # every setting, before any command does anything (as the code location's load does)
        return handlers[args.command](args)
    except (
        BenchDatabaseError,
        BusinessDateError,
        DagsterHomeError,
        DatabaseConfigError,
        DatabaseUnreachableError,
        DevArgumentError,
        InputContractError,
        InputSchemaError,
        LockAdminError,
        RangeCutError,
        SettingsError,
        StoreUnreachableError,
    ) as error:
        say(error)
        return EXIT_BAD_INPUT
    except BatchRunFailed as error:
        say(error)
        return EXIT_BAD_INPUT if error.input_error else EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
