"""Resources: the ranking database."""

from __future__ import annotations

import dagster as dg
from sqlalchemy.engine import Engine

from ranking_pipeline.lib.db import check_reachable, get_engine
from ranking_pipeline.lib.schema import ensure_output_tables, validate_input_tables


class RankingDatabase(dg.ConfigurableResource):
    """The PostgreSQL database with the input tables (users, orders) and the pipeline's tables.

    ``database_url`` unset: ``RANKING_DATABASE_URL`` from the environment, else the embedded server.
    """

    database_url: str | None = None

    def engine(self) -> Engine:
        return get_engine(self.database_url)

    def ready_engine(self) -> Engine:
        """An engine after checking the server answers, the inputs match the contract, outputs exist."""
        engine = self.engine()
        check_reachable(engine)
        with engine.connect() as connection:
            validate_input_tables(connection)
        ensure_output_tables(engine)
        return engine


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"database": RankingDatabase()})
