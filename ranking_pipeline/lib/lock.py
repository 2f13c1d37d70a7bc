"""The distributed batch lock of design 5.1: key ``batch:lock:{process_id}``, expiry 30 minutes.

Two backends with one behaviour: Redis (a Lua script per operation, on the server's clock) when Redis is
configured, and the table ``ranking_batch_locks`` of the ranking database otherwise (the embedded default is
protected too).

A holder keeps the lock alive with a heartbeat: every 20 s it renews a 60 s lease. So a holder that is gone
(process killed, machine lost) loses the lock within a minute, and nobody waits out the 30 minutes, which
stay the upper bound of any holding. A new holder takes the lock when it is free, when the holder's lease
has lapsed, when the holder is the same batch (a step retry, or the ranking run of the batch whose scoring
handed the lock over), or when the holder is known to be gone (its process no longer exists here, or the
caller says its batch has ended). Two live holders are impossible: taking over is one atomic statement that
checks all of this.

A holder may *hand the lock over* instead of releasing it (the scoring run of a batch, on success): the lock
then belongs to no process, keeps its holder id, and lives until its expiry, so only the same batch's next
run can take it (or anyone, once the caller says that batch has ended).

Releasing never raises: it is retried, and if it still fails the stopped heartbeat lets the lease lapse within
a minute.

``verify(token, connection)`` is the fencing check run inside the writer's transaction just before commit: a
writer that lost its lock (lease lapsed, taken over) must not commit over the new holder. With the PostgreSQL
backend it also locks the lock row ``FOR SHARE`` in that transaction, so nobody can take the lock between
the check and the commit.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ranking_pipeline.lib.errors import TransientError

DEFAULT_TTL_SECONDS = 30 * 60  # = the batch's timeout: no holding lasts longer
DEFAULT_LEASE_SECONDS = 60  # a silent holder loses the lock within this
RELEASE_ATTEMPTS = 3

logger = logging.getLogger("ranking_pipeline.lock")


def lock_key(process_id: str) -> str:
    return f"batch:lock:{process_id}"


@dataclass(frozen=True)
class LockHolder:
    token: str
    run_id: str
    acquired_at: str  # ISO 8601, UTC
    host: str
    pid: int
    lease_until: str = ""  # ISO 8601, UTC: lost unless renewed by then
    expires_at: str = ""  # ISO 8601, UTC: the 30-minute upper bound

    @property
    def handed_over(self) -> bool:
        return not self.host

    def describe(self) -> str:
        if self.handed_over:
            return (
                f"batch {self.run_id} since {self.acquired_at} (its scores are done; its ranking run takes "
                "the lock next)"
            )
        return f"run {self.run_id} (host {self.host}, pid {self.pid}) since {self.acquired_at}"


class LockHeldError(RuntimeError):
    """Somebody else holds the lock; the message names them (``holder``, when known)."""

    def __init__(self, message: str, holder: LockHolder | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class LockLostError(TransientError):
    """The fencing check failed: this writer no longer holds the lock, so it must not commit (a retry takes
    the lock again if it is free). ``now_held_by``: who holds it now (None: it lapsed)."""

    def __init__(self, message: str, now_held_by: LockHolder | None = None) -> None:
        super().__init__(message)
        self.now_held_by = now_held_by


def _utc(value: dt.datetime | float) -> str:
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _dead_here(holder: LockHolder) -> bool:
    """The holder's process ran on this machine and exists no more (killed, out of memory)."""
    import psutil

    return (
        holder.host == socket.gethostname()
        and holder.pid != os.getpid()
        and not psutil.pid_exists(holder.pid)
    )


