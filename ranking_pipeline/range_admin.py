"""`ranking-pipeline ranges show | plan | apply`: the cut of user-ID ranges, as an operator sees and sets it.

`show` lists the stored cuts and how the latest scored date's rows spread over its ranges; `plan` computes a
balanced cut from today's user base and shows how the latest scored date's users would spread over it;
`apply --from D` stores that cut for D and later dates (dates already scored keep theirs).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ranking_pipeline.lib.business_date import first_business_date, last_complete_day
from ranking_pipeline.lib.ranges import (
    BALANCE_LIMIT,
    USER_ID_RANGES,
    CutPlan,
    RangeCut,
    RangeCutError,
    UserIdRange,
    all_cuts,
    apply_cut,
    balance,
    cut_in_force,
    latest_scored_date,
    plan_cut,
)
from ranking_pipeline.lib.state import USER_SCORES_ASSET, partition_runs_for

# Slot i + 1 holds the users from boundaries[i] on: width_bucket counts the boundaries at or below the ID.
_ROWS_PER_PLANNED_RANGE = sa.text(
    "SELECT width_bucket(user_id, CAST(:boundaries AS BIGINT[])) AS bucket, count(*) FROM user_scores "
    "WHERE score_date = :day GROUP BY bucket"
)


def _ranges_line(ranges: tuple[UserIdRange, ...], rows: list[int] | None = None) -> list[str]:
    counts = rows if rows is not None else [None] * len(ranges)
    return [
        f"    {r.key:<13} user IDs {r.describe():<32}" + (f" {n:>12,} rows" if n is not None else "")
        for r, n in zip(ranges, counts, strict=True)
    ]


def _balance_line(day: dt.date, rows: list[int]) -> str:
    ratio = balance(rows)
    if ratio is None:
        return f"  {day}: no rows scored"
    verdict = (
        "balanced"
        if ratio <= BALANCE_LIMIT
        else "OUT OF BALANCE: re-cut with `ranking-pipeline ranges plan`, then `ranges apply --from DATE`"
    )
    return f"  {day}: largest range / mean = {ratio:.2f} (limit {BALANCE_LIMIT}): {verdict}"


def show(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        cuts = all_cuts(connection)
        latest = latest_scored_date(connection)
        if not cuts:
            return ["no cut of user-ID ranges stored yet: the first scoring stores a balanced one"]
        lines = ["cuts of user-ID ranges (each in force from its first date until the next one's):"]
        for cut in cuts:
            lines += [f"  {cut.describe()}: {cut.origin}", *_ranges_line(cut.ranges)]
        if latest is None:
            return [*lines, "no date scored yet"]
        cut = cut_in_force(connection, latest)
        runs = partition_runs_for(connection, USER_SCORES_ASSET, [latest])
    done = [runs.get((latest, slot.key)) for slot in USER_ID_RANGES]
    rows = [(run.row_count or 0) if run else 0 for run in done]
    pairs = zip(USER_ID_RANGES, done, strict=True)
    stale = [slot.key for slot, run in pairs if run and run.range_cut != cut.cut_id]
    lines.append(f"latest scored date {latest}, under {cut.describe()}: rows per range")
    lines += _ranges_line(cut.ranges, rows)
    if stale:
        lines.append(f"  computed under another cut (re-run the date): {', '.join(stale)}")
    return [*lines, _balance_line(latest, rows)]


def _planned_rows(connection: Connection, plan: CutPlan, day: dt.date) -> list[int]:
    found = dict(
        connection.execute(_ROWS_PER_PLANNED_RANGE, {"boundaries": list(plan.boundaries), "day": day}).all()
    )
    return [found.get(bucket, 0) for bucket in range(len(USER_ID_RANGES))]


def plan(engine: Engine) -> tuple[CutPlan, list[str]]:
    """A balanced cut from the latest aggregated day, and what it would do to the latest scored date."""
    with engine.connect() as connection:
        planned = plan_cut(connection, last_complete_day())
        preview = RangeCut(0, last_complete_day(), planned.boundaries, "planned")
        latest = latest_scored_date(connection)
        rows = _planned_rows(connection, planned, latest) if latest is not None else None
    lines = [f"balanced cut: {planned.describe()}"]
    if rows is None:
        return planned, [*lines, *_ranges_line(preview.ranges)]
    lines += [f"  with the users scored for {latest}:", *_ranges_line(preview.ranges, rows)]
    return planned, [*lines, _balance_line(latest, rows)]


def apply(engine: Engine, first_date: dt.date) -> list[str]:
    """Plan a balanced cut and store it from ``first_date`` on."""
    if first_date < first_business_date():
        raise RangeCutError(
            f"--from {first_date} is before the first business date {first_business_date()} "
            "(RANKING_FIRST_BUSINESS_DATE); nothing was changed"
        )
    planned, lines = plan(engine)
    origin = f"applied by `ranges apply`: {planned.describe()}"
    cut = apply_cut(engine, first_date, planned.boundaries, origin)
    return [
        *lines,
        f"stored {cut.describe()}: business dates from {first_date} on are scored under it; earlier dates "
        "keep the cut they were scored under",
    ]
