"""Plain functions, without a database or Dagster."""

import datetime as dt
import itertools

import pytest

from ranking_pipeline.batch_runner import contiguous_spans
from ranking_pipeline.lib.checks import row_count_anomaly
from ranking_pipeline.lib.dates import (
    InvalidBusinessDateError,
    parse_business_date,
    window_days,
    yesterday_jst,
)
from ranking_pipeline.lib.db import DatabaseConfigError, normalize_url
from ranking_pipeline.lib.ranges import BIGINT_MAX, BIGINT_MIN, USER_ID_RANGES, range_for_user


def test_user_id_ranges_cover_every_bigint_without_gaps_or_overlaps():
    assert USER_ID_RANGES[0].first_id == BIGINT_MIN
    assert USER_ID_RANGES[-1].last_id == BIGINT_MAX
    for before, after in itertools.pairwise(USER_ID_RANGES):
        assert after.first_id == before.last_id + 1
    assert range_for_user(10**15).key == USER_ID_RANGES[-1].key  # far above today's largest ID
    assert range_for_user(-5).key == USER_ID_RANGES[0].key
    assert len({r.key for r in USER_ID_RANGES}) == len(USER_ID_RANGES)


def test_the_window_is_thirty_jst_days_ending_at_d():
    days = window_days(dt.date(2026, 3, 1))
    assert len(days) == 30
    assert days[0] == dt.date(2026, 1, 31)
    assert days[-1] == dt.date(2026, 3, 1)


def test_the_business_date_is_yesterday_in_jst_not_utc():
    # 2026-11-27 16:30 UTC is 2026-11-28 01:30 JST: the last complete JST day is the 27th.
    assert yesterday_jst(dt.datetime(2026, 11, 27, 16, 30, tzinfo=dt.UTC)) == dt.date(2026, 11, 27)
    assert yesterday_jst(dt.datetime(2026, 11, 27, 14, 59, tzinfo=dt.UTC)) == dt.date(2026, 11, 26)


@pytest.mark.parametrize("text", ["2026-02-30", "20261127", "yesterday", "2026-1-5", ""])
def test_bad_dates_are_rejected_with_the_expected_format(text):
    with pytest.raises(InvalidBusinessDateError, match="expected a calendar date as YYYY-MM-DD"):
        parse_business_date(text)


def test_plain_postgresql_urls_get_our_driver_and_other_databases_are_refused():
    assert normalize_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg2"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg2"
    with pytest.raises(DatabaseConfigError, match="needs PostgreSQL"):
        normalize_url("mysql://u@h/db")


def test_anomaly_passes_at_60_percent_and_warns_at_40_percent():
    previous = (dt.date(2026, 11, 26), 1000)
    assert row_count_anomaly(600, previous).passed
    warned = row_count_anomaly(400, previous)
    assert not warned.passed
    assert warned.description == "400 rows vs 1,000 on 2026-11-26: 40.0%, under the 50% threshold"
    assert row_count_anomaly(0, None).passed


def test_missing_days_are_grouped_into_contiguous_spans():
    days = [dt.date(2026, 11, d) for d in (1, 2, 3, 7, 9, 10)]
    assert contiguous_spans(days) == [
        (dt.date(2026, 11, 1), dt.date(2026, 11, 3)),
        (dt.date(2026, 11, 7), dt.date(2026, 11, 7)),
        (dt.date(2026, 11, 9), dt.date(2026, 11, 10)),
    ]
