"""Jobs: BATCH-000 (daily aggregation) and BATCH-001 (scores and rankings for one business date)."""

import dagster as dg

from ranking_pipeline.constants import BATCH_000_JOB, BATCH_001_JOB, RANKINGS_WRITER_TAG

batch_000_job = dg.define_asset_job(
    BATCH_000_JOB,
    selection=dg.AssetSelection.assets("daily_order_aggregates"),
    description="BATCH-000: aggregate the completed orders of one JST day (or a range of days, one run).",
    executor_def=dg.in_process_executor,
)

# One run per business date: every user-ID range of user_scores, then the rankings replace. One run per
# batch makes the BATCH-003 exclusion tag, max runtime, failure/success alerts and BATCH-002's trigger
# line up.
batch_001_job = dg.define_asset_job(
    BATCH_001_JOB,
    selection=dg.AssetSelection.assets("user_scores", "rankings"),
    description=(
        "BATCH-001: score every user-ID range for business date D (run tag ranking/business_date) and "
        "replace the rankings of D atomically."
    ),
    tags={RANKINGS_WRITER_TAG: "BATCH-001", "dagster/max_runtime": "1800"},
    executor_def=dg.in_process_executor,
)
