"""On a generated data set of 50,000 users, the pipeline's rankings equal one plain SQL statement's."""

import datetime as dt

import sqlalchemy as sa

from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.helpers import rankings_rows, run_date

D = dt.date(2026, 11, 27)

# Written independently of the pipeline: straight from orders and users, in one statement.
INDEPENDENT_RANKING = sa.text(
    """
    WITH scores AS (
        SELECT o.user_id, count(*) AS order_count, sum(o.amount) AS score
        FROM orders o
        WHERE o.status = 'completed'
          AND o.ordered_at >= (CAST(:d AS date) - 29)::timestamp AT TIME ZONE 'Asia/Tokyo'
          AND o.ordered_at < (CAST(:d AS date) + 1)::timestamp AT TIME ZONE 'Asia/Tokyo'
        GROUP BY o.user_id
    )
    SELECT CAST(RANK() OVER (ORDER BY s.score DESC) AS int), s.user_id, s.score, CAST(s.order_count AS int)
    FROM scores s JOIN users u USING (user_id)
    WHERE u.status = 'active' AND s.score > 0
    ORDER BY 1, 2
    """
)


def test_pipeline_rankings_equal_an_independent_sql_statement_on_50000_users(engine, instance, definitions):
    seed(engine, 50_000, end_date=D, random_seed=7)

    summary = run_date(definitions, instance, D)

    with engine.connect() as connection:
        expected = [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": D})]
    actual = rankings_rows(engine, D)
    assert len(expected) > 40_000
    assert summary.ranked_users == len(expected)
    assert actual == expected
    ranks = [row[0] for row in actual]
    assert len(set(ranks)) < len(ranks), "the data set should contain ties, or the RANK rule is untested"
