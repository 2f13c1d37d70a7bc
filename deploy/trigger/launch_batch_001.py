#!/usr/bin/env python3
"""Launch BATCH-001 for one business date through Dagster's GraphQL API: what a cron job, an EventBridge
target or a webhook relay runs. Python 3.8+, standard library only.

    DAGSTER_URL=https://dagster.internal deploy/trigger/launch_batch_001.py [--force] [YYYY-MM-DD]

The date defaults to yesterday in JST (the last JST day that has ended). It launches the batch's scoring run
(every user-ID range of D); when that run succeeds, the deployment's sensor start_rankings_on_scores_success
starts the ranking run of D, as after the 03:00 schedule. The run waits QUEUED while BATCH-003 or another
BATCH-001 run is in progress. Prints the scoring run's id.

--force recomputes D from the orders (late orders, fixed data): it first launches a BATCH-000 run
(batch_000_job) re-aggregating the 30 days of W(D), waits for it to succeed (up to DAGSTER_WAIT_SECONDS,
default 3600; its run id goes to stderr), then launches the scoring run tagged ranking/force_recompute=true,
so every range is scored again from the new aggregates. A failed aggregation launches nothing more (exit 1).

Before launching anything it checks its arguments and settings, asks Dagster for the deployment's first
business date and refuses (exit 2, one line, nothing launched) a bad argument, a bad setting or a date outside
the span the deployment ranks. Exit 1: Dagster did not answer or did not accept a run. No line ever shows
DAGSTER_AUTH's value.

DAGSTER_URL   the webserver (default http://127.0.0.1:3000): http(s)://host[:port], no user:password@
DAGSTER_AUTH  optional extra header for a proxy in front of it, e.g. "Authorization: Bearer <token>"
DAGSTER_WAIT_SECONDS  with --force: how long to wait for the aggregation run (default 3600)
"""

import datetime as dt
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

LOCATION, REPOSITORY = "ranking_pipeline", "__repository__"
SCORES_JOB = "batch_001_scores_job"
AGGREGATION_JOB = "batch_000_job"
WINDOW_DAYS = 30  # W(D) = D-29 .. D (the project's lib/business_date.py; this script imports nothing of it)
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
LAUNCHED_BY = {"ranking/launched_by": "launch_batch_001.py"}
JST = dt.timezone(dt.timedelta(hours=9))
# The deployment's own partitions: the first business date and the user-ID ranges of user_scores.
PARTITIONS_QUERY = """
{ assetNodeOrError(assetKey: {path: ["user_scores"]}) {
    __typename
    ... on AssetNode { partitionKeysByDimension(startIdx: 0, endIdx: 1) { name partitionKeys } }
} }
"""
LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""
RUN_STATUS = """
query Status($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # no header value holds them (a tab may)


def _secrets():
    """DAGSTER_AUTH's value and its header value: never in a message."""
    auth = os.environ.get("DAGSTER_AUTH", "")
    pieces = {auth, auth.strip(), auth.partition(":")[2].strip()}
    pieces |= set(auth.partition(":")[2].split())  # "Bearer <token>": the token alone too
    return sorted((piece for piece in pieces if len(piece) >= 4), key=len, reverse=True)


def fail(code, message):
    for secret in _secrets():
        message = message.replace(secret, "***")
    print(f"launch_batch_001: {' '.join(message.splitlines())}", file=sys.stderr)
    sys.exit(code)


def dagster_url():
    """DAGSTER_URL, checked: http(s), a host, a numeric port if any, no credentials (exit 2 otherwise)."""
    url = os.environ.get("DAGSTER_URL", "").strip() or "http://127.0.0.1:3000"
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # its message quotes the value
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        fail(
            2,
            "DAGSTER_URL: expected the webserver's http(s)://host[:port], e.g. http://dagster.internal:3000",
        )
    if "@" in parts.netloc:
        fail(2, "DAGSTER_URL: no user:password@ in the URL; pass credentials as a header in DAGSTER_AUTH")
    return url.rstrip("/")


def auth_header():
    """DAGSTER_AUTH as {name: value}; exit 2 when it is set but not one HTTP header."""
    auth = os.environ.get("DAGSTER_AUTH", "")
    if not auth.strip():
        return {}
    name, colon, value = auth.partition(":")
    header = colon and HEADER_NAME.fullmatch(name.strip()) and value.strip() and not CONTROL.search(value)
    if not header:
        fail(
            2,
            "DAGSTER_AUTH=(value hidden): expected one HTTP header as 'Name: value', e.g. "
            "'Authorization: Bearer <token>'",
        )
    return {name.strip(): value.strip()}


