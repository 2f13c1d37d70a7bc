"""Resources the alert sensors post through: Slack, PagerDuty, SMTP mail, and links to the Dagster UI.

Every field left unset is read from the environment when the resource is used (never at import), so the
definitions are the same everywhere and no secret appears in code, config or the UI. A channel whose
settings are missing (no SLACK_BOT_TOKEN, no PAGERDUTY_ROUTING_KEY, no RANKING_SMTP_HOST or
RANKING_ALERT_MAIL_TO) is skipped by the sensors with a warning in the tick's log; it never fails a tick.
"""

from __future__ import annotations

import dagster as dg
from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk.web.client import WebClient

from ranking_pipeline.lib.notify import settings as s
from ranking_pipeline.lib.notify.senders import post_pagerduty_event, send_mail
from ranking_pipeline.lib.settings import setting


class NotConfiguredError(RuntimeError):
    """A notification channel lacks a required setting (its environment variable is unset)."""


class BatchSlackResource(SlackResource):
    """dagster-slack's SlackResource with a configurable API URL and a default channel (#batch-logs)."""

    token: str | None = Field(default=None, description="Bot token; unset: SLACK_BOT_TOKEN when used.")
    base_url: str | None = Field(
        default=None, description="Slack Web API base URL; unset: RANKING_SLACK_API_URL, else Slack's."
    )
    channel: str | None = Field(
        default=None, description="Channel to post to; unset: RANKING_SLACK_CHANNEL, else #batch-logs."
    )

    def is_configured(self) -> bool:
        return setting(self.token, s.SLACK_BOT_TOKEN_ENV) is not None

    def get_client(self) -> WebClient:
        token = setting(self.token, s.SLACK_BOT_TOKEN_ENV)
        if token is None:
            raise NotConfiguredError(f"Slack not configured: {s.SLACK_BOT_TOKEN_ENV} is not set")
        base_url = setting(self.base_url, s.SLACK_API_URL_ENV, s.DEFAULT_SLACK_API_URL)
        return WebClient(token=token, base_url=base_url.rstrip("/") + "/", timeout=10)

    def post(self, text: str) -> None:
        channel = setting(self.channel, s.SLACK_CHANNEL_ENV, s.DEFAULT_SLACK_CHANNEL)
        self.get_client().chat_postMessage(channel=channel, text=text, unfurl_links=False, mrkdwn=True)


class PagerDutyEvents(dg.ConfigurableResource):
    """PagerDuty Events API v2: pages on-call."""

    routing_key: str | None = Field(default=None, description="Unset: PAGERDUTY_ROUTING_KEY when used.")
    events_url: str | None = Field(
        default=None, description="Unset: RANKING_PAGERDUTY_EVENTS_URL, else PagerDuty's enqueue URL."
    )

    def routing_key_or_none(self) -> str | None:
        return setting(self.routing_key, s.PAGERDUTY_ROUTING_KEY_ENV)

    def is_configured(self) -> bool:
        return self.routing_key_or_none() is not None

    def trigger(self, event: dict) -> str:
        url = setting(self.events_url, s.PAGERDUTY_EVENTS_URL_ENV, s.DEFAULT_PAGERDUTY_EVENTS_URL)
        return post_pagerduty_event(url, event)


class AlertMailer(dg.ConfigurableResource):
    """Mail through any SMTP server: TLS ("none", "starttls", "ssl") and login are optional."""

    host: str | None = Field(default=None, description="Unset: RANKING_SMTP_HOST; no host, no mail.")
    port: int | None = Field(default=None, description="Unset: RANKING_SMTP_PORT, else 587.")
    tls: str | None = Field(
        default=None, description="none|starttls|ssl; unset: RANKING_SMTP_TLS, else starttls."
    )
    user: str | None = Field(
        default=None, description="Login user; unset: RANKING_SMTP_USER; none: no login."
    )
    password: str | None = Field(default=None, description="Unset: RANKING_SMTP_PASSWORD when used.")
    sender: str | None = Field(default=None, description="From; unset: RANKING_ALERT_MAIL_FROM.")
    recipients: str | None = Field(
        default=None, description="Comma-separated To; unset: RANKING_ALERT_MAIL_TO; none: no mail."
    )

    def _recipients(self) -> list[str]:
        value = setting(self.recipients, s.MAIL_TO_ENV) or ""
        return [address.strip() for address in value.split(",") if address.strip()]

    def is_configured(self) -> bool:
        return setting(self.host, s.SMTP_HOST_ENV) is not None and bool(self._recipients())

    def send(self, subject: str, body: str) -> None:
        host = setting(self.host, s.SMTP_HOST_ENV)
        if host is None or not self._recipients():
            raise NotConfiguredError(f"mail not configured: set {s.SMTP_HOST_ENV} and {s.MAIL_TO_ENV}")
        port = self.port or int(setting(None, s.SMTP_PORT_ENV, str(s.DEFAULT_SMTP_PORT)))
        tls = setting(self.tls, s.SMTP_TLS_ENV, s.DEFAULT_SMTP_TLS).lower()
        if tls not in s.SMTP_TLS_MODES:
            raise NotConfiguredError(
                f"{s.SMTP_TLS_ENV}={tls!r}: expected one of {', '.join(s.SMTP_TLS_MODES)}"
            )
        send_mail(
            host=host,
            port=port,
            tls=tls,
            user=setting(self.user, s.SMTP_USER_ENV),
            password=setting(self.password, s.SMTP_PASSWORD_ENV),
            sender=setting(self.sender, s.MAIL_FROM_ENV, s.DEFAULT_MAIL_FROM),
            recipients=self._recipients(),
            subject=subject,
            body=body,
        )


class DagsterUi(dg.ConfigurableResource):
    """Where people open the Dagster UI, for links in alerts."""

    base_url: str | None = Field(
        default=None, description="Unset: RANKING_DAGSTER_UI_URL, else http://127.0.0.1:3000."
    )

    def run_url(self, run_id: str) -> str:
        base = setting(self.base_url, s.DAGSTER_UI_URL_ENV, s.DEFAULT_DAGSTER_UI_URL)
        return f"{base.rstrip('/')}/runs/{run_id}"


@dg.definitions
def notification_resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "slack": BatchSlackResource(),
            "pagerduty": PagerDutyEvents(),
            "mail": AlertMailer(),
            "dagster_ui": DagsterUi(),
        }
    )
