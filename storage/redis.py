"""Redis: the connection, the catalogue of key kinds, and the one helper that names every key.

Every key is ``prefix:kind:id...``; the kinds and how long each lives are listed in ``KINDS``,
so the whole layout is visible here. ``Keys`` refuses a kind that is not in the catalogue.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)
T = TypeVar("T")

# kind -> what it holds and for how long (the TTL's source in config.yaml, or a fixed span)
KINDS: dict[str, str] = {
    "reply": "a WeChat message's claim (a lease of webhook.claim_lease_seconds, bot/claims.py), then its first reply, "
             "for its retries; webhook.dedup_ttl_seconds",
    "dialog": "a member's half-finished dialog; dialog.ttl_seconds",
    "seen": "a member wrote recently (customer-service window); pushes.customer_service_window_hours",
    "bindfail": "failed bind attempts of an openid; binding.lockout_seconds from the first failure",
    "bindlock": "an openid locked out of binding; binding.lockout_seconds",
    "bindtried": "openids that failed to bind a card (so an operator can unlock by card); binding.lockout_seconds",
    "scheduler": "the active scheduler's lease; pushes.lease_seconds",
    "fired": "a job ran for a day; 3 days",
    "running": "a job is running for a day, by which scheduler; 1 hour",
    "ratelimit": "pushes sent in one minute, all processes; 2 minutes",
    "push-sender": "a push sender is alive (heartbeat); pushes.claim_timeout_seconds",
    "giftpage": "the page of the gift list a member saw last (for 更多); dialog.ttl_seconds",
    "wechat": "the shared access_token (WeChat's expiry less 5 minutes) and its fetch lock (15 s)",
}

# Delete KEYS[1] only if it still holds ARGV[1]: a lock, a mark or a token that is still ours.
DELETE_IF_SAME = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class Keys:
    """Builds every Redis key, so the layout is visible in one place."""

    def __init__(self, prefix: str = "mbot"):
        self.prefix = prefix

    def __call__(self, kind: str, *parts: object) -> str:
        if kind not in KINDS:
            raise KeyError(f"Redis key kind {kind!r} is not in storage.redis.KINDS")
        return ":".join([self.prefix, kind, *map(str, parts)])


def delete_if_same(client: redis.Redis, key: str, value: str) -> bool:
    """Delete ``key`` if it still holds ``value`` (atomically); True if it did."""
    return bool(client.eval(DELETE_IF_SAME, 1, key, value))


class Fallback:
    """Redis calls that have a local stand-in: after a Redis error (down, restarted, stalled) the
    stand-in answers for ``pause_seconds`` without asking Redis, so a hung Redis costs one timeout
    every few seconds instead of one per call. One per use, shared by the threads that make it."""

    def __init__(self, what: str, pause_seconds: float = 5.0):
        self._what, self._pause = what, pause_seconds
        self._until = 0.0
        self._lock = threading.Lock()

    def call(self, redis_call: Callable[[], T], fallback: Callable[[], T]) -> T:
        if time.monotonic() < self._until:
            return fallback()
        try:
            return redis_call()
        except redis.RedisError as exc:
            with self._lock:
                first = time.monotonic() >= self._until
                self._until = time.monotonic() + self._pause
            if first:
                log.warning("Redis unavailable for %s (%s): going on without it for %.0f s", self._what,
                            type(exc).__name__, self._pause)
            return fallback()


def connect(url: str | None, *, reply_path: bool = False) -> redis.Redis:
    """A client for ``url``; without one, an in-process stand-in (one process only).

    ``reply_path``: for calls made while a member waits for an answer (WeChat gives up after
    5 s): a quarter of a second per call and no retry, so a hung Redis costs little of the budget.
    """
    if url:
        # Fail fast: a webhook has 5 s per message, and redis-py's default is 10 retries with backoff.
        return redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=0.25 if reply_path else 1,
            socket_timeout=0.25 if reply_path else 2,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 0 if reply_path else 1),
            health_check_interval=30,
        )
    import fakeredis

    log.warning(
        "REDIS_URL is not set: using an in-process Redis stand-in (fakeredis). "
        "State is lost on restart and not shared between processes: run a single process only."
    )
    return fakeredis.FakeRedis(decode_responses=True)
