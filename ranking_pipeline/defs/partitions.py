"""Partitions: business dates (JST days), aggregation days, and business date x user-ID range for the scores.

The daily dimensions end with the last JST day that has ended. Business dates start at the first business
date (RANKING_FIRST_BUSINESS_DATE, default 2020-01-01); aggregation days start 29 days earlier, so the
window W(D) of every business date consists of existing partitions.
"""

import dagster as dg

from ranking_pipeline.lib.business_date import JST, first_aggregation_day, first_business_date
from ranking_pipeline.lib.ranges import USER_ID_RANGES

DATE_DIMENSION = "date"
RANGE_DIMENSION = "user_id_range"

business_date_partitions = dg.DailyPartitionsDefinition(
    start_date=first_business_date().isoformat(), timezone=JST.key, end_offset=0
)

aggregation_day_partitions = dg.DailyPartitionsDefinition(
    start_date=first_aggregation_day().isoformat(), timezone=JST.key, end_offset=0
)

user_id_range_partitions = dg.StaticPartitionsDefinition([user_range.key for user_range in USER_ID_RANGES])

# Keys read "<date>|<range>": the dimensions are ordered by name, and "date" sorts first.
score_partitions = dg.MultiPartitionsDefinition(
    {DATE_DIMENSION: business_date_partitions, RANGE_DIMENSION: user_id_range_partitions}
)
