"""User-ID ranges: the partitions of ``user_scores``, and the cut that says which users each one holds.

The partition keys are eight stable range *slots*, ``range_1_of_8`` ... ``range_8_of_8`` (``USER_ID_RANGES``):
the asset stays partitioned by user-ID range and its history keeps its keys however the user base grows.
Which user IDs a slot holds is a *cut*, stored in the ranking database (``ranking_range_cuts``): seven
boundaries (the first ID of slots 2 ... 8) and the first business date the cut applies to. Slot 1 starts at
the smallest BIGINT and slot 8 ends at the largest, so under every cut the slots cover every BIGINT user ID
without overlapping, and a user far above today's largest ID is still scored (in slot 8).

The cut in force for business date D is the cut with the latest first date on or before D; dates before the
first cut use the first cut. A cut never changes the dates already scored: `apply_cut` refuses a first date
on or before a date that has scores, so re-running an old date scores each slot's users under that date's
own cut. The cut's id is recorded with each (D, slot) in ``ranking_partition_runs`` (``range_cut``), and a
slot computed under another cut is not up to date.

A balanced cut (`plan_cut`) puts an eighth of the users scored for the latest ranked date in each slot
(exactly the rows a date's slots hold); before any date is ranked, an eighth of the users with completed
orders on the latest aggregated day. Quantiles of ``user_id``, read in key order from the table's primary
key (date, user_id), in one pass and without a sort. When no cut exists yet, the first scoring stores
one automatically (`cut_for_scoring`, serialized across sessions by an advisory lock), so a fresh install is
balanced without an operator step.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ranking_pipeline.lib.schema import partition_runs, range_cuts
from ranking_pipeline.lib.state import USER_SCORES_ASSET

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
RANGE_COUNT = 8
LEGACY_RANGE_WIDTH = 125_000  # the fixed ranges of the first releases: the cut used when there is no data
BALANCE_LIMIT = 1.5  # a date whose largest range holds more than 1.5 x the mean is out of balance

# Serializes creating or applying cuts across sessions (two runs scoring their first date at once).
_CUT_ADVISORY_LOCK_ID = 0x52414E43  # "RANC"


class RangeCutError(ValueError):
    """A cut cannot be applied as asked (the message says why and what to do instead)."""


@dataclass(frozen=True)
class RangeSlot:
    """One partition key of the user-ID range dimension: slot ``number`` of ``RANGE_COUNT``."""

    key: str
    number: int


USER_ID_RANGES: tuple[RangeSlot, ...] = tuple(
    RangeSlot(f"range_{number}_of_{RANGE_COUNT}", number) for number in range(1, RANGE_COUNT + 1)
)
_SLOT_BY_KEY = {slot.key: slot for slot in USER_ID_RANGES}


def slot_for_key(key: str) -> RangeSlot:
    try:
        return _SLOT_BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown user-ID range {key!r}; known ranges: {', '.join(_SLOT_BY_KEY)}") from None


def _describe_id(user_id: int) -> str:
    return "min" if user_id == BIGINT_MIN else "max" if user_id == BIGINT_MAX else f"{user_id:,}"


@dataclass(frozen=True)
class UserIdRange:
    """A slot's user IDs under one cut."""

    key: str
    first_id: int  # inclusive
    last_id: int  # inclusive

    def contains(self, user_id: int) -> bool:
        return self.first_id <= user_id <= self.last_id

    def overlaps(self, other: UserIdRange) -> bool:
        return self.first_id <= other.last_id and other.first_id <= self.last_id

    def describe(self) -> str:
        """``12,501 .. 25,000``; the BIGINT ends read ``min`` and ``max``."""
        return f"{_describe_id(self.first_id)} .. {_describe_id(self.last_id)}"


def check_boundaries(boundaries: tuple[int, ...]) -> None:
    if len(boundaries) != RANGE_COUNT - 1 or any(b <= a for a, b in itertools.pairwise(boundaries)):
        raise RangeCutError(
            f"a cut needs {RANGE_COUNT - 1} strictly increasing boundaries, got {list(boundaries)}"
        )
    if boundaries[0] <= BIGINT_MIN:
        raise RangeCutError(f"the first boundary must be above {BIGINT_MIN}, got {boundaries[0]}")


