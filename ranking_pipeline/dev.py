"""`ranking-pipeline dev`: `dagster dev` for this project, stopped cleanly by Ctrl-C or SIGTERM.

`dagster dev` started in the background from a script inherits an ignored SIGINT and then ignores SIGTERM
too. This starts it with the default signal handling, passes SIGINT and SIGTERM on as the interrupt it
expects, waits for it to shut down its webserver, daemon and code server, and then stops the embedded
PostgreSQL server if nothing else uses it. Before starting, it sets the rankings_writers pool limit on the
local instance (a default limit applies lazily).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ranking_pipeline.constants import RANKINGS_WRITER_POOL, RANKINGS_WRITER_POOL_LIMIT

SHUTDOWN_SECONDS = 60


def _set_pool_limit() -> None:
    from ranking_pipeline.instance import project_instance

    with project_instance() as (instance, _):
        instance.event_log_storage.set_concurrency_slots(RANKINGS_WRITER_POOL, RANKINGS_WRITER_POOL_LIMIT)


def run_dagster_dev(extra_args: list[str] | None = None) -> int:
    from ranking_pipeline.defs.resources import project_resources
    from ranking_pipeline.lib.embedded_pg import stop_if_unused

    database = project_resources()["database"].process_config_and_initialize()
    _set_pool_limit()
    command = [str(Path(sys.executable).with_name("dagster")), "dev", *(extra_args or [])]
    child = subprocess.Popen(  # its own process group: a signal reaches it only through us, once
        command, process_group=0, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )

    def stop(signum, _frame) -> None:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        code = child.wait()
    finally:
        if child.poll() is None:
            try:
                child.wait(timeout=SHUTDOWN_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        if not database.url:
            stop_if_unused(database.embedded_pgdata)
    return code
