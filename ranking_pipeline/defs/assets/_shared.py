"""What the ranking assets share: the retry policy, the business date of a run, column schemas."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ranking_pipeline.constants import BUSINESS_DATE_TAG
from ranking_pipeline.lib.dates import JST, parse_business_date, yesterday_jst

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
