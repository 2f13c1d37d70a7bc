"""The input contract, enforced on the rows the batch reads, before it writes anything.

Checked: NULLs in the contract's NOT NULL columns, status values outside the contract's sets (exact, so
'Completed' and 'completed ' are defects, not silently ignored orders), amounts with more than 2 decimals (an
``amount NUMERIC`` column without scale would otherwise be rounded), duplicate ``users.user_id``, and
sums that would overflow the output columns (NUMERIC(14,2), INT). Each defect is one clause: how many rows
and a few example ids. A run meeting one fails at once (no retry: the same rows fail again) and nothing is
written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ranking_pipeline.lib.business_date import jst_midnight

ORDER_STATUSES = ("completed", "cancelled", "refunded")
USER_STATUSES = ("active", "suspended", "deleted")
MAX_AMOUNT_SUM = Decimal("999999999999.99")  # NUMERIC(14,2) of total_amount and score
MAX_ORDER_COUNT = 2**31 - 1  # INT of order_count
EXAMPLES = 5


class InputContractError(ValueError):
    """The input tables break the data contract: the message names each defect in one clause."""

    def __init__(self, message: str, defects: list[Defect]) -> None:
        super().__init__(message)
        self.defects = defects


@dataclass(frozen=True)
class Defect:
    what: str
    rows: int
    examples: list

    def describe(self) -> str:
        shown = ", ".join(str(example) for example in self.examples[:EXAMPLES])
        more = " ..." if self.rows > len(self.examples[:EXAMPLES]) else ""
        return f"{self.rows:,} {self.what}" + (f" (e.g. {shown}{more})" if shown else "")


def _defects(row, labels: list[str]) -> list[Defect]:
    values = list(row)
    return [
        Defect(label, values[2 * i], list(values[2 * i + 1] or []))
        for i, label in enumerate(labels)
        if values[2 * i]
    ]


def _check(what: str, condition: str, example: str) -> tuple[str, str]:
    """(SQL select terms counting rows that break ``condition`` and listing a few examples, label)."""
    return (
        f"count(*) FILTER (WHERE {condition}), "
        f"(array_agg({example} ORDER BY {example}) FILTER (WHERE {condition}))[1:{EXAMPLES}]",
        what,
    )


_ORDER_CHECKS = [
    _check("orders with a NULL order_id", "order_id IS NULL", "user_id"),
    _check("orders with a NULL user_id (order_id shown)", "user_id IS NULL", "order_id"),
    _check("orders with a NULL amount (order_id shown)", "amount IS NULL", "order_id"),
    _check(
        f"orders whose status is not one of {', '.join(ORDER_STATUSES)} (order_id shown)",
        f"status IS NULL OR status NOT IN {ORDER_STATUSES}",
        "order_id",
    ),
    _check("orders whose amount has more than 2 decimals (order_id shown)", "scale(amount) > 2", "order_id"),
]
_ORDERS_IN_SPAN = sa.text(
    "SELECT "  # noqa: S608 - the terms are the constants above, the values are parameters
    + ", ".join(terms for terms, _ in _ORDER_CHECKS)
    + " FROM orders WHERE ordered_at >= :start_at AND ordered_at < :end_at"
)
_ORDERS_WITHOUT_TIME = sa.text(
    "SELECT count(*), (array_agg(order_id ORDER BY order_id))[1:5] FROM orders WHERE ordered_at IS NULL"
)

_USER_CHECKS = [
    _check("users with a NULL user_id (name shown)", "user_id IS NULL", "name"),
    _check("users with a NULL name (user_id shown)", "name IS NULL", "user_id"),
    _check("users with a NULL created_at (user_id shown)", "created_at IS NULL", "user_id"),
    _check(
        f"users whose status is not one of {', '.join(USER_STATUSES)} (user_id shown)",
        f"status IS NULL OR status NOT IN {USER_STATUSES}",
        "user_id",
    ),
]
_USERS = sa.text("SELECT " + ", ".join(terms for terms, _ in _USER_CHECKS) + " FROM users")  # noqa: S608
_DUPLICATE_USERS = sa.text(
    "SELECT count(*), (array_agg(user_id ORDER BY user_id))[1:5] FROM "
    "(SELECT user_id FROM users WHERE user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1) AS duplicated"
)


def order_defects(connection: Connection, first_day: dt.date, last_day: dt.date) -> list[Defect]:
    """What breaks the contract in the orders of the JST days first_day .. last_day (and orders with no
    time)."""
    span = {"start_at": jst_midnight(first_day), "end_at": jst_midnight(last_day + dt.timedelta(days=1))}
    defects = _defects(connection.execute(_ORDERS_IN_SPAN, span).one(), [label for _, label in _ORDER_CHECKS])
    count, examples = connection.execute(_ORDERS_WITHOUT_TIME).one()
    if count:
        defects.append(Defect("orders with a NULL ordered_at (order_id shown)", count, list(examples or [])))
    return defects


def user_defects(connection: Connection) -> list[Defect]:
    defects = _defects(connection.execute(_USERS).one(), [label for _, label in _USER_CHECKS])
    count, examples = connection.execute(_DUPLICATE_USERS).one()
    if count:
        defects.append(Defect("user_ids that appear more than once in users", count, list(examples or [])))
    return defects


_WINDOW_BOUND = sa.text(
    "SELECT count(*), sum(max_total_amount), sum(max_order_count) FROM ranking_partition_runs "
    "WHERE asset = 'daily_order_aggregates' AND business_date = ANY(:days)"
)
_WINDOW_OVERFLOW = sa.text(
    """
    SELECT count(*), (array_agg(user_id ORDER BY user_id))[1:5] FROM (
        SELECT user_id FROM daily_order_aggregates WHERE agg_date = ANY(:days)
        GROUP BY user_id HAVING sum(total_amount) > :max_total OR sum(order_count) > :max_count
    ) AS too_big
    """
)


def window_overflow(connection: Connection, days: list[dt.date]) -> list[Defect]:
    """Users whose sums over ``days`` would not fit the output columns. Usually free: each aggregated day
    records its largest per-user sum and count, and while the window's maxima add up under the limits no user
    can overflow; only otherwise are the users' sums computed."""
    recorded, total_bound, count_bound = connection.execute(_WINDOW_BOUND, {"days": days}).one()
    bounded = recorded == len(days) and total_bound is not None and count_bound is not None
    if bounded and total_bound <= MAX_AMOUNT_SUM and count_bound <= MAX_ORDER_COUNT:
        return []
    count, examples = connection.execute(
        _WINDOW_OVERFLOW, {"days": days, "max_total": MAX_AMOUNT_SUM, "max_count": MAX_ORDER_COUNT}
    ).one()
    if not count:
        return []
    return [
        Defect(
            f"users whose completed orders over {days[0]} .. {days[-1]} sum beyond NUMERIC(14,2) or INT "
            "(user_id shown)",
            count,
            list(examples or []),
        )
    ]


