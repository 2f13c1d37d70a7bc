"""Notification settings: an explicit value, else an environment variable read when used, else a default.

Read at use time, never at import: the definitions are the same everywhere, and a missing secret makes a
sensor log and skip that channel instead of failing every tick (a ``dg.EnvVar`` that is unset fails the
whole evaluation before the sensor's code runs).
"""

from __future__ import annotations

import os

SLACK_BOT_TOKEN_ENV = "SLACK_BOT_TOKEN"
SLACK_API_URL_ENV = "RANKING_SLACK_API_URL"
SLACK_CHANNEL_ENV = "RANKING_SLACK_CHANNEL"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_SLACK_CHANNEL = "#batch-logs"

PAGERDUTY_ROUTING_KEY_ENV = "PAGERDUTY_ROUTING_KEY"
PAGERDUTY_EVENTS_URL_ENV = "RANKING_PAGERDUTY_EVENTS_URL"
DEFAULT_PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

SMTP_HOST_ENV = "RANKING_SMTP_HOST"
SMTP_PORT_ENV = "RANKING_SMTP_PORT"
SMTP_TLS_ENV = "RANKING_SMTP_TLS"
SMTP_USER_ENV = "RANKING_SMTP_USER"
SMTP_PASSWORD_ENV = "RANKING_SMTP_PASSWORD"
MAIL_FROM_ENV = "RANKING_ALERT_MAIL_FROM"
MAIL_TO_ENV = "RANKING_ALERT_MAIL_TO"
DEFAULT_SMTP_PORT = 587
DEFAULT_SMTP_TLS = "starttls"
SMTP_TLS_MODES = ("none", "starttls", "ssl")
DEFAULT_MAIL_FROM = "ranking-pipeline@localhost"

DAGSTER_UI_URL_ENV = "RANKING_DAGSTER_UI_URL"
DEFAULT_DAGSTER_UI_URL = "http://127.0.0.1:3000"


def setting(value: str | None, env_name: str, default: str | None = None) -> str | None:
    """``value`` if given, else the environment variable ``env_name`` if set and not blank, else default."""
    if value not in (None, ""):
        return value
    from_env = os.environ.get(env_name, "").strip()
    return from_env or default
