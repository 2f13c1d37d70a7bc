"""What each alert of design 6.1 says, and to whom it goes: pure functions of the facts of one run.

| alert | level | channels |
|---|---|---|
| a run of the batch failed | Critical | Slack + mail |
| the run failed because it exceeded its maximum runtime | Critical | Slack + mail + PagerDuty |
| the rankings of D not committed by the deadline (09:00 JST) | Critical | Slack + mail + PagerDuty |
| BATCH-001 still running after 15 minutes | Warning | Slack |
| ranked rows under 50 % of the previous business date | Warning | Slack |
| BATCH-001 succeeded (completion notice) | Info | Slack |
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ranking_pipeline.constants import BATCH_000_JOB, BATCH_001_JOBS

SLACK, MAIL, PAGERDUTY = "slack", "mail", "pagerduty"
ASSET_JOB_PREFIX = "__ASSET_JOB"  # runs launched by "Materialize" in the UI
WILL_RETRY_TAG = "dagster/will_retry"
MAX_ERROR_LINES = 6
MAX_LINE_CHARS = 300

_TIMEOUT_PATTERN = re.compile(r"maximum runtime of (\d+) seconds")


@dataclass(frozen=True)
class FailureFacts:
    job_name: str
    run_id: str
    business_date: str
    run_url: str
    failed_steps: list[str] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)
    timed_out_after_seconds: int | None = None
    running_steps: list[str] = field(default_factory=list)

    @property
    def timed_out(self) -> bool:
        return self.timed_out_after_seconds is not None


@dataclass(frozen=True)
class Mover:
    user_id: int
    previous_rank: int
    rank: int

    @property
    def change(self) -> int:
        """Places gained (positive) or lost (negative)."""
        return self.previous_rank - self.rank


@dataclass(frozen=True)
class CompletionFacts:
    run_id: str
    business_date: str
    run_url: str
    rows_ranked: int
    duration_seconds: float | None
    previous_date: dt.date | None = None
    previous_rows: int = 0
    climbers: list[Mover] = field(default_factory=list)
    fallers: list[Mover] = field(default_factory=list)
    unavailable: str | None = None  # why the comparison with the previous date is missing, if it is


@dataclass(frozen=True)
class AnomalyFacts:
    run_id: str
    business_date: str
    run_url: str
    description: str
    rows: int | None = None
    previous_date: str | None = None
    previous_rows: int | None = None
    ratio: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class LongRunFacts:
    job_name: str
    run_id: str
    business_date: str
    run_url: str
    running_seconds: float
    threshold_seconds: int
    max_runtime_seconds: int | None = None


@dataclass(frozen=True)
class MissedRankingFacts:
    business_date: str
    deadline: str  # e.g. "09:00 JST on 2026-11-28"
    reason: str  # one line: the days not aggregated, the failed run and step, or that nothing started
    run_id: str | None = None  # the batch's run the reason names, if any
    run_url: str | None = None


# --- routing and suppression ---------------------------------------------------------------------------


def alerts_on_failure(
    job_name: str, tags: dict[str, str], already_alerted_tag: str, *, checks_only: bool = False
) -> bool:
    """A failed run alerts when it is one of the batch's jobs or a UI materialization of this location's
    assets, is not about to be retried (its retry alerts instead), and has not been alerted on already. A run
    that only evaluates checks (the Checks tab) is not the batch: it never alerts."""
    return why_no_failure_alert(job_name, tags, already_alerted_tag, checks_only=checks_only) is None


def why_no_failure_alert(
    job_name: str, tags: dict[str, str], already_alerted_tag: str, *, checks_only: bool = False
) -> str | None:
    """Why a failed run sends no alert (see alerts_on_failure); None when it alerts."""
    if checks_only:
        return "it only evaluated checks, it is not the batch"
    if not (job_name in (BATCH_000_JOB, *BATCH_001_JOBS) or job_name.startswith(ASSET_JOB_PREFIX)):
        return "not a batch job or a materialization of the pipeline's assets"
    if tags.get(WILL_RETRY_TAG) == "true":
        return "it will be retried (the retry alerts if it fails too)"
    if tags.get(already_alerted_tag) == "true":
        return "already alerted"
    return None


def failure_channels(facts: FailureFacts) -> list[str]:
    """Run failure: Slack + mail (Critical); a timeout also pages on-call."""
    return [SLACK, MAIL, PAGERDUTY] if facts.timed_out else [SLACK, MAIL]


def timeout_seconds(messages: Iterable[str | None]) -> int | None:
    """The maximum runtime a run exceeded, read from run monitoring's events; None if it did not time out."""
    for message in messages:
        match = _TIMEOUT_PATTERN.search(message or "")
        if match:
            return int(match.group(1))
    return None


