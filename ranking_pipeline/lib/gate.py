"""The upstream gate (design 1): BATCH-001 for D starts at 03:00 JST (the schedule) once BATCH-000 has
aggregated every JST day of W(D); if that happens later, it starts then (the catch-up sensor, from 03:05),
until a give-up time. Automation starts at most one batch per date and never one for a date already ranked
from the same aggregates (a person may always run a date)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ranking_pipeline.lib import settings
from ranking_pipeline.lib.business_date import JST, describe_days

SCHEDULED_START_JST = dt.time(3, 0)
CATCH_UP_FROM_JST = dt.time(3, 5)  # the catch-up sensor leaves the 03:00 start to the schedule
DEFAULT_GIVE_UP_AT_JST = dt.time.fromisoformat(settings.default("RANKING_GATE_GIVE_UP_AT_JST"))


def parse_time_of_day(text: str, *, source: str) -> dt.time:
    try:
        hours, minutes = text.strip().split(":")
        return dt.time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(
            f"invalid {source} {text!r}: expected a JST time of day as HH:MM, e.g. 09:00"
        ) from None


@dataclass(frozen=True)
class GateDecision:
    launch: bool
    reason: str
    gave_up: bool = False


def gate_decision(
    business_date: dt.date,
    now: dt.datetime,
    missing_days: list[dt.date],
    already_done: str | None,
    give_up_at: dt.time = DEFAULT_GIVE_UP_AT_JST,
    *,
    not_before: dt.time | None = None,
) -> GateDecision:
    """Whether automation should start BATCH-001 for ``business_date`` at ``now``.

    ``already_done`` says why no batch is needed (one was started automatically, or D is already ranked
    from the same aggregates); None when a batch is needed.
    """
    local = now.astimezone(JST)
    start = not_before or SCHEDULED_START_JST
    if local.time() < start:
        return GateDecision(
            False, f"before {start:%H:%M} JST: BATCH-001 for {business_date} starts at 03:00 (the schedule)"
        )
    if already_done:
        return GateDecision(False, f"BATCH-001 for {business_date}: {already_done}")
    if not missing_days:
        return GateDecision(
            True, f"every day of W({business_date}) is aggregated: starting BATCH-001 for {business_date}"
        )
    waiting = (
        f"BATCH-000 has not finished: daily_order_aggregates lacks {describe_days(missing_days)} "
        f"of W({business_date})"
    )
    give_up = dt.datetime.combine(business_date + dt.timedelta(days=1), give_up_at, tzinfo=JST)
    if local >= give_up:
        return GateDecision(
            False,
            f"gave up on BATCH-001 for {business_date} at {give_up_at:%H:%M} JST: {waiting}. "
            'Run it by hand once BATCH-000 is done (README: "Re-running a date"); the missed-ranking alert '
            "says so to on-call",
            gave_up=True,
        )
    return GateDecision(
        False,
        f"{waiting}; BATCH-001 for {business_date} starts as soon as it lands, until {give_up_at:%H:%M} JST",
    )
