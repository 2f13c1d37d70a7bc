"""Resources: the ranking database, Redis, the batch lock, the rankings cache, the upstream gate, the clock.

Their settings come from the environment (lib/settings.py), read and checked once when the code location
loads: a wrong value stops the load with one line. A set variable is handed to the resource as a
``dg.EnvVar``, so the UI's resource view shows which variable configures what and never a secret; an unset
one leaves the default (written once, in lib/settings.py). The database engine (its connection pool) is one
per database URL in the process, shared by every run and tick there; the Redis and Slack clients are built on
first use, once per resource instance: per run, or per sensor tick.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr
from sqlalchemy.engine import Engine

from ranking_pipeline.lib import settings
from ranking_pipeline.lib.cache import DEFAULT_CACHE_KEY_PATTERN, clear_keys, describe_redis_url, redis_client
from ranking_pipeline.lib.db import check_reachable, describe_url, get_engine
from ranking_pipeline.lib.embedded_pg import embedded_database_url
from ranking_pipeline.lib.errors import wait_until_reachable
from ranking_pipeline.lib.gate import DEFAULT_GIVE_UP_AT_JST, parse_time_of_day
from ranking_pipeline.lib.lock import (
    DEFAULT_TTL_SECONDS,
    BatchLock,
    PostgresBatchLock,
    RedisBatchLock,
    lock_key,
)
from ranking_pipeline.lib.schema import ensure_output_tables, validate_input_tables

DEFAULT_EMBEDDED_PGDATA = settings.default("RANKING_EMBEDDED_PGDATA")


class RankingDatabase(dg.ConfigurableResource):
    """The PostgreSQL database with the input tables (users, orders) and the pipeline's tables."""

    url: str | None = Field(
        default=None,
        description="RANKING_DATABASE_URL: postgresql://user:password@host:5432/db. Unset: the embedded "
        "server.",
    )
    embedded_pgdata: str = Field(
        default=DEFAULT_EMBEDDED_PGDATA,
        description="RANKING_EMBEDDED_PGDATA: data folder of the embedded PostgreSQL server (used without a "
        "URL).",
    )
    _ready: bool = PrivateAttr(default=False)

    def engine(self) -> Engine:
        """The database's engine (the embedded server is started or joined on first use)."""
        return get_engine(self.url if self.url else embedded_database_url(self.embedded_pgdata))

    def describe(self) -> str:
        """Where the data lives, for people: the URL without its password, or the embedded server's folder."""
        if self.url:
            return describe_url(self.url)
        return f"the embedded PostgreSQL in {Path(self.embedded_pgdata).expanduser().resolve()}"

    def ready_engine(self, patience: float | None = None) -> Engine:
        """The engine, once per run after checking that the server answers (a short outage is waited out),
        the input tables match the contract and the output tables exist."""
        if not self._ready:

            def probe() -> None:
                check_reachable(self.engine(), self.describe())

            if patience == 0:
                probe()
            else:
                what = f"the database {self.describe()}"
                wait_until_reachable(probe, what=what, setting="RANKING_DATABASE_URL", patience=patience)
        engine = self.engine()
        if not self._ready:
            with engine.connect() as connection:
                validate_input_tables(connection)
            ensure_output_tables(engine)
            self._ready = True
        return engine


class RankingRedis(dg.ConfigurableResource):
    """Redis, for the batch lock and the rankings cache. Unset: the lock lives in the ranking database and
    there is no cache to clear."""

    url: str | None = Field(
        default=None, description="RANKING_REDIS_URL: redis://host:6379/0. Unset: no Redis."
    )
    _client: object = PrivateAttr(default=None)

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def client(self, patience: float | None = None):
        """One client (connection pool) per run or tick; the first use waits out a short outage (up to
        ``patience`` seconds, default the store patience)."""
        if self._client is None:
            client = redis_client(self.url)
            wait_until_reachable(
                client.ping,
                what=f"Redis at {describe_redis_url(self.url)}",
                setting="RANKING_REDIS_URL",
                patience=patience,
            )
            self._client = client
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()


