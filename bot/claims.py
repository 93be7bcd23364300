"""The exactly-once claim on a WeChat message: a short lease in Redis, renewed while its handler runs.

One key per message, ``prefix:reply:<message key>`` (``bot.dispatch.message_key``), kept for
``webhook.dedup_ttl_seconds``. Once a copy has answered, it holds the reply for WeChat's retries
("X" + the reply XML, or "success"); while a copy is answering, a pending claim::

    \\x00pending|<token>|<lease end, ms on Redis's clock>|<changed: 0 or 1>|<the dialog as the message found it>

- The holder renews its lease (``webhook.claim_lease_seconds``) three times a lease while its handler runs
  (one thread per process renews every claim the process holds).
  A copy arriving meanwhile waits for the reply; once the lease has lapsed (its holder was killed) it takes
  the claim over, puts the dialog back as the message found it, and computes the answer itself.
- An error answer is not kept: the holder releases the claim and puts the dialog back, so WeChat's retry
  recomputes the answer (once the database is back).
- A change is never made twice: when a write transaction of the message commits, the claim is marked
  changed; after that an error, or the holder's death, leaves every copy the answer ``done_without_reply``
  (done, no reply to show) rather than a second run. The mark follows the commit by one Redis round trip:
  a holder killed inside that gap leaves a retry that makes the change again.

Lease ends are on Redis's clock (``TIME``), so the workers' clocks need not agree. Each step is one
script: one round trip, and no copy sees another's step half done.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis as redis_lib
from redis.commands.core import Script

from rules.chat import WebhookRules

log = logging.getLogger(__name__)

CLAIMED = "claimed"  # this copy holds the claim and answers
CHANGED = "changed"  # this copy took over from a holder that died after committing a change
WAIT = "wait"  # another copy holds a live lease
DONE = "done"  # the answer is stored

_LUA = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- A pending claim's fields; nil for a reply, false for a claim without a lease (written before leases).
local function pending(value)
  if not value or string.byte(value, 1) ~= 0 then return nil end
  local a = string.find(value, '|', 1, true)
  if not a then return false end
  local b = string.find(value, '|', a + 1, true)
  local c = string.find(value, '|', b + 1, true)
  local d = string.find(value, '|', c + 1, true)
  return {token = string.sub(value, a + 1, b - 1), lease_end = tonumber(string.sub(value, b + 1, c - 1)),
          changed = string.sub(value, c + 1, d - 1), dialog = string.sub(value, d + 1)}
end
local function hold(key, token, lease_ms, changed, dialog, ttl)
  local lease_end = string.format('%d', now_ms() + tonumber(lease_ms))
  redis.call('SET', key, '\\0pending|' .. token .. '|' .. lease_end .. '|' .. changed .. '|' .. dialog, 'EX', ttl)
end
local function restore_dialog(key, dialog, ttl)
  if dialog == '' then redis.call('DEL', key) else redis.call('SET', key, dialog, 'EX', ttl) end
end
-- This copy's pending claim; or nil and why not: 0 the message is answered, -1 it is another copy's (or nobody's).
local function ours(key, token)
  local value = redis.call('GET', key)
  local claim = pending(value)
  if claim and claim.token == token then return claim end
  if value and claim == nil then return nil, 0 end
  return nil, -1
end
"""

# KEYS: reply, dialog[, seen]; ARGV: token, lease ms, dedup ttl, dialog ttl, seen ttl.
# Returns {status, the dialog as the message found it ('' for none) or the stored reply}.
_TAKE = Script(None, (_LUA + """
if KEYS[3] then redis.call('SET', KEYS[3], 1, 'EX', ARGV[5]) end
local stored = redis.call('GET', KEYS[1])
if not stored then
  local dialog = redis.call('GET', KEYS[2]) or ''
  hold(KEYS[1], ARGV[1], ARGV[2], '0', dialog, ARGV[3])
  return {'claimed', dialog}
end
local claim = pending(stored)
if claim == nil then return {'done', stored} end
if claim == false or claim.lease_end > now_ms() then return {'wait', ''} end
hold(KEYS[1], ARGV[1], ARGV[2], claim.changed, claim.dialog, ARGV[3])
if claim.changed == '1' then return {'changed', ''} end  -- the dialog stays as the change left it
restore_dialog(KEYS[2], claim.dialog, ARGV[4])
return {'claimed', claim.dialog}
""").encode())

# The scripts that follow answer 1 when done, else why not (``ours``).
# KEYS: reply; ARGV: token, lease ms, dedup ttl, '1' to mark the claim changed.
_RENEW = Script(None, (_LUA + """
local claim, why = ours(KEYS[1], ARGV[1])
if not claim then return why end
hold(KEYS[1], ARGV[1], ARGV[2], ARGV[4] == '1' and '1' or claim.changed, claim.dialog, ARGV[3])
return 1
""").encode())

