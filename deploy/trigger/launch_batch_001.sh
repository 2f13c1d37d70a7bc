#!/usr/bin/env bash
# Launch BATCH-001 for one business date through Dagster's GraphQL API: what a cron job, an EventBridge API
# destination or a webhook relay sends. Prints the run id; exits non-zero unless Dagster accepted the run.
#
#   DAGSTER_URL=https://dagster.internal deploy/trigger/launch_batch_001.sh 2025-06-30
#
# DAGSTER_URL      the webserver (default http://127.0.0.1:3000)
# DAGSTER_AUTH     optional extra header for a proxy in front of it, e.g. "Authorization: Bearer $TOKEN"
#
# The run is queued like any other: the run tag ranking/rankings_writer (limit 1, dagster.yaml) keeps it
# QUEUED while BATCH-003 or another BATCH-001 runs, and the batch's distributed lock applies inside it.
set -euo pipefail

business_date="${1:-}"
if ! [[ "$business_date" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then
  echo "usage: $0 YYYY-MM-DD (the business date D to rank)" >&2
  exit 2
fi
url="${DAGSTER_URL:-http://127.0.0.1:3000}"

# The partition range tags select every user-ID range of user_scores (ranking_pipeline/lib/ranges.py), as
# ranking_pipeline.batch_runner.batch_001_run_tags does.
read -r -d '' payload <<JSON || true
{
  "query": "mutation LaunchBatch(\$executionParams: ExecutionParams!) { launchRun(executionParams: \$executionParams) { __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }",
  "variables": {
    "executionParams": {
      "selector": {
        "repositoryLocationName": "ranking_pipeline",
        "repositoryName": "__repository__",
        "jobName": "batch_001_job"
      },
      "runConfigData": {},
      "executionMetadata": {
        "tags": [
          {"key": "ranking/business_date", "value": "$business_date"},
          {"key": "dagster/asset_partition_range_start", "value": "users_min_to_0124999"},
          {"key": "dagster/asset_partition_range_end", "value": "users_0875000_to_max"}
        ]
      }
    }
  }
}
JSON

headers=(-H "Content-Type: application/json")
if [ -n "${DAGSTER_AUTH:-}" ]; then headers+=(-H "$DAGSTER_AUTH"); fi
response=$(curl -sS --fail-with-body --max-time 60 -X POST "${headers[@]}" --data "$payload" "$url/graphql")
run_id=$(printf '%s' "$response" | grep -o '"runId": *"[^"]*"' | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/' || true)
if [ -z "$run_id" ]; then
  echo "Dagster did not launch the run: $response" >&2
  exit 1
fi
echo "$run_id"
