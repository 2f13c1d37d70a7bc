import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
from sqlalchemy.engine import Engine

from ranking_pipeline.constants import (
    ASSET_GROUP,
    BATCH_001_JOB,
    BATCH_001_PROCESS_ID,
    FORCE_RECOMPUTE_TAG,
    OWNERS,
)
from ranking_pipeline.defs.assets._shared import (
    BATCH_RETRY_POLICY,
    BatchStep,
    batch_step,
    business_date_of,
    column_schema,
)
from ranking_pipeline.defs.assets.daily_order_aggregates import daily_order_aggregates
from ranking_pipeline.defs.partitions import user_id_range_partitions
from ranking_pipeline.defs.resources import BatchLockResource, RankingDatabase
from ranking_pipeline.lib.dates import window_days
from ranking_pipeline.lib.queries import batch_transaction, replace_user_scores
from ranking_pipeline.lib.ranges import UserIdRange, range_for_key
from ranking_pipeline.lib.state import (
    COMPLETED,
    USER_SCORES_ASSET,
    PartitionRun,
    aggregates_fingerprint,
    completed_days,
    mark_completed,
    mark_failed,
    mark_running,
    partition_runs_for,
)

# Design 7: at most 4 processes; ranges are scored by up to 4 concurrent database sessions.
MAX_PARALLEL_RANGES = 4


class IncompleteWindowError(RuntimeError):
    """Some JST day of W(D) has not been aggregated: scoring now would under-count."""


def _score_range(
    engine: Engine,
    business_date: dt.date,
    user_range: UserIdRange,
    run_id: str,
    fingerprint: str,
    step: BatchStep,
) -> tuple[int, float]:
    """Replace one (D, range) and record it, in one transaction fenced by the batch lock."""
    mark_running(engine, USER_SCORES_ASSET, business_date, user_range.key, run_id)
    started = time.monotonic()
    try:
        with batch_transaction(engine, f"scoring {business_date} {user_range.key}") as connection:
            rows = replace_user_scores(connection, business_date, user_range)
            mark_completed(
                connection, USER_SCORES_ASSET, business_date, user_range.key, run_id, rows, fingerprint
            )
            step.fence(connection)
    except Exception as error:
        mark_failed(
            engine,
            USER_SCORES_ASSET,
            business_date,
            user_range.key,
            run_id,
            f"{type(error).__name__}: {error}",
        )
        raise
    return rows, time.monotonic() - started


def _resumes(context: dg.AssetExecutionContext) -> bool:
    """Batch runs (and their retries and re-executions) skip ranges already done from the same inputs;
    an explicit materialization from the UI recomputes what it selected."""
    return context.job_name == BATCH_001_JOB and context.run.tags.get(FORCE_RECOMPUTE_TAG) != "true"


def _is_up_to_date(done: PartitionRun | None, fingerprint: str, run_id: str, resumes: bool) -> bool:
    return (
        done is not None
        and done.status == COMPLETED
        and done.input_fingerprint == fingerprint
        and (resumes or done.run_id == run_id)  # a step retry never redoes its own finished ranges
    )


@dg.asset(
    partitions_def=user_id_range_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep(daily_order_aggregates, partition_mapping=dg.LastPartitionMapping())],
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
def user_scores(
    context: dg.AssetExecutionContext, database: RankingDatabase, batch_lock: BatchLockResource
) -> dg.MaterializeResult:
    """Each user's score for business date D over the 30-day window W(D) = D-29 ... D (JST).

    Summed from `daily_order_aggregates`; every user with a completed order in the window gets a row, whatever
    their status (ranking filters later). Partitioned by user-ID range: the ranges cover every possible ID
    and never overlap; each (D, range) is replaced on its own, and up to 4 ranges are computed at once.
    D is the run tag `ranking/business_date`, or the last complete JST day. A batch run resumes: ranges
    already completed for D from the same aggregates are skipped (see the `skipped_ranges` metadata).
    Holds the lock batch:lock:BATCH-001.
    """
    business_date = business_date_of(context)
    window = window_days(business_date)
    run_id = context.run.run_id
    engine = database.ready_engine()
    with engine.connect() as connection:
        missing = sorted(set(window) - completed_days(connection, window))
        fingerprint = aggregates_fingerprint(connection, window)
        previous = partition_runs_for(connection, USER_SCORES_ASSET, [business_date])
    if missing:
        raise IncompleteWindowError(
            f"cannot score {business_date}: daily_order_aggregates has not been materialized for "
            f"{len(missing)} day(s) of the window {window[0]} .. {window[-1]}: "
            f"{', '.join(str(day) for day in missing[:10])}{' ...' if len(missing) > 10 else ''}. "
            "Materialize those partitions first (or run `ranking-pipeline run --date` for this date)"
        )
    selected = [range_for_key(key) for key in context.partition_keys]
    resumes = _resumes(context)
    skipped = [
        r
        for r in selected
        if _is_up_to_date(previous.get((business_date, r.key)), fingerprint, run_id, resumes)
    ]
    to_compute = [r for r in selected if r not in skipped]
    parameters = {
        "business_date": business_date,
        "window": f"{window[0]} .. {window[-1]}",
        "ranges": len(selected),
        "to_compute": len(to_compute),
    }
    lock = batch_lock.for_process(BATCH_001_PROCESS_ID, engine)
    results: dict[str, tuple[int, float]] = {}
    started = time.monotonic()
    with batch_step(context, BATCH_001_PROCESS_ID, lock, parameters) as step:
        for user_range in skipped:
            done = previous[(business_date, user_range.key)]
            context.log.info(
                f"user_scores {business_date} {user_range.key}: already completed by run {done.run_id} "
                f"({done.row_count:,} rows) from the same aggregates; not recomputed"
            )
        if to_compute:
            with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_RANGES, len(to_compute))) as pool:
                futures = {
                    r.key: pool.submit(_score_range, engine, business_date, r, run_id, fingerprint, step)
                    for r in to_compute
                }
                for done_count, (key, future) in enumerate(futures.items(), start=1):
                    results[key] = rows, seconds = future.result()
                    step.processed += rows
                    context.log.info(
                        f"user_scores {business_date} {key}: {rows:,} users scored in {seconds:.2f} s "
                        f"(range {done_count} of {len(to_compute)}; {step.processed:,} users so far)"
                    )
    rows_by_range = {key: rows for key, (rows, _) in results.items()}
    rows_by_range.update({r.key: previous[(business_date, r.key)].row_count or 0 for r in skipped})
    return dg.MaterializeResult(
        metadata={
            # One materialization per range, same metadata: with several ranges in one run this is the
            # run's total; rows_per_range has each range's own count.
            "dagster/row_count": sum(rows_by_range.values()),
            "ranges_in_this_run": len(selected),
            "business_date": dg.MetadataValue.text(business_date.isoformat()),
            "window": dg.MetadataValue.text(f"{window[0]} .. {window[-1]}"),
            "rows_per_range": dg.MetadataValue.md(
                "| user-ID range | users scored | seconds | |\n|---|---|---|---|\n"
                + "\n".join(
                    f"| {r.key} | {rows_by_range[r.key]:,} | "
                    + (
                        f"{results[r.key][1]:.2f} | computed |"
                        if r.key in results
                        else "- | resumed (skipped) |"
                    )
                    for r in selected
                )
            ),
            "skipped_ranges": dg.MetadataValue.text(", ".join(r.key for r in skipped) or "none"),
            "duration_seconds": round(time.monotonic() - started, 3),
        }
    )
