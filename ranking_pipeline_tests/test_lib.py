"""Plain functions, without a database or Dagster."""

import datetime as dt
import itertools

import psycopg2
import pytest
import redis
import sqlalchemy as sa

from ranking_pipeline.lib import settings
from ranking_pipeline.lib.business_date import (
    BusinessDate,
    BusinessDateError,
    check_aggregation_days,
    check_business_date,
    contiguous_spans,
    dates_of_partition_keys,
    describe_run_dates,
    last_complete_day,
    parse_date,
    partition_selection,
    window_days,
)
from ranking_pipeline.lib.checks import row_count_anomaly
from ranking_pipeline.lib.db import DatabaseConfigError, describe_url, normalize_url
from ranking_pipeline.lib.errors import is_transient, one_line
from ranking_pipeline.lib.queries import LockTimeoutError
from ranking_pipeline.lib.ranges import BIGINT_MAX, BIGINT_MIN, USER_ID_RANGES, RangeCut, legacy_boundaries

NOW = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)  # 19:00 JST on the 28th: the 27th is the last ended day


def test_user_id_ranges_cover_every_bigint_without_gaps_or_overlaps():
    cut = RangeCut(1, dt.date(2026, 11, 27), legacy_boundaries(), "test")
    assert [r.key for r in cut.ranges] == [slot.key for slot in USER_ID_RANGES]
    assert cut.ranges[0].first_id == BIGINT_MIN
    assert cut.ranges[-1].last_id == BIGINT_MAX
    for before, after in itertools.pairwise(cut.ranges):
        assert after.first_id == before.last_id + 1
    assert cut.range_for_user(10**15).key == USER_ID_RANGES[-1].key  # far above today's largest ID
    assert cut.range_for_user(-5).key == USER_ID_RANGES[0].key
    assert cut.ranges[0].describe() == "min .. 124,999"
    assert len({r.key for r in USER_ID_RANGES}) == len(USER_ID_RANGES) == 8


def test_the_window_is_thirty_jst_days_ending_at_d():
    days = window_days(dt.date(2026, 3, 1))
    assert len(days) == 30
    assert days[0] == dt.date(2026, 1, 31)
    assert days[-1] == dt.date(2026, 3, 1)


def test_the_business_date_is_yesterday_in_jst_not_utc():
    # 2026-11-27 16:30 UTC is 2026-11-28 01:30 JST: the last complete JST day is the 27th.
    assert last_complete_day(dt.datetime(2026, 11, 27, 16, 30, tzinfo=dt.UTC)) == dt.date(2026, 11, 27)
    assert last_complete_day(dt.datetime(2026, 11, 27, 14, 59, tzinfo=dt.UTC)) == dt.date(2026, 11, 26)


@pytest.mark.parametrize("text", ["2026-02-30", "20261127", "yesterday", "2026-1-5", ""])
def test_bad_dates_are_rejected_with_the_expected_format(text):
    with pytest.raises(BusinessDateError, match="expected a calendar date as YYYY-MM-DD"):
        parse_date(text)


@pytest.mark.parametrize(
    ("day", "why"),
    [
        (dt.date(2026, 11, 28), "2026-11-28 has not ended yet in JST"),  # today in JST
        (dt.date(2026, 11, 29), "2026-11-29 has not ended yet in JST"),
        (dt.date(2099, 1, 1), "2099-01-01 has not ended yet in JST"),
        (dt.date(2019, 12, 31), "it is before the first business date"),
    ],
)
def test_dates_outside_the_span_are_refused_naming_the_span_and_its_setting(day, why, monkeypatch):
    monkeypatch.delenv(settings.BY_ENV["RANKING_FIRST_BUSINESS_DATE"].env, raising=False)
    with pytest.raises(BusinessDateError) as refused:
        check_business_date(day, source="--date", now=NOW)
    message = str(refused.value)
    assert f"--date {day} is not a business date of this deployment ({why})" in message
    assert "dates run from 2020-01-01 (RANKING_FIRST_BUSINESS_DATE) to 2026-11-27" in message
    assert "\n" not in message
    assert check_business_date(dt.date(2020, 1, 1), now=NOW) == dt.date(2020, 1, 1)
    assert check_business_date(dt.date(2026, 11, 27), now=NOW) == dt.date(2026, 11, 27)


