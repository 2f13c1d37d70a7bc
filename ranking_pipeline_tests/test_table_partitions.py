"""user_scores and rankings are partitioned by date: retention drops whole dates, a replace or a drop never
shows a reader a partial ranking, and tables created by a release before partitioning are adopted."""

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from ranking_pipeline.lib.partitions import RANKINGS, USER_SCORES, partition_dates
from ranking_pipeline.lib.queries import drop_dates_past_retention, replace_rankings
from ranking_pipeline.lib.schema import ensure_output_tables
from ranking_pipeline.lib.seed import seed
from ranking_pipeline.lib.state import RANKINGS_ASSET, USER_SCORES_ASSET
from ranking_pipeline_tests.helpers import materializations, rankings_rows, run_date, table_rows, wait_until

D = dt.date(2026, 11, 27)
DAY = dt.timedelta(days=1)
READ_D = sa.text("SELECT count(*), sum(score), sum(rank) FROM rankings WHERE ranking_date = :d")


def _state_dates(engine, asset: str) -> set[dt.date]:
    with engine.connect() as connection:
        return set(
            connection.execute(
                sa.text("SELECT business_date FROM ranking_partition_runs WHERE asset = :a"), {"a": asset}
            ).scalars()
        )


def _wait_until_a_session_waits_for_a_lock(engine, seconds: float = 30) -> None:
    """Until another session of this database is blocked on a lock (the point of the test), or fail."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    with engine.connect() as connection:

        def waiting() -> bool:
            found = connection.execute(query).scalar() > 0
            connection.rollback()  # a fresh snapshot of pg_stat_activity next time
            return found

        wait_until(waiting, seconds, "a session of this database waiting for a lock", every=0.01)


@pytest.fixture
def seeded(engine):
    seed(engine, 500, end_date=D, random_seed=3)
    return engine


def test_retention_drops_whole_old_dates_and_keeps_the_others_untouched(
    seeded, instance, definitions, monkeypatch
):
    monkeypatch.setenv("RANKING_RETENTION_DAYS", "2")
    run_date(definitions, instance, D - 2 * DAY)
    run_date(definitions, instance, D - DAY)
    kept_before = rankings_rows(seeded, D - DAY)
    scores_before = [
        row for row in table_rows(seeded, "user_scores", "score_date, user_id") if row[0] == D - DAY
    ]

    summary = run_date(definitions, instance, D)

    with seeded.connect() as connection:
        assert partition_dates(connection, RANKINGS) == [D - DAY, D]
        assert partition_dates(connection, USER_SCORES) == [D - DAY, D]
    assert rankings_rows(seeded, D - 2 * DAY) == []
    assert rankings_rows(seeded, D - DAY) == kept_before
    scores_after = [
        row for row in table_rows(seeded, "user_scores", "score_date, user_id") if row[0] == D - DAY
    ]
    assert scores_after == scores_before
    assert D - 2 * DAY not in _state_dates(seeded, USER_SCORES_ASSET) | _state_dates(seeded, RANKINGS_ASSET)
    ranking_run = summary.run_ids[-1]
    assert (
        materializations(instance, "rankings", ranking_run)[D.isoformat()]["dates_dropped_by_retention"] == 1
    )

    run_date(definitions, instance, D - 2 * DAY)  # an operator re-runs an old date: nothing newer is dropped

    with seeded.connect() as connection:
        assert partition_dates(connection, RANKINGS) == [D - 2 * DAY, D - DAY, D]
    assert rankings_rows(seeded, D - DAY) == kept_before


def test_a_reader_waits_for_the_swap_and_then_sees_the_whole_new_ranking(seeded, instance, definitions):
    run_date(definitions, instance, D)
    with seeded.connect() as connection:
        old = tuple(connection.execute(READ_D, {"d": D}).one())
    with seeded.begin() as connection:  # different scores, so the new ranking differs from the old one
        connection.execute(
            sa.text("UPDATE user_scores SET score = score + 1 WHERE score_date = :d"), {"d": D}
        )
        connection.execute(
            sa.text("UPDATE user_scores SET score = 0 WHERE score_date = :d AND user_id % 2 = 0"), {"d": D}
        )
    seen = []

    def read_in_another_session():
        with seeded.connect() as connection:
            seen.append(tuple(connection.execute(READ_D, {"d": D}).one()))

    reader = threading.Thread(target=read_in_another_session)

    def start_reader_before_commit(connection, rows):
        reader.start()  # the swap is done but not committed: the reader must not see it half-way
        _wait_until_a_session_waits_for_a_lock(seeded)

    report = replace_rankings(seeded, D, before_commit=start_reader_before_commit)
    reader.join(timeout=60)

    with seeded.connect() as connection:
        new = tuple(connection.execute(READ_D, {"d": D}).one())
    assert new != old and new[0] == report.rows
    assert seen == [new], "the reader waited for the commit and then read the complete new ranking"


def test_a_retention_drop_waits_for_readers_and_never_touches_the_kept_dates(seeded, instance, definitions):
    run_date(definitions, instance, D - DAY)
    run_date(definitions, instance, D)
    with seeded.connect() as connection:
        complete = tuple(connection.execute(READ_D, {"d": D}).one())
    dropped = []
    with seeded.connect() as reader:  # a reader in the middle of a transaction that read the ranking of D
        assert tuple(reader.execute(READ_D, {"d": D}).one()) == complete
        dropper = threading.Thread(target=lambda: dropped.extend(drop_dates_past_retention(seeded, D, 1)))
        dropper.start()
        _wait_until_a_session_waits_for_a_lock(seeded)
        assert tuple(reader.execute(READ_D, {"d": D}).one()) == complete
        reader.commit()
        dropper.join(timeout=60)

    assert dropped == [D - DAY]
    with seeded.connect() as connection:
        assert tuple(connection.execute(READ_D, {"d": D}).one()) == complete
        assert partition_dates(connection, RANKINGS) == [D]


def test_tables_of_a_release_before_partitioning_are_adopted_with_their_rows(engine, instance, definitions):
    seed(engine, 300, end_date=D, random_seed=5)
    with engine.begin() as connection:  # the contract's DDL, as the earlier release created it
        connection.execute(
            sa.text(
                """
                CREATE TABLE user_scores (score_date DATE, user_id BIGINT, order_count INT NOT NULL,
                    total_amount NUMERIC(14,2) NOT NULL, score NUMERIC(14,2) NOT NULL,
                    PRIMARY KEY (score_date, user_id));
                CREATE TABLE rankings (ranking_date DATE, rank INT NOT NULL, user_id BIGINT,
                    score NUMERIC(14,2) NOT NULL, order_count INT NOT NULL,
                    PRIMARY KEY (ranking_date, user_id));
                INSERT INTO rankings VALUES ('2026-11-20', 1, 42, 10.00, 1), ('2026-11-27', 1, 7, 5.00, 1);
                """
            )
        )

    ensure_output_tables(engine)

    assert rankings_rows(engine, dt.date(2026, 11, 20)) == [(1, 42, 10, 1)]
    run_date(definitions, instance, D)  # replaces the adopted rows of D, keeps the other date
    with engine.connect() as connection:
        assert partition_dates(connection, RANKINGS) == [D]
        in_default = connection.execute(sa.text("SELECT ranking_date FROM rankings_default")).scalars().all()
    assert in_default == [dt.date(2026, 11, 20)]
    assert (1, 7, 5, 1) not in rankings_rows(engine, D) and len(rankings_rows(engine, D)) > 100
