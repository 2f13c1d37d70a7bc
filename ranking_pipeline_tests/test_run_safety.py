"""Safe at 03:00: the lock stops a second batch, lock waits time out and retry, a failed range resumes,
and the cache is cleared after the rankings commit."""

import datetime as dt
import threading
import time
import uuid

import dagster as dg
import pytest
import redis
import sqlalchemy as sa

from ranking_pipeline.batch_runner import BatchRunFailed, run_batch_runs
from ranking_pipeline.lib.business_date import BusinessDate
from ranking_pipeline.lib.lock import PostgresBatchLock, lock_key
from ranking_pipeline.lib.ranges import USER_ID_RANGES
from ranking_pipeline.lib.schema import ensure_output_tables
from ranking_pipeline.lib.seed import seed
from ranking_pipeline_tests.helpers import (
    batch_runs,
    error_classes,
    materializations,
    project_defs,
    ranking_runs,
    rankings_rows,
    run_date,
    run_log_messages,
)
from ranking_pipeline_tests.test_against_sql import INDEPENDENT_RANKING

D = dt.date(2026, 11, 27)
FAILING_RANGE = USER_ID_RANGES[3]  # slot 4 of the cut the first scoring stores


@pytest.fixture
def seeded(engine):
    seed(engine, 3_000, end_date=D, random_seed=11)
    return engine


def expected_rankings(engine) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(INDEPENDENT_RANKING, {"d": D})]


def scoring_run_ids(instance) -> list[str]:
    return [run.run_id for run in batch_runs(instance)]


def ranking_run_ids(instance) -> list[str]:
    return [run.run_id for run in ranking_runs(instance)]


def score_states(engine) -> dict[str, tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT partition_key, status, run_id FROM ranking_partition_runs "
                "WHERE asset = 'user_scores' AND business_date = :d"
            ),
            {"d": D},
        )
        return {key: (status, run_id) for key, status, run_id in rows}


def test_a_held_lock_fails_the_run_at_once_naming_the_holder_and_writes_nothing(
    seeded, instance, definitions
):
    run_date(definitions, instance, D)
    before = rankings_rows(seeded, D)
    with PostgresBatchLock(seeded, lock_key("BATCH-001")).held(
        "run-of-another-deployment"
    ):  # alive meanwhile
        with seeded.begin() as connection:  # a change the blocked run would have picked up
            connection.execute(sa.text("UPDATE orders SET amount = amount + 7 WHERE user_id = 5"))

        started = time.monotonic()
        with pytest.raises(BatchRunFailed) as failed:
            run_batch_runs(definitions, instance, BusinessDate.of(D), force=True)
    assert failed.value.step == "user_scores" and "run-of-another-deployment" in str(failed.value)

    assert time.monotonic() - started < 20, "a held lock must not be retried for minutes"
    assert rankings_rows(seeded, D) == before
    failed_run = scoring_run_ids(instance)[0]
    errors = [
        m for m in run_log_messages(instance, failed_run) if "is held by run run-of-another-deployment" in m
    ]
    assert errors, "the run's event log names the holder"


def test_a_row_lock_held_elsewhere_times_out_after_10_s_and_the_retry_succeeds(
    seeded, instance, definitions, no_retry_delay
):
    run_date(definitions, instance, D)
    blocker = seeded.connect()
    transaction = blocker.begin()
    blocker.execute(
        sa.text("SELECT 1 FROM user_scores WHERE score_date = :d AND user_id = 1 FOR UPDATE"), {"d": D}
    )
    releaser = threading.Timer(13, transaction.rollback)
    releaser.start()
    started = time.monotonic()
    try:
        run_batch_runs(definitions, instance, BusinessDate.of(D), force=True)
    finally:
        releaser.join()
        blocker.close()

    assert time.monotonic() - started >= 10
    scoring = scoring_run_ids(instance)[0]
    [retry] = instance.all_logs(scoring, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)  # retried once
    assert "LockTimeoutError" in error_classes(retry.dagster_event.event_specific_data.error)
    assert rankings_rows(seeded, D) == expected_rankings(seeded)


def test_a_failed_range_is_retried_alone_and_the_result_equals_a_clean_run(
    seeded, instance, definitions, no_retry_delay
):
    fail_once_in_range(seeded, FAILING_RANGE, times=1)

    run_date(definitions, instance, D)

    run_id = scoring_run_ids(instance)[0]
    computed = {
        key: meta["computed"] for key, meta in materializations(instance, "user_scores", run_id).items()
    }
    assert computed == {f"{D}|{r.key}": True for r in USER_ID_RANGES}  # one run; the retry redid one range
    retried = [m for m in run_log_messages(instance, run_id) if "already completed by run" in m]
    assert len(retried) == len(USER_ID_RANGES) - 1, "the retry skipped the ranges its first attempt finished"
    assert score_states(seeded) == {r.key: ("completed", run_id) for r in USER_ID_RANGES}
    assert rankings_rows(seeded, D) == expected_rankings(seeded)


