"""The upstream gate (design 1): BATCH-001 for D starts at 03:00 JST only once BATCH-000 has aggregated
every JST day of W(D); if that happens later, it starts then, until a give-up time; automation never starts
a second run for one date (a person may)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ranking_pipeline.lib.dates import JST

SCHEDULED_START_JST = dt.time(3, 0)
# The sensor leaves the 03:00 tick to the schedule, then takes over.
SENSOR_TAKES_OVER_JST = dt.time(3, 5)
DEFAULT_GIVE_UP_AT_JST = dt.time(9, 0)


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


def _missing_text(missing_days: list[dt.date]) -> str:
    shown = ", ".join(str(day) for day in missing_days[:5])
    return shown + (f" and {len(missing_days) - 5} more" if len(missing_days) > 5 else "")


def gate_decision(
    business_date: dt.date,
    now: dt.datetime,
    missing_days: list[dt.date],
    launched_run_id: str | None,
    give_up_at: dt.time = DEFAULT_GIVE_UP_AT_JST,
) -> GateDecision:
    """Whether automation should start BATCH-001 for ``business_date`` at ``now``."""
    if launched_run_id:
        return GateDecision(
            False, f"BATCH-001 for {business_date} was already started automatically (run {launched_run_id})"
        )
    if not missing_days:
        return GateDecision(
            True, f"every day of W({business_date}) is aggregated: starting BATCH-001 for {business_date}"
        )
    waiting = (
        f"BATCH-000 has not finished: daily_order_aggregates lacks {_missing_text(missing_days)} "
        f"of W({business_date})"
    )
    local = now.astimezone(JST)
    give_up = dt.datetime.combine(business_date + dt.timedelta(days=1), give_up_at, tzinfo=JST)
    if local >= give_up:
        return GateDecision(
            False,
            f"gave up on BATCH-001 for {business_date} at {give_up_at:%H:%M} JST: {waiting}. "
            "Run it by hand once BATCH-000 is done (README: re-running by hand)",
            gave_up=True,
        )
    return GateDecision(
        False,
        f"{waiting}; BATCH-001 for {business_date} starts as soon as it lands, until {give_up_at:%H:%M} JST",
    )
