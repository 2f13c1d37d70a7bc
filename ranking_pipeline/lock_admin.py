"""`ranking-pipeline lock status` and `lock release`: the batch locks as an operator sees them.

A lock is normally never in the way: a holder that is gone loses it within a minute (its lease lapses), and a
holder whose Dagster run has ended is taken over by the next run at once. These commands are for looking,
and for the rare holder that is alive but stuck (`release --force`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from ranking_pipeline.constants import BATCH_000_PROCESS_ID, BATCH_001_PROCESS_ID
from ranking_pipeline.lib.lock import BatchLock, LockHolder

ENDED = {
    status.value
    for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
}


class LockAdminError(RuntimeError):
    """The lock was not released (a live holder without --force); the message says what to do."""


@contextmanager
def _locks() -> Iterator[list[tuple[str, BatchLock, str]]]:
    """The locks, once the store holding them (Redis, else the ranking database) has answered at once."""
    from ranking_pipeline.defs.resources import project_resources
    from ranking_pipeline.lib.db import check_reachable

    resources = project_resources()
    database = resources["database"].process_config_and_initialize()
    with resources["batch_lock"].process_config_and_initialize_cm() as batch_lock:
        engine = database.engine()
        if batch_lock.redis.configured:
            batch_lock.redis.client(patience=0)
        else:
            check_reachable(engine, database.describe())
        where = (
            "Redis" if batch_lock.redis.configured else f"table ranking_batch_locks in {database.describe()}"
        )
        yield [
            (process_id, batch_lock.for_process(process_id, engine), where)
            for process_id in (BATCH_001_PROCESS_ID, BATCH_000_PROCESS_ID)
        ]


def _run_status(run_id: str) -> str | None:
    """The holder's run status in the local Dagster instance, None if this instance does not know the run."""
    from ranking_pipeline.instance import project_instance

    with project_instance() as (instance, _):
        run = instance.get_run_by_id(run_id)
    return run.status.value if run is not None else None


def _describe(holder: LockHolder) -> str:
    status = _run_status(holder.run_id)
    known = f"its run is {status} in Dagster" if status else "its run is not in this Dagster instance"
    return (
        f"held by {holder.describe()}; lease until {holder.lease_until} (renewed every 20 s while the holder "
        f"lives), expires {holder.expires_at} at the latest; {known}"
    )


def _holder(lock: BatchLock) -> LockHolder | None:
    """The lock's holder; None too when its table does not exist yet (no batch has run on that database)."""
    import sqlalchemy as sa

    from ranking_pipeline.lib.db import UNDEFINED_TABLE

    try:
        return lock.current_holder()
    except sa.exc.ProgrammingError as error:
        if getattr(error.orig, "pgcode", None) == UNDEFINED_TABLE:
            return None
        raise


def lock_status() -> list[str]:
    with _locks() as locks:
        return [
            f"{lock.key} ({where}): {_describe(holder) if (holder := _holder(lock)) else 'free'}"
            for _, lock, where in locks
        ]


def release_lock(process_id: str, *, force: bool = False) -> str:
    with _locks() as locks:
        [(_, lock, where)] = [entry for entry in locks if entry[0] == process_id]
        return _release(lock, where, force)


def _release(lock: BatchLock, where: str, force: bool) -> str:
    holder = _holder(lock)
    if holder is None:
        return f"{lock.key} ({where}) is free: nothing to release"
    status = _run_status(holder.run_id)
    # a lock handed over by a batch's scoring run is kept for that batch's ranking run, though the run ended
    ended = not holder.handed_over and status in {
        s.value
        for s in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    }
    if not ended and not force:
        raise LockAdminError(
            f"{lock.key} is {_describe(holder)}: not released. If that process is stuck, stop its run in the "
            "UI "
            "(the next run then takes the lock at once) or use `ranking-pipeline lock release --force`"
        )
    lock.force_release()
    stamp = dt.datetime.now(tz=dt.UTC).isoformat(timespec="seconds")
    warning = "" if ended else " (it was alive: if it writes again, the fencing check refuses its commit)"
    return f"{lock.key} released at {stamp}; it was held by {holder.describe()}{warning}"
