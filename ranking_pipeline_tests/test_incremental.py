"""The nightly path scores D from D-1's scores plus day D minus day D-30; it must equal a full recompute.

Every case compares user_scores and rankings of D, row by row with exact decimals, with SQL written straight
from the orders (independent of the pipeline), and checks which path the pipeline took: the nightly
(incremental) path, the full-window fallback, and the fallback after an older aggregate day changed.
"""

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from ranking_pipeline.batch_runner import aggregate_days
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.helpers import (
    jst,
    load_inputs,
    materializations,
    rankings_rows,
    run_date,
    table_rows,
)
from ranking_pipeline_tests.test_against_sql import INDEPENDENT_RANKING

D = dt.date(2026, 11, 27)
PREVIOUS = D - dt.timedelta(days=1)
LEAVING_DAY = D - dt.timedelta(days=30)  # in W(D-1), not in W(D)

INDEPENDENT_SCORES = sa.text(
    """
    SELECT CAST(:d AS date), o.user_id, CAST(count(*) AS int), sum(o.amount), sum(o.amount)
    FROM orders o
    WHERE o.status = 'completed'
      AND o.ordered_at >= (CAST(:d AS date) - 29)::timestamp AT TIME ZONE 'Asia/Tokyo'
      AND o.ordered_at < (CAST(:d AS date) + 1)::timestamp AT TIME ZONE 'Asia/Tokyo'
    GROUP BY o.user_id
    ORDER BY o.user_id
    """
)

USERS = [(user_id, "active") for user_id in range(1, 11) if user_id not in (6, 7)] + [(6, "suspended")]
# user 7 has orders and no users row
ORDERS = [
    (1, "50.00", "completed", jst(2026, 10, 28, 12)),  # only on the leaving day: leaves the window at D
    (2, "30.00", "completed", jst(2026, 11, 27, 23, 59, 59)),  # only on D: enters at D
    (3, "0.00", "completed", jst(2026, 11, 1, 9)),  # only 0.00 orders: scored 0, never ranked
    (3, "0.00", "completed", jst(2026, 11, 27, 9)),
    (4, "10.00", "completed", jst(2026, 10, 28, 23, 59, 59)),  # one order leaves, one stays
    (4, "20.00", "completed", jst(2026, 11, 10, 8)),
    (5, "15.00", "completed", jst(2026, 11, 1, 10)),  # ties with user 4 at D (20.00)
    (5, "5.00", "completed", jst(2026, 11, 26, 10)),
    (6, "99.00", "completed", jst(2026, 11, 27, 1)),  # suspended: scored, not ranked
    (7, "77.00", "completed", jst(2026, 11, 27, 2)),  # unknown user: scored, not ranked
    (8, "40.00", "completed", jst(2026, 10, 27, 12)),  # before both windows
    (9, "60.00", "cancelled", jst(2026, 11, 27, 12)),  # cancelled: ignored
    (9, "12.34", "completed", jst(2026, 10, 28, 0)),  # 00:00:00 JST of the leaving day: leaves at D
    (10, "25.00", "completed", jst(2026, 11, 27)),  # 00:00:00 JST of D: counts for D
    (10, "0.01", "completed", jst(2026, 11, 26, 23, 59, 59)),
]


def _expected_scores(engine, day: dt.date) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(INDEPENDENT_SCORES, {"d": day})]


def _expected_ranking(engine, day: dt.date) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": day})]


def _scores(engine, day: dt.date) -> list[tuple]:
    return [row for row in table_rows(engine, "user_scores", "score_date, user_id") if row[0] == day]


def _paths(instance, run_id: str) -> set[str]:
    """How each range of D was computed in that run (its materialization's `computed_from`)."""
    return {meta["computed_from"] for meta in materializations(instance, "user_scores", run_id).values()}


def _assert_equal_to_full_recompute(engine, day: dt.date) -> None:
    assert _scores(engine, day) == _expected_scores(engine, day)
    assert rankings_rows(engine, day) == _expected_ranking(engine, day)


def test_nightly_path_equals_a_full_recompute_with_users_entering_and_leaving(engine, instance, definitions):
    load_inputs(engine, USERS, ORDERS)
    run_date(definitions, instance, PREVIOUS)
    _assert_equal_to_full_recompute(engine, PREVIOUS)

    summary = run_date(definitions, instance, D)

    scoring_run = summary.run_ids[-2]
    assert _paths(instance, scoring_run) == {f"from {PREVIOUS} + {D} - {LEAVING_DAY}"}
    _assert_equal_to_full_recompute(engine, D)
    scored = {row[1]: row for row in _scores(engine, D)}
    assert 1 not in scored and 9 not in scored, (
        "users whose orders all left the window must leave user_scores"
    )
    assert scored[2][2:] == (1, Decimal("30.00"), Decimal("30.00"))
    assert scored[3][2] == 2 and scored[3][4] == 0, "0.00-only users keep their row with score 0"
    ranked = {row[1]: row[0] for row in rankings_rows(engine, D)}
    assert ranked[4] == ranked[5], "equal scores share a rank"
    assert 3 not in ranked and 6 not in ranked and 7 not in ranked


def test_first_date_falls_back_to_the_full_window(engine, instance, definitions):
    load_inputs(engine, USERS, ORDERS)

    summary = run_date(definitions, instance, D)

    window = f"from the 30 days {D - dt.timedelta(days=29)} .. {D}"
    assert _paths(instance, summary.run_ids[-2]) == {window}
    _assert_equal_to_full_recompute(engine, D)


def test_a_changed_older_aggregate_day_forces_the_full_window(engine, instance, definitions):
    load_inputs(engine, USERS, ORDERS)
    run_date(definitions, instance, PREVIOUS)
    # Late corrections after D-1 was scored: a new order on an older day inside both windows and one on the
    # day that leaves the window; BATCH-000 re-aggregates those days.
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO orders VALUES "
                "(1001, 5, 7.77, 'completed', :at), (1002, 2, 3.00, 'completed', :l)"
            ),
            {"at": jst(2026, 11, 10, 12), "l": jst(2026, 10, 28, 12)},
        )
    for day in (dt.date(2026, 11, 10), LEAVING_DAY):
        aggregate_days(definitions, instance, day, day)

    summary = run_date(definitions, instance, D)

    assert _paths(instance, summary.run_ids[-2]) == {f"from the 30 days {D - dt.timedelta(days=29)} .. {D}"}
    _assert_equal_to_full_recompute(engine, D)


def test_nightly_path_on_generated_data_equals_a_full_recompute(engine, instance, definitions):
    seed(engine, 3_000, end_date=D, random_seed=11)
    run_date(definitions, instance, PREVIOUS)

    summary = run_date(definitions, instance, D)

    assert _paths(instance, summary.run_ids[-2]) == {f"from {PREVIOUS} + {D} - {LEAVING_DAY}"}
    _assert_equal_to_full_recompute(engine, D)
    assert len(_expected_ranking(engine, D)) > 2_000