@dataclass(frozen=True)
class RangeCut:
    """Seven boundaries (the first user ID of slots 2 ... 8) in force from ``first_date`` on."""

    cut_id: int
    first_date: dt.date
    boundaries: tuple[int, ...]
    origin: str

    @property
    def ranges(self) -> tuple[UserIdRange, ...]:
        firsts = (BIGINT_MIN, *self.boundaries)
        lasts = (*(b - 1 for b in self.boundaries), BIGINT_MAX)
        return tuple(UserIdRange(s.key, f, t) for s, f, t in zip(USER_ID_RANGES, firsts, lasts, strict=True))

    def range_for_key(self, key: str) -> UserIdRange:
        return self.ranges[slot_for_key(key).number - 1]

    def range_for_user(self, user_id: int) -> UserIdRange:
        return next(user_range for user_range in self.ranges if user_range.contains(user_id))

    def describe(self) -> str:
        return f"cut {self.cut_id} (from {self.first_date})"


@dataclass(frozen=True)
class CutPlan:
    """A balanced cut, and what it was computed from."""

    boundaries: tuple[int, ...]
    basis: str  # "scored" (a ranked date's user_scores), "ordered" (a day's aggregates) or "none"
    basis_day: dt.date | None
    basis_users: int

    def describe(self) -> str:
        if self.basis == "scored":
            return f"eighths of the {self.basis_users:,} users scored for {self.basis_day}"
        if self.basis == "ordered":
            return f"eighths of the {self.basis_users:,} users with completed orders on {self.basis_day}"
        return f"no aggregated orders yet: the legacy ranges of {LEGACY_RANGE_WIDTH:,} IDs"


def legacy_boundaries() -> tuple[int, ...]:
    return tuple(LEGACY_RANGE_WIDTH * number for number in range(1, RANGE_COUNT))


def balance(rows: list[int]) -> float | None:
    """The largest range's rows over the mean (1.0 is perfect); None when nothing was scored."""
    total = sum(rows)
    return max(rows) * len(rows) / total if total else None


# The latest ranked date (every range of it scored) and the latest aggregated day, on or before :day.
_LATEST_RANKED_DATE = sa.text(
    "SELECT max(business_date) FROM ranking_partition_runs "
    "WHERE asset = 'rankings' AND status = 'completed' AND business_date <= :day"
)
_LATEST_AGGREGATED_DAY = sa.text("SELECT max(agg_date) FROM daily_order_aggregates WHERE agg_date <= :day")
# (table, date column) of each basis; the names below come only from here.
_BASIS_TABLES = {"scored": ("user_scores", "score_date"), "ordered": ("daily_order_aggregates", "agg_date")}


