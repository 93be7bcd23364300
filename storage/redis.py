"""Redis connection and the one helper that names every key (``prefix:kind:id``)."""
from __future__ import annotations

import logging

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

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
        # Fail fast: a webhook has 5 s per message, and redis-py's default is 10 retries with backoff.
        return redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=1,
            socket_timeout=2,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
            health_check_interval=30,
        )
    import fakeredis

    log.warning(
        "REDIS_URL is not set: using an in-process Redis stand-in (fakeredis). "
        "State is lost on restart and not shared between processes: run a single process only."
    )
    return fakeredis.FakeRedis(decode_responses=True)
