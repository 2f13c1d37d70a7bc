"""The business date D, in one place: which JST days a deployment ranks, the window W(D), the partition keys,
tags and run keys of a batch for D, and which days of a window still lack aggregates.

``BusinessDate`` is D as a value: built once where a date enters (the command line, a schedule tick, a run's
partition key), validated then, and handed on; what takes one never validates it again.

D is a JST calendar day. The dates this deployment ranks run from the first business date
(``RANKING_FIRST_BUSINESS_DATE``, default 2020-01-01) to the last JST day that has ended; a day not yet ended
is never a business date. Aggregation days reach 29 days further back, so every day of every window exists.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ranking_pipeline.constants import (
    BUSINESS_DATE_TAG,
)
from ranking_pipeline.lib import settings

JST = ZoneInfo("Asia/Tokyo")
WINDOW_DAYS = 30
FIRST_BUSINESS_DATE_ENV = "RANKING_FIRST_BUSINESS_DATE"
DEFAULT_FIRST_BUSINESS_DATE = dt.date.fromisoformat(settings.default(FIRST_BUSINESS_DATE_ENV))
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
_KEY_SEPARATOR = "|"


class BusinessDateError(ValueError):
    """A date that is not a calendar date, or not one this deployment ranks (one line, says the fix);
    ``source`` and ``day``: where the refused date came from and the date, when it is one."""

    def __init__(self, message: str, *, source: str | None = None, day: dt.date | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.day = day


def parse_date(text: str, *, source: str = "date") -> dt.date:
    """``YYYY-MM-DD``, strictly; the error names where the bad value came from."""
    cleaned = text.strip()
    try:
        if len(cleaned) != len("YYYY-MM-DD"):
            raise ValueError(cleaned)
        return dt.date.fromisoformat(cleaned)
    except ValueError:
        raise BusinessDateError(
            f"invalid {source} {text!r}: expected a calendar date as YYYY-MM-DD, for example 2026-11-27"
        ) from None


def first_business_date() -> dt.date:
    """The first date this deployment ranks: ``RANKING_FIRST_BUSINESS_DATE``, else 2020-01-01."""
    configured = os.environ.get(FIRST_BUSINESS_DATE_ENV, "").strip()
    if not configured:
        return DEFAULT_FIRST_BUSINESS_DATE
    return parse_date(configured, source=FIRST_BUSINESS_DATE_ENV)


def first_aggregation_day(first: dt.date | None = None) -> dt.date:
    """The first JST day whose orders are aggregated: the start of the first business date's window."""
    return window_start(first or first_business_date())


def now_jst() -> dt.datetime:
    return dt.datetime.now(tz=JST)


def today_jst(now: dt.datetime | None = None) -> dt.date:
    return (now or now_jst()).astimezone(JST).date()


def last_complete_day(now: dt.datetime | None = None) -> dt.date:
    """The last JST day that has ended: the business date of a batch started at ``now``."""
    return today_jst(now) - dt.timedelta(days=1)


def jst_midnight(day: dt.date) -> dt.datetime:
    """00:00:00 JST at the start of ``day`` as an aware datetime."""
    return dt.datetime.combine(day, dt.time(), tzinfo=JST)


def window_days(business_date: dt.date) -> list[dt.date]:
    """W(D): the 30 JST days D-29 ... D, oldest first."""
    return [business_date - dt.timedelta(days=offset) for offset in range(WINDOW_DAYS - 1, -1, -1)]


def window_start(business_date: dt.date) -> dt.date:
    return business_date - dt.timedelta(days=WINDOW_DAYS - 1)


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=offset) for offset in range((last - first).days + 1)]


def _span(now: dt.datetime | None) -> str:
    return (
        f"{first_business_date()} ({FIRST_BUSINESS_DATE_ENV}) to {last_complete_day(now)} "
        "(the last JST day that has ended)"
    )


def check_business_date(
    business_date: dt.date, *, source: str = "business date", now: dt.datetime | None = None
) -> dt.date:
    """D itself if this deployment ranks it, else a BusinessDateError naming the span and its setting."""
    if business_date > last_complete_day(now):
        why = f"{business_date} has not ended yet in JST"
    elif business_date < first_business_date():
        why = "it is before the first business date"
    else:
        return business_date
    raise BusinessDateError(
        f"{source} {business_date} is not a business date of this deployment ({why}): dates run from "
        f"{_span(now)}; nothing was run or written",
        source=source,
        day=business_date,
    )


