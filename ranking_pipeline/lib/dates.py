"""Business dates: JST calendar days, the 30-day window, and parsing dates people type."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")
WINDOW_DAYS = 30


class InvalidBusinessDateError(ValueError):
    """A business date that is not a real YYYY-MM-DD calendar date."""


def parse_business_date(text: str, *, source: str = "business date") -> dt.date:
    """Parse ``YYYY-MM-DD`` strictly, naming where the bad value came from."""
    cleaned = text.strip()
    try:
        if len(cleaned) != len("YYYY-MM-DD"):
            raise ValueError(cleaned)
        return dt.date.fromisoformat(cleaned)
    except ValueError:
        raise InvalidBusinessDateError(
            f"invalid {source} {text!r}: expected a calendar date as YYYY-MM-DD, for example 2026-11-27"
        ) from None


def today_jst(now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(tz=JST)).astimezone(JST).date()


def yesterday_jst(now: dt.datetime | None = None) -> dt.date:
    """The last complete JST day: the business date of a run started at ``now``."""
    return today_jst(now) - dt.timedelta(days=1)


def jst_midnight(day: dt.date) -> dt.datetime:
    """00:00:00 JST at the start of ``day`` as an aware datetime."""
    return dt.datetime.combine(day, dt.time(), tzinfo=JST)


def window_days(business_date: dt.date) -> list[dt.date]:
    """W(D): the 30 JST days D-29 ... D, oldest first."""
    return [business_date - dt.timedelta(days=offset) for offset in range(WINDOW_DAYS - 1, -1, -1)]


def window_start(business_date: dt.date) -> dt.date:
    return business_date - dt.timedelta(days=WINDOW_DAYS - 1)
