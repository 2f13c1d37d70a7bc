"""Run the batch for one business date through Dagster, on a real instance: what `ranking-pipeline run` does.

Missing daily aggregates of W(D) are computed first (one BATCH-000 run per contiguous span of missing days),
then BATCH-001 scores every user-ID range and replaces the rankings of D in one run.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ranking_pipeline.constants import BATCH_000_JOB, BATCH_001_JOB, BUSINESS_DATE_TAG, FORCE_RECOMPUTE_TAG
from ranking_pipeline.lib.dates import window_days
from ranking_pipeline.lib.db import check_reachable, get_engine
from ranking_pipeline.lib.queries import RankedUser, count_rows, read_rankings
from ranking_pipeline.lib.ranges import USER_ID_RANGES
from ranking_pipeline.lib.schema import ensure_output_tables, rankings, user_scores, validate_input_tables
from ranking_pipeline.lib.state import completed_days


class BatchRunFailed(RuntimeError):
    """A Dagster run of the batch ended in failure; the message carries its run id and first error."""


@dataclass
class BatchSummary:
    business_date: dt.date
    aggregated_days: list[dt.date]
    run_ids: list[str] = field(default_factory=list)
    scored_users: int = 0
    ranked_users: int = 0
    top: list[RankedUser] = field(default_factory=list)
    seconds: float = 0.0


def contiguous_spans(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """[(first, last), ...] covering the sorted days with no gaps inside a span."""
    spans: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if spans and day - spans[-1][1] == dt.timedelta(days=1):
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


def batch_001_run_tags(business_date: dt.date, *, force: bool = False) -> dict[str, str]:
    """Tags of a BATCH-001 run for D: the date, and the partition range covering every user-ID range;
    ``force`` recomputes ranges that a resumed run would skip."""
    tags = {
        BUSINESS_DATE_TAG: business_date.isoformat(),
        ASSET_PARTITION_RANGE_START_TAG: USER_ID_RANGES[0].key,
        ASSET_PARTITION_RANGE_END_TAG: USER_ID_RANGES[-1].key,
    }
    return {**tags, FORCE_RECOMPUTE_TAG: "true"} if force else tags


def describe_error(error) -> str:
    """The error's first line, and the root cause's when the error wraps one (as retries do)."""
    first_line = error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name
    root = error
    while root.cause is not None:
        root = root.cause
    if root is error:
        return first_line
    root_line = root.message.strip().splitlines()[0] if root.message.strip() else root.cls_name
    return f"{first_line.rstrip(':')}: {root_line}"


def _execute(job: dg.JobDefinition, instance: dg.DagsterInstance, tags: dict[str, str], quiet: bool) -> str:
    log_level = "WARNING" if quiet else "INFO"
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    result = job.execute_in_process(run_config=run_config, instance=instance, tags=tags, raise_on_error=False)
    if not result.success:
        failures = [event for event in result.all_events if event.is_step_failure]
        if not failures:
            raise BatchRunFailed(f"{job.name} run {result.run_id} failed; see the run's event log")
        reason = describe_error(failures[0].step_failure_data.error)
        raise BatchRunFailed(
            f"{job.name} run {result.run_id} failed in step {failures[0].step_key}: {reason}"
        )
    return result.run_id


def aggregate_days(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: dt.date, last: dt.date, *, quiet: bool = True
) -> str:
    """One batch_000_job run aggregating the JST days first..last; returns its run id."""
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
    }
    return _execute(defs.resolve_job_def(BATCH_000_JOB), instance, tags, quiet)


def run_batch(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    business_date: dt.date,
    *,
    quiet: bool = True,
    force: bool = False,
) -> BatchSummary:
    started = time.monotonic()
    engine = get_engine()
    check_reachable(engine)
    with engine.connect() as connection:
        validate_input_tables(connection)
    ensure_output_tables(engine)
    window = window_days(business_date)
    with engine.connect() as connection:
        missing = sorted(set(window) - completed_days(connection, window))
    summary = BatchSummary(business_date=business_date, aggregated_days=missing)
    for first, last in contiguous_spans(missing):
        summary.run_ids.append(aggregate_days(defs, instance, first, last, quiet=quiet))
    summary.run_ids.append(
        _execute(
            defs.resolve_job_def(BATCH_001_JOB),
            instance,
            batch_001_run_tags(business_date, force=force),
            quiet,
        )
    )
    with engine.connect() as connection:
        summary.scored_users = count_rows(connection, user_scores, "score_date", business_date)
        summary.ranked_users = count_rows(connection, rankings, "ranking_date", business_date)
        summary.top = read_rankings(connection, business_date, limit=10)
    summary.seconds = time.monotonic() - started
    return summary
