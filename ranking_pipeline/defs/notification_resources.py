"""Resources the alert sensors post through: Slack, PagerDuty, SMTP mail, and links to the Dagster UI.

Configured from the environment when the code location loads (lib/settings.py): set variables become
``dg.EnvVar``s (the UI shows their names, never a token or password), unset ones leave the defaults. A channel
whose settings are missing (no SLACK_BOT_TOKEN, no PAGERDUTY_ROUTING_KEY, no RANKING_SMTP_HOST or
RANKING_ALERT_MAIL_TO) is skipped by the sensors with a warning in the tick's log; it never fails a tick.
"""

from __future__ import annotations

import dagster as dg
from dagster_slack import SlackResource
from pydantic import Field, PrivateAttr
from slack_sdk.web.client import WebClient

from ranking_pipeline.defs.resources import from_environment
from ranking_pipeline.lib import settings
from ranking_pipeline.lib.notify.senders import post_pagerduty_event, send_mail
from ranking_pipeline.lib.redact import public_url


class NotConfiguredError(RuntimeError):
    """A notification channel lacks a required setting."""


class BatchSlackResource(SlackResource):
    """dagster-slack's SlackResource with a configurable API URL and a default channel (#batch-logs)."""

    token: str | None = Field(
        default=None, description="SLACK_BOT_TOKEN: the bot token (secret). Unset: no Slack."
    )
    base_url: str = Field(
        default=settings.default("RANKING_SLACK_API_URL"),
        description="RANKING_SLACK_API_URL: Slack Web API URL.",
    )
    channel: str = Field(
        default=settings.default("RANKING_SLACK_CHANNEL"),
        description="RANKING_SLACK_CHANNEL: where alerts go.",
    )
    _client: WebClient | None = PrivateAttr(default=None)

    def is_configured(self) -> bool:
        return bool(self.token)

    def get_client(self) -> WebClient:
        if not self.token:
            raise NotConfiguredError("Slack not configured: SLACK_BOT_TOKEN is not set")
        if self._client is None:
            self._client = WebClient(token=self.token, base_url=self.base_url.rstrip("/") + "/", timeout=10)
        return self._client

    def post(self, text: str) -> None:
        self.get_client().chat_postMessage(channel=self.channel, text=text, unfurl_links=False, mrkdwn=True)


class PagerDutyEvents(dg.ConfigurableResource):
    """PagerDuty Events API v2: pages on-call."""

    routing_key: str | None = Field(
        default=None, description="PAGERDUTY_ROUTING_KEY: routing key (secret). Unset: no page."
    )
    events_url: str = Field(
        default=settings.default("RANKING_PAGERDUTY_EVENTS_URL"),
        description="RANKING_PAGERDUTY_EVENTS_URL: Events API v2 endpoint.",
    )

    def is_configured(self) -> bool:
        return bool(self.routing_key)

    def trigger(self, event: dict) -> str:
        return post_pagerduty_event(self.events_url, event)


class AlertMailer(dg.ConfigurableResource):
    """Mail through any SMTP server: TLS ("none", "starttls", "ssl") and login are optional."""

    host: str | None = Field(default=None, description="RANKING_SMTP_HOST. Unset: no mail.")
    port: int = Field(default=int(settings.default("RANKING_SMTP_PORT")), description="RANKING_SMTP_PORT.")
    tls: str = Field(
        default=settings.default("RANKING_SMTP_TLS"), description="RANKING_SMTP_TLS: none, starttls or ssl."
    )
    user: str | None = Field(default=None, description="RANKING_SMTP_USER. Unset: no login.")
    password: str | None = Field(default=None, description="RANKING_SMTP_PASSWORD (secret).")
    sender: str = Field(
        default=settings.default("RANKING_ALERT_MAIL_FROM"), description="RANKING_ALERT_MAIL_FROM."
    )
    recipients: str | None = Field(
        default=None, description="RANKING_ALERT_MAIL_TO: comma-separated. Unset: no mail."
    )

    def _recipients(self) -> list[str]:
        return [address.strip() for address in (self.recipients or "").split(",") if address.strip()]

    def is_configured(self) -> bool:
        return bool(self.host) and bool(self._recipients())

    def send(self, subject: str, body: str) -> None:
        if not self.is_configured():
            raise NotConfiguredError("mail not configured: set RANKING_SMTP_HOST and RANKING_ALERT_MAIL_TO")
        send_mail(
            host=self.host,
            port=self.port,
            tls=self.tls.lower(),
            user=self.user,
            password=self.password,
            sender=self.sender,
            recipients=self._recipients(),
            subject=subject,
            body=body,
        )


class DagsterUi(dg.ConfigurableResource):
    """Where people open the Dagster UI, for links in alerts."""

    base_url: str = Field(
        default=settings.default("RANKING_DAGSTER_UI_URL"), description="RANKING_DAGSTER_UI_URL."
    )

    def run_url(self, run_id: str) -> str:
        """The run's page; never with the user name, password or query the configured URL may carry (the
        link goes to Slack, mail and PagerDuty: the browser asks for the login)."""
        return f"{public_url(self.base_url).rstrip('/')}/runs/{run_id}"


def notification_resources_from_environment() -> dict[str, dg.ConfigurableResource]:
    settings.validate()
    return {
        "slack": BatchSlackResource(
            token=from_environment("SLACK_BOT_TOKEN"),
            base_url=from_environment("RANKING_SLACK_API_URL"),
            channel=from_environment("RANKING_SLACK_CHANNEL"),
        ),
        "pagerduty": PagerDutyEvents(
            routing_key=from_environment("PAGERDUTY_ROUTING_KEY"),
            events_url=from_environment("RANKING_PAGERDUTY_EVENTS_URL"),
        ),
        "mail": AlertMailer(
            host=from_environment("RANKING_SMTP_HOST"),
            port=from_environment("RANKING_SMTP_PORT", integer=True),
            tls=from_environment("RANKING_SMTP_TLS"),
            user=from_environment("RANKING_SMTP_USER"),
            password=from_environment("RANKING_SMTP_PASSWORD"),
            sender=from_environment("RANKING_ALERT_MAIL_FROM"),
            recipients=from_environment("RANKING_ALERT_MAIL_TO"),
        ),
        "dagster_ui": DagsterUi(base_url=from_environment("RANKING_DAGSTER_UI_URL")),
    }


@dg.definitions
def notification_resources() -> dg.Definitions:
    return dg.Definitions(resources=notification_resources_from_environment())