def test_a_business_date_is_validated_where_it_enters_and_carries_its_batch(monkeypatch):
    monkeypatch.delenv("RANKING_FIRST_BUSINESS_DATE", raising=False)
    day = dt.date(2026, 11, 27)
    yesterday = BusinessDate.of(day, now=NOW)
    assert BusinessDate.from_command_line(None, now=NOW) == BusinessDate.from_tick(NOW) == yesterday
    assert BusinessDate.from_partition_key("2026-11-27|range_3_of_8", now=NOW).day == day
    with pytest.raises(BusinessDateError) as refused:
        BusinessDate.from_command_line(dt.date(2026, 11, 28), now=NOW)
    assert (refused.value.source, refused.value.day) == ("--date", dt.date(2026, 11, 28))
    with pytest.raises(BusinessDateError) as refused:
        BusinessDate.from_partition_key("2019-12-31", now=NOW)
    assert (refused.value.source, refused.value.day) == ("partition", dt.date(2019, 12, 31))
    with pytest.raises(BusinessDateError, match="invalid partition key"):
        BusinessDate.from_partition_key("2026-13-01|range_1_of_8", now=NOW)

    batch = BusinessDate.of(day, now=NOW)
    assert str(batch) == batch.partition_key == "2026-11-27"
    assert (batch.window[0], batch.window[-1], len(batch.window)) == (dt.date(2026, 10, 29), day, 30)
    keys = batch.score_partition_keys()
    assert keys[0] == "2026-11-27|range_1_of_8" and len(keys) == len(USER_ID_RANGES)
    assert batch.scoring_tags() == {
        "ranking/business_date": "2026-11-27",
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }
    assert batch.run_key("batch_001_scores_job") == "batch_001_scores_job:2026-11-27"
    with pytest.raises(AttributeError):
        batch.day = dt.date(2026, 11, 26)  # a value: frozen


def test_the_first_business_date_is_a_setting(monkeypatch):
    monkeypatch.setenv("RANKING_FIRST_BUSINESS_DATE", "2025-06-01")
    with pytest.raises(BusinessDateError, match=r"dates run from 2025-06-01 \(RANKING_FIRST_BUSINESS_DATE\)"):
        check_business_date(dt.date(2025, 5, 31), now=NOW)
    # aggregation days reach back to the first business date's window, and never into a day not ended
    check_aggregation_days(dt.date(2025, 5, 3), dt.date(2025, 6, 1), now=NOW)
    with pytest.raises(BusinessDateError, match="2025-05-02 is before 2025-05-03"):
        check_aggregation_days(dt.date(2025, 5, 2), dt.date(2025, 6, 1), now=NOW)
    with pytest.raises(BusinessDateError, match="2026-11-28 has not ended yet in JST"):
        check_aggregation_days(dt.date(2026, 11, 27), dt.date(2026, 11, 28), now=NOW)


def test_partition_keys_and_run_tags_name_their_business_dates():
    keys = ["2026-11-27|range_1_of_8", "2026-11-26|range_8_of_8", "2026-11-27|x"]
    assert dates_of_partition_keys(keys) == [dt.date(2026, 11, 26), dt.date(2026, 11, 27)]
    assert describe_run_dates({"dagster/partition": "2026-11-27"}) == "2026-11-27"
    assert describe_run_dates({"dagster/partition": "2026-11-27|range_1_of_8"}) == "2026-11-27 range_1_of_8"
    span = {
        "dagster/asset_partition_range_start": "2026-11-20",
        "dagster/asset_partition_range_end": "2026-11-22",
    }
    assert describe_run_dates(span) == "2026-11-20 .. 2026-11-22"


