"""Clearing the caches derived from rankings once a new ranking has committed (design 7)."""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_CACHE_KEY_PATTERN = "ranking:*"


def describe_redis_url(url: str) -> str:
    """The URL without its password (safe for logs and errors)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return f"{parts.scheme}://{user + ':***@' if '@' in parts.netloc else ''}{host}{parts.path}"


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
