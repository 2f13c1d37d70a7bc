"""Where the data lives: database URLs (never shown with their password), engines, and the embedded server.

A plain ``postgresql://user:password@host:port/db`` works: the driver (psycopg2) is chosen here. Without a
URL the project uses an embedded PostgreSQL server (``lib/embedded_pg.py``).
"""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from ranking_pipeline.lib.errors import TransientError
from ranking_pipeline.lib.redact import (
    ELIDED,
    MASK,
    is_plain_host,
    is_plain_name,
    scheme_of,
    scrub,
    url_location,
)

DRIVER = "postgresql+psycopg2"
CONNECT_TIMEOUT_SECONDS = 10
UNDEFINED_TABLE = "42P01"


class DatabaseConfigError(ValueError):
    """The database URL cannot be used (wrong dialect, unparsable, unencoded '@' in the password)."""


class DatabaseUnreachableError(TransientError):
    """The database server did not answer (or, embedded, did not start)."""


def _database_url_problem(text: str) -> str | None:
    """What is wrong with a database URL written as text, without any of its user part; None if nothing."""
    scheme = scheme_of(text)
    if scheme is None:
        quoted = " (it is quoted: remove the quotes)" if text[:1] and text[:1] in "'\"" else ""
        return f"the database URL does not start with postgresql://{quoted}"
    backend = scheme.split("+")[0].lower()
    if backend not in ("postgresql", "postgres"):
        return f"the database URL names a {backend!r} database; ranking_pipeline needs PostgreSQL"
    if text.count("@") > 1:
        return (
            f"the database URL for {url_location(text)} has an '@' inside its user or password: "
            "write it as %40 (postgresql://user:p%40ss@host:5432/db)"
        )
    try:
        parsed = make_url(text)
    except Exception:
        return (
            f"the database URL {url_location(text)} cannot be parsed (a port that is not a number, or the "
            "'@' before the host missing?)"
        )
    if parsed.host and not is_plain_host(parsed.host if ":" not in parsed.host else f"[{parsed.host}]"):
        return f"the database URL {url_location(text)} has no valid host name after its '@'"
    return None


def normalize_url(url: str | URL) -> URL:
    """Parse a PostgreSQL URL and pin the driver, so ``postgresql://`` means psycopg2 everywhere.

    Errors say what is wrong without repeating the URL's user part (it may hold the password)."""
    if not isinstance(url, URL):
        problem = _database_url_problem(str(url).strip())
        if problem is not None:
            raise DatabaseConfigError(f"{problem}; expected postgresql://user:password@host:5432/dbname")
        url = make_url(str(url).strip())
    backend = url.get_backend_name()
    if backend not in ("postgresql", "postgres"):
        raise DatabaseConfigError(
            f"the database URL names a {backend!r} database; ranking_pipeline needs PostgreSQL "
            "(postgresql://user:password@host:5432/dbname)"
        )
    return url.set(drivername=DRIVER)


def describe_url(url: str | URL) -> str:
    """The URL without its password or query, and without a user or database name that is not plainly one:
    safe for logs, errors and UI metadata. A URL that does not parse: its scheme and host at most."""
    try:
        parsed = normalize_url(url)
    except DatabaseConfigError:
        return url_location(url if isinstance(url, str) else url.render_as_string(hide_password=True))
    user = parsed.username or ""
    auth = user if is_plain_name(user) or not user else ELIDED
    if parsed.password is not None:
        auth += f":{MASK}"
    host = parsed.host or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parsed.port}" if parsed.port else ""
    database = parsed.database or ""
    database = f"/{database if is_plain_name(database) else ELIDED}" if database else ""
    return f"{parsed.drivername}://{auth + '@' if auth else ''}{host}{port}{database}"


def secret_pieces_of(url: URL) -> set[str]:
    """The password of a parsed URL, and its user name when that is not plainly one, for ``scrub``."""
    pieces = {url.password or "", "" if is_plain_name(url.username or "") else url.username or ""}
    return {piece for piece in pieces if len(piece) >= 4}


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
            f"cannot reach the database {where or describe_url(engine.url)}: "
            f"{scrub(_first_line(error), secret_pieces_of(engine.url))}; "
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
