"""Delivering one alert through one channel, whatever happens to that channel."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ranking_pipeline.lib.redact import scrub_settings

logger = logging.getLogger("ranking_pipeline.alerts")

SENT, NOT_CONFIGURED, FAILED = "sent", "not configured", "failed"


def deliver(context, channel: str, run_id: str, configured: bool, send: Callable[[], object]) -> str:
    """Send through one channel; 'sent', 'not configured' or 'failed' (logged, never raised)."""
    if not configured:
        context.log.warning(f"{channel} alert for run {run_id} skipped: {channel} is not configured")
        return NOT_CONFIGURED
    try:
        send()
    except Exception as error:
        # what the channel's client says may quote its URL or request: no configured secret is shown
        reason = scrub_settings(" ".join(str(error).split()))
        text = f"{channel} alert for run {run_id} FAILED: {type(error).__name__}: {reason}"
        context.log.error(text)
        logger.error(text)
        return FAILED
    return SENT
