"""Senders that talk to the outside: PagerDuty's Events API v2 over HTTPS, mail over SMTP.

(Slack goes through dagster-slack's ``SlackResource``: see ``defs/notification_resources.py``.)
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

from ranking_pipeline.lib.redact import url_location

TIMEOUT_SECONDS = 10


class NotificationError(RuntimeError):
    """A notification could not be delivered (the caller logs it and carries on)."""


def post_pagerduty_event(events_url: str, event: dict, timeout: float = TIMEOUT_SECONDS) -> str:
    """POST one Events API v2 event; returns the dedup key PagerDuty acknowledged."""
    request = urllib.request.Request(
        events_url,
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    where = url_location(events_url)  # the URL as shown everywhere (scheme and host): it may carry a password
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise NotificationError(f"PagerDuty answered HTTP {error.code} at {where}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise NotificationError(f"PagerDuty not reachable at {where}: {error}") from None
    return answer.get("dedup_key", event.get("dedup_key", ""))


def send_mail(
    *,
    host: str,
    port: int,
    tls: str,
    user: str | None,
    password: str | None,
    sender: str,
    recipients: list[str],
    subject: str,
    body: str,
    timeout: float = TIMEOUT_SECONDS,
) -> None:
    """Send a plain-text mail. ``tls``: "none", "starttls" or "ssl"; login only when ``user`` is given."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(body)
    try:
        if tls == "ssl":
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            if tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if user:
                client.login(user, password or "")
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        # The SMTP error text never contains the password; the address helps the operator.
        raise NotificationError(f"mail not sent through {host}:{port} ({tls}): {error}") from None