def error_lines(texts: Iterable[str], max_lines: int = MAX_ERROR_LINES) -> list[str]:
    """The first non-blank lines of the texts, each cut to a readable length."""
    lines = []
    for text in texts:
        for line in (text or "").splitlines():
            if line.strip():
                stripped = line.rstrip()
                lines.append(stripped if len(stripped) <= MAX_LINE_CHARS else stripped[:MAX_LINE_CHARS] + "…")
            if len(lines) >= max_lines:
                return lines
    return lines


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


# --- Slack ---------------------------------------------------------------------------------------------


def _code_block(lines: list[str]) -> str:
    body = "\n".join(line.replace("```", "'''") for line in lines) or "(no error message)"
    return f"```\n{body}\n```"


def failure_title(facts: FailureFacts) -> str:
    what = f"timed out after {facts.timed_out_after_seconds} s" if facts.timed_out else "failed"
    return f"Critical: {facts.job_name} {what} (business date {facts.business_date})"


def failure_slack_text(facts: FailureFacts) -> str:
    lines = [f":rotating_light: *{failure_title(facts)}*"]
    if facts.timed_out:
        lines.append(
            f"The run TIMED OUT: it exceeded its maximum runtime of {facts.timed_out_after_seconds} s and "
            "was stopped by run monitoring. On-call has been paged."
        )
        if facts.running_steps:
            lines.append(f"*Running when stopped:* {', '.join(facts.running_steps)}")
    lines.append(f"*Job:* {facts.job_name}   *Business date:* {facts.business_date}")
    lines.append(f"*Failed step:* {', '.join(facts.failed_steps) or 'none (the run itself failed)'}")
    lines.append("*Error:*")
    lines.append(_code_block(facts.error_lines))
    lines.append(f"<{facts.run_url}|Open run {facts.run_id[:8]} in Dagster>")
    return "\n".join(lines)


def completion_slack_text(facts: CompletionFacts) -> str:
    lines = [
        f":white_check_mark: *BATCH-001 completed* for business date {facts.business_date}: "
        f"{facts.rows_ranked:,} users ranked in {format_duration(facts.duration_seconds)}.",
    ]
    if facts.unavailable:
        lines.append(f"Rank movers unavailable: {facts.unavailable}")
    elif facts.previous_date is None:
        lines.append("No earlier business date to compare with.")
    else:
        lines.append(f"Compared with {facts.previous_date} ({facts.previous_rows:,} ranked):")
        for label, movers in (("Biggest climbers", facts.climbers), ("Biggest fallers", facts.fallers)):
            if movers:
                moves = ", ".join(
                    f"user {m.user_id} {m.previous_rank}→{m.rank} ({m.change:+d})" for m in movers
                )
                lines.append(f"*{label}:* {moves}")
        if not facts.climbers and not facts.fallers:
            lines.append("No user present on both dates changed rank.")
    lines.append(f"<{facts.run_url}|Open run {facts.run_id[:8]} in Dagster>")
    return "\n".join(lines)


def anomaly_slack_text(facts: AnomalyFacts) -> str:
    lines = [
        f":warning: *Warning: rankings row-count anomaly* for business date {facts.business_date}",
        facts.description,
    ]
    if facts.rows is not None and facts.previous_rows is not None:
        ratio = f"{facts.ratio:.1%}" if facts.ratio is not None else "n/a"
        threshold = f"{facts.threshold:.0%}" if facts.threshold is not None else "n/a"
        lines.append(
            f"*Rows:* {facts.rows:,}   *Previous ({facts.previous_date}):* {facts.previous_rows:,}   "
            f"*Ratio:* {ratio} (threshold {threshold})"
        )
    lines.append(f"<{facts.run_url}|Open run {facts.run_id[:8]} in Dagster>")
    return "\n".join(lines)


