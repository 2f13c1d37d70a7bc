"""Names shared by the definitions, the CLI, the docs and other teams' jobs (BATCH-003 joins these)."""

# Run tag naming the business date D (YYYY-MM-DD) of a batch run. The partitions of a run decide what it
# computes; a run carrying this tag must agree with them (a disagreeing or invalid tag fails the run at once).
BUSINESS_DATE_TAG = "ranking/business_date"

# Run tag of a ranking run started because scores succeeded: the id of the run (or backfill) that scored
# the date. A batch is that scoring and this ranking: the ranking run takes over the batch lock the scoring
# run handed over, and the 30 minutes are counted from the scoring run's start.
SCORED_BY_TAG = "ranking/scored_by"

# Run tag of a scoring run whose ranking runs in the same process right after it (`ranking-pipeline run`):
# the sensor that starts a ranking run after scores succeeded leaves such a run alone.
RANKED_IN_PROCESS_TAG = "ranking/ranked_in_process"

# Dagster's own tag naming the backfill a run belongs to.
BACKFILL_TAG = "dagster/backfill"

# Run tag that every job writing the rankings table carries (BATCH-001 and BATCH-003), whatever its value;
# dagster.yaml limits runs carrying it to 1 at a time, so one waits QUEUED while the other runs.
RANKINGS_WRITER_TAG = "ranking/rankings_writer"

# Concurrency pool of every op/asset that writes the rankings table, limit 1. Unlike the run tag it also
# covers UI "Materialize" runs and backfills, which do not carry job tags.
RANKINGS_WRITER_POOL = "rankings_writers"
RANKINGS_WRITER_POOL_LIMIT = 1

# Job tag of the batch jobs: their runs resume (skip user-ID ranges already computed for D from the same
# aggregates). A UI materialization of user_scores recomputes what it selected.
RESUME_TAG = "ranking/resume"

# Run tag asking for a full recompute: the aggregates of W(D) are re-read from orders and every user-ID range
# is scored again, even when a completed, up-to-date result exists.
FORCE_RECOMPUTE_TAG = "ranking/force_recompute"

BATCH_000_JOB = "batch_000_job"
BATCH_001_SCORES_JOB = "batch_001_scores_job"
BATCH_001_RANKINGS_JOB = "batch_001_rankings_job"
BATCH_001_JOBS = (BATCH_001_SCORES_JOB, BATCH_001_RANKINGS_JOB)
# rankings' checks for the business dates picked in the UI, without re-ranking (not the batch: never alerts).
RANKINGS_CHECKS_JOB = "rankings_checks_job"

# The batch's time limits (design 1 and 6.1), counted from the start of its scoring run.
BATCH_MAX_RUNTIME_SECONDS = 30 * 60
LONG_RUN_WARNING_SECONDS = 15 * 60
MAX_RUNTIME_TAG = "dagster/max_runtime"

OWNERS = ["team:data-platform"]
ASSET_GROUP = "ranking"

# Asset checks on the input tables (the data contract), blocking what reads them in the same run.
ORDERS_CONTRACT_CHECK = "orders_meet_the_contract"
USERS_CONTRACT_CHECK = "users_meet_the_contract"

# Asset checks on rankings (per business date).
RANKINGS_INTEGRITY_CHECK = "rankings_integrity"
RANKINGS_ROW_COUNT_ANOMALY_CHECK = "rankings_row_count_anomaly"

# Process IDs of the design document: the lock key is batch:lock:{process_id}.
BATCH_000_PROCESS_ID = "BATCH-000"
BATCH_001_PROCESS_ID = "BATCH-001"

# Alerts (design 6.1). A run gets these tags once it has been alerted on, so one event never alerts twice
# (even if Dagster records a second failure event for it, or the sensor's cursor is reset).
FAILURE_ALERTED_TAG = "ranking/failure_alerted"
LONG_RUN_WARNED_TAG = "ranking/long_run_warned"

# Run tag on runs that automation (the BATCH-001 schedule, its catch-up sensor, the BATCH-000 schedule)
# started: at most one automated batch per business date.
LAUNCHED_BY_TAG = "ranking/launched_by"