def graphql(url, query, variables):
    headers = {"Content-Type": "application/json", **auth_header()}
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        fail(1, f"cannot reach Dagster at {url}: {error}; nothing was launched")
    if answer.get("errors"):
        fail(1, f"Dagster refused the request: {json.dumps(answer['errors'])[:500]}; nothing was launched")
    return answer["data"]


def launch(url, job, tags):
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": key, "value": value} for key, value in tags.items()]},
    }
    result = graphql(url, LAUNCH, {"executionParams": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        fail(1, f"Dagster did not launch {job}: {result.get('message') or result['__typename']}")
    return result["run"]["runId"]


def wait_seconds():
    value = os.environ.get("DAGSTER_WAIT_SECONDS", "").strip() or "3600"
    if not value.isdigit() or int(value) == 0:
        fail(2, f"DAGSTER_WAIT_SECONDS={value!r}: expected a whole number of seconds above 0, e.g. 3600")
    return int(value)


def reaggregate_window(url, business_date, patience):
    """One BATCH-000 run over W(D)'s 30 days, waited for; exit 1 unless it succeeded."""
    first = business_date - dt.timedelta(days=WINDOW_DAYS - 1)
    tags = {RANGE_START: first.isoformat(), RANGE_END: business_date.isoformat(), **LAUNCHED_BY}
    run_id = launch(url, AGGREGATION_JOB, tags)
    print(
        f"launch_batch_001: {AGGREGATION_JOB} run {run_id} re-aggregates {first} .. {business_date}",
        file=sys.stderr,
    )
    deadline = time.monotonic() + patience
    while True:
        status = graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"].get("status")
        if status == "SUCCESS":
            return
        if status in FINISHED or time.monotonic() > deadline:
            ended = f"ended {status}" if status in FINISHED else f"still {status} after {patience} s"
            fail(
                1, f"{AGGREGATION_JOB} run {run_id} {ended}; the scoring of {business_date} was not launched"
            )
        time.sleep(5)


def main(argv):
    force = "--force" in argv
    dates = [arg for arg in argv if arg != "--force"]
    if len(dates) > 1 or any(arg.startswith("-") for arg in dates):
        fail(
            2,
            "usage: launch_batch_001.py [--force] [YYYY-MM-DD] (the business date D; default yesterday JST)",
        )
    last = dt.datetime.now(tz=JST).date() - dt.timedelta(days=1)
    try:
        if dates and len(dates[0]) != len("YYYY-MM-DD"):
            raise ValueError(dates[0])
        business_date = dt.date.fromisoformat(dates[0]) if dates else last
    except ValueError:
        fail(2, f"invalid date {dates[0]!r}: expected a calendar date as YYYY-MM-DD, for example 2026-11-27")
    url = dagster_url()
    auth_header()
    patience = wait_seconds() if force else 0
    node = graphql(url, PARTITIONS_QUERY, {})["assetNodeOrError"]
    if node["__typename"] != "AssetNode":
        fail(
            1,
            f"Dagster at {url} has no user_scores asset ({node['__typename']}); is ranking_pipeline loaded?",
        )
    dimensions = {
        dimension["name"]: dimension["partitionKeys"] for dimension in node["partitionKeysByDimension"]
    }
    first, ranges = dt.date.fromisoformat(dimensions["date"][0]), dimensions["user_id_range"]
    if not first <= business_date <= last:
        why = (
            "it has not ended yet in JST" if business_date > last else "it is before the first business date"
        )
        fail(
            2,
            f"{business_date} is not a business date of this deployment ({why}): dates run from {first} "
            f"(RANKING_FIRST_BUSINESS_DATE) to {last} (the last JST day that has ended); nothing was "
            "launched",
        )
    day = business_date.isoformat()
    tags = {"ranking/business_date": day, **LAUNCHED_BY}
    if force:
        reaggregate_window(url, business_date, patience)
        tags["ranking/force_recompute"] = "true"
    range_tags = {RANGE_START: f"{day}|{ranges[0]}", RANGE_END: f"{day}|{ranges[-1]}"}
    print(launch(url, SCORES_JOB, {**tags, **range_tags}))


if __name__ == "__main__":
    main(sys.argv[1:])
