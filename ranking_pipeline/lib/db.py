"""Where the data lives: database URLs (never shown with their password), engines, and the embedded server.

A plain ``postgresql://user:password@host:port/db`` works: the driver (psycopg2) is chosen here. Without a
URL the project uses an embedded PostgreSQL server (``lib/embedded_pg.py``).
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from ranking_pipeline.lib.errors import TransientError

DRIVER = "postgresql+psycopg2"
CONNECT_TIMEOUT_SECONDS = 10
UNDEFINED_TABLE = "42P01"


class DatabaseConfigError(ValueError):
    """The database URL cannot be used (wrong dialect, unparsable, unencoded '@' in the password)."""


class DatabaseUnreachableError(TransientError):
    """The database server did not answer (or, embedded, did not start)."""


def _safe_location(url: str) -> str:
    """Scheme, host and database of a URL that may not parse, without anything from its user part."""
    parts = urlsplit(str(url))
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme or '?'}://…@{host}{parts.path}"


def normalize_url(url: str | URL) -> URL:
    """Parse a PostgreSQL URL and pin the driver, so ``postgresql://`` means psycopg2 everywhere.

    Errors say what is wrong without repeating the URL's user part (it may hold the password)."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    if not isinstance(url, URL) and urlsplit(text).netloc.count("@") > 1:
        raise DatabaseConfigError(
            f"the database URL for {_safe_location(text)} has an '@' inside its user or password: "
            "write it as %40 (postgresql://user:p%40ss@host:5432/db)"
        )
    try:
        parsed = make_url(url)
    except Exception:
        raise DatabaseConfigError(
            f"the database URL {_safe_location(text)} cannot be parsed; "
            "expected postgresql://user:password@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "postgres"):
        raise DatabaseConfigError(
            f"the database URL names a {backend!r} database; ranking_pipeline needs PostgreSQL "
            "(postgresql://user:password@host:5432/dbname)"
        )
    return parsed.set(drivername=DRIVER)


def describe_url(url: str | URL) -> str:
    """The URL with its password hidden: safe for logs, errors and UI metadata."""
    try:
        return normalize_url(url).render_as_string(hide_password=True)
    except DatabaseConfigError:
        return _safe_location(str(url))


_lock = threading.Lock()
_engines: dict[str, Engine] = {}


def get_engine(url: str | URL) -> Engine:
    """One shared engine (connection pool) per database URL in this process."""
    key = normalize_url(url).render_as_string(hide_password=False)
    with _lock:
        if key not in _engines:
            _engines[key] = sa.create_engine(
                key,
                pool_pre_ping=True,
                connect_args={
                    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                    "application_name": "ranking_pipeline",
                },
            )
        return _engines[key]


def dispose_engines() -> None:
    """Close every pooled connection (before dropping a database, or at the end of a process)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def check_reachable(engine: Engine, where: str | None = None) -> None:
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as error:
        raise DatabaseUnreachableError(
            f"cannot reach the database {where or describe_url(engine.url)}: {_first_line(error)}; "
            "check that the server is running and RANKING_DATABASE_URL is right"
        ) from None


def explain_database_error(error: BaseException, where: str) -> str:
    """One line for a failed read of the ranking database at ``where``, naming the cause."""
    code = getattr(getattr(error, "orig", None), "pgcode", None)
    if code == UNDEFINED_TABLE:
        return (
            f"the pipeline's tables do not exist yet in {where} "
            "(nothing has been aggregated there: BATCH-000 creates them)"
        )
    if isinstance(error, sa.exc.OperationalError) and code is None:
        return f"cannot reach the database {where}: {_first_line(error)}"
    if isinstance(error, DatabaseUnreachableError | DatabaseConfigError):
        return str(error)
    return f"reading {where} failed: {type(error).__name__}: {_first_line(error)}"
