import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import dagster as dg
from sqlalchemy.engine import Engine

from ranking_pipeline.constants import (
    ASSET_GROUP,
    BATCH_001_PROCESS_ID,
    FORCE_RECOMPUTE_TAG,
    OWNERS,
    RESUME_TAG,
)
from ranking_pipeline.defs.assets._shared import (
    BATCH_RETRY_POLICY,
    BatchStep,
    batch_step,
    column_schema,
    failures_classified,
    run_business_dates,
)
from ranking_pipeline.defs.assets.daily_order_aggregates import daily_order_aggregates
from ranking_pipeline.defs.partitions import DATE_DIMENSION, score_partitions
from ranking_pipeline.defs.resources import BatchLockResource, RankingDatabase
from ranking_pipeline.lib.business_date import (
    BusinessDate,
    missing_aggregate_days,
    partition_selection,
    score_partition_key,
    split_score_partition_key,
    window_days,
)
from ranking_pipeline.lib.contract import raise_if_defects, user_defects, window_overflow
from ranking_pipeline.lib.partitions import USER_SCORES, ensure_date_partition
from ranking_pipeline.lib.queries import batch_transaction, replace_user_scores
from ranking_pipeline.lib.ranges import USER_ID_RANGES, UserIdRange, cut_for_scoring, cut_in_force
from ranking_pipeline.lib.score_plan import DateInputs, RangeWork, plan_scoring
from ranking_pipeline.lib.state import (
    USER_SCORES_ASSET,
    aggregates_fingerprint,
    mark_completed,
    mark_failed,
    mark_running,
    partition_runs_for,
)

# Design 7: at most 4 processes; ranges are scored by up to 4 concurrent database sessions.
MAX_PARALLEL_RANGES = 4


class IncompleteWindowError(RuntimeError):
    """Some JST day of W(D) has not been aggregated: scoring now would under-count (not retried)."""


def incomplete_window_message(business_date: dt.date, missing: list[dt.date]) -> str:
    """What is missing and exactly what to launch: the days as the launch dialog's partition selection."""
    window = window_days(business_date)
    return (
        f"cannot score {business_date}: daily_order_aggregates has not been materialized for {len(missing)} "
        f"day(s) of the window {window[0]} .. {window[-1]}. To aggregate them, open the asset "
        f"daily_order_aggregates, Materialize… (Show all partitions, if they are older than 90 days), enter "
        f"{partition_selection(missing)} as the partitions, Launch backfill; then launch {business_date} "
        f"again (or run `ranking-pipeline run --date {business_date}`, which aggregates them first). "
        f"Nothing was written for {business_date}"
    )


def _score_range(
    engine: Engine,
    inputs: DateInputs,
    work: RangeWork,
    run_id: str,
    step: BatchStep,
) -> tuple[int, float]:
    """Replace one (D, range) and record it, in one transaction fenced by the batch lock."""
    business_date, key = inputs.business_date, work.user_range.key
    mark_running(engine, USER_SCORES_ASSET, business_date, key, run_id)
    started = time.monotonic()
    try:
        with batch_transaction(engine, f"scoring {business_date} {key}") as connection:
            rows = replace_user_scores(
                connection, business_date, work.user_range, from_previous=work.from_previous
            )
            mark_completed(
                connection,
                USER_SCORES_ASSET,
                business_date,
                key,
                run_id,
                rows,
                inputs.fingerprint,
                range_cut=inputs.cut.cut_id,
            )
            step.fence(connection)
    except Exception as error:
        mark_failed(engine, USER_SCORES_ASSET, business_date, key, run_id, f"{type(error).__name__}: {error}")
        raise
    return rows, time.monotonic() - started


def _forced(context: dg.AssetExecutionContext) -> bool:
    return context.run.tags.get(FORCE_RECOMPUTE_TAG) == "true"


def _resumes(context: dg.AssetExecutionContext) -> bool:
    """Runs of the batch jobs (and their retries and re-executions) skip ranges already done from the same
    inputs; an explicit materialization from the UI recomputes what it selected."""
    return context.run.tags.get(RESUME_TAG) == "true" and not _forced(context)


