"""Clearing the caches derived from rankings once a new ranking has committed (design 7)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ranking_pipeline.lib import settings
from ranking_pipeline.lib.redact import MASK, url_location

DEFAULT_CACHE_KEY_PATTERN = settings.default("RANKING_CACHE_KEY_PATTERN")


def describe_redis_url(url: str) -> str:
    """Scheme, host, port and database of a Redis URL, never its user part (safe for logs and errors); of a
    URL that does not pass the RANKING_REDIS_URL check, its scheme and host at most."""
    from ranking_pipeline.lib.settings import BY_ENV

    try:
        BY_ENV["RANKING_REDIS_URL"].check(url)
    except ValueError:
        return url_location(url)
    parts = urlsplit(url.strip())
    host = parts.netloc.rpartition("@")[2]
    database = parts.path if parts.path.strip("/").isdigit() or parts.scheme == "unix" else ""
    return f"{parts.scheme}://{MASK + '@' if '@' in parts.netloc else ''}{host}{database}"


def redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)


def clear_keys(client, pattern: str, batch_size: int = 1000) -> int:
    """Delete every key matching ``pattern`` (SCAN, never KEYS; UNLINK in batches); returns how many."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=batch_size):
        batch.append(key)
        if len(batch) >= batch_size:
            deleted += client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += client.unlink(*batch)
    return deleted
