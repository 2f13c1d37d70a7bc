"""Facts for the completion notice, computed in PostgreSQL from the rankings table."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ranking_pipeline.lib.notify.messages import Mover

# Users ranked on both dates whose rank changed, by the size of the move (ties: better current rank first).
_MOVERS = sa.text(
    """
    SELECT cur.user_id, prev.rank AS previous_rank, cur.rank
    FROM rankings AS cur
    JOIN rankings AS prev ON prev.user_id = cur.user_id AND prev.ranking_date = :previous_date
    WHERE cur.ranking_date = :business_date AND sign(prev.rank - cur.rank) = :direction
    ORDER BY abs(prev.rank - cur.rank) DESC, cur.rank, cur.user_id
    LIMIT :limit
    """
)


def rank_movers(
    connection: Connection, business_date: dt.date, previous_date: dt.date, limit: int = 3
) -> tuple[list[Mover], list[Mover]]:
    """(biggest climbers, biggest fallers) between the previous business date and D."""

    def movers(direction: int) -> list[Mover]:
        rows = connection.execute(
            _MOVERS,
            {
                "business_date": business_date,
                "previous_date": previous_date,
                "direction": direction,
                "limit": limit,
            },
        )
        return [Mover(int(user_id), int(previous), int(rank)) for user_id, previous, rank in rows]

    return movers(1), movers(-1)