def long_run_slack_text(facts: LongRunFacts) -> str:
    limit = (
        f"; it will be stopped at {format_duration(facts.max_runtime_seconds)}"
        if facts.max_runtime_seconds
        else ""
    )
    return "\n".join(
        [
            f":hourglass_flowing_sand: *Warning: {facts.job_name} still running after "
            f"{format_duration(facts.running_seconds)}* (business date {facts.business_date})",
            f"Expected about 10 min; warning threshold {format_duration(facts.threshold_seconds)}{limit}.",
            f"<{facts.run_url}|Open run {facts.run_id[:8]} in Dagster>",
        ]
    )


# --- mail and PagerDuty --------------------------------------------------------------------------------


def failure_mail(facts: FailureFacts) -> tuple[str, str]:
    """(subject, plain-text body)."""
    body = [
        failure_title(facts),
        "",
        f"Job:           {facts.job_name}",
        f"Business date: {facts.business_date}",
        f"Run:           {facts.run_id}",
        f"Failed step:   {', '.join(facts.failed_steps) or 'none (the run itself failed)'}",
    ]
    if facts.timed_out:
        body.append(
            f"TIMED OUT: exceeded the maximum runtime of {facts.timed_out_after_seconds} s; "
            "stopped by run monitoring; on-call paged."
        )
    body += [
        "",
        "Error:",
        *[f"    {line}" for line in facts.error_lines],
        "",
        f"Open the run: {facts.run_url}",
    ]
    return f"[BATCH-001] {failure_title(facts)}", "\n".join(body) + "\n"


def pagerduty_trigger(facts: FailureFacts, routing_key: str) -> dict:
    """An Events API v2 ``trigger``; the dedup key makes repeated sends for one run a single incident."""
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": f"ranking_pipeline/{facts.job_name}/{facts.run_id}",
        "payload": {
            "summary": failure_title(facts),
            "source": "ranking_pipeline",
            "severity": "critical",
            "component": facts.job_name,
            "custom_details": {
                "business_date": facts.business_date,
                "run_id": facts.run_id,
                "error": "\n".join(facts.error_lines),
            },
        },
        "links": [{"href": facts.run_url, "text": "Dagster run"}],
    }


# --- the night that did not happen ---------------------------------------------------------------------


def missed_ranking_title(facts: MissedRankingFacts) -> str:
    return f"Critical: no rankings for business date {facts.business_date} by {facts.deadline}"


def missed_ranking_slack_text(facts: MissedRankingFacts) -> str:
    lines = [
        f":rotating_light: *{missed_ranking_title(facts)}*",
        f"*Why:* {facts.reason}",
        "BATCH-002 would mail from the previous ranking. On-call has been paged.",
    ]
    if facts.run_url and facts.run_id:
        lines.append(f"<{facts.run_url}|Open run {facts.run_id[:8]} in Dagster>")
    return "\n".join(lines)


def missed_ranking_mail(facts: MissedRankingFacts) -> tuple[str, str]:
    body = [
        missed_ranking_title(facts),
        "",
        f"Business date: {facts.business_date}",
        f"Deadline:      {facts.deadline}",
        f"Why:           {facts.reason}",
    ]
    if facts.run_url:
        body.append(f"Open the run:  {facts.run_url}")
    return f"[BATCH-001] {missed_ranking_title(facts)}", "\n".join(body) + "\n"


def missed_ranking_pagerduty(facts: MissedRankingFacts, routing_key: str) -> dict:
    """One incident per business date (the dedup key), whatever re-sends it."""
    event = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": f"ranking_pipeline/missed_ranking/{facts.business_date}",
        "payload": {
            "summary": missed_ranking_title(facts),
            "source": "ranking_pipeline",
            "severity": "critical",
            "component": "BATCH-001",
            "custom_details": {"business_date": facts.business_date, "why": facts.reason},
        },
    }
    if facts.run_url:
        event["links"] = [{"href": facts.run_url, "text": "Dagster run"}]
    return event
