"""Redis connection and the one helper that names every key (``prefix:kind:id``)."""
from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)


class Keys:
    """Builds every Redis key, so the layout is visible in one place."""

    def __init__(self, prefix: str = "mbot"):
        self.prefix = prefix

    def __call__(self, kind: str, *parts: object) -> str:
        return ":".join([self.prefix, kind, *map(str, parts)])


def connect(url: str | None) -> redis.Redis:
    """A client for ``url``; without one, an in-process stand-in (one process only)."""
    if url:
        return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, health_check_interval=30)
    import fakeredis

    log.warning(
        "REDIS_URL is not set: using an in-process Redis stand-in (fakeredis). "
        "State is lost on restart and not shared between processes: run a single process only."
    )
    return fakeredis.FakeRedis(decode_responses=True)
