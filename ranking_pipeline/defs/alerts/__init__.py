"""Alert sensors (design 6.1), one per file: failure (Slack + mail, + PagerDuty on a timeout), completion
notice, the 15-minute warning and the row-count anomaly warning. All on by default.

Each sensor gathers a run's facts from the instance and hands them to the pure builders in
``lib/notify/messages.py``. A channel that is not configured or fails is logged in the tick's log and
skipped; it never raises, never blocks the other channels and never touches the run's outcome.
"""
