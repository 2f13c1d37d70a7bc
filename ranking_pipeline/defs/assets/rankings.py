import datetime as dt
import time
from collections.abc import Collection, Iterator

import dagster as dg

from ranking_pipeline.constants import (
    ASSET_GROUP,
    BATCH_001_PROCESS_ID,
    OWNERS,
    RANKINGS_CHECKS_JOB,
    RANKINGS_INTEGRITY_CHECK,
    RANKINGS_ROW_COUNT_ANOMALY_CHECK,
    RANKINGS_WRITER_POOL,
    USERS_CONTRACT_CHECK,
)
from ranking_pipeline.dagster_internals import AssetCheckEvaluationTargetMaterializationData
from ranking_pipeline.defs.assets._shared import (
    BATCH_RETRY_POLICY,
    BatchStep,
    batch_step,
    column_schema,
    failures_classified,
    run_business_dates,
    run_includes_check,
)
from ranking_pipeline.defs.assets.daily_order_aggregates import daily_order_aggregates
from ranking_pipeline.defs.assets.user_scores import user_scores
from ranking_pipeline.defs.partitions import DATE_DIMENSION, business_date_partitions
from ranking_pipeline.defs.resources import BatchLockResource, RankingCache, RankingDatabase
from ranking_pipeline.lib.business_date import JST, WINDOW_DAYS
from ranking_pipeline.lib.checks import (
    DEFAULT_ANOMALY_THRESHOLD,
    IntegrityReport,
    previous_ranking_count,
    rankings_integrity,
    row_count_anomaly,
)
from ranking_pipeline.lib.contract import raise_if_defects, user_defects
from ranking_pipeline.lib.partitions import RETENTION_DAYS_ENV, retention_days
from ranking_pipeline.lib.queries import (
    count_rows,
    drop_dates_past_retention,
    read_rankings,
    replace_rankings,
)
from ranking_pipeline.lib.ranges import BALANCE_LIMIT, USER_ID_RANGES, balance
from ranking_pipeline.lib.schema import rankings as rankings_table
from ranking_pipeline.lib.score_plan import fresh_scores
from ranking_pipeline.lib.state import RANKINGS_ASSET, mark_completed

TOP_N_IN_METADATA = 10
RANKINGS_KEY = dg.AssetKey("rankings")
INTEGRITY_KEY = dg.AssetCheckKey(RANKINGS_KEY, RANKINGS_INTEGRITY_CHECK)
ANOMALY_KEY = dg.AssetCheckKey(RANKINGS_KEY, RANKINGS_ROW_COUNT_ANOMALY_CHECK)
USERS_CONTRACT_KEY = dg.AssetCheckKey(dg.AssetKey("users"), USERS_CONTRACT_CHECK)


NO_DATE = (
    "rankings' checks are per business date and this run names none (nothing was read or written): to check "
    f"a date, open Jobs > {RANKINGS_CHECKS_JOB} > Launchpad, pick it under Partition, Launch Run (several "
    "dates: its Partitions tab, Launch backfill...)"
)


# On the Checks tab, where Dagster 1.13 cannot execute the checks of a partitioned asset for a chosen date.
CHECK_DATES_HOW = (
    f"To evaluate it again for dates you pick, without re-ranking: Jobs > {RANKINGS_CHECKS_JOB} (Launchpad, "
    "pick the date under Partition, Launch Run)."
)


class StaleScoresError(RuntimeError):
    """user_scores for D is missing ranges or was computed from older aggregates (not retried)."""


class RankingsConfig(dg.Config):
    row_count_anomaly_threshold: float = DEFAULT_ANOMALY_THRESHOLD
    """The row-count anomaly check warns when D has fewer ranked users than this fraction of the previous
    business date's (design 6.1: 0.5)."""


def stale_scores_message(business_date: dt.date, not_ready: list[str]) -> str:
    """Which ranges of D lack current scores, and exactly what to launch to score them."""
    every = len(not_ready) == len(USER_ID_RANGES)
    ranges = "every user-ID range" if every else "the user-ID range(s) " + ", ".join(not_ready)
    pick = "All" if every else "those ranges"
    return (
        f"cannot rank {business_date}: user_scores for {business_date} is missing or older than the "
        f"aggregates (or its cut of user-ID ranges) for {ranges}. To score them, open the asset "
        f"user_scores, Materialize…, enter {business_date} as the date, pick {pick} in the user-ID range "
        f"picker and launch: the ranking of {business_date} follows once that run succeeds. The previous "
        f"rankings of {business_date} are unchanged"
    )


