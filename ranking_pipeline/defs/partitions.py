"""Partitions: JST days for the daily aggregates, user-ID ranges for the scores."""

import dagster as dg

from ranking_pipeline.lib.dates import JST
from ranking_pipeline.lib.ranges import USER_ID_RANGES

daily_jst_partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone=JST.key)

user_id_range_partitions = dg.StaticPartitionsDefinition([user_range.key for user_range in USER_ID_RANGES])
