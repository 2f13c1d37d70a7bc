"""Alerts of BATCH-001 (design 6.1) as plain Python: message builders, routing rules and senders.

Nothing here imports Dagster: the sensors in ``ranking_pipeline/defs/alerts.py`` gather the facts of a run
and hand them to these functions, which are tested directly.
"""
