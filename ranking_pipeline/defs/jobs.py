"""Jobs: BATCH-000 (daily aggregation) and the two runs of a BATCH-001 batch for business date D.

A batch is a scoring run of batch_001_scores_job (every user-ID range of D) and, once it has succeeded, a
ranking run of batch_001_rankings_job (the rankings of D and their checks). Dagster cannot put a partition of
a date x range asset and one of a date asset in the same run; the sensor start_rankings_on_scores_success
starts the ranking run (`ranking-pipeline run` runs it itself, in the same process). A failed scoring run has
no ranking run. The batch's 30 minutes are counted from the scoring run's start.
"""

import dagster as dg

from ranking_pipeline.constants import (
    BATCH_000_JOB,
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    BATCH_MAX_RUNTIME_SECONDS,
    MAX_RUNTIME_TAG,
    RANKINGS_WRITER_TAG,
    RESUME_TAG,
)

_BATCH_001_TAGS = {
    RANKINGS_WRITER_TAG: "BATCH-001",
    # run monitoring stops a run past this; a ranking run gets what its scoring run left of the 30 minutes
    MAX_RUNTIME_TAG: str(BATCH_MAX_RUNTIME_SECONDS),
    RESUME_TAG: "true",
    # run retries stay off: a timed-out batch is never relaunched behind anyone's back
    "dagster/max_retries": "0",
}

batch_000_job = dg.define_asset_job(
    BATCH_000_JOB,
    selection=dg.AssetSelection.assets("daily_order_aggregates")
    | dg.AssetSelection.checks_for_assets("orders"),
    description="BATCH-000: check the orders of one JST day (or a range of days) against the data contract, "
    "then aggregate them, in one run.",
    executor_def=dg.in_process_executor,
)

batch_001_scores_job = dg.define_asset_job(
    BATCH_001_SCORES_JOB,
    selection=dg.AssetSelection.assets("user_scores"),
    description=(
        "BATCH-001, run 1 of 2: score the user-ID ranges of business date D; on success the ranking run of D "
        "follows. Resumes: ranges already computed for D from the same aggregates are skipped (tag "
        "ranking/force_recompute=true recomputes them)."
    ),
    tags=_BATCH_001_TAGS,
    # one process per run: the scoring step runs its ranges in parallel database sessions (user_scores.py)
    executor_def=dg.in_process_executor,
)

batch_001_rankings_job = dg.define_asset_job(
    BATCH_001_RANKINGS_JOB,
    selection=dg.AssetSelection.assets("rankings") | dg.AssetSelection.checks_for_assets("users"),
    description=(
        "BATCH-001, run 2 of 2, started when the scoring of D succeeded: check users against the data "
        "contract, replace the rankings of business date D atomically and check them. Needs every user-ID "
        "range of user_scores for D, computed from the current aggregates."
    ),
    tags=_BATCH_001_TAGS,
    executor_def=dg.in_process_executor,
)
