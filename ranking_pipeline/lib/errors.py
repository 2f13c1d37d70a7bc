"""Which failures can succeed on a retry, and the one line a person reads about any failure.

Retried (the step's RetryPolicy: 3 times, a minute apart): a lost or refused connection to PostgreSQL or
Redis, a lock wait over the lock timeout, a serialization failure or deadlock, the server running out of
resources or shutting down, a lost batch lock. Everything else is deterministic (bad input, a bad date or
tag, an incomplete window, a configuration error, an overflow, a bug): retrying cannot help, so the step
stops at once and the alert goes out without three minutes of retries.
"""

from __future__ import annotations

import sqlalchemy as sa

# SQLSTATE classes and codes worth a retry: connection exceptions, insufficient resources, operator
# intervention (admin/crash shutdown, cannot connect now), serialization failure, deadlock, lock not
# available.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53")
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}


class TransientError(RuntimeError):
    """Our own errors that a retry can fix (the message says what happened)."""


class PermanentError(RuntimeError):
    """Our own verdict that a retry cannot fix this, whatever error it wraps."""


def _sqlstate(error: BaseException) -> str | None:
    return getattr(getattr(error, "orig", None), "pgcode", None) or getattr(error, "pgcode", None)


def is_transient(error: BaseException) -> bool:
    """True when retrying the same work later can succeed."""
    import redis

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:  # the cause chain: wrappers name the real error
        seen.add(id(current))
        if isinstance(current, PermanentError | redis.exceptions.AuthenticationError):
            return False  # Redis refusing the user or password: a setting to fix (as PostgreSQL's 28P01)
        if isinstance(
            current, TransientError | redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
        ):
            return True
        if isinstance(current, sa.exc.DBAPIError):
            if current.connection_invalidated:
                return True
            code = _sqlstate(current)
            if code is None:
                # psycopg2 reports a refused, reset or closed connection as OperationalError without a code
                return isinstance(current, sa.exc.OperationalError)
            return code in _TRANSIENT_SQLSTATES or code[:2] in _TRANSIENT_SQLSTATE_CLASSES
        if isinstance(current, sa.exc.DisconnectionError | ConnectionError | TimeoutError):
            return True
        current = current.__cause__ or current.__context__
    return False


def one_line(error: BaseException, limit: int = 500) -> str:
    """``Type: first line of the message`` (database errors: the driver's own first line, no SQL)."""
    message = str(getattr(error, "orig", None) or error).strip()
    first = message.splitlines()[0] if message else ""
    text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


# How long a step waits for its database or Redis to answer when it starts: a short outage (a restart, a
# failover) is waited out; a wrong URL or a server that is not running fails the step after this, once.
STORE_PATIENCE_SECONDS = 30.0


class StoreUnreachableError(PermanentError):
    """A store did not answer for the whole patience window: a configuration or infrastructure problem that
    a retry a minute later would not fix (not retried; the message names the store and the setting)."""


def wait_until_reachable(probe, *, what: str, setting: str, patience: float | None = None) -> None:
    """Call ``probe()`` until it succeeds, for up to ``patience`` seconds while it fails with an error a retry
    can fix; any other error at once. Raises StoreUnreachableError naming ``what`` and its ``setting``."""
    import time

    patience = STORE_PATIENCE_SECONDS if patience is None else patience
    deadline = time.monotonic() + patience
    while True:
        try:
            probe()
            return
        except Exception as error:
            if not is_transient(error) or time.monotonic() >= deadline:
                cause = one_line(error)
                hint = "" if setting in cause else f"; check {setting} and that the server is running"
                waited = f" for {patience:.0f} s" if is_transient(error) and patience > 0 else ""
                raise StoreUnreachableError(f"{what} did not answer{waited}: {cause}{hint}") from error
        time.sleep(1.0)