_DAILY_OVERFLOW = sa.text(
    """
    SELECT count(*), (array_agg(user_id ORDER BY user_id))[1:5] FROM (
        SELECT DISTINCT user_id FROM orders
        WHERE status = 'completed' AND ordered_at >= :start_at AND ordered_at < :end_at
        GROUP BY (ordered_at AT TIME ZONE 'Asia/Tokyo')::date, user_id
        HAVING sum(amount) > :max_total OR count(*) > :max_count
    ) AS too_big
    """
)


def daily_overflow(connection: Connection, first_day: dt.date, last_day: dt.date) -> list[Defect]:
    """Users whose completed orders of one JST day sum beyond the aggregates' columns (asked after the
    aggregation's INSERT hit a numeric overflow, to name them)."""
    count, examples = connection.execute(
        _DAILY_OVERFLOW,
        {
            "start_at": jst_midnight(first_day),
            "end_at": jst_midnight(last_day + dt.timedelta(days=1)),
            "max_total": MAX_AMOUNT_SUM,
            "max_count": MAX_ORDER_COUNT,
        },
    ).one()
    what = "users whose completed orders of one day sum beyond NUMERIC(14,2) or INT (user_id shown)"
    return [Defect(what, count, list(examples or []))] if count else []


def raise_if_defects(defects: list[Defect], where: str) -> None:
    if defects:
        raise InputContractError(
            f"{where} break the data contract: {'; '.join(d.describe() for d in defects)}. Fix them "
            "upstream, then "
            "run the date again; nothing was written",
            defects,
        )
