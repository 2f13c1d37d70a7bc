"""Run the batch for one business date through Dagster, on a real instance: what `ranking-pipeline run` does.

The days of W(D) not yet aggregated (with --force: all 30) are aggregated first, one BATCH-000 run per
contiguous span; then the batch for D: a scoring run (every user-ID range of D) and, when it succeeded, a
ranking run (the rankings of D), the same two runs the nightly schedule and start_rankings_on_scores_success
make, with the same tags. Both run here, in this process; the scoring run says so (ranking/ranked_in_process),
so a daemon's sensor does not start a second ranking run for it.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import dagster as dg

from ranking_pipeline.constants import (
    BATCH_000_JOB,
    BATCH_001_RANKINGS_JOB,
    BATCH_001_SCORES_JOB,
    FORCE_RECOMPUTE_TAG,
    LAUNCHED_BY_TAG,
    RANKED_IN_PROCESS_TAG,
)
from ranking_pipeline.defs.batch_requests import rankings_after
from ranking_pipeline.lib.business_date import (
    PARTITION_TAG,
    BusinessDate,
    aggregation_partition_tags,
    contiguous_spans,
    days_between,
    first_aggregation_day,
    last_complete_day,
    missing_aggregate_days,
)
from ranking_pipeline.lib.contract import order_defects, raise_if_defects, user_defects
from ranking_pipeline.lib.queries import RankedUser, count_rows, read_rankings
from ranking_pipeline.lib.schema import rankings, user_scores
from ranking_pipeline.local_runs import RunOutcome, execute_job


class BatchRunFailed(RuntimeError):
    """A Dagster run of the batch ended in failure; the message carries its run id and first error."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__(outcome.failure)
        self.input_error = outcome.input_error  # caused by the input data: nothing was written
        self.run_id = outcome.run_id
        self.step = outcome.step  # the step that failed first
        self.causes = outcome.causes  # its error's class names, causes included


@dataclass
class BatchSummary:
    business_date: dt.date
    aggregated_days: list[dt.date]
    run_ids: list[str] = field(default_factory=list)
    scored_users: int = 0
    ranked_users: int = 0
    top: list[RankedUser] = field(default_factory=list)
    seconds: float = 0.0


def aggregate_days(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: dt.date, last: dt.date, *, quiet: bool = True
) -> str:
    """One batch_000_job run aggregating the JST days first..last; returns its run id."""
    outcome = execute_job(defs, BATCH_000_JOB, instance, aggregation_partition_tags(first, last), quiet=quiet)
    if outcome.failure:
        raise BatchRunFailed(outcome)
    return outcome.run_id


@dataclass(frozen=True)
class SeededAggregation:
    """What BATCH-000 aggregated of freshly seeded orders: its run (None: no day could be) and the days."""

    run_id: str | None
    days: list[dt.date]


def aggregate_seeded_days(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: dt.date, last: dt.date
) -> SeededAggregation:
    """One BATCH-000 run over the seeded JST days first..last that are aggregation days (ended, not before the
    first window): the sample data then looks like a running system's, every seeded day aggregated."""
    days = [day for day in days_between(first, last) if first_aggregation_day() <= day <= last_complete_day()]
    if not days:
        return SeededAggregation(run_id=None, days=[])
    return SeededAggregation(run_id=aggregate_days(defs, instance, days[0], days[-1]), days=days)


def run_batch_runs(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    business_date: BusinessDate,
    *,
    quiet: bool = True,
    force: bool = False,
    launched_by: str | None = None,
) -> list[str]:
    """The two runs of a batch for D: the scoring run, then, if it succeeded, the ranking run (which takes
    over the lock the scoring run handed over). Raises BatchRunFailed naming the run that failed."""
    tags = {**business_date.scoring_tags(), RANKED_IN_PROCESS_TAG: "true"}
    if launched_by:
        tags[LAUNCHED_BY_TAG] = launched_by
    if force:
        tags[FORCE_RECOMPUTE_TAG] = "true"
    scoring = execute_job(defs, BATCH_001_SCORES_JOB, instance, tags, quiet=quiet)
    if scoring.failure:
        raise BatchRunFailed(scoring)
    [follow] = rankings_after(instance, instance.get_run_by_id(scoring.run_id))  # as the sensor requests it
    tags = {**follow.tags, PARTITION_TAG: follow.partition_key}
    ranking = execute_job(defs, BATCH_001_RANKINGS_JOB, instance, tags, quiet=quiet)
    if ranking.failure:
        raise BatchRunFailed(ranking)
    return [scoring.run_id, ranking.run_id]


def database_of(defs: dg.Definitions):
    """The project's database resource, its settings resolved (as a run would see them)."""
    return defs.resources["database"].process_config_and_initialize()


def run_batch(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    business_date: BusinessDate,
    *,
    quiet: bool = True,
    force: bool = False,
) -> BatchSummary:
    """The batch for D (validated when it was built), after aggregating what W(D) lacks (all of it: force)."""
    started = time.monotonic()
    day = business_date.day
    engine = database_of(defs).ready_engine(patience=0)  # a person is waiting: say so at once
    with engine.connect() as connection:
        # --force re-reads every day's orders (late orders, fixes); otherwise only the days never aggregated
        to_aggregate = business_date.window if force else missing_aggregate_days(connection, day)
        # the data contract, before any run starts: one line and exit 2 instead of a failed run
        raise_if_defects(user_defects(connection), "users")
        for first, last in contiguous_spans(to_aggregate):
            raise_if_defects(order_defects(connection, first, last), f"the orders of {first} .. {last}")
    summary = BatchSummary(business_date=day, aggregated_days=to_aggregate)
    for first, last in contiguous_spans(to_aggregate):
        summary.run_ids.append(aggregate_days(defs, instance, first, last, quiet=quiet))
    summary.run_ids += run_batch_runs(defs, instance, business_date, quiet=quiet, force=force)
    with engine.connect() as connection:
        summary.scored_users = count_rows(connection, user_scores, "score_date", day)
        summary.ranked_users = count_rows(connection, rankings, "ranking_date", day)
        summary.top = read_rankings(connection, day, limit=10)
    summary.seconds = time.monotonic() - started
    return summary