def _require_fresh_scores(connection, business_date: dt.date) -> tuple[str, dict[str, int]]:
    """The aggregates' fingerprint of W(D) and the rows of each user-ID range of D, once every range of
    user_scores for D is computed from those aggregates under the cut of ranges in force for D."""
    scores = fresh_scores(connection, business_date)
    if scores.not_ready:
        raise StaleScoresError(stale_scores_message(business_date, scores.not_ready))
    return scores.fingerprint, scores.rows


def _range_balance(context: dg.AssetExecutionContext, business_date: dt.date, rows: dict[str, int]) -> dict:
    """Metadata on how evenly D's scored users spread over the user-ID ranges; a warning when the largest
    range holds more than 1.5 x the mean (the ranges no longer follow the user base: re-cut them)."""
    ratio = balance(list(rows.values()))
    if ratio is not None and ratio > BALANCE_LIMIT:
        context.log.warning(
            f"user_scores {business_date}: the largest user-ID range holds {ratio:.2f} x the mean of the "
            f"ranges' rows (over {BALANCE_LIMIT}): re-cut the ranges, see `ranking-pipeline ranges plan`"
        )
    spread = {"rows_per_user_id_range": dg.MetadataValue.text(", ".join(f"{n:,}" for n in rows.values()))}
    return spread if ratio is None else {"user_id_range_balance": round(ratio, 3), **spread}


def _replace(
    context: dg.AssetExecutionContext,
    database: RankingDatabase,
    ranking_cache: RankingCache,
    step: BatchStep,
    business_date: dt.date,
) -> tuple[dg.AssetMaterialization, IntegrityReport]:
    """Replace the rankings of D; its materialization and the integrity report of the rows committed."""
    engine = database.engine()
    started = time.monotonic()
    keep = retention_days()
    with engine.connect() as connection:
        fingerprint, range_rows = _require_fresh_scores(connection, business_date)

    def record(connection, rows: int) -> None:
        mark_completed(
            connection, RANKINGS_ASSET, business_date, "all", context.run.run_id, rows, fingerprint
        )
        step.fence(connection)

    verified = replace_rankings(engine, business_date, before_commit=record)
    inserted = verified.rows
    step.processed += inserted
    context.log.info(f"rankings {business_date}: replaced with {inserted:,} ranked users (committed)")
    dropped = drop_dates_past_retention(engine, business_date, keep)
    if dropped:
        context.log.info(
            f"retention ({RETENTION_DAYS_ENV}={keep}): dropped user_scores and rankings of "
            f"{len(dropped)} date(s), {dropped[0]} .. {dropped[-1]}"
        )
    cleared = ranking_cache.clear()
    if cleared is None:
        context.log.info("rankings cache: no Redis configured, nothing to clear")
    else:
        context.log.info(f"rankings cache: deleted {cleared:,} key(s) matching {ranking_cache.pattern()!r}")
    with engine.connect() as connection:
        top = read_rankings(connection, business_date, limit=TOP_N_IN_METADATA)
    materialization = dg.AssetMaterialization(
        asset_key=RANKINGS_KEY,
        partition=business_date.isoformat(),
        metadata={
            "dagster/row_count": inserted,
            "business_date": dg.MetadataValue.text(business_date.isoformat()),
            "top_10": dg.MetadataValue.md(
                "| rank | user_id | score | orders |\n|---|---|---|---|\n"
                + "\n".join(f"| {u.rank} | {u.user_id} | {u.score} | {u.order_count} |" for u in top)
            ),
            "cache_keys_deleted": cleared if cleared is not None else "no Redis configured",
            "dates_dropped_by_retention": len(dropped),
            "seconds": round(time.monotonic() - started, 3),
            **_range_balance(context, business_date, range_rows),
        },
    )
    return materialization, verified


