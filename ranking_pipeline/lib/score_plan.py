"""Which user-ID ranges of a business date to score, and how: a pure function of the bookkeeping; and
whether D's scores are all up to date, which ranking D needs (``fresh_scores`` reads the bookkeeping).

A (D, range) is up to date when it was completed from the aggregates W(D) has now (their fingerprint) under
the cut of user-ID ranges in force for D. Runs of the batch jobs skip such ranges (they resume); a step
retry never redoes its own finished ranges. A range is scored the nightly way, from D-1's scores plus day
D minus day D-30, when every range of D-1 holding some of its users is up to date for D-1 (under D-1's cut,
which may differ from D's: the SQL reads D-1's rows by user ID, not by range); otherwise from the 30 days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from ranking_pipeline.lib.business_date import window_days
from ranking_pipeline.lib.ranges import USER_ID_RANGES, RangeCut, UserIdRange, cut_in_force
from ranking_pipeline.lib.state import (
    COMPLETED,
    USER_SCORES_ASSET,
    PartitionRun,
    aggregates_fingerprint,
    partition_runs_for,
)


@dataclass(frozen=True)
class DateInputs:
    """What D's scoring is decided from."""

    business_date: dt.date
    cut: RangeCut
    fingerprint: str  # of the aggregates of W(D)
    previous_cut: RangeCut  # the cut of D-1
    previous_fingerprint: str  # of the aggregates of W(D-1)
    runs: dict[tuple[dt.date, str], PartitionRun]  # user_scores bookkeeping of D and D-1

    @property
    def previous_date(self) -> dt.date:
        return self.business_date - dt.timedelta(days=1)


@dataclass(frozen=True)
class RangeWork:
    user_range: UserIdRange
    from_previous: bool


@dataclass(frozen=True)
class ScoringPlan:
    compute: list[RangeWork]
    # up to date already: (range, its bookkeeping), and whether this run reported it in an earlier attempt
    skipped: list[tuple[UserIdRange, PartitionRun, bool]]


def is_up_to_date(done: PartitionRun | None, fingerprint: str, cut: RangeCut) -> bool:
    """Completed from the aggregates whose fingerprint is ``fingerprint``, under ``cut``."""
    return (
        done is not None
        and done.status == COMPLETED
        and done.input_fingerprint == fingerprint
        and done.range_cut == cut.cut_id
    )


@dataclass(frozen=True)
class FreshScores:
    """D's user_scores against the aggregates W(D) has now and D's cut of user-ID ranges."""

    fingerprint: str  # of the aggregates of W(D)
    rows: dict[str, int]  # scored rows per range key (0 where not up to date)
    not_ready: list[str]  # the range keys not up to date: D cannot be ranked while there are any


def fresh_scores(connection: Connection, business_date: dt.date) -> FreshScores:
    fingerprint = aggregates_fingerprint(connection, window_days(business_date))
    cut = cut_in_force(connection, business_date)
    score_runs = partition_runs_for(connection, USER_SCORES_ASSET, [business_date])
    runs = {slot.key: score_runs.get((business_date, slot.key)) for slot in USER_ID_RANGES}
    not_ready = [key for key, run in runs.items() if cut is None or not is_up_to_date(run, fingerprint, cut)]
    rows = {key: (run.row_count or 0) if run is not None else 0 for key, run in runs.items()}
    return FreshScores(fingerprint=fingerprint, rows=rows, not_ready=not_ready)


def _previous_covers(inputs: DateInputs, user_range: UserIdRange) -> bool:
    """Every range of D-1 holding some of ``user_range``'s users is up to date for D-1."""
    return all(
        is_up_to_date(
            inputs.runs.get((inputs.previous_date, earlier.key)),
            inputs.previous_fingerprint,
            inputs.previous_cut,
        )
        for earlier in inputs.previous_cut.ranges
        if earlier.overlaps(user_range)
    )


def plan_scoring(
    inputs: DateInputs, range_keys: list[str], run_id: str, *, resumes: bool, forced: bool
) -> ScoringPlan:
    """The selected ranges of D to compute (and how), and those left as they are."""
    compute, skipped = [], []
    for key in range_keys:
        user_range = inputs.cut.range_for_key(key)
        done = inputs.runs.get((inputs.business_date, key))
        if is_up_to_date(done, inputs.fingerprint, inputs.cut) and (resumes or done.run_id == run_id):
            skipped.append((user_range, done, done.run_id == run_id))
        else:
            compute.append(RangeWork(user_range, not forced and _previous_covers(inputs, user_range)))
    return ScoringPlan(compute, skipped)
