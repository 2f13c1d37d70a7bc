"""Asset checks on rankings: run after it in the same run, or alone from the asset's Checks tab."""

import dagster as dg

from ranking_pipeline.constants import RANKINGS_INTEGRITY_CHECK, RANKINGS_ROW_COUNT_ANOMALY_CHECK
from ranking_pipeline.defs.assets._shared import business_date_of
from ranking_pipeline.defs.resources import RankingDatabase
from ranking_pipeline.lib.checks import (
    DEFAULT_ANOMALY_THRESHOLD,
    previous_ranking_count,
    rankings_integrity,
    row_count_anomaly,
)
from ranking_pipeline.lib.queries import count_rows
from ranking_pipeline.lib.schema import rankings as rankings_table


class RowCountAnomalyConfig(dg.Config):
    threshold: float = DEFAULT_ANOMALY_THRESHOLD
    """WARN when D's rows are under this fraction of the previous business date's rows (design 6.1: 0.5)."""


@dg.asset_check(asset="rankings", name=RANKINGS_INTEGRITY_CHECK, blocking=True)
def rankings_integrity_check(
    context: dg.AssetCheckExecutionContext, database: RankingDatabase
) -> dg.AssetCheckResult:
    """Ranks of D start at 1 and follow RANK() over score; one row per user; every score positive.
    ERROR and blocking: what depends on rankings does not run on a table that breaks these."""
    business_date = business_date_of(context)
    with database.engine().connect() as connection:
        report = rankings_integrity(connection, business_date)
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(report.problems) or f"{report.rows:,} rows for {business_date} consistent",
        metadata={"business_date": business_date.isoformat(), "rows": report.rows},
    )


@dg.asset_check(asset="rankings", name=RANKINGS_ROW_COUNT_ANOMALY_CHECK)
def rankings_row_count_anomaly_check(
    context: dg.AssetCheckExecutionContext, config: RowCountAnomalyConfig, database: RankingDatabase
) -> dg.AssetCheckResult:
    """WARN when D has under 50 % (configurable) of the previous business date's ranked rows."""
    business_date = business_date_of(context)
    with database.engine().connect() as connection:
        current = count_rows(connection, rankings_table, "ranking_date", business_date)
        previous = previous_ranking_count(connection, business_date)
    verdict = row_count_anomaly(current, previous, config.threshold)
    if not verdict.passed:
        context.log.warning(f"rankings {business_date}: row-count anomaly: {verdict.description}")
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=verdict.description,
        metadata={
            "business_date": business_date.isoformat(),
            "rows": current,
            "previous_date": previous[0].isoformat() if previous else "none",
            "previous_rows": previous[1] if previous else 0,
            "ratio": round(verdict.ratio, 4) if verdict.ratio is not None else float("nan"),
            "threshold": config.threshold,
        },
    )
