"""Names shared by the definitions, the CLI, the docs and other teams' jobs (BATCH-003 joins these)."""

# Run tag: the business date D (YYYY-MM-DD) a run computes. Absent: the last complete JST day at the time
# the run was created.
BUSINESS_DATE_TAG = "ranking/business_date"

# Run tag that every job writing the rankings table carries (BATCH-001 and BATCH-003), whatever its value;
# dagster.yaml limits runs carrying it to 1 at a time, so one waits QUEUED while the other runs.
RANKINGS_WRITER_TAG = "ranking/rankings_writer"

# Concurrency pool of every op/asset that writes the rankings table, limit 1. Unlike the run tag it also
# covers UI "Materialize" runs and backfills, which do not carry job tags.
RANKINGS_WRITER_POOL = "rankings_writers"
RANKINGS_WRITER_POOL_LIMIT = 1

# Run tag asking a batch run to recompute every user-ID range even when a completed, up-to-date result
# exists for the date (normally a batch run resumes and skips those).
FORCE_RECOMPUTE_TAG = "ranking/force_recompute"

BATCH_001_JOB = "batch_001_job"
BATCH_000_JOB = "batch_000_job"

OWNERS = ["team:data-platform"]
ASSET_GROUP = "ranking"

# Asset checks on rankings.
RANKINGS_INTEGRITY_CHECK = "rankings_integrity"
RANKINGS_ROW_COUNT_ANOMALY_CHECK = "rankings_row_count_anomaly"

# Process IDs of the design document: the lock key is batch:lock:{process_id}.
BATCH_000_PROCESS_ID = "BATCH-000"
BATCH_001_PROCESS_ID = "BATCH-001"

# Alerts (design 6.1). A run gets these tags once it has been alerted on, so one event never alerts twice
# (even if Dagster records a second failure event for it, or the sensor's cursor is reset).
FAILURE_ALERTED_TAG = "ranking/failure_alerted"
LONG_RUN_WARNED_TAG = "ranking/long_run_warned"
LONG_RUN_WARNING_SECONDS = 15 * 60  # design 6.1: a run over 15 minutes warns

# Run tag on runs that automation (the schedule or the gate sensor) started: at most one per business date.
LAUNCHED_BY_TAG = "ranking/launched_by"
