"""User-ID ranges: the partitions of ``user_scores``.

The ranges are fixed (they are partition keys, so changing them re-keys the asset's history), never
overlap, and together cover every BIGINT user ID: the first starts at the smallest BIGINT and the last
ends at the largest, so a user far above today's largest ID is still scored.
"""

from __future__ import annotations

from dataclasses import dataclass

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
RANGE_WIDTH = 125_000
RANGE_COUNT = 8


@dataclass(frozen=True)
class UserIdRange:
    key: str
    first_id: int  # inclusive
    last_id: int  # inclusive

    def contains(self, user_id: int) -> bool:
        return self.first_id <= user_id <= self.last_id


def _build_ranges() -> tuple[UserIdRange, ...]:
    ranges = []
    for index in range(RANGE_COUNT):
        first = BIGINT_MIN if index == 0 else index * RANGE_WIDTH
        last = BIGINT_MAX if index == RANGE_COUNT - 1 else (index + 1) * RANGE_WIDTH - 1
        low = "min" if index == 0 else f"{first:07d}"
        high = "max" if index == RANGE_COUNT - 1 else f"{last:07d}"
        ranges.append(UserIdRange(key=f"users_{low}_to_{high}", first_id=first, last_id=last))
    return tuple(ranges)


USER_ID_RANGES: tuple[UserIdRange, ...] = _build_ranges()
_BY_KEY = {user_range.key: user_range for user_range in USER_ID_RANGES}


def range_for_key(key: str) -> UserIdRange:
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown user-ID range {key!r}; known ranges: {', '.join(_BY_KEY)}") from None


def range_for_user(user_id: int) -> UserIdRange:
    return next(user_range for user_range in USER_ID_RANGES if user_range.contains(user_id))
