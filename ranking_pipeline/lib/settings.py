"""Every setting of the project that comes from the environment: its variable, default and check.

The code location reads them once when it loads (``defs/resources.py``): a wrong value stops the load with one
line naming the variable and the fix; a set variable becomes a ``dg.EnvVar`` of its resource (so the UI's
resource view names the variable and never shows a secret), an unset one leaves the default.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """One or more settings have values that cannot work (the message names each, one line)."""


@dataclass(frozen=True)
class Setting:
    env: str
    meaning: str
    default: str | None = None
    secret: bool = False
    check: Callable[[str], None] | None = None


def _http_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http(s) URL, e.g. https://slack.com/api/")


def _one_of(*choices: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")

    return check


def _port(value: str) -> None:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError("expected a TCP port number, e.g. 587")


def _time_of_day(value: str) -> None:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError("expected a JST time of day as HH:MM, e.g. 09:00")


def _date(value: str) -> None:
    try:
        if len(value) != len("YYYY-MM-DD"):
            raise ValueError(value)
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("expected a calendar date as YYYY-MM-DD, e.g. 2020-01-01") from None


def _positive_int(value: str) -> None:
    if not value.isdigit() or int(value) < 1:
        raise ValueError("expected a whole number of at least 1, e.g. 400")


def _database_url(value: str) -> None:
    from ranking_pipeline.lib.db import normalize_url

    normalize_url(value)


def _redis_url(value: str) -> None:
    scheme = urlsplit(value).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected a Redis URL, e.g. redis://host:6379/0")
    if value.count("@") > 1:
        raise ValueError("its password contains '@': write it as %40")


def _addresses(value: str) -> None:
    if not all("@" in address.strip() for address in value.split(",") if address.strip()):
        raise ValueError("expected comma-separated mail addresses")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "RANKING_DATABASE_URL",
        "the PostgreSQL database holding users, orders and the pipeline's tables",
        secret=True,
        check=_database_url,
    ),
    Setting(
        "RANKING_EMBEDDED_PGDATA",
        "data folder of the embedded PostgreSQL server used when RANKING_DATABASE_URL is unset",
        ".ranking_pipeline/pgdata",
    ),
    Setting(
        "RANKING_FIRST_BUSINESS_DATE",
        "the first business date this deployment ranks",
        "2020-01-01",
        check=_date,
    ),
    Setting(
        "RANKING_RETENTION_DAYS",
        "business dates of user_scores and rankings kept; older ones are dropped after each ranking",
        "400",
        check=_positive_int,
    ),
    Setting(
        "RANKING_REDIS_URL", "Redis for the batch lock and the rankings cache", secret=True, check=_redis_url
    ),
    Setting("RANKING_CACHE_KEY_PATTERN", "Redis keys deleted after each rankings commit", "ranking:*"),
    Setting(
        "RANKING_GATE_GIVE_UP_AT_JST",
        "when the gate stops waiting for BATCH-000 (HH:MM JST, the morning after D)",
        "09:00",
        check=_time_of_day,
    ),
    Setting(
        "RANKING_RANKINGS_DEADLINE_JST",
        "when a ranking of D not yet committed is a Critical alert (HH:MM JST; default: the give-up time)",
        check=_time_of_day,
    ),
    Setting("SLACK_BOT_TOKEN", "Slack bot token for all alerts", secret=True),
    Setting("RANKING_SLACK_CHANNEL", "channel the alerts go to", "#batch-logs"),
    Setting("RANKING_SLACK_API_URL", "Slack Web API base URL", "https://slack.com/api/", check=_http_url),
    Setting("PAGERDUTY_ROUTING_KEY", "Events API v2 routing key paged on a timeout", secret=True),
    Setting(
        "RANKING_PAGERDUTY_EVENTS_URL",
        "PagerDuty Events API v2 endpoint",
        "https://events.pagerduty.com/v2/enqueue",
        check=_http_url,
    ),
    Setting("RANKING_SMTP_HOST", "SMTP server for failure mail"),
    Setting("RANKING_SMTP_PORT", "SMTP port", "587", check=_port),
    Setting(
        "RANKING_SMTP_TLS", "none, starttls or ssl", "starttls", check=_one_of("none", "starttls", "ssl")
    ),
    Setting("RANKING_SMTP_USER", "SMTP login user"),
    Setting("RANKING_SMTP_PASSWORD", "SMTP login password", secret=True),
    Setting("RANKING_ALERT_MAIL_FROM", "sender of failure mail", "ranking-pipeline@localhost"),
    Setting("RANKING_ALERT_MAIL_TO", "comma-separated recipients of failure mail", check=_addresses),
    Setting(
        "RANKING_DAGSTER_UI_URL",
        "base URL of the Dagster UI, for run links",
        "http://127.0.0.1:3000",
        check=_http_url,
    ),
)
BY_ENV = {setting.env: setting for setting in SETTINGS}


def configured(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings whose variables are set to something other than blanks."""
    environ = os.environ if environ is None else environ
    return {s.env: environ[s.env].strip() for s in SETTINGS if environ.get(s.env, "").strip()}


def validate(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The configured settings, once each has passed its check; else one SettingsError naming every bad one
    (never a secret's value)."""
    values = configured(environ)
    problems = []
    for env, value in values.items():
        setting = BY_ENV[env]
        if setting.check is None:
            continue
        try:
            setting.check(value)
        except ValueError as error:
            shown = "(value hidden)" if setting.secret else repr(value)
            problems.append(f"{env}={shown}: {error}")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return values
