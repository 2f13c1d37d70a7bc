"""Every setting of the project that comes from the environment: its variable, default and check.

The code location checks them first when it loads (``definitions.py``), and every command of the command line
before it does anything: a wrong value stops either with one line naming the variable and the fix, and never
shows a secret (nor any part of a URL that might be a password: ``lib/redact.py``). A set variable becomes
a ``dg.EnvVar`` of its resource (so the UI's resource view names the variable and never shows a secret), an
unset one leaves the default.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ranking_pipeline.lib.redact import HIDDEN, is_plain_host, scheme_of, scrub, secret_pieces, url_location


class SettingsError(ValueError):
    """One or more settings have values that cannot work (the message names each, one line; ``settings``
    lists their variables)."""

    def __init__(self, message: str, settings: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.settings = settings


@dataclass(frozen=True)
class Setting:
    env: str
    meaning: str
    default: str | None = None
    secret: bool = False
    check: Callable[[str], None] | None = None
    url: bool = False  # shown as its scheme and host only (a URL may carry a password)

    def shown(self, value: str) -> str:
        """What a message may show of this setting's value."""
        if self.secret:
            return HIDDEN
        if self.url:
            return url_location(value)
        return repr(value) if len(value) <= 80 else repr(value[:77]) + "…"

    def secret_pieces(self, value: str) -> set[str]:
        """What must never be shown of this setting's value (``lib/redact.py``): of a URL, whatever may be its
        password (not the whole URL: one without a password is no secret); of another secret, all of it."""
        if self.url:
            return secret_pieces(value, whole=False)
        return secret_pieces(value) if self.secret else set()


def _http_url(value: str) -> None:
    if scheme_of(value) not in ("http", "https") or url_location(value).endswith(("://", "…")):
        raise ValueError("expected an http(s) URL, e.g. https://host/path")


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
    scheme = scheme_of(value)
    if scheme not in ("redis", "rediss", "unix"):
        quoted = " (it is quoted: remove the quotes)" if value[:1] in ("'", '"') else ""
        raise ValueError(f"expected a Redis URL, e.g. redis://host:6379/0{quoted}")
    if value.count("@") > 1:
        raise ValueError("its password contains '@': write it as %40")
    try:  # as redis-py reads it; the parser's own messages quote the value, so none is passed on
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError:
        parts = None
    if parts is None or ("@" in value and "@" not in parts.netloc):
        raise ValueError(
            "it cannot be parsed: write '/', '?', '#' or ':' in the password as %2F, %3F, %23, %3A, and "
            "the port as a number (redis://:password@host:6379/0)"
        )
    if scheme != "unix" and not (parts.hostname and is_plain_host(parts.hostname.strip("[]"))):
        raise ValueError("expected a host name after its '@', e.g. redis://:password@host:6379/0")


def _address(value: str) -> None:
    name, at, domain = value.strip().rpartition("@")
    if not (name and at and domain) or any(character.isspace() for character in value.strip()):
        raise ValueError("expected a mail address, e.g. batch@example.com")


def _addresses(value: str) -> None:
    if not all("@" in address.strip() for address in value.split(",") if address.strip()):
        raise ValueError("expected comma-separated mail addresses")


def _host(value: str) -> None:
    if not is_plain_host(value):
        raise ValueError("expected a host name or IP address (no scheme, no port), e.g. smtp.example.com")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "RANKING_DATABASE_URL",
        "the PostgreSQL database holding users, orders and the pipeline's tables",
        secret=True,
        check=_database_url,
        url=True,
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
        "RANKING_REDIS_URL",
        "Redis for the batch lock and the rankings cache",
        secret=True,
        check=_redis_url,
        url=True,
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
    Setting(
        "RANKING_SLACK_API_URL", "Slack Web API base URL", "https://slack.com/api/", check=_http_url, url=True
    ),
    Setting("PAGERDUTY_ROUTING_KEY", "Events API v2 routing key paged on a timeout", secret=True),
    Setting(
        "RANKING_PAGERDUTY_EVENTS_URL",
        "PagerDuty Events API v2 endpoint",
        "https://events.pagerduty.com/v2/enqueue",
        check=_http_url,
        url=True,
    ),
    Setting("RANKING_SMTP_HOST", "SMTP server for failure mail", check=_host),
    Setting("RANKING_SMTP_PORT", "SMTP port", "587", check=_port),
    Setting(
        "RANKING_SMTP_TLS", "none, starttls or ssl", "starttls", check=_one_of("none", "starttls", "ssl")
    ),
    Setting("RANKING_SMTP_USER", "SMTP login user"),
    Setting("RANKING_SMTP_PASSWORD", "SMTP login password", secret=True),
    Setting(
        "RANKING_ALERT_MAIL_FROM", "sender of failure mail", "ranking-pipeline@localhost", check=_address
    ),
    Setting("RANKING_ALERT_MAIL_TO", "comma-separated recipients of failure mail", check=_addresses),
    Setting(
        "RANKING_DAGSTER_UI_URL",
        "base URL of the Dagster UI, for run links",
        "http://127.0.0.1:3000",
        check=_http_url,
        url=True,
    ),
)
BY_ENV = {setting.env: setting for setting in SETTINGS}


def default(env: str) -> str | None:
    """The default of a setting, written only here: what an unset variable means."""
    return BY_ENV[env].default


def configured(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings whose variables are set to something other than blanks."""
    environ = os.environ if environ is None else environ
    return {s.env: environ[s.env].strip() for s in SETTINGS if environ.get(s.env, "").strip()}


def secret_pieces_of(environ: Mapping[str, str] | None = None) -> set[str]:
    """Every piece of the configured settings that must never be shown (for ``redact.scrub``)."""
    pieces: set[str] = set()
    for env, value in configured(environ).items():
        pieces |= BY_ENV[env].secret_pieces(value)
    return pieces


def validate(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The configured settings, once each has passed its check; else one SettingsError naming every bad one
    (never a secret's value, nor a piece of one)."""
    values = configured(environ)
    problems, refused = [], []
    for env, value in values.items():
        setting = BY_ENV[env]
        if setting.check is None:
            continue
        try:
            setting.check(value)
        except ValueError as error:
            reason = " ".join(str(error).split())  # one line, whatever the check said
            problems.append(f"{env}={setting.shown(value)}: {reason}")
            refused.append(env)
    if problems:
        message = "invalid settings: " + "; ".join(problems)
        raise SettingsError(scrub(message, secret_pieces_of(values)), tuple(refused))
    return values