def _checked_materialization(
    context: dg.AssetExecutionContext | dg.OpExecutionContext, business_date: dt.date
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The materialization of D the checks evaluate: the latest one (this step's own, when it has just
    replaced D). Dagster counts a check result as current only when it names it: without it the UI's
    per-date check status shows every checked date as never checked."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RANKINGS_KEY, asset_partitions=[business_date.isoformat()]), limit=1
    ).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=records[0].run_id, storage_id=records[0].storage_id, timestamp=records[0].timestamp
    )


def rankings_check_evaluations(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    database: RankingDatabase,
    threshold: float,
    business_date: dt.date,
    selected: Collection[dg.AssetCheckKey],
    verified: IntegrityReport | None = None,
) -> Iterator[dg.AssetCheckEvaluation]:
    """The selected checks on the committed rankings of D, reported for partition D (by this asset's runs
    and by rankings_checks_job). ``verified``: the integrity of exactly these rows, established inside the
    transaction that committed them (not re-read)."""
    target = _checked_materialization(context, business_date)
    with database.engine().connect() as connection:
        if INTEGRITY_KEY in selected:
            report = verified or rankings_integrity(connection, business_date)
            yield dg.AssetCheckEvaluation(
                asset_key=RANKINGS_KEY,
                check_name=RANKINGS_INTEGRITY_CHECK,
                passed=report.passed,
                partition=business_date.isoformat(),
                target_materialization_data=target,
                severity=dg.AssetCheckSeverity.ERROR,
                blocking=True,
                description="; ".join(report.problems)
                or f"{report.rows:,} rows for {business_date} consistent",
                metadata={"business_date": business_date.isoformat(), "rows": report.rows},
            )
        if ANOMALY_KEY in selected:
            current = (
                verified.rows
                if verified is not None
                else count_rows(connection, rankings_table, "ranking_date", business_date)
            )
            previous = previous_ranking_count(connection, business_date)
            verdict = row_count_anomaly(current, previous, threshold)
            if not verdict.passed:
                context.log.warning(f"rankings {business_date}: row-count anomaly: {verdict.description}")
            metadata: dict[str, object] = {
                "business_date": business_date.isoformat(),
                "rows": current,
                "threshold": dg.MetadataValue.text(str(threshold)),  # text: a constant is not worth a plot
            }
            if previous is not None:  # nothing to plot without a previous date
                metadata |= {
                    "previous_date": previous[0].isoformat(),
                    "previous_rows": previous[1],
                    "ratio": round(verdict.ratio, 4) if verdict.ratio is not None else None,
                }
            yield dg.AssetCheckEvaluation(
                asset_key=RANKINGS_KEY,
                check_name=RANKINGS_ROW_COUNT_ANOMALY_CHECK,
                passed=verdict.passed,
                partition=business_date.isoformat(),
                target_materialization_data=target,
                severity=dg.AssetCheckSeverity.WARN,
                description=verdict.description,
                metadata={key: value for key, value in metadata.items() if value is not None},
            )