# KEYS: reply; ARGV: token, the reply to keep, dedup ttl.
_FINISH = Script(None, (_LUA + """
local claim, why = ours(KEYS[1], ARGV[1])
if not claim then return why end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
""").encode())

# KEYS: reply, dialog; ARGV: token, dialog ttl.
_RELEASE = Script(None, (_LUA + """
local claim, why = ours(KEYS[1], ARGV[1])
if not claim then return why end
redis.call('DEL', KEYS[1])
restore_dialog(KEYS[2], claim.dialog, ARGV[2])
return 1
""").encode())


class Claim:
    """One copy's claim on one message (see the module docstring)."""

    def __init__(self, redis: redis_lib.Redis, key: str, dialog_key: str, webhook: WebhookRules, dialog_ttl: int):
        self.redis, self.key, self.dialog_key, self.dialog_ttl = redis, key, dialog_key, dialog_ttl
        self.lease_ms, self.ttl = int(webhook.claim_lease_seconds * 1000), webhook.dedup_ttl_seconds
        self.renew_every = webhook.claim_lease_seconds / 3
        self.token = secrets.token_hex(8)

    def take(self, seen: tuple[str, int] | None = None) -> tuple[str, str | None]:
        """Claim the message, or take over a lapsed claim: ``(status, found)``; raises RedisError.

        ``found``: for CLAIMED the dialog as the message found it (None: none open), for DONE the stored
        reply. ``seen``: a key to set for the customer-service window, and its TTL, in the same round trip.
        """
        keys = [self.key, self.dialog_key, *([seen[0]] if seen else [])]
        status, found = _TAKE(keys=keys, args=[self.token, self.lease_ms, self.ttl, self.dialog_ttl,
                                               seen[1] if seen else 0], client=self.redis)
        return status, found or None

    @contextmanager
    def renewed(self) -> Iterator[None]:
        """The lease renewed while the block runs (the handler does)."""
        _RENEWALS.hold(self)
        try:
            yield
        finally:
            _RENEWALS.drop(self)

    def renew(self) -> None:
        """Extend the lease: the handler is still running."""
        self._run(_RENEW, [self.key], [self.token, self.lease_ms, self.ttl, 0], "lease renewal")

    def mark_changed(self) -> None:
        """A write transaction of the message committed: no copy may run it again."""
        self._run(_RENEW, [self.key], [self.token, self.lease_ms, self.ttl, 1], "change mark")

    def finish(self, reply: str) -> None:
        """Keep ``reply`` for WeChat's retries ("X" + XML, or "success")."""
        self._run(_FINISH, [self.key], [self.token, reply, self.ttl], "reply")

    def release(self) -> None:
        """Give the message up, its dialog put back as the message found it: a retry answers it afresh."""
        self._run(_RELEASE, [self.key, self.dialog_key], [self.token, self.dialog_ttl], "release")

    def _run(self, script: Script, keys: list[str], args: list, step: str) -> None:
        """Run a step on this copy's claim. One answered already is left alone without a word (a renewal
        just after the answer, a commit after the budget); one another copy took over is logged."""
        try:
            if script(keys=keys, args=args, client=self.redis) == -1:
                log.warning("%s skipped: the claim on %s was taken over by another copy", step, self.key)
        except redis_lib.RedisError as exc:
            log.error("Redis unavailable (%s): %s skipped for %s", type(exc).__name__, step, self.key)


class _Renewals:
    """The claims this process holds, each renewed every ``renew_every`` seconds by one thread.

    A thread of its own rather than the request's timed wait on the handler: the renewals go on
    however the request thread waits, and they cost a message that is answered at once nothing but
    two dictionary updates. Started at first use, and again in a process forked after it.
    """

    TICK = 0.05  # the longest sleep while claims are held: a claim with a shorter lease is renewed in time

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due: dict[Claim, float] = {}  # claim -> when to renew it (time.monotonic())
        self._started = False

    def forked(self) -> None:
        """In a forked child: no thread yet, and a lock no other thread may hold."""
        self.__init__()

    def hold(self, claim: Claim) -> None:
        with self._changed:
            if not self._started:
                threading.Thread(target=self._renew_forever, name="claim-renewals", daemon=True).start()
                self._started = True
            self._due[claim] = time.monotonic() + claim.renew_every
            self._changed.notify()

    def drop(self, claim: Claim) -> None:
        with self._changed:
            self._due.pop(claim, None)

    def _renew_forever(self) -> None:
        while True:
            with self._changed:
                while not self._due:
                    self._changed.wait()  # untimed: a timed wait never ends under libfaketime (the suite runs so)
                now = time.monotonic()
                due = [claim for claim, at in self._due.items() if at <= now]
                for claim in due:
                    self._due[claim] = now + claim.renew_every
                wake = min(self._due.values())
            for claim in due:
                claim.renew()
            time.sleep(min(max(wake - time.monotonic(), 0.001), self.TICK))


_RENEWALS = _Renewals()
os.register_at_fork(after_in_child=_RENEWALS.forked)
