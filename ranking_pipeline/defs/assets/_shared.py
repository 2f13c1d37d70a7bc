"""What the ranking assets share: the retry policy, column schemas, which failures are retried, and the
logged, locked frame every writing step runs in."""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
from sqlalchemy.engine import Connection

from ranking_pipeline.constants import BUSINESS_DATE_TAG
from ranking_pipeline.defs.batch_runs import batch_has_ended, lock_holder_id
from ranking_pipeline.lib.business_date import (
    JST,
    BusinessDate,
    dates_of_partition_keys,
    tagged_business_date,
)
from ranking_pipeline.lib.errors import is_transient, one_line
from ranking_pipeline.lib.lock import BatchLock, LockHeldError

# Design 4: retried automatically up to 3 times, 1 minute apart (only what a retry can fix: see
# lib/errors.py).
BATCH_RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=60)


def column_schema(*columns: tuple[str, str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, type_name, description=text) for name, type_name, text in columns]
    )


def as_step_failure(error: BaseException) -> BaseException:
    """The exception a step should raise: transient errors as they are (the RetryPolicy retries them),
    anything else as a Failure that is not retried, described in one line and chained to the original."""
    if isinstance(error, dg.Failure) or is_transient(error):
        return error
    failure = dg.Failure(description=one_line(error), allow_retries=False)
    failure.__cause__ = error
    return failure


@contextmanager
def failures_classified() -> Iterator[None]:
    """Around a step's body: deterministic errors end the step at once (no retries), transient ones retry."""
    try:
        yield
    except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
        raise
    except Exception as error:
        converted = as_step_failure(error)
        if converted is error:
            raise
        raise converted from error


def run_business_dates(context: dg.AssetExecutionContext) -> list[BusinessDate]:
    """The business dates a run computes, from its partitions, validated here once for the whole step; a date
    tag on the run must name one of them."""
    dates = dates_of_partition_keys(list(context.partition_keys))
    tagged = tagged_business_date(context.run.tags)
    if tagged is not None:
        BusinessDate.of(tagged, source=f"run tag {BUSINESS_DATE_TAG}")
    if tagged is not None and tagged not in dates:
        shown = ", ".join(str(day) for day in dates[:3]) + (" ..." if len(dates) > 3 else "")
        raise ValueError(
            f"the run tag ranking/business_date={tagged} disagrees with the run's partitions ({shown}); "
            "pick the date in the partition picker and remove the tag; nothing was written"
        )
    return [BusinessDate.of(day, source="partition") for day in dates]


def run_includes_check(context: dg.AssetExecutionContext, check_key: dg.AssetCheckKey) -> bool:
    """Whether this run evaluates ``check_key`` (before this step, when the step's asset depends on it)."""
    if check_key not in context.job_def.asset_layer.asset_graph.asset_check_keys:
        return False
    selected = context.run.asset_check_selection
    return selected is None or check_key in selected


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


@dataclass
class _StepLog:
    """The design 6.2 lines of one step: start (with its parameters), errors, end (with duration, status)."""

    context: dg.AssetExecutionContext
    name: str
    started: float = 0.0

    def start(self, parameters: dict[str, object]) -> None:
        shown = ", ".join(f"{key}={value}" for key, value in parameters.items())
        run_id = self.context.run.run_id
        self.context.log.info(
            f"{self.name} start: batch run {run_id}, started {_now_jst()}, parameters: {shown}"
        )
        self.started = time.monotonic()

    def error(self, error: BaseException, retried: bool) -> None:
        self.context.log.error(
            f"{self.name} error #{self.context.retry_number + 1} of this step "
            f"({'retried' if retried else 'not retried: a retry cannot fix it'}): {one_line(error)}\n"
            f"{traceback.format_exc()}"
        )

    def end(self, status: str, processed: int) -> None:
        self.context.log.info(
            f"{self.name} end: batch run {self.context.run.run_id}, ended {_now_jst()}, processed "
            f"{processed:,} records, duration {time.monotonic() - self.started:.2f} s, status {status}"
        )


@contextmanager
def batch_step(
    context: dg.AssetExecutionContext,
    process_id: str,
    lock: BatchLock,
    parameters: dict[str, object],
    *,
    hand_over_on_success: bool = False,
) -> Iterator[BatchStep]:
    """Design 6.2 logs (start, end, errors with stack trace and count) around a step holding the lock for its
    batch (see ``lock_holder_id``): released at the end, or, with ``hand_over_on_success``, kept for the
    batch's ranking run when the step succeeds.

    A lock held by another batch fails the step at once, without retries and before anything is written.
    """
    log = _StepLog(context, f"{process_id} {context.op_execution_context.op.name}")
    log.start(parameters)
    succeeded = False
    holding = lock.held(
        lock_holder_id(context.run),
        lambda holder_id: batch_has_ended(context.instance, holder_id),
        hand_over=lambda: succeeded and hand_over_on_success,
    )
    try:
        holder = holding.__enter__()
    except LockHeldError as error:
        context.log.error(f"{log.name}: {error}")
        log.end("FAILURE (lock held)", 0)
        raise dg.Failure(description=str(error), allow_retries=False) from None
    step = BatchStep(lock=lock, token=holder.token)
    try:
        yield step
    except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
        # Dagster retries interrupted steps that have a RetryPolicy; a run that was terminated (or timed
        # out) must not write again once it has ended, so stop here for good. Nothing is logged: logging
        # itself can be interrupted now.
        raise dg.Failure(
            description=f"{log.name} stopped: the run was terminated", allow_retries=False
        ) from None
    except Exception as error:
        converted = as_step_failure(error)
        log.error(error, retried=converted is error and not isinstance(error, dg.Failure))
        log.end("FAILURE", step.processed)
        if converted is error:
            raise
        raise converted from error
    else:
        succeeded = True
        log.end("SUCCESS", step.processed)
        if hand_over_on_success:
            context.log.info(f"{log.name}: the lock stays with this batch until its ranking run takes it")
    finally:
        holding.__exit__(None, None, None)  # stops the heartbeat and releases (never raises)