@dg.multi_asset(
    name="rankings",
    specs=[
        dg.AssetSpec(
            RANKINGS_KEY,
            description=(
                "The ranking of business date D, read by BATCH-002 (mail) and written also by BATCH-003.\n\n"
                "Active, existing users with a positive score in `user_scores` for D, ranked by score with "
                "RANK() (1, 2, 2, 4). One partition per business date, in Dagster and in PostgreSQL: D's new "
                "rows are built in a table of their own and swapped in for D's partition in one transaction "
                "(readers see the old ranking until the new one commits; other dates are never touched). "
                "The new rows are verified inside the transaction (ranks, positive scores; the primary key "
                "keeps one row per user) "
                "and the batch lock is checked before they replace the old ones; the checks then report on "
                "the committed rows of D. Every writer of this table shares the `rankings_writers` pool "
                "(limit 1). Refuses to run (at once, no retries) while a user-ID range of `user_scores` for "
                "D "
                "is missing or stale. Afterwards the rankings cache keys in Redis are deleted and the dates "
                "older than RANKING_RETENTION_DAYS (default 400) are dropped from user_scores and rankings, "
                "whole partitions at a time.\n\n"
                "Every night the ranking of D = yesterday (JST) is due by 09:00 JST: the freshness policy "
                "shows whether a ranking was committed since 03:00, and alert_on_missed_ranking pages "
                "on-call, naming why, when D's is missing."
            ),
            # Dagster's cron policy looks at the asset's latest materialization, not at D's partition: the
            # missed-ranking alert checks D itself.
            freshness_policy=dg.FreshnessPolicy.cron(
                deadline_cron="0 9 * * *", lower_bound_delta=dt.timedelta(hours=6), timezone=JST.key
            ),
            deps=[
                "users",
                dg.AssetDep(
                    user_scores,
                    partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                        partition_dimension_name=DATE_DIMENSION
                    ),
                ),
                # D's ranking stands on the aggregates of its whole window W(D) = D-29 ... D.
                dg.AssetDep(
                    daily_order_aggregates,
                    partition_mapping=dg.TimeWindowPartitionMapping(
                        start_offset=-(WINDOW_DAYS - 1), end_offset=0
                    ),
                ),
            ],
            skippable=True,
            owners=OWNERS,
            group_name=ASSET_GROUP,
            kinds={"postgres", "sql"},
            metadata={
                "dagster/table_name": "rankings",
                "dagster/column_schema": column_schema(
                    ("ranking_date", "DATE", "business date D (primary key, with user_id)"),
                    (
                        "rank",
                        "INT",
                        "RANK() OVER (ORDER BY score DESC): ties share a rank, the next rank skips",
                    ),
                    ("user_id", "BIGINT", "an existing, active user with a positive score"),
                    ("score", "NUMERIC(14,2)", "the user's score for D (exact)"),
                    ("order_count", "INT", "completed orders over W(D)"),
                ),
            },
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            RANKINGS_INTEGRITY_CHECK,
            asset=RANKINGS_KEY,
            blocking=True,
            partitions_def=business_date_partitions,
            description="Ranks of D start at 1 and follow RANK() over score; every score positive (one row "
            "per user is kept by the primary key (ranking_date, user_id), not re-counted here). ERROR and "
            "blocking: nothing downstream runs on rankings that break these. " + CHECK_DATES_HOW,
        ),
        dg.AssetCheckSpec(
            RANKINGS_ROW_COUNT_ANOMALY_CHECK,
            asset=RANKINGS_KEY,
            partitions_def=business_date_partitions,
            description="WARN when D has under 50 % (config row_count_anomaly_threshold) of the ranked rows "
            "of the previous business date that has rankings. " + CHECK_DATES_HOW,
        ),
    ],
    partitions_def=business_date_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
    retry_policy=BATCH_RETRY_POLICY,
    pool=RANKINGS_WRITER_POOL,
)
def rankings(
    context: dg.AssetExecutionContext,
    config: RankingsConfig,
    database: RankingDatabase,
    batch_lock: BatchLockResource,
    ranking_cache: RankingCache,
):
    if not (context.has_partition_key or context.has_partition_key_range):  # e.g. *Execute all* on Checks
        raise dg.Failure(description=NO_DATE, allow_retries=False)
    with failures_classified():
        dates = [business_date.day for business_date in run_business_dates(context)]
        engine = database.ready_engine()
        threshold, checks = config.row_count_anomaly_threshold, context.selected_asset_check_keys
        if RANKINGS_KEY in context.selected_asset_keys:
            if not run_includes_check(
                context, USERS_CONTRACT_KEY
            ):  # else that blocking check has just passed
                with engine.connect() as connection:
                    raise_if_defects(user_defects(connection), "users")
            lock = batch_lock.for_process(BATCH_001_PROCESS_ID, database.engine())
            parameters = {"business_dates": ", ".join(str(day) for day in dates)}
            with batch_step(context, BATCH_001_PROCESS_ID, lock, parameters) as step:
                for business_date in dates:
                    materialization, verified = _replace(
                        context, database, ranking_cache, step, business_date
                    )
                    yield materialization
                    yield from rankings_check_evaluations(
                        context, database, threshold, business_date, checks, verified
                    )
        else:  # the checks alone (a checks-only run naming dates): they read, they never write
            for business_date in dates:
                yield from rankings_check_evaluations(context, database, threshold, business_date, checks)
        for check_key in context.selected_asset_check_keys:  # the checks' outputs (their results are above)
            yield dg.Output(
                None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key)
            )
