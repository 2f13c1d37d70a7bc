"""Resources: the ranking database, the batch lock, the rankings cache and the upstream gate's setting."""

from __future__ import annotations

import datetime as dt

import dagster as dg
from sqlalchemy.engine import Engine

from ranking_pipeline.lib.cache import (
    CACHE_KEY_PATTERN_ENV,
    DEFAULT_CACHE_KEY_PATTERN,
    clear_keys,
    redis_client,
    redis_url_from_env,
)
from ranking_pipeline.lib.db import check_reachable, get_engine
from ranking_pipeline.lib.gate import DEFAULT_GIVE_UP_AT_JST, parse_time_of_day
from ranking_pipeline.lib.lock import DEFAULT_TTL_SECONDS, BatchLock, make_batch_lock
from ranking_pipeline.lib.schema import ensure_output_tables, validate_input_tables
from ranking_pipeline.lib.settings import setting

GIVE_UP_AT_ENV = "RANKING_GATE_GIVE_UP_AT_JST"


class RankingDatabase(dg.ConfigurableResource):
    """The PostgreSQL database with the input tables (users, orders) and the pipeline's tables.

    ``database_url`` unset: ``RANKING_DATABASE_URL`` from the environment, else the embedded server.
    """

    database_url: str | None = None

    def engine(self) -> Engine:
        return get_engine(self.database_url)

    def ready_engine(self) -> Engine:
        """An engine after checking the server answers, the inputs match the contract, outputs exist."""
        engine = self.engine()
        check_reachable(engine)
        with engine.connect() as connection:
            validate_input_tables(connection)
        ensure_output_tables(engine)
        return engine


class BatchLockResource(dg.ConfigurableResource):
    """The distributed lock ``batch:lock:{process_id}`` (design 5.1).

    Redis at ``redis_url`` (unset: ``RANKING_REDIS_URL``) when configured, else a table in the ranking
    database, so the embedded default is protected too.
    """

    redis_url: str | None = None
    ttl_seconds: int = DEFAULT_TTL_SECONDS

    def for_process(self, process_id: str, engine: Engine) -> BatchLock:
        return make_batch_lock(
            process_id,
            redis_url=redis_url_from_env(self.redis_url),
            engine=engine,
            ttl_seconds=self.ttl_seconds,
        )


class RankingCache(dg.ConfigurableResource):
    """Redis keys derived from rankings, deleted after each new ranking commits.

    ``redis_url`` unset: ``RANKING_REDIS_URL``; no Redis, nothing to clear. ``key_pattern`` unset:
    ``RANKING_CACHE_KEY_PATTERN``, else ``ranking:*``.
    """

    redis_url: str | None = None
    key_pattern: str | None = None

    def pattern(self) -> str:
        return setting(self.key_pattern, CACHE_KEY_PATTERN_ENV, DEFAULT_CACHE_KEY_PATTERN)

    def clear(self) -> int | None:
        """Delete the matching keys; None when no Redis is configured."""
        url = redis_url_from_env(self.redis_url)
        if not url:
            return None
        client = redis_client(url)
        try:
            return clear_keys(client, self.pattern())
        finally:
            client.close()


class BatchGate(dg.ConfigurableResource):
    """When automation stops waiting for BATCH-000: ``give_up_at_jst`` (HH:MM JST, the morning after D);
    unset: ``RANKING_GATE_GIVE_UP_AT_JST``, else 09:00."""

    give_up_at_jst: str | None = None

    def give_up_at(self) -> dt.time:
        configured = setting(self.give_up_at_jst, GIVE_UP_AT_ENV)
        return parse_time_of_day(configured, source=GIVE_UP_AT_ENV) if configured else DEFAULT_GIVE_UP_AT_JST


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "database": RankingDatabase(),
            "batch_lock": BatchLockResource(),
            "ranking_cache": RankingCache(),
            "batch_gate": BatchGate(),
        }
    )
