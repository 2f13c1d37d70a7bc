import time

import dagster as dg

from ranking_pipeline.constants import ASSET_GROUP, BATCH_001_PROCESS_ID, OWNERS, RANKINGS_WRITER_POOL
from ranking_pipeline.defs.assets._shared import (
    BATCH_RETRY_POLICY,
    batch_step,
    business_date_of,
    column_schema,
)
from ranking_pipeline.defs.assets.user_scores import user_scores
from ranking_pipeline.defs.resources import BatchLockResource, RankingCache, RankingDatabase
from ranking_pipeline.lib.checks import IntegrityError, rankings_integrity
from ranking_pipeline.lib.dates import window_days
from ranking_pipeline.lib.queries import read_rankings, replace_rankings
from ranking_pipeline.lib.ranges import USER_ID_RANGES
from ranking_pipeline.lib.state import (
    COMPLETED,
    RANKINGS_ASSET,
    USER_SCORES_ASSET,
    aggregates_fingerprint,
    mark_completed,
    partition_runs_for,
)

TOP_N_IN_METADATA = 10


class StaleScoresError(RuntimeError):
    """user_scores for D is missing ranges or was computed from older aggregates."""


@dg.asset(
    deps=[user_scores],
    retry_policy=BATCH_RETRY_POLICY,
    pool=RANKINGS_WRITER_POOL,
    owners=OWNERS,
    group_name=ASSET_GROUP,
    kinds={"postgres", "sql"},
    metadata={
        "dagster/table_name": "rankings",
        "dagster/column_schema": column_schema(
            ("ranking_date", "DATE", "business date D (primary key, with user_id)"),
            ("rank", "INT", "RANK() OVER (ORDER BY score DESC): ties share a rank, the next rank skips"),
            ("user_id", "BIGINT", "an existing, active user with a positive score"),
            ("score", "NUMERIC(14,2)", "the user's score for D (exact)"),
            ("order_count", "INT", "completed orders over W(D)"),
        ),
    },
)
def rankings(
    context: dg.AssetExecutionContext,
    database: RankingDatabase,
    batch_lock: BatchLockResource,
    ranking_cache: RankingCache,
) -> dg.MaterializeResult:
    """The ranking of business date D, read by BATCH-002 (mail) and written also by BATCH-003.

    Active, existing users with a positive score in `user_scores` for D, ranked by score with
    RANK() (1, 2, 2, 4). D's rows are replaced atomically: readers see the old ranking until the new one
    commits; other dates are never touched. The new rows are verified inside the transaction (ranks, one row
    per user, positive scores) and the batch lock is checked before they replace the old ones; the checks
    report on the committed table. Every writer of this table shares the `rankings_writers` pool (limit 1).
    Refuses to run while some user-ID range of `user_scores` for D is missing or stale. Afterwards the
    rankings cache keys in Redis are deleted.
    """
    business_date = business_date_of(context)
    engine = database.ready_engine()
    with engine.connect() as connection:
        fingerprint = aggregates_fingerprint(connection, window_days(business_date))
        score_runs = partition_runs_for(connection, USER_SCORES_ASSET, [business_date])
    not_ready = [
        user_range.key
        for user_range in USER_ID_RANGES
        if (run := score_runs.get((business_date, user_range.key))) is None
        or run.status != COMPLETED
        or run.input_fingerprint != fingerprint
    ]
    if not_ready:
        raise StaleScoresError(
            f"cannot rank {business_date}: user_scores is missing or older than the aggregates for range(s) "
            f"{', '.join(not_ready)}. Materialize those user_scores partitions for {business_date} first"
        )
    lock = batch_lock.for_process(BATCH_001_PROCESS_ID, engine)
    started = time.monotonic()
    with batch_step(context, BATCH_001_PROCESS_ID, lock, {"business_date": business_date}) as step:

        def verify_and_record(connection, rows: int) -> None:
            integrity = rankings_integrity(connection, business_date)  # never swap in broken rows
            if not integrity.passed:
                raise IntegrityError(
                    f"rankings for {business_date} not replaced: {'; '.join(integrity.problems)}"
                )
            mark_completed(
                connection, RANKINGS_ASSET, business_date, "all", context.run.run_id, rows, fingerprint
            )
            step.fence(connection)

        step.processed = inserted = replace_rankings(engine, business_date, before_commit=verify_and_record)
        context.log.info(f"rankings {business_date}: replaced with {inserted:,} ranked users (committed)")
        cleared = ranking_cache.clear()
        if cleared is None:
            context.log.info("rankings cache: no Redis configured (RANKING_REDIS_URL), nothing to clear")
        else:
            context.log.info(
                f"rankings cache: deleted {cleared:,} key(s) matching {ranking_cache.pattern()!r}"
            )
    with engine.connect() as connection:
        top = read_rankings(connection, business_date, limit=TOP_N_IN_METADATA)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": inserted,
            "business_date": dg.MetadataValue.text(business_date.isoformat()),
            "top_10": dg.MetadataValue.md(
                "| rank | user_id | score | orders |\n|---|---|---|---|\n"
                + "\n".join(f"| {u.rank} | {u.user_id} | {u.score} | {u.order_count} |" for u in top)
            ),
            "cache_keys_deleted": cleared if cleared is not None else "no Redis configured",
            "duration_seconds": round(time.monotonic() - started, 3),
        }
    )