class BatchLock(ABC):
    """One named lock with a lease and an expiry."""

    backend: str

    def __init__(
        self, key: str, ttl_seconds: int = DEFAULT_TTL_SECONDS, lease_seconds: int = DEFAULT_LEASE_SECONDS
    ) -> None:
        self.key = key
        self.ttl_seconds = ttl_seconds
        self.lease_seconds = min(lease_seconds, ttl_seconds)

    @abstractmethod
    def _take(self, token: str, run_id: str, host: str, pid: int, ended_token: str | None) -> bool:
        """Atomically take the lock if free, lapsed, held by ``run_id`` or by ``ended_token``."""

    @abstractmethod
    def renew(self, token: str) -> bool:
        """Extend the lease (never past the expiry) while ``token`` holds the lock; False if it does not."""

    @abstractmethod
    def _delete(self, token: str | None) -> bool:
        """Delete the lock if ``token`` holds it (any holder when None); True if a lock was deleted."""

    @abstractmethod
    def _hand_over(self, token: str) -> bool:
        """While ``token`` holds the lock: detach it from this process (no host, no pid, a new token) and
        let its lease run to the expiry. True if handed over."""

    @abstractmethod
    def current_holder(self) -> LockHolder | None:
        """The live holder (lease and expiry not passed), or None."""

    @abstractmethod
    def verify(self, token: str, connection: Connection | None = None) -> None:
        """Raise LockLostError unless ``token`` still holds the lock (run inside the writer's transaction)."""

    def acquire(self, run_id: str, run_ended: Callable[[str], bool] | None = None) -> LockHolder:
        """Take the lock for ``run_id`` or raise LockHeldError naming the live holder.

        A holder known to be gone is taken over at once instead of waiting for its lease to lapse: a process
        of this machine that no longer exists, or a run that ``run_ended(run_id)`` says has finished."""
        token, host, pid = uuid.uuid4().hex, socket.gethostname(), os.getpid()
        for _ in range(3):  # the holder may change between the two reads: look again
            current = self.current_holder()
            gone = current is not None and (
                _dead_here(current) or (run_ended is not None and run_ended(current.run_id))
            )
            ended = current.token if gone else None
            if self._take(token, run_id, host, pid, ended):
                return self.current_holder() or LockHolder(token, run_id, _utc(time.time()), host, pid)
            holder = self.current_holder()
            if holder is not None:
                raise LockHeldError(
                    f"lock {self.key} ({self.backend}) is held by {holder.describe()}, alive (lease until "
                    f"{holder.lease_until}); not starting, nothing was written. It is released when that run "
                    f"ends, taken over within {self.lease_seconds} s if its process is gone, and expires at "
                    f"{holder.expires_at} at the latest",
                    holder,
                )
        raise LockHeldError(f"lock {self.key} ({self.backend}) changed hands repeatedly; not starting")

    def release(self, token: str) -> bool:
        """Release if ``token`` still holds it: True if released, False if it was not ours any more or the
        store did not answer (then a background thread keeps trying until the lease would have lapsed anyway).
        Never raises."""
        for attempt in range(1, RELEASE_ATTEMPTS + 1):
            try:
                return self._delete(token)
            except Exception as error:
                logger.warning(
                    f"releasing lock {self.key} failed (attempt {attempt} of {RELEASE_ATTEMPTS}): {error!r}"
                )
                time.sleep(attempt)
        threading.Thread(
            target=self._release_later, args=(token,), name=f"release {self.key}", daemon=True
        ).start()
        return False

    def _release_later(self, token: str) -> None:
        deadline = time.monotonic() + self.lease_seconds
        while time.monotonic() < deadline:
            time.sleep(min(2.0, self.lease_seconds / 10))
            try:
                self._delete(token)
                logger.warning(f"lock {self.key}: released on a later attempt")
                return
            except Exception:  # still unreachable: try again; the lease lapses by the deadline anyway
                continue

    def force_release(self) -> LockHolder | None:
        """Remove the lock whoever holds it (operators only); returns the holder that was removed."""
        holder = self.current_holder()
        self._delete(None)
        return holder

    def hand_over(self, token: str) -> bool:
        """Keep the lock for the holder's batch after this process stops holding it (see the module's
        docstring); if that fails the lock is released instead. Never raises."""
        try:
            if self._hand_over(token):
                return True
        except Exception as error:
            logger.warning(f"handing lock {self.key} over failed, releasing it instead: {error!r}")
        self.release(token)
        return False

    @contextmanager
    def held(
        self,
        run_id: str,
        run_ended: Callable[[str], bool] | None = None,
        *,
        hand_over: Callable[[], bool] = lambda: False,
    ) -> Iterator[LockHolder]:
        """Hold the lock for the block, renewing its lease in the background; afterwards released, or handed
        over when ``hand_over()`` says so (asked as the block ends)."""
        holder = self.acquire(run_id, run_ended)
        stop = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(holder.token, stop), name=f"heartbeat {self.key}", daemon=True
        )
        heartbeat.start()
        try:
            yield holder
        finally:
            stop.set()
            heartbeat.join(timeout=5)
            if not (hand_over() and self.hand_over(holder.token)):
                self.release(holder.token)

    def _heartbeat(self, token: str, stop: threading.Event) -> None:
        interval = self.lease_seconds / 3  # two beats may fail before the lease lapses
        while not stop.wait(interval):
            try:
                if not self.renew(token):
                    logger.error(f"lock {self.key}: lost (its lease lapsed and it was taken or expired)")
                    return
            except Exception as error:  # a store outage: try again next beat, the lease has room for two
                logger.warning(f"lock {self.key}: renewing the lease failed: {type(error).__name__}: {error}")


