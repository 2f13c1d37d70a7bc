"""A code location for the exclusion tests: the project's definitions plus a stand-in for BATCH-003.

BATCH-003 belongs to another team; this is how such a job joins the exclusion: its runs carry the run tag
``ranking/rankings_writer`` (any value) and every op writing the rankings table is in the pool
``rankings_writers``.
"""

import dagster as dg
import sqlalchemy as sa

from ranking_pipeline import definitions as project
from ranking_pipeline.constants import RANKINGS_WRITER_POOL, RANKINGS_WRITER_TAG
from ranking_pipeline.defs.resources import RankingDatabase

# A test holds this PostgreSQL advisory lock to keep BATCH-003 running until it lets go.
HOLD_BATCH_003 = 3003


@dg.op(pool=RANKINGS_WRITER_POOL)
def rewrite_rankings_for_campaign(database: RankingDatabase) -> None:
    """Stands in for BATCH-003's write to rankings: runs until the test releases HOLD_BATCH_003, writes
    nothing."""
    with database.engine().connect() as connection:
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": HOLD_BATCH_003})
        connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": HOLD_BATCH_003})


@dg.job(tags={RANKINGS_WRITER_TAG: "BATCH-003"})
def batch_003_job() -> None:
    rewrite_rankings_for_campaign()


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(project.defs(), dg.Definitions(jobs=[batch_003_job]))
