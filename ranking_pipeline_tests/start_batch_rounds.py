"""A process that starts the batch for one date in rounds, each when the test says go: as `ranking-pipeline
run` does (``cli``), or as the schedule and the sensor that follows do (``launched``). Used by test_night.py
to start two batches of the same date at the same moment from two processes.

    python -m ranking_pipeline_tests.start_batch_rounds MODE DATE ROUNDS FOLDER

Writes FOLDER/MODE.ready once loaded; for each round N waits for FOLDER/go.N, then writes
FOLDER/MODE.N.json: {"runs": [scoring, ranking]} or {"error": one line}.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

from ranking_pipeline.batch_runner import BatchRunFailed, run_batch_runs
from ranking_pipeline.constants import BATCH_001_RANKINGS_JOB, BATCH_001_SCORES_JOB
from ranking_pipeline.defs.batch_requests import rankings_after
from ranking_pipeline.lib.business_date import BusinessDate
from ranking_pipeline.local_runs import execute_job
from ranking_pipeline_tests.helpers import project_defs


def launched(definitions, instance, day: dt.date) -> dict:
    scoring = execute_job(definitions, BATCH_001_SCORES_JOB, instance, BusinessDate.of(day).scoring_tags())
    if scoring.failure:
        return {"error": scoring.failure}
    [follow] = rankings_after(instance, instance.get_run_by_id(scoring.run_id))
    ranking = execute_job(
        definitions,
        BATCH_001_RANKINGS_JOB,
        instance,
        {**follow.tags, "dagster/partition": follow.partition_key},
    )
    return {"error": ranking.failure} if ranking.failure else {"runs": [scoring.run_id, ranking.run_id]}


def cli(definitions, instance, day: dt.date) -> dict:
    try:
        return {"runs": run_batch_runs(definitions, instance, BusinessDate.of(day))}
    except BatchRunFailed as error:
        return {"error": str(error)}


def _publish(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: the test reads it as soon as it exists."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.rename(path)


def main(mode: str, day: str, rounds: str, folder: str) -> None:
    import os

    import dagster as dg

    here = Path(folder)
    definitions = project_defs(
        os.environ["RANKING_DATABASE_URL"], redis_url=os.environ.get("RANKING_REDIS_URL")
    )
    start = {"cli": cli, "launched": launched}[mode]
    with dg.DagsterInstance.get() as instance:
        _publish(here / f"{mode}.ready", "ready")
        for round_number in range(int(rounds)):
            go = here / f"go.{round_number}"
            while not go.exists():  # the test's signal: both processes start together
                time.sleep(0.005)
            outcome = start(definitions, instance, dt.date.fromisoformat(day))
            _publish(here / f"{mode}.{round_number}.json", json.dumps(outcome))


if __name__ == "__main__":
    main(*sys.argv[1:])