# --- Redis ------------------------------------------------------------------------------------------

# Every operation is one script, on Redis's own clock (milliseconds since the epoch).
_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)"
_TAKE = (
    _NOW
    + """
local value = redis.call('GET', KEYS[1])
if value then
  local holder = cjson.decode(value)
  if holder['run_id'] ~= ARGV[2] and holder['token'] ~= ARGV[5] then return 0 end
end
local lease, expires = tonumber(ARGV[6]), now + tonumber(ARGV[7])
local record = {token = ARGV[1], run_id = ARGV[2], host = ARGV[3], pid = tonumber(ARGV[4]),
                acquired_ms = now, lease_ms = now + lease, expires_ms = expires}
redis.call('SET', KEYS[1], cjson.encode(record), 'PX', lease)
return 1
"""
)
# ARGV[1] (a token) holds the lock and its expiry has not passed: else the script returns 0.
_HELD_BY_TOKEN = (
    _NOW
    + """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local holder = cjson.decode(value)
if holder['token'] ~= ARGV[1] or now >= holder['expires_ms'] then return 0 end
"""
)
_RENEW = (
    _HELD_BY_TOKEN
    + """
local lease = math.min(tonumber(ARGV[2]), holder['expires_ms'] - now)
holder['lease_ms'] = now + lease
redis.call('SET', KEYS[1], cjson.encode(holder), 'PX', lease)
return 1
"""
)
_HAND_OVER = (
    _HELD_BY_TOKEN
    + """
holder['token'], holder['host'], holder['pid'] = ARGV[2], '', 0
holder['lease_ms'] = holder['expires_ms']
redis.call('SET', KEYS[1], cjson.encode(holder), 'PX', holder['expires_ms'] - now)
return 1
"""
)
_DELETE = """
local value = redis.call('GET', KEYS[1])
if value and (ARGV[1] == '' or cjson.decode(value)['token'] == ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisBatchLock(BatchLock):
    """The key expires with the lease, so a lapsed holder simply disappears."""

    backend = "redis"

    def __init__(self, client, key: str, ttl_seconds: int = DEFAULT_TTL_SECONDS, **kwargs) -> None:
        super().__init__(key, ttl_seconds, **kwargs)
        self.client = client
        self._take_script = client.register_script(_TAKE)
        self._renew_script = client.register_script(_RENEW)
        self._delete_script = client.register_script(_DELETE)
        self._hand_over_script = client.register_script(_HAND_OVER)

    def _take(self, token, run_id, host, pid, ended_token) -> bool:
        args = [
            token,
            run_id,
            host,
            pid,
            ended_token or "-",
            self.lease_seconds * 1000,
            self.ttl_seconds * 1000,
        ]
        return bool(self._take_script(keys=[self.key], args=args))

    def renew(self, token: str) -> bool:
        return bool(self._renew_script(keys=[self.key], args=[token, self.lease_seconds * 1000]))

    def _delete(self, token: str | None) -> bool:
        return bool(self._delete_script(keys=[self.key], args=[token or ""]))

    def _hand_over(self, token: str) -> bool:
        return bool(self._hand_over_script(keys=[self.key], args=[token, uuid.uuid4().hex]))

    def current_holder(self) -> LockHolder | None:
        value = self.client.get(self.key)
        if not value:
            return None
        record = json.loads(value)
        return LockHolder(
            token=record["token"],
            run_id=record["run_id"],
            acquired_at=_utc(record["acquired_ms"] / 1000),
            host=record["host"],
            pid=int(record["pid"]),
            lease_until=_utc(record["lease_ms"] / 1000),
            expires_at=_utc(record["expires_ms"] / 1000),
        )

    def verify(self, token: str, connection: Connection | None = None) -> None:
        current = self.current_holder()
        if current is None or current.token != token:
            now_held = f"now held by {current.describe()}" if current else "lapsed"
            raise LockLostError(f"lock {self.key} is no longer ours ({now_held}); not committing", current)


# --- PostgreSQL -------------------------------------------------------------------------------------

# Insert, or take over a lapsed, expired, same-run or ended-run row, atomically; a row only if we got it.
_TAKE_ROW = sa.text(
    """
    INSERT INTO ranking_batch_locks AS held
        (lock_key, token, run_id, host, pid, acquired_at, expires_at, lease_until)
    VALUES (:key, :token, :run_id, :host, :pid, now(), now() + make_interval(secs => :ttl),
            now() + make_interval(secs => :lease))
    ON CONFLICT (lock_key) DO UPDATE SET
        token = EXCLUDED.token, run_id = EXCLUDED.run_id, host = EXCLUDED.host, pid = EXCLUDED.pid,
        acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at,
        lease_until = EXCLUDED.lease_until
    WHERE held.expires_at <= now() OR coalesce(held.lease_until, held.expires_at) <= now()
       OR held.run_id = :run_id OR held.token = :ended_token
    RETURNING token
    """
)
_RENEW_ROW = sa.text(
    "UPDATE ranking_batch_locks SET lease_until = least(now() + make_interval(secs => :lease), expires_at) "
    "WHERE lock_key = :key AND token = :token AND expires_at > now()"
)
_HOLDER = sa.text(
    "SELECT token, run_id, acquired_at, host, pid, coalesce(lease_until, expires_at), expires_at "
    "FROM ranking_batch_locks WHERE lock_key = :key "
    "AND expires_at > now() AND coalesce(lease_until, expires_at) > now()"
)
_VERIFY = sa.text(
    "SELECT 1 FROM ranking_batch_locks WHERE lock_key = :key AND token = :token "
    "AND expires_at > now() AND coalesce(lease_until, expires_at) > now() FOR SHARE"
)
_HAND_OVER_ROW = sa.text(
    "UPDATE ranking_batch_locks SET token = :new_token, host = '', pid = 0, lease_until = expires_at "
    "WHERE lock_key = :key AND token = :token AND expires_at > now()"
)
_DELETE_OURS = sa.text("DELETE FROM ranking_batch_locks WHERE lock_key = :key AND token = :token")
_DELETE_ANY = sa.text("DELETE FROM ranking_batch_locks WHERE lock_key = :key")


class PostgresBatchLock(BatchLock):
    """The row stays after a holder lapses; the next taker overwrites it in one statement."""

    backend = "postgresql"

    def __init__(self, engine: Engine, key: str, ttl_seconds: int = DEFAULT_TTL_SECONDS, **kwargs) -> None:
        super().__init__(key, ttl_seconds, **kwargs)
        self.engine = engine

    def _take(self, token, run_id, host, pid, ended_token) -> bool:
        with self.engine.begin() as connection:
            taken = connection.execute(
                _TAKE_ROW,
                {
                    "key": self.key,
                    "token": token,
                    "run_id": run_id,
                    "host": host,
                    "pid": pid,
                    "ttl": self.ttl_seconds,
                    "lease": self.lease_seconds,
                    "ended_token": ended_token or "-",
                },
            ).one_or_none()
        return taken is not None

    def renew(self, token: str) -> bool:
        with self.engine.begin() as connection:
            renewed = connection.execute(
                _RENEW_ROW, {"key": self.key, "token": token, "lease": self.lease_seconds}
            )
        return renewed.rowcount == 1

    def _delete(self, token: str | None) -> bool:
        statement = _DELETE_OURS if token else _DELETE_ANY
        with self.engine.begin() as connection:
            return connection.execute(statement, {"key": self.key, "token": token}).rowcount == 1

    def _hand_over(self, token: str) -> bool:
        with self.engine.begin() as connection:
            handed = connection.execute(
                _HAND_OVER_ROW, {"key": self.key, "token": token, "new_token": uuid.uuid4().hex}
            )
        return handed.rowcount == 1

    def current_holder(self) -> LockHolder | None:
        with self.engine.connect() as connection:
            row = connection.execute(_HOLDER, {"key": self.key}).one_or_none()
        if row is None:
            return None
        token, run_id, acquired_at, host, pid, lease_until, expires_at = row
        return LockHolder(token, run_id, _utc(acquired_at), host, pid, _utc(lease_until), _utc(expires_at))

    def verify(self, token: str, connection: Connection | None = None) -> None:
        if connection is None:
            with self.engine.begin() as own:
                return self.verify(token, own)
        if connection.execute(_VERIFY, {"key": self.key, "token": token}).one_or_none() is None:
            current = self.current_holder()
            now_held = f"now held by {current.describe()}" if current else "lapsed"
            raise LockLostError(f"lock {self.key} is no longer ours ({now_held}); not committing", current)
        return None
