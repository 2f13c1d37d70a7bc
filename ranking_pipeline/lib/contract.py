"""The input contract, enforced on the rows the batch reads, before it writes anything.

Checked: NULLs in the contract's NOT NULL columns, status values outside the contract's sets (exact, so
'Completed' and 'completed ' are defects, not silently ignored orders), amounts with more than 2 decimals (an
``amount NUMERIC`` column without scale would otherwise be rounded), duplicate ``users.user_id``, and
sums that would overflow the output columns (NUMERIC(14,2), INT). Each defect is one clause: how many rows
and a few example ids. A run meeting one fails at once (no retry: the same rows fail again) and nothing is
written. What the input table's own definition guarantees (NOT NULL, a unique key, a CHECK on the statuses,
NUMERIC(p,2)) is not re-checked: with the contract's DDL the checks read no rows at all.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
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


@dataclass(frozen=True)
class TableFacts:
    """What the input table's own definition already guarantees: a rule it guarantees is not re-checked."""

    not_null: frozenset[str]
    unique: frozenset[str]  # columns with a unique index of their own
    max_scale: dict[str, int]  # numeric columns declared with a scale
    allowed_values: dict[str, frozenset[str]]  # columns a validated CHECK (column IN (...)) restricts


_COLUMNS = sa.text(
    "SELECT attname, attnotnull, CASE WHEN atttypid = 'numeric'::regtype AND atttypmod >= 4 "
    "THEN (atttypmod - 4) & 65535 END FROM pg_attribute "
    "WHERE attrelid = to_regclass(:table) AND attnum > 0 AND NOT attisdropped"
)
_UNIQUE_COLUMNS = sa.text(
    "SELECT a.attname FROM pg_index AS i JOIN pg_attribute AS a "
    "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
    "WHERE i.indrelid = to_regclass(:table) AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 "
    "AND i.indpred IS NULL"
)
_CHECK_CONSTRAINTS = sa.text(
    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid = to_regclass(:table) AND contype = 'c' AND convalidated"
)
# How PostgreSQL prints `CHECK (status IN ('a', 'b'))`: CHECK ((status = ANY (ARRAY['a'::text, 'b'::text])))
_IN_LIST_CHECK = re.compile(r"^CHECK \(\((\w+) = ANY \(ARRAY\[(.*)\]\)\)\)$")


def table_facts(connection: Connection, table: str) -> TableFacts:
    columns = connection.execute(_COLUMNS, {"table": table}).all()
    allowed: dict[str, frozenset[str]] = {}
    for (definition,) in connection.execute(_CHECK_CONSTRAINTS, {"table": table}):
        if match := _IN_LIST_CHECK.match(definition):
            allowed[match[1]] = frozenset(re.findall(r"'([^']*)'::(?:text|character varying)", match[2]))
    return TableFacts(
        not_null=frozenset(name for name, not_null, _ in columns if not_null),
        unique=frozenset(connection.execute(_UNIQUE_COLUMNS, {"table": table}).scalars()),
        max_scale={name: scale for name, _, scale in columns if scale is not None},
        allowed_values=allowed,
    )


@dataclass(frozen=True)
class Rule:
    """One defect to count: rows meeting ``condition`` (``example`` shown), unless the table guarantees it."""

    what: str
    condition: str
    example: str
    guaranteed: Callable[[TableFacts], bool]

    def terms(self) -> str:
        """SQL select terms counting the rows that break the rule and listing a few examples."""
        return (
            f"count(*) FILTER (WHERE {self.condition}), "
            f"(array_agg({self.example} ORDER BY {self.example}) "
            f"FILTER (WHERE {self.condition}))[1:{EXAMPLES}]"
        )


def _not_null(column: str, what: str, example: str) -> Rule:
    return Rule(what, f"{column} IS NULL", example, lambda facts: column in facts.not_null)


def _status_in(statuses: tuple[str, ...], what: str, example: str) -> Rule:
    return Rule(
        f"{what} whose status is not one of {', '.join(statuses)} ({example} shown)",
        f"status IS NULL OR status NOT IN {statuses}",
        example,
        lambda facts: (
            "status" in facts.not_null
            and facts.allowed_values.get("status", frozenset(["?"])) <= set(statuses)
        ),
    )


_ORDER_RULES = [
    _not_null("order_id", "orders with a NULL order_id", "user_id"),
    _not_null("user_id", "orders with a NULL user_id (order_id shown)", "order_id"),
    _not_null("amount", "orders with a NULL amount (order_id shown)", "order_id"),
    _status_in(ORDER_STATUSES, "orders", "order_id"),
    Rule(
        "orders whose amount has more than 2 decimals (order_id shown)",
        "scale(amount) > 2",
        "order_id",
        lambda facts: facts.max_scale.get("amount", 99) <= 2,
    ),
]
_USER_RULES = [
    _not_null("user_id", "users with a NULL user_id (name shown)", "name"),
    _not_null("name", "users with a NULL name (user_id shown)", "user_id"),
    _not_null("created_at", "users with a NULL created_at (user_id shown)", "user_id"),
    _status_in(USER_STATUSES, "users", "user_id"),
]
_ORDERS_WITHOUT_TIME = sa.text(
    "SELECT count(*), (array_agg(order_id ORDER BY order_id))[1:5] FROM orders WHERE ordered_at IS NULL"
)
_DUPLICATE_USERS = sa.text(
    "SELECT count(*), (array_agg(user_id ORDER BY user_id))[1:5] FROM "
    "(SELECT user_id FROM users WHERE user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1) AS duplicated"
)


def _rule_defects(
    connection: Connection, table: str, rules: list[Rule], facts: TableFacts, where: str = "", params=None
) -> list[Defect]:
    """Count the rules the table's definition does not guarantee, in one scan (none: no scan at all)."""
    open_rules = [rule for rule in rules if not rule.guaranteed(facts)]
    if not open_rules:
        return []
    statement = sa.text(
        f"SELECT {', '.join(rule.terms() for rule in open_rules)} FROM {table} {where}"  # noqa: S608 - constants
    )
    return _defects(connection.execute(statement, params or {}).one(), [rule.what for rule in open_rules])


def order_defects(connection: Connection, first_day: dt.date, last_day: dt.date) -> list[Defect]:
    """What breaks the contract in the orders of the JST days first_day .. last_day (and orders with no
    time). Rules the table's constraints guarantee (the contract's DDL guarantees all) cost no scan."""
    span = {"start_at": jst_midnight(first_day), "end_at": jst_midnight(last_day + dt.timedelta(days=1))}
    facts = table_facts(connection, "orders")
    where = "WHERE ordered_at >= :start_at AND ordered_at < :end_at"
    defects = _rule_defects(connection, "orders", _ORDER_RULES, facts, where, span)
    if "ordered_at" not in facts.not_null:
        count, examples = connection.execute(_ORDERS_WITHOUT_TIME).one()
        if count:
            defects.append(
                Defect("orders with a NULL ordered_at (order_id shown)", count, list(examples or []))
            )
    return defects


def user_defects(connection: Connection) -> list[Defect]:
    """What breaks the contract in users; rules the table's constraints guarantee cost no scan."""
    facts = table_facts(connection, "users")
    defects = _rule_defects(connection, "users", _USER_RULES, facts)
    if "user_id" not in facts.unique:
        count, examples = connection.execute(_DUPLICATE_USERS).one()
        if count:
            defects.append(
                Defect("user_ids that appear more than once in users", count, list(examples or []))
            )
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
