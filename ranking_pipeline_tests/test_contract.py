"""Every rule of the data contract, on hand-made data whose right answer is written here."""

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from ranking_pipeline_tests.helpers import jst, load_inputs, rankings_rows, run_date

D = dt.date(2026, 11, 27)  # W(D) = 2026-10-29 .. 2026-11-27 JST

USERS = [
    (1, "active"),
    (2, "active"),
    (3, "active"),
    (4, "suspended"),
    (5, "deleted"),
    (6, "active"),
    (7, "active"),
    (8, "active"),
    (9, "active"),
    (10, "active"),
    (11, "active"),
    (12, "active"),
    (13, "active"),
    (14, "active"),
]
ORDERS = [
    (1, "100.10", "completed", jst(2026, 11, 22, 10)),
    (1, "200.20", "completed", jst(2026, 11, 22, 23, 59, 59)),
    (1, "50.00", "cancelled", jst(2026, 11, 23)),
    (2, "150.00", "completed", jst(2026, 11, 1, 12)),
    (3, "120.00", "completed", jst(2026, 11, 10)),
    (4, "1000.00", "completed", jst(2026, 11, 10)),  # suspended: scored, not ranked
    (5, "900.00", "completed", jst(2026, 11, 10)),  # deleted: scored, not ranked
    (99, "800.00", "completed", jst(2026, 11, 10)),  # no such user: scored, not ranked
    (6, "500.00", "cancelled", jst(2026, 11, 10)),  # cancelled and refunded only: no score at all
    (6, "400.00", "refunded", jst(2026, 11, 11)),
    (7, "0.00", "completed", jst(2026, 11, 12)),  # score 0: scored, not ranked
    (8, "149.99", "completed", jst(2026, 11, 2)),  # 149.99 + 0.01 ties user 2 at 150.00
    (8, "0.01", "completed", jst(2026, 11, 3)),
    (9, "777.00", "completed", jst(2026, 10, 28, 23, 59, 59, 999999)),  # D-30, last instant: excluded
    (10, "666.00", "completed", jst(2026, 11, 28)),  # D+1 00:00:00 JST: excluded
    (11, "99.99", "completed", jst(2026, 10, 29)),  # D-29 00:00:00 JST: first instant, included
    (12, "120.00", "completed", jst(2026, 11, 27, 23, 59, 59, 999999)),  # D, last instant: ties user 3
    (13, "0.10", "completed", jst(2026, 11, 5)),  # 0.10 * 3 == 0.30 exactly (floats say otherwise)
    (13, "0.10", "completed", jst(2026, 11, 6)),
    (13, "0.10", "completed", jst(2026, 11, 7)),
    (14, "0.30", "completed", jst(2026, 11, 5)),
]


def test_rankings_follow_every_rule_of_the_contract(engine, instance, definitions):
    load_inputs(engine, USERS, ORDERS)

    summary = run_date(definitions, instance, D)

    assert rankings_rows(engine, D) == [
        (1, 1, Decimal("300.30"), 2),
        (2, 2, Decimal("150.00"), 1),
        (2, 8, Decimal("150.00"), 2),
        (4, 3, Decimal("120.00"), 1),
        (4, 12, Decimal("120.00"), 1),
        (6, 11, Decimal("99.99"), 1),
        (7, 13, Decimal("0.30"), 3),
        (7, 14, Decimal("0.30"), 1),
    ]
    assert summary.ranked_users == 8
    assert summary.aggregated_days[0] == dt.date(2026, 10, 29)
    assert summary.aggregated_days[-1] == D


def test_user_scores_include_every_status_and_unknown_users_but_not_empty_ones(engine, instance, definitions):
    load_inputs(engine, USERS, ORDERS)

    run_date(definitions, instance, D)

    with engine.connect() as connection:
        scores = {
            user_id: (count, total, score)
            for user_id, count, total, score in connection.execute(
                sa.text(
                    "SELECT user_id, order_count, total_amount, score FROM user_scores WHERE score_date = :d"
                ),
                {"d": D},
            )
        }
    assert scores == {
        1: (2, Decimal("300.30"), Decimal("300.30")),
        2: (1, Decimal("150.00"), Decimal("150.00")),
        3: (1, Decimal("120.00"), Decimal("120.00")),
        4: (1, Decimal("1000.00"), Decimal("1000.00")),
        5: (1, Decimal("900.00"), Decimal("900.00")),
        7: (1, Decimal("0.00"), Decimal("0.00")),
        8: (2, Decimal("150.00"), Decimal("150.00")),
        11: (1, Decimal("99.99"), Decimal("99.99")),
        12: (1, Decimal("120.00"), Decimal("120.00")),
        13: (3, Decimal("0.30"), Decimal("0.30")),
        14: (1, Decimal("0.30"), Decimal("0.30")),
        99: (1, Decimal("800.00"), Decimal("800.00")),
    }


def test_daily_aggregates_split_days_at_jst_midnight(engine, instance, definitions):
    load_inputs(
        engine,
        [(1, "active")],
        [
            (1, "10.00", "completed", jst(2026, 11, 26, 23, 59, 59, 999999)),
            (1, "20.00", "completed", jst(2026, 11, 27, 0, 0, 0)),  # belongs to the 27th
            (1, "30.00", "completed", dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.UTC)),  # = 27th 00:00 JST
            (1, "40.00", "refunded", jst(2026, 11, 27, 8)),
        ],
    )

    run_date(definitions, instance, D)

    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT agg_date, user_id, order_count, total_amount FROM daily_order_aggregates "
                "ORDER BY agg_date"
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (dt.date(2026, 11, 26), 1, 1, Decimal("10.00")),
        (dt.date(2026, 11, 27), 1, 2, Decimal("50.00")),
    ]


def test_other_dates_rankings_are_never_touched(engine, instance, definitions):
    load_inputs(engine, USERS, ORDERS)
    run_date(definitions, instance, D)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO rankings VALUES ('2026-11-20', 1, 42, 5.00, 1)"))

    run_date(definitions, instance, D)

    assert rankings_rows(engine, dt.date(2026, 11, 20)) == [(1, 42, Decimal("5.00"), 1)]
    assert len(rankings_rows(engine, D)) == 8