def check_aggregation_days(first: dt.date, last: dt.date, *, now: dt.datetime | None = None) -> None:
    """Refuse aggregating a JST day that has not ended or lies before every window this deployment uses."""
    earliest = first_aggregation_day()
    if last > last_complete_day(now):
        why = f"{last} has not ended yet in JST"
    elif first < earliest:
        why = f"{first} is before {earliest}, the start of the first business date's window"
    else:
        return
    raise BusinessDateError(
        f"cannot aggregate the JST days {first} .. {last} ({why}): aggregation days run from {earliest} to "
        f"{last_complete_day(now)}, for business dates from {_span(now)}; nothing was run or written"
    )


@dataclass(frozen=True, order=True)
class BusinessDate:
    """A business date D of this deployment, validated when it was built (build it with ``of``,
    ``from_command_line``, ``from_tick`` or ``from_partition_key``), with what a batch for D is named by: its
    window W(D), partition keys, run tags and run keys."""

    day: dt.date

    @classmethod
    def of(
        cls, day: dt.date, *, source: str = "business date", now: dt.datetime | None = None
    ) -> BusinessDate:
        """``day`` if this deployment ranks it (at ``now``), else a BusinessDateError naming ``source``."""
        return cls(check_business_date(day, source=source, now=now))

    @classmethod
    def from_command_line(cls, day: dt.date | None, *, now: dt.datetime | None = None) -> BusinessDate:
        """``--date``, or the last JST day that has ended when it is not given."""
        return cls.of(day or last_complete_day(now), source="--date", now=now)

    @classmethod
    def from_tick(cls, now: dt.datetime) -> BusinessDate:
        """The date a schedule or sensor tick at ``now`` starts: yesterday in JST."""
        return cls.of(last_complete_day(now), source="the tick's business date", now=now)

    @classmethod
    def from_partition_key(cls, key: str, *, now: dt.datetime | None = None) -> BusinessDate:
        """The date of a partition key: ``2026-11-27`` or ``2026-11-27|range_1_of_8``."""
        day = parse_date(key.split(_KEY_SEPARATOR)[0], source="partition key")
        return cls.of(day, source="partition", now=now)

    def __str__(self) -> str:
        return self.day.isoformat()

    @property
    def window(self) -> list[dt.date]:
        """W(D): the 30 JST days D-29 ... D, oldest first."""
        return window_days(self.day)

    @property
    def previous_day(self) -> dt.date:
        return self.day - dt.timedelta(days=1)

    @property
    def partition_key(self) -> str:
        """D's partition of the date-partitioned assets (rankings, batch_metrics)."""
        return self.day.isoformat()

    def score_partition_keys(self) -> list[str]:
        """D's partitions of user_scores: one per user-ID range slot."""
        from ranking_pipeline.lib.ranges import USER_ID_RANGES

        return [score_partition_key(self.day, user_range.key) for user_range in USER_ID_RANGES]

    def scoring_tags(self) -> dict[str, str]:
        """Tags of the scoring run of D: the date and every user-ID range of it."""
        from ranking_pipeline.lib.ranges import USER_ID_RANGES

        return {
            BUSINESS_DATE_TAG: self.day.isoformat(),
            **scores_partition_tags(self.day, [user_range.key for user_range in USER_ID_RANGES]),
        }

    def run_key(self, job_name: str) -> str:
        """One automated run of each job per date."""
        return run_key(self.day, job_name)


# --- partition keys ----------------------------------------------------------------------------------


def score_partition_key(business_date: dt.date, range_key: str) -> str:
    """The user_scores partition of (D, range): ``2026-11-27|range_1_of_8``."""
    return f"{business_date.isoformat()}{_KEY_SEPARATOR}{range_key}"


def split_score_partition_key(key: str) -> tuple[dt.date, str]:
    date_text, _, range_key = key.partition(_KEY_SEPARATOR)
    return parse_date(date_text, source="partition key"), range_key