def test_a_rerun_after_a_failed_batch_resumes_from_the_completed_ranges(
    seeded, instance, definitions, no_retry_delay
):
    fail_once_in_range(seeded, FAILING_RANGE, times=100)  # every attempt of the first run fails
    with pytest.raises(BatchRunFailed, match="injected failure"):
        run_date(definitions, instance, D)
    failed_run = scoring_run_ids(instance)[0]
    states = score_states(seeded)
    assert states.pop(FAILING_RANGE.key) == ("failed", failed_run)
    assert set(states.values()) == {("completed", failed_run)}
    assert rankings_rows(seeded, D) == []
    with seeded.begin() as connection:
        connection.execute(sa.text("DROP TRIGGER fail_in_range ON user_scores"))

    run_date(definitions, instance, D)  # the operator simply runs it again

    rerun = scoring_run_ids(instance)[0]
    computed = {
        key: meta["computed"] for key, meta in materializations(instance, "user_scores", rerun).items()
    }
    assert computed == {f"{D}|{r.key}": r == FAILING_RANGE for r in USER_ID_RANGES}
    assert score_states(seeded)[FAILING_RANGE.key] == ("completed", rerun)
    assert rankings_rows(seeded, D) == expected_rankings(seeded)


def fail_once_in_range(engine, slot, times: int) -> None:
    """A real PostgreSQL error a retry can fix (a serialization failure) while inserting the scores of the
    users of ``slot`` under the stored cut, for the first ``times`` attempts (a sequence is not rolled back
    with the failed transaction)."""
    ensure_output_tables(engine)
    number = slot.number  # the slot's IDs: from boundaries[number - 1] to below boundaries[number]
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE SEQUENCE fail_counter"))
        connection.execute(
            sa.text(
                f"""
                CREATE FUNCTION fail_in_range() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE bounds BIGINT[] := (SELECT boundaries FROM ranking_range_cuts
                                            ORDER BY first_date DESC LIMIT 1);
                BEGIN
                  IF NEW.user_id >= bounds[{number - 1}] AND NEW.user_id < bounds[{number}] THEN
                    IF nextval('fail_counter') <= {times} THEN
                      RAISE EXCEPTION 'injected failure in %', NEW.user_id
                        USING ERRCODE = 'serialization_failure';
                    END IF;
                  END IF;
                  RETURN NEW;
                END $$;
                CREATE TRIGGER fail_in_range BEFORE INSERT ON user_scores
                  FOR EACH ROW EXECUTE FUNCTION fail_in_range();
                """  # noqa: S608 - the numbers come from the test
            )
        )


def test_the_cache_keys_are_deleted_after_the_rankings_commit(seeded, database_url, instance, redis_url):
    prefix = f"ranking-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    client.set(f"{prefix}:top100", "old")
    client.set(f"{prefix}:user:42", "old")
    client.set(f"other-{prefix}", "keep")
    definitions = project_defs(database_url, redis_url=redis_url, cache_key_pattern=f"{prefix}:*")  # lock too

    run_date(definitions, instance, D)

    assert client.keys(f"{prefix}:*") == []
    assert client.get(f"other-{prefix}") == b"keep"
    assert materializations(instance, "rankings")[D.isoformat()]["cache_keys_deleted"] == 2
    messages = run_log_messages(instance, ranking_run_ids(instance)[0])
    assert any(f"'{prefix}:*'" in message for message in messages)  # the run's log names the pattern
    client.delete(f"other-{prefix}")


def test_without_redis_the_cache_step_says_it_skipped(seeded, instance, definitions):
    run_date(definitions, instance, D)

    cache_step = materializations(instance, "rankings")[D.isoformat()]
    assert cache_step["cache_keys_deleted"] == "no Redis configured"


def test_an_unreachable_redis_fails_the_batch_once_without_retries_naming_it(
    seeded, database_url, instance, definitions, monkeypatch
):
    from ranking_pipeline.lib import errors

    run_date(definitions, instance, D)
    before = rankings_rows(seeded, D)
    monkeypatch.setattr(
        errors, "STORE_PATIENCE_SECONDS", 2.0
    )  # (30 s in production: a restart is waited out)
    wrong = project_defs(database_url, redis_url="redis://127.0.0.1:1/0")  # nothing listens there

    started = time.monotonic()
    with pytest.raises(BatchRunFailed) as failed:
        run_batch_runs(wrong, instance, BusinessDate.of(D), force=True)

    assert time.monotonic() - started < 30
    assert "StoreUnreachableError" in failed.value.causes and failed.value.step == "user_scores"
    assert "redis://127.0.0.1:1/0" in str(failed.value) and "RANKING_REDIS_URL" in str(failed.value)
    scoring = scoring_run_ids(instance)[0]
    assert not instance.all_logs(scoring, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert rankings_rows(seeded, D) == before