class BatchLockResource(dg.ConfigurableResource):
    """The distributed lock ``batch:lock:{process_id}`` (design 5.1): in Redis when it is configured, else in
    the table ranking_batch_locks of the ranking database, so the embedded default is protected too."""

    redis: RankingRedis
    ttl_seconds: int = Field(
        default=DEFAULT_TTL_SECONDS, description="Expiry: 30 minutes, the batch's timeout."
    )

    def for_process(self, process_id: str, engine: Engine) -> BatchLock:
        if self.redis.configured:
            return RedisBatchLock(self.redis.client(), lock_key(process_id), self.ttl_seconds)
        return PostgresBatchLock(engine, lock_key(process_id), self.ttl_seconds)


class RankingCache(dg.ConfigurableResource):
    """Redis keys derived from rankings, deleted after each new ranking commits."""

    redis: RankingRedis
    key_pattern: str = Field(
        default=DEFAULT_CACHE_KEY_PATTERN,
        description="RANKING_CACHE_KEY_PATTERN: keys to delete (SCAN pattern).",
    )

    def pattern(self) -> str:
        return self.key_pattern

    def clear(self) -> int | None:
        """Delete the matching keys; None when no Redis is configured."""
        return clear_keys(self.redis.client(), self.key_pattern) if self.redis.configured else None


class BatchGate(dg.ConfigurableResource):
    """When automation stops waiting for BATCH-000, and when a missing ranking of D becomes an alert (HH:MM
    JST, the morning after D)."""

    give_up_at_jst: str = Field(
        default=DEFAULT_GIVE_UP_AT_JST.strftime("%H:%M"),
        description="RANKING_GATE_GIVE_UP_AT_JST: when the gate gives up waiting for BATCH-000 (HH:MM JST).",
    )

    rankings_deadline_jst: str | None = Field(
        default=None,
        description="RANKING_RANKINGS_DEADLINE_JST: when a ranking of D that is still not committed is a "
        "Critical alert (HH:MM JST); default the gate's give-up time.",
    )

    def give_up_at(self) -> dt.time:
        return parse_time_of_day(self.give_up_at_jst, source="RANKING_GATE_GIVE_UP_AT_JST")

    def rankings_deadline(self) -> dt.time:
        if not self.rankings_deadline_jst:
            return self.give_up_at()
        return parse_time_of_day(self.rankings_deadline_jst, source="RANKING_RANKINGS_DEADLINE_JST")


class Clock(dg.ConfigurableResource):
    """The time the schedules' catch-up and alert sensors act on: the system clock, or a fixed instant (tests
    pass one in instead of patching time)."""

    fixed_at: str | None = Field(default=None, description="An ISO 8601 instant with its offset; tests only.")

    def now(self) -> dt.datetime:
        if self.fixed_at:
            return dt.datetime.fromisoformat(self.fixed_at)
        return dt.datetime.now(tz=dt.UTC)


def from_environment(name: str, *, integer: bool = False):
    """``dg.EnvVar(name)`` when the variable is set (the UI shows its name, never its value), else the
    setting's default (``lib/settings.py``, the one place defaults are written)."""
    if name not in settings.configured():
        value = settings.default(name)
        return int(value) if integer and value is not None else value
    return dg.EnvVar.int(name) if integer else dg.EnvVar(name)


def project_resources() -> dict[str, dg.ConfigurableResource]:
    """The project's data resources configured from the environment (checked first: one line if wrong)."""
    settings.validate()
    redis = RankingRedis(url=from_environment("RANKING_REDIS_URL"))
    return {
        "database": RankingDatabase(
            url=from_environment("RANKING_DATABASE_URL"),
            embedded_pgdata=from_environment("RANKING_EMBEDDED_PGDATA"),
        ),
        "redis": redis,
        "batch_lock": BatchLockResource(redis=redis),
        "ranking_cache": RankingCache(redis=redis, key_pattern=from_environment("RANKING_CACHE_KEY_PATTERN")),
        "batch_gate": BatchGate(
            give_up_at_jst=from_environment("RANKING_GATE_GIVE_UP_AT_JST"),
            rankings_deadline_jst=from_environment("RANKING_RANKINGS_DEADLINE_JST"),
        ),
        "clock": Clock(),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=project_resources())
