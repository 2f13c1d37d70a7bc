"""What the ranking assets share: the retry policy, the business date of a run, column schemas, and the
logged, locked frame every writing step runs in."""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from sqlalchemy.engine import Connection

from ranking_pipeline.constants import BUSINESS_DATE_TAG
from ranking_pipeline.lib.dates import JST, parse_business_date, yesterday_jst
from ranking_pipeline.lib.lock import BatchLock, LockHeldError

# Design 4: retried automatically up to 3 times, 1 minute apart.
BATCH_RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=60)


def business_date_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> dt.date:
    """D for this run: the run's business-date tag, else the last complete JST day when the run was created.

    Taking the run's creation time (not the clock) keeps D stable across step retries around midnight.
    """
    tagged = context.run.tags.get(BUSINESS_DATE_TAG)
    if tagged:
        return parse_business_date(tagged, source=f"run tag {BUSINESS_DATE_TAG}")
    record = context.instance.get_run_record_by_id(context.run.run_id)
    created = record.create_timestamp if record else dt.datetime.now(tz=JST)
    return yesterday_jst(created)


def column_schema(*columns: tuple[str, str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, type_name, description=text) for name, type_name, text in columns]
    )


@dataclass
class BatchStep:
    """Handed to the body of a writing step: the lock to fence commits with, and counters for the logs."""

    lock: BatchLock
    token: str
    processed: int = 0

    def fence(self, connection: Connection, *_ignored) -> None:
        """Call inside a write transaction just before commit (usable as a ``before_commit`` hook)."""
        self.lock.verify(self.token, connection)


def _now_jst() -> str:
    return dt.datetime.now(tz=JST).strftime("%Y-%m-%d %H:%M:%S JST")


@contextmanager
def batch_step(
    context: dg.AssetExecutionContext,
    process_id: str,
    lock: BatchLock,
    parameters: dict[str, object],
) -> Iterator[BatchStep]:
    """Design 6.2 logs (start, end, errors with stack trace and count) around a step holding the lock.

    A lock held by another run fails the step at once, without retries and before anything is written.
    """
    name = f"{process_id} {context.op_execution_context.op.name}"
    run_id = context.run.run_id
    shown = ", ".join(f"{key}={value}" for key, value in parameters.items())
    context.log.info(f"{name} start: batch run {run_id}, started {_now_jst()}, parameters: {shown}")
    started = time.monotonic()

    def log_end(status: str, processed: int) -> None:
        context.log.info(
            f"{name} end: batch run {run_id}, ended {_now_jst()}, processed {processed:,} records, "
            f"duration {time.monotonic() - started:.2f} s, status {status}"
        )

    try:
        holder = lock.acquire(run_id)
    except LockHeldError as error:
        context.log.error(f"{name}: {error}")
        log_end("FAILURE (lock held)", 0)
        raise dg.Failure(description=str(error), allow_retries=False) from None
    step = BatchStep(lock=lock, token=holder.token)
    try:
        yield step
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        # Dagster retries interrupted steps that have a RetryPolicy; a run that was terminated (or timed
        # out) must not write again once it has ended, so stop here for good. Nothing is logged: logging
        # itself can be interrupted now.
        raise dg.Failure(description=f"{name} stopped: the run was terminated", allow_retries=False) from None
    except Exception as error:
        attempt = context.retry_number + 1
        context.log.error(
            f"{name} error #{attempt} of this step (retries allowed: {BATCH_RETRY_POLICY.max_retries}): "
            f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
        )
        log_end("FAILURE", step.processed)
        raise
    else:
        log_end("SUCCESS", step.processed)
    finally:
        if not lock.release(holder.token):
            context.log.warning(f"{name}: lock {lock.key} was no longer ours when releasing it (expired?)")
