"""Only one scheduler is active: it holds a lease in Redis and renews it; standbys take over when it lapses."""
from __future__ import annotations

import uuid

import redis as redis_lib

from storage.redis import delete_if_same

# Extend only our own lease; acquire when free.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


class Lease:
    """A renewable, expiring claim on being the active scheduler."""

    def __init__(self, redis: redis_lib.Redis, key: str, seconds: int, holder: str | None = None):
        self.redis, self.key, self.seconds = redis, key, seconds
        self.holder = holder or uuid.uuid4().hex
        self.held = False

    def refresh(self) -> bool:
        """Take the lease if free, renew it if ours; returns whether we hold it now."""
        try:
            self.held = bool(self.redis.eval(_RENEW, 1, self.key, self.holder, int(self.seconds * 1000)))
        except redis_lib.RedisError:
            self.held = False  # cannot prove we hold it: act as a standby
        return self.held

    def release(self) -> None:
        if self.held:
            delete_if_same(self.redis, self.key, self.holder)
            self.held = False