def _materialization(
    context: dg.AssetExecutionContext, inputs: DateInputs, user_range: UserIdRange, rows: int, detail: dict
) -> dg.AssetMaterialization:
    window = window_days(inputs.business_date)
    return dg.AssetMaterialization(
        asset_key=context.asset_key,
        partition=score_partition_key(inputs.business_date, user_range.key),
        metadata={
            "dagster/row_count": rows,
            "business_date": dg.MetadataValue.text(inputs.business_date.isoformat()),
            "user_id_range": dg.MetadataValue.text(user_range.key),
            "user_ids": dg.MetadataValue.text(user_range.describe()),
            "range_cut": dg.MetadataValue.text(inputs.cut.describe()),
            "window": dg.MetadataValue.text(f"{window[0]} .. {window[-1]}"),
            **detail,
        },
    )


def _date_inputs(engine: Engine, business_date: dt.date) -> DateInputs:
    """D's cut (stored first if this is the first scoring ever) and bookkeeping; refuses an incomplete
    window or one whose sums could overflow."""
    window = window_days(business_date)
    previous_date = business_date - dt.timedelta(days=1)
    with engine.connect() as connection:
        missing = missing_aggregate_days(connection, business_date)
    if missing:
        raise IncompleteWindowError(incomplete_window_message(business_date, missing))
    cut = cut_for_scoring(engine, business_date)
    with engine.connect() as connection:
        raise_if_defects(window_overflow(connection, window), f"the aggregates of W({business_date})")
        return DateInputs(
            business_date=business_date,
            cut=cut,
            fingerprint=aggregates_fingerprint(connection, window),
            previous_cut=cut_in_force(connection, previous_date) or cut,
            previous_fingerprint=aggregates_fingerprint(connection, window_days(previous_date)),
            runs=partition_runs_for(connection, USER_SCORES_ASSET, [business_date, previous_date]),
        )


def _how(inputs: DateInputs, work: RangeWork) -> str:
    window = window_days(inputs.business_date)
    if work.from_previous:
        return f"from {inputs.previous_date} + {inputs.business_date} - {window[0] - dt.timedelta(days=1)}"
    return f"from the 30 days {window[0]} .. {window[-1]}"


def _score_date(
    context: dg.AssetExecutionContext,
    engine: Engine,
    step: BatchStep,
    batch_date: BusinessDate,
    range_keys: list[str],
) -> Iterator[dg.AssetMaterialization]:
    """Score the selected ranges of D (up to 4 at once), yielding each range's materialization as it commits;
    a failing range lets the others finish, then its error ends the step."""
    business_date = batch_date.day
    run_id = context.run.run_id
    inputs = _date_inputs(engine, business_date)
    plan = plan_scoring(inputs, range_keys, run_id, resumes=_resumes(context), forced=_forced(context))
    for user_range, done, reported in plan.skipped:
        context.log.info(
            f"user_scores {business_date} {user_range.key}: already completed by run {done.run_id} "
            f"({done.row_count:,} rows) from the same aggregates under {inputs.cut.describe()}; "
            "not recomputed"
        )
        if not reported:  # this run's earlier attempt already reported it
            resumed = {"computed": False, "resumed_from_run": dg.MetadataValue.text(done.run_id)}
            yield _materialization(context, inputs, user_range, done.row_count or 0, resumed)
    if not plan.compute:
        return
    with batch_transaction(engine, f"creating the user_scores partition of {business_date}") as connection:
        ensure_date_partition(connection, USER_SCORES, business_date)
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_RANGES, len(plan.compute))) as pool:
        futures: dict[Future, RangeWork] = {
            pool.submit(_score_range, engine, inputs, work, run_id, step): work for work in plan.compute
        }
        pending = set(futures)
        error: BaseException | None = None
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                work = futures[future]
                if future.exception() is not None:
                    error = error or future.exception()
                    continue
                rows, seconds = future.result()
                step.processed += rows
                how = _how(inputs, work)
                context.log.info(
                    f"user_scores {business_date} {work.user_range.key}: {rows:,} users scored in "
                    f"{seconds:.2f} s (user IDs {work.user_range.describe()}, {inputs.cut.describe()}; "
                    f"{how}; {step.processed:,} users so far)"
                )
                detail = {"computed": True, "seconds": round(seconds, 3), "computed_from": how}
                yield _materialization(context, inputs, work.user_range, rows, detail)
        if error is not None:  # every other range has finished (and stays done for the retry)
            raise error


