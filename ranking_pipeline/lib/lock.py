"""The distributed batch lock of design 5.1: key ``batch:lock:{process_id}``, expiry 30 minutes.

Two backends with one behaviour: Redis (``SET key value NX PX``; released or checked only with the
holder's token) when a Redis URL is configured, and a PostgreSQL table otherwise, so the embedded default is
protected too. A holder that cannot get the lock learns who has it (run, since when, where). The lock is
released explicitly (``finally``) and otherwise expires, so a killed run frees it after the expiry.

``verify(token, connection)`` is the fencing check run inside the writer's transaction just before commit:
a writer that outlived its lock (expired, and maybe taken by a newer run) must not commit over the newer one.
With the PostgreSQL backend it also locks the lock row ``FOR SHARE`` in that transaction, so nobody can take
the lock over between the check and the commit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

DEFAULT_TTL_SECONDS = 30 * 60  # = the batch's timeout


def lock_key(process_id: str) -> str:
    return f"batch:lock:{process_id}"


@dataclass(frozen=True)
class LockHolder:
    token: str
    run_id: str
    acquired_at: str  # ISO 8601, UTC
    host: str
    pid: int

    def describe(self) -> str:
        return f"run {self.run_id} (host {self.host}, pid {self.pid}) since {self.acquired_at}"


class LockHeldError(RuntimeError):
    """Somebody else holds the lock; the message names them."""


class LockLostError(RuntimeError):
    """The fencing check failed: this writer no longer holds the lock, so it must not commit."""


def new_holder(run_id: str) -> LockHolder:
    return LockHolder(
        token=uuid.uuid4().hex,
        run_id=run_id,
        acquired_at=dt.datetime.now(tz=dt.UTC).isoformat(timespec="seconds"),
        host=socket.gethostname(),
        pid=os.getpid(),
    )


class BatchLock(ABC):
    """One named lock with an expiry."""

    backend: str

    def __init__(self, key: str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self.key = key
        self.ttl_seconds = ttl_seconds

    @abstractmethod
    def try_acquire(self, holder: LockHolder) -> LockHolder | None:
        """Take the lock for ``holder``; None if taken, else the current holder (someone else)."""

    @abstractmethod
    def release(self, token: str) -> bool:
        """Release if ``token`` still holds it; True if released, False if it was not ours any more."""

    @abstractmethod
    def current_holder(self) -> LockHolder | None: ...

    @abstractmethod
    def verify(self, token: str, connection: Connection | None = None) -> None:
        """Raise LockLostError unless ``token`` still holds the lock (run inside the writer's transaction)."""

    def acquire(self, run_id: str) -> LockHolder:
        holder = new_holder(run_id)
        current = self.try_acquire(holder)
        if current is not None:
            raise LockHeldError(
                f"lock {self.key} ({self.backend}) is held by {current.describe()}; "
                f"not starting, nothing was written. It is released when that run ends, or expires "
                f"{self.ttl_seconds // 60} minutes after it was taken"
            )
        return holder

    @contextmanager
    def hold(self, run_id: str) -> Iterator[LockHolder]:
        """Hold the lock for the block; released in ``finally`` (a killed process leaves it to expire)."""
        holder = self.acquire(run_id)
        try:
            yield holder
        finally:
            self.release(holder.token)


# --- Redis ------------------------------------------------------------------------------------------

# Delete or read only when the stored holder carries our token.
_RELEASE_IF_OWNER = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['token'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisBatchLock(BatchLock):
    backend = "redis"

    def __init__(self, client, key: str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        super().__init__(key, ttl_seconds)
        self.client = client
        self._release = client.register_script(_RELEASE_IF_OWNER)

    def try_acquire(self, holder: LockHolder) -> LockHolder | None:
        value = json.dumps(asdict(holder))
        if self.client.set(self.key, value, nx=True, px=self.ttl_seconds * 1000):
            return None
        return self.current_holder() or self.try_acquire(holder)  # expired in between: try again

    def release(self, token: str) -> bool:
        return bool(self._release(keys=[self.key], args=[token]))

    def current_holder(self) -> LockHolder | None:
        value = self.client.get(self.key)
        return LockHolder(**json.loads(value)) if value else None

    def verify(self, token: str, connection: Connection | None = None) -> None:
        current = self.current_holder()
        if current is None or current.token != token:
            now_held = f"now held by {current.describe()}" if current else "expired"
            raise LockLostError(f"lock {self.key} is no longer ours ({now_held}); not committing")


# --- PostgreSQL -------------------------------------------------------------------------------------

metadata = sa.MetaData()
batch_locks = sa.Table(
    "ranking_batch_locks",
    metadata,
    sa.Column("lock_key", sa.Text, primary_key=True),
    sa.Column("token", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# Insert, or take over an expired row, atomically; returns a row only if we got the lock.
_ACQUIRE = sa.text(
    """
    INSERT INTO ranking_batch_locks (lock_key, token, run_id, host, pid, acquired_at, expires_at)
    VALUES (:key, :token, :run_id, :host, :pid, now(), now() + make_interval(secs => :ttl))
    ON CONFLICT (lock_key) DO UPDATE SET
        token = EXCLUDED.token, run_id = EXCLUDED.run_id, host = EXCLUDED.host, pid = EXCLUDED.pid,
        acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
    WHERE ranking_batch_locks.expires_at <= now()
    RETURNING acquired_at
    """
)
_HOLDER = sa.text(
    "SELECT token, run_id, acquired_at, host, pid FROM ranking_batch_locks "
    "WHERE lock_key = :key AND expires_at > now()"
)
_VERIFY = sa.text(
    "SELECT 1 FROM ranking_batch_locks WHERE lock_key = :key AND token = :token AND expires_at > now() "
    "FOR SHARE"
)


class PostgresBatchLock(BatchLock):
    backend = "postgresql"

    def __init__(self, engine: Engine, key: str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        super().__init__(key, ttl_seconds)
        self.engine = engine
        with engine.begin() as connection:
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('ranking_batch_locks'))"))
            metadata.create_all(connection, checkfirst=True)

    def try_acquire(self, holder: LockHolder) -> LockHolder | None:
        with self.engine.begin() as connection:
            acquired = connection.execute(
                _ACQUIRE,
                {
                    "key": self.key,
                    "token": holder.token,
                    "run_id": holder.run_id,
                    "host": holder.host,
                    "pid": holder.pid,
                    "ttl": self.ttl_seconds,
                },
            ).one_or_none()
        return None if acquired else self.current_holder() or self.try_acquire(holder)

    def release(self, token: str) -> bool:
        with self.engine.begin() as connection:
            deleted = connection.execute(
                sa.delete(batch_locks).where(batch_locks.c.lock_key == self.key, batch_locks.c.token == token)
            )
        return deleted.rowcount == 1

    def current_holder(self) -> LockHolder | None:
        with self.engine.connect() as connection:
            row = connection.execute(_HOLDER, {"key": self.key}).one_or_none()
        if row is None:
            return None
        token, run_id, acquired_at, host, pid = row
        return LockHolder(
            token, run_id, acquired_at.astimezone(dt.UTC).isoformat(timespec="seconds"), host, pid
        )

    def verify(self, token: str, connection: Connection | None = None) -> None:
        if connection is None:
            with self.engine.begin() as own:
                return self.verify(token, own)
        if connection.execute(_VERIFY, {"key": self.key, "token": token}).one_or_none() is None:
            current = self.current_holder()
            now_held = f"now held by {current.describe()}" if current else "expired"
            raise LockLostError(f"lock {self.key} is no longer ours ({now_held}); not committing")
        return None


def make_batch_lock(
    process_id: str, *, redis_url: str | None, engine: Engine, ttl_seconds: int = DEFAULT_TTL_SECONDS
) -> BatchLock:
    """Redis when ``redis_url`` is given, the ranking database otherwise."""
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=10)
        return RedisBatchLock(client, lock_key(process_id), ttl_seconds)
    return PostgresBatchLock(engine, lock_key(process_id), ttl_seconds)
