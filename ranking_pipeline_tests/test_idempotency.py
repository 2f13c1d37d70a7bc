"""Safe to re-run: the same date twice, one range alone, and a failure in the middle of the replace."""

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from ranking_pipeline.lib.ranges import cut_in_force
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.helpers import rankings_rows, run_date, table_rows

D = dt.date(2026, 11, 27)


@pytest.fixture
def seeded(engine):
    seed(engine, 3_000, end_date=D, random_seed=3)
    return engine


def test_running_the_same_date_twice_gives_the_same_rows_and_no_duplicates(seeded, instance, definitions):
    run_date(definitions, instance, D)
    first_scores = table_rows(seeded, "user_scores", "score_date, user_id")
    first_rankings = rankings_rows(seeded, D)

    run_date(definitions, instance, D)

    assert table_rows(seeded, "user_scores", "score_date, user_id") == first_scores
    assert rankings_rows(seeded, D) == first_rankings
    with seeded.connect() as connection:
        duplicates = connection.execute(
            sa.text("SELECT count(*) - count(DISTINCT user_id) FROM rankings WHERE ranking_date = :d"),
            {"d": D},
        ).scalar_one()
    assert duplicates == 0


def test_rematerializing_one_user_id_range_changes_nothing_else(seeded, instance, definitions):
    run_date(definitions, instance, D)
    scores_before = table_rows(seeded, "user_scores", "score_date, user_id")
    rankings_before = rankings_rows(seeded, D)
    with seeded.connect() as connection:
        only_range = cut_in_force(connection, D).range_for_user(1)
    with seeded.begin() as connection:  # damage the range, so recomputing it is visible
        connection.execute(sa.text("UPDATE user_scores SET score = score + 1 WHERE user_id = 1"))
        connection.execute(
            sa.text("UPDATE user_scores SET score = score + 1 WHERE user_id > :last"),
            {"last": only_range.last_id},
        )

    result = dg.materialize(
        [definitions.get_assets_def("user_scores")],
        partition_key=f"{D}|{only_range.key}",
        instance=instance,
        resources=definitions.resources,
    )

    assert result.success
    scores_after = table_rows(seeded, "user_scores", "score_date, user_id")
    restored = [row for row in scores_after if only_range.contains(row[1])]
    assert restored == [row for row in scores_before if only_range.contains(row[1])]
    untouched = [row for row in scores_after if not only_range.contains(row[1])]
    damaged = [row for row in scores_before if not only_range.contains(row[1])]
    assert [row[4] for row in untouched] == [row[4] + 1 for row in damaged]
    assert rankings_rows(seeded, D) == rankings_before


def test_a_failure_in_the_middle_of_the_replace_leaves_the_previous_rankings(
    seeded, instance, definitions, monkeypatch
):
    run_date(definitions, instance, D)
    previous = rankings_rows(seeded, D)
    # A real error raised by PostgreSQL in the middle of the swap: the new rows are written and indexed, the
    # old partition of D has just been dropped (inside the transaction), then the statement fails.
    with seeded.begin() as connection:
        connection.execute(sa.text("UPDATE orders SET amount = amount + 1 WHERE user_id = 2"))
        connection.execute(
            sa.text(
                """
                CREATE FUNCTION fail_after_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects()
                             WHERE object_type = 'table' AND object_identity LIKE 'public.rankings_2%') THEN
                    RAISE EXCEPTION 'injected failure after dropping the old rankings partition';
                  END IF;
                END $$;
                CREATE EVENT TRIGGER fail_mid_swap ON sql_drop EXECUTE FUNCTION fail_after_drop();
                """
            )
        )
        connection.execute(
            sa.text("DELETE FROM ranking_partition_runs WHERE asset = 'daily_order_aggregates'")
        )
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt_num: 0)

    with pytest.raises(Exception, match="injected failure after dropping the old rankings partition"):
        run_date(definitions, instance, D)

    assert rankings_rows(seeded, D) == previous