def ranges_of_dates(partition_keys: list[str]) -> dict[dt.date, list[str]]:
    """The user-ID range keys a run selected for each of its business dates."""
    ranges_by_date: dict[dt.date, list[str]] = defaultdict(list)
    for key in partition_keys:
        business_date, range_key = split_score_partition_key(key)
        ranges_by_date[business_date].append(range_key)
    return ranges_by_date


@dg.asset(
    partitions_def=score_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    deps=[
        dg.AssetDep(
            daily_order_aggregates,
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                partition_dimension_name=DATE_DIMENSION
            ),
        )
    ],
    retry_policy=BATCH_RETRY_POLICY,
    owners=OWNERS,
    group_name=ASSET_GROUP,
    kinds={"postgres", "sql"},
    metadata={
        "dagster/table_name": "user_scores",
        "dagster/column_schema": column_schema(
            ("score_date", "DATE", "business date D (primary key, with user_id)"),
            ("user_id", "BIGINT", "user with at least one completed order in W(D), whatever their status"),
            ("order_count", "INT", "completed orders over W(D)"),
            ("total_amount", "NUMERIC(14,2)", "exact sum of those orders"),
            ("score", "NUMERIC(14,2)", "the ranking score: equal to total_amount"),
        ),
    },
)
def user_scores(context: dg.AssetExecutionContext, database: RankingDatabase, batch_lock: BatchLockResource):
    """Each user's score for business date D over the 30-day window W(D) = D-29 ... D (JST).

    Summed from `daily_order_aggregates`; every user with a completed order in the window gets a row, whatever
    their status (ranking filters later). The nightly path: when D-1's scores of a range were computed from
    today's aggregates of W(D-1), D's are D-1's plus day D minus day D-30 (metadata `computed_from` says which
    way each range went); otherwise the 30 days are summed. Both give the same rows to the cent.
    Partitioned by business date x user-ID range: eight range slots whose user IDs are the cut in force for D
    (`ranking-pipeline ranges`; each an eighth of the users when cut), covering every possible ID without
    overlap; each (D, range) is replaced on its own, up to 4 ranges at once, and reports its own row count,
    seconds, user IDs and cut.
    Refuses to run (at once, no retries) while a day of W(D) has not been aggregated. Runs of the batch job
    resume: ranges already completed for D from the same aggregates are skipped (metadata `computed: false`);
    a materialization from the UI recomputes what it selected, and so does a batch job run tagged
    ranking/force_recompute=true (it reads the aggregates as they are: `ranking-pipeline run --force` and the
    trigger's --force re-aggregate W(D) in a BATCH-000 run first). Holds the lock batch:lock:BATCH-001.
    """
    with failures_classified():
        dates = run_business_dates(context)
        ranges_by_date = ranges_of_dates(context.partition_keys)
        engine = database.ready_engine()
        with engine.connect() as connection:  # the whole batch's inputs, before anything is written
            raise_if_defects(user_defects(connection), "users")
        lock = batch_lock.for_process(BATCH_001_PROCESS_ID, engine)
        parameters = {
            "business_dates": ", ".join(str(day) for day in dates),
            "partitions": len(context.partition_keys),
            "resume": _resumes(context),
        }
        every_range = all(len(keys) == len(USER_ID_RANGES) for keys in ranges_by_date.values())
        with batch_step(
            context, BATCH_001_PROCESS_ID, lock, parameters, hand_over_on_success=every_range
        ) as step:
            for business_date in dates:
                yield from _score_date(
                    context, engine, step, business_date, ranges_by_date[business_date.day]
                )