def _users_at_positions(connection: Connection, basis: str, day: dt.date) -> tuple[int, list[int], list[int]]:
    """(users of the day, the positions of each slot's first user, their IDs) in ``basis``. One day's rows
    come from the primary key (date, user_id) in user_id order: row_number() needs no sort."""
    table, column = _BASIS_TABLES[basis]
    users = connection.execute(
        sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :day"),  # noqa: S608
        {"day": day},
    ).scalar_one()
    positions = [1 + users * number // RANGE_COUNT for number in range(1, RANGE_COUNT)]
    found = connection.execute(
        sa.text(
            f"SELECT user_id FROM (SELECT user_id, row_number() OVER (ORDER BY user_id) AS position "  # noqa: S608
            f"FROM {table} WHERE {column} = :day) AS numbered "
            "WHERE position = ANY(:positions) ORDER BY position"
        ),
        {"day": day, "positions": positions},
    ).scalars()
    return users, positions, list(found)


def plan_cut(connection: Connection, day: dt.date) -> CutPlan:
    """The balanced cut for the users scored for the latest ranked date on or before ``day`` (exactly the
    rows a date's ranges hold); without one, for the users with completed orders on the latest aggregated
    day; the legacy widths when nothing is aggregated yet."""
    for basis, latest in (("scored", _LATEST_RANKED_DATE), ("ordered", _LATEST_AGGREGATED_DAY)):
        basis_day = connection.execute(latest, {"day": day}).scalar()
        if basis_day is None:
            continue
        users, positions, found = _users_at_positions(connection, basis, basis_day)
        if not users:
            continue
        by_position = dict(zip(sorted(set(positions)), found, strict=True))
        boundaries: list[int] = []
        for position in positions:  # fewer than 8 users: empty slots, boundaries still strictly increasing
            candidate = max(by_position[position], BIGINT_MIN + 1)
            boundaries.append(max(candidate, boundaries[-1] + 1) if boundaries else candidate)
        return CutPlan(tuple(boundaries), basis, basis_day, users)
    return CutPlan(legacy_boundaries(), "none", None, 0)


def _cut_from_row(row) -> RangeCut:
    return RangeCut(row.cut_id, row.first_date, tuple(row.boundaries), row.origin)


def all_cuts(connection: Connection) -> list[RangeCut]:
    """Every stored cut, oldest first date first."""
    rows = connection.execute(sa.select(range_cuts).order_by(range_cuts.c.first_date))
    return [_cut_from_row(row) for row in rows]


def cut_in_force(connection: Connection, business_date: dt.date) -> RangeCut | None:
    """The cut D is scored under (the latest first date on or before D, else the first cut), or None."""
    by_date = sa.select(range_cuts).limit(1)
    row = connection.execute(
        by_date.where(range_cuts.c.first_date <= business_date).order_by(range_cuts.c.first_date.desc())
    ).first()
    if row is None:  # D is before every cut: the first one
        row = connection.execute(by_date.order_by(range_cuts.c.first_date)).first()
    return _cut_from_row(row) if row is not None else None


def _insert_cut(connection: Connection, first_date: dt.date, boundaries: tuple[int, ...], origin: str):
    check_boundaries(boundaries)
    row = connection.execute(
        sa.insert(range_cuts)
        .values(first_date=first_date, boundaries=list(boundaries), origin=origin, created_at=sa.func.now())
        .returning(*range_cuts.c)
    ).one()
    return _cut_from_row(row)


def cut_for_scoring(engine: Engine, business_date: dt.date) -> RangeCut:
    """The cut D is scored under; when no cut exists yet, a balanced one is planned and stored first, from D
    on (and for the dates before it), once, however many sessions ask at the same moment."""
    with engine.connect() as connection:
        cut = cut_in_force(connection, business_date)
    if cut is not None:
        return cut
    with engine.begin() as connection:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CUT_ADVISORY_LOCK_ID})
        cut = cut_in_force(connection, business_date)  # another session may have stored it meanwhile
        if cut is None:
            plan = plan_cut(connection, business_date)
            origin = f"automatic at the first scoring: {plan.describe()}"
            cut = _insert_cut(connection, business_date, plan.boundaries, origin)
    return cut


def latest_scored_date(connection: Connection, since: dt.date | None = None) -> dt.date | None:
    """The latest business date with any user_scores bookkeeping (on or after ``since`` when given)."""
    statement = sa.select(sa.func.max(partition_runs.c.business_date)).where(
        partition_runs.c.asset == USER_SCORES_ASSET
    )
    if since is not None:
        statement = statement.where(partition_runs.c.business_date >= since)
    return connection.execute(statement).scalar()


def apply_cut(engine: Engine, first_date: dt.date, boundaries: tuple[int, ...], origin: str) -> RangeCut:
    """Store a cut in force from ``first_date`` on (replacing a cut stored for that same date). Refused when a
    date on or after ``first_date`` has scores: dates keep the cut they were scored under."""
    check_boundaries(boundaries)
    with engine.begin() as connection:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CUT_ADVISORY_LOCK_ID})
        scored = latest_scored_date(connection, since=first_date)
        if scored is not None:
            raise RangeCutError(
                f"cannot apply a cut from {first_date}: user_scores of {scored} were computed under the "
                "cut in force; dates keep the cut they were scored under, so apply it from "
                f"{scored + dt.timedelta(days=1)} or later (nothing was changed)"
            )
        connection.execute(sa.delete(range_cuts).where(range_cuts.c.first_date == first_date))
        return _insert_cut(connection, first_date, boundaries, origin)