def dates_of_partition_keys(keys: list[str]) -> list[dt.date]:
    """The business dates a run's partition keys cover (date keys or ``date|range`` keys), ascending."""
    return sorted({parse_date(key.split(_KEY_SEPARATOR)[0], source="partition key") for key in keys})


# --- a batch: tags and run keys ---------------------------------------------------------------------------


def scores_partition_tags(business_date: dt.date, range_keys: list[str]) -> dict[str, str]:
    """The partition-range tags selecting every user-ID range of D in one run."""
    return {
        PARTITION_RANGE_START_TAG: score_partition_key(business_date, range_keys[0]),
        PARTITION_RANGE_END_TAG: score_partition_key(business_date, range_keys[-1]),
    }


def aggregation_partition_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    return {PARTITION_RANGE_START_TAG: first.isoformat(), PARTITION_RANGE_END_TAG: last.isoformat()}


def run_key(business_date: dt.date, job_name: str) -> str:
    """One automated run of each batch job per date."""
    return f"{job_name}:{business_date.isoformat()}"


def tagged_business_date(tags: dict[str, str]) -> dt.date | None:
    """The date a run's tag names, or None; an unreadable tag is a BusinessDateError."""
    value = tags.get(BUSINESS_DATE_TAG)
    return parse_date(value, source=f"run tag {BUSINESS_DATE_TAG}") if value else None


def missing_aggregate_days(connection, business_date: dt.date) -> list[dt.date]:
    """The days of W(D) BATCH-000 has not aggregated (from the management table), oldest first."""
    from ranking_pipeline.lib.state import completed_days

    window = window_days(business_date)
    return sorted(set(window) - completed_days(connection, window))


def contiguous_spans(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """[(first, last), ...] covering the sorted days with no gaps inside a span."""
    spans: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if spans and day - spans[-1][1] == dt.timedelta(days=1):
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


def partition_selection(days: list[dt.date]) -> str:
    """The days as the text a launch dialog's partition selection takes: ``[2025-05-20...2025-05-24]`` per
    span of consecutive days (a single day as itself), comma-separated."""
    return ", ".join(
        str(first) if first == last else f"[{first}...{last}]" for first, last in contiguous_spans(days)
    )


def describe_days(days: list[dt.date], shown: int = 5) -> str:
    text = ", ".join(str(day) for day in days[:shown])
    return text + (f" and {len(days) - shown} more" if len(days) > shown else "")


def ranked_from_current_aggregates(connection, business_date: dt.date) -> str | None:
    """The run that committed D's rankings from the aggregates W(D) has now, or None (D needs a batch)."""
    from ranking_pipeline.lib.state import (
        COMPLETED,
        RANKINGS_ASSET,
        aggregates_fingerprint,
        partition_runs_for,
    )

    ranked = partition_runs_for(connection, RANKINGS_ASSET, [business_date]).get((business_date, "all"))
    if ranked is None or ranked.status != COMPLETED:
        return None
    current = aggregates_fingerprint(connection, window_days(business_date))
    return ranked.run_id if ranked.input_fingerprint == current else None


def describe_run_dates(tags: dict[str, str]) -> str:
    """What a run computes, for people: its business date, or its partitions (a day, a span, a range)."""
    tagged = tags.get(BUSINESS_DATE_TAG)
    if tagged:
        return tagged
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG].replace(_KEY_SEPARATOR, " ")
    start, end = tags.get(PARTITION_RANGE_START_TAG), tags.get(PARTITION_RANGE_END_TAG)
    if start and end:
        first, last = start.split(_KEY_SEPARATOR)[0], end.split(_KEY_SEPARATOR)[0]
        return first if first == last else f"{first} .. {last}"
    return "no partition"


def dates_of_run_tags(tags: dict[str, str]) -> list[dt.date]:
    """The business dates a run's tags name: its date tag, else its partition or partition range."""
    tagged = tagged_business_date(tags)
    if tagged is not None:
        return [tagged]
    if tags.get(PARTITION_TAG):
        return dates_of_partition_keys([tags[PARTITION_TAG]])
    start, end = tags.get(PARTITION_RANGE_START_TAG), tags.get(PARTITION_RANGE_END_TAG)
    if start and end:
        first, last = dates_of_partition_keys([start])[0], dates_of_partition_keys([end])[0]
        return days_between(first, last)
    return []