def test_plain_postgresql_urls_get_our_driver_and_other_databases_are_refused():
    assert normalize_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg2"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg2"
    with pytest.raises(DatabaseConfigError, match="needs PostgreSQL"):
        normalize_url("mysql://u@h/db")


@pytest.mark.parametrize(
    "url", ["postgresql://u:CDsecret9@@127.0.0.1:5432/db", "postgresql://u:p@ss@CDsecret9@127.0.0.1/db"]
)
def test_a_password_with_an_unencoded_at_sign_is_refused_and_never_shown(url):
    with pytest.raises(DatabaseConfigError) as refused:
        normalize_url(url)
    assert "write it as %40" in str(refused.value)
    assert "CDsecret9" not in str(refused.value)
    assert "CDsecret9" not in describe_url(url)
    assert describe_url("postgresql://u:s3cret@h/db") == "postgresql+psycopg2://u:***@h/db"


def test_a_wrong_setting_is_one_line_naming_it_and_never_a_secret():
    environ = {
        "RANKING_SMTP_TLS": "bogus",
        "RANKING_SMTP_PORT": "http",
        "RANKING_DATABASE_URL": "mysql://u:hunter2@h/db",
        "RANKING_GATE_GIVE_UP_AT_JST": "25:00",
        "RANKING_RETENTION_DAYS": "0",
        "SLACK_BOT_TOKEN": "xoxb-fine",
    }
    with pytest.raises(settings.SettingsError) as refused:
        settings.validate(environ)
    message = str(refused.value)
    assert "RANKING_SMTP_TLS='bogus': expected one of none, starttls, ssl" in message
    assert set(refused.value.settings) == {
        "RANKING_SMTP_TLS",
        "RANKING_SMTP_PORT",
        "RANKING_DATABASE_URL",
        "RANKING_GATE_GIVE_UP_AT_JST",
        "RANKING_RETENTION_DAYS",
    }
    assert "RANKING_DATABASE_URL=(value hidden)" in message
    assert "hunter2" not in message and "\n" not in message
    assert settings.validate({"RANKING_SMTP_TLS": "ssl", "RANKING_SMTP_PORT": "465"}) == {
        "RANKING_SMTP_TLS": "ssl",
        "RANKING_SMTP_PORT": "465",
    }


def _operational_error(pgcode: str | None) -> sa.exc.OperationalError:
    error = psycopg2.OperationalError("server closed the connection unexpectedly")
    if pgcode:
        error = type("PgError", (psycopg2.OperationalError,), {"pgcode": pgcode})("boom")
    return sa.exc.OperationalError("SELECT 1", {}, error)


def test_only_what_a_retry_can_fix_is_transient():
    assert is_transient(_operational_error(None))  # connection refused, reset or closed
    assert is_transient(_operational_error("57P01"))  # admin shutdown
    assert is_transient(_operational_error("40001"))  # serialization failure
    assert is_transient(LockTimeoutError("waited 10s"))
    assert is_transient(redis.exceptions.ConnectionError("Connection refused"))
    wrapped = RuntimeError("while scoring")
    wrapped.__cause__ = _operational_error(None)
    assert is_transient(wrapped)
    numeric_overflow = sa.exc.DataError(
        "INSERT", {}, type("E", (Exception,), {"pgcode": "22003"})("overflow")
    )
    assert not is_transient(numeric_overflow)
    assert not is_transient(BusinessDateError("2099-01-01 has not ended"))
    assert not is_transient(KeyError("a bug"))
    assert not is_transient(redis.exceptions.AuthenticationError("invalid username-password pair"))
    assert one_line(ValueError("first line\nsecond")) == "ValueError: first line"


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


def test_missing_days_are_named_as_the_launch_dialogs_partition_selection():
    days = [dt.date(2026, 11, d) for d in (1, 2, 3, 7, 9, 10)]
    assert partition_selection(days) == "[2026-11-01...2026-11-03], 2026-11-07, [2026-11-09...2026-11-10]"
    assert partition_selection([dt.date(2026, 11, 7)]) == "2026-11-07"
