"""Delivery: the one module that sends every push, from the outbox, through the WeChat API.

Exactly once: a row is claimed in the database before it is sent (no two senders share a
row); just before the HTTP call a marker goes to Redis, and as soon as the call returns a
second marker holds its outcome (sent with WeChat's msgid, failed, unreachable). The batch's
outcomes are then written to the database in one statement. A sender that dies leaves rows
in 'sending': the next drain gives those with an outcome marker that outcome, puts those
without any marker back to 'pending' (never attempted) and marks the rest 'unknown' — the
calls that were in flight, at most ``concurrent_sends``: the message may have arrived, and
sending again could make a duplicate, which the programme rules out. A call that times out
is in doubt for the same reason. WeChat's TEMPLATESENDJOBFINISH event settles what is in
doubt (``settle_finish_event``): delivered, or failed with WeChat's status.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import redis as redis_lib
import requests
import urllib3
from sqlalchemy import and_, func, select
from wechatpy.exceptions import WeChatClientException

from bot.wechat import errcode
from rules import Rules, render_text
from rules.pushes import PushMessage, field_value
from scheduler.bulletins import read_bulletin
from storage import outbox
from storage.members import mask_openid
from storage.models import Member, OutboxMessage, Voucher

if TYPE_CHECKING:
    from bot.services import BotState

log = logging.getLogger(__name__)

UNREACHABLE = {43004, 43019, 43101, 40003}  # unfollowed, blacklisted, refused, invalid openid
RETRYABLE = {-1, 45009, 45011}  # system busy, daily quota, minute quota: WeChat did not take the message
EXHAUSTED = " attempts"  # how the reason of a push that failed every (retryable) attempt ends
WINDOW_CLOSED = {45015, 45047}  # customer-service window closed / its quota spent: send the template instead
MARKER_TTL = 7 * 24 * 3600
# A finish event without a msgid on record matches the in-doubt push to its member claimed closest
# before it, this far back at most; and allows for this much difference between WeChat's clock and ours.
SETTLE_WINDOW = timedelta(minutes=10)
CLOCK_SKEW = timedelta(seconds=60)
USER_BLOCK = "failed:user block"  # the member refuses the account's messages (as errcode 43101)


def transient_failure(reason: str | None) -> bool:
    """A failure worth trying again later: WeChat was busy, over quota or out of reach for every attempt
    (as opposed to a refusal that will not change, such as an unknown template id)."""
    return bool(reason) and reason.endswith(EXHAUSTED)


@dataclass
class DrainStats:
    sent: int = 0
    failed: int = 0
    unreachable: int = 0
    retried_later: int = 0
    recovered: int = 0  # a dead sender's rows never tried: back to pending, sent by this drain
    recorded: int = 0  # a dead sender's rows whose outcome it had noted in Redis: written now
    in_doubt: int = 0  # calls left without an answer (a dead sender's, or timed out): not resent
    held: int = 0  # marketing waiting for the end of quiet hours
    reasons: dict[str, int] = field(default_factory=dict)
    held_elsewhere: list["HeldElsewhere"] = field(default_factory=list)  # rows another sender still holds

    def add(self, outcome: outbox.Outcome) -> None:
        if outcome.status == "sent":
            self.sent += 1
        elif outcome.status == "unreachable":
            self.unreachable += 1
        elif outcome.status == "failed":
            self.failed += 1
        elif outcome.status == "unknown":
            self.in_doubt += 1
        if outcome.reason and outcome.status != "sent":
            self.reasons[outcome.reason] = self.reasons.get(outcome.reason, 0) + 1


@dataclass(frozen=True)
class HeldElsewhere:
    """Rows another sender claimed and has not finished: left alone until it is known to be dead."""

    claim: str
    count: int
    first_claimed: datetime
    recover_after: datetime  # if that sender died, the first drain after this takes its rows back
    heartbeat: bool  # its heartbeat key is still there (alive, or died less than claim_timeout ago)


@dataclass(frozen=True)
class Push:
    id: int
    openid: str
    message: PushMessage
    text: str
    data: dict[str, dict[str, str]]
    job: str = ""
    who: str = ""  # for the log: the member's card, or the staff id for an alert
    url: str | None = None  # the template's link


def in_quiet_hours(rules: Rules, now: datetime) -> bool:
    """Whether marketing must wait now (the window may span midnight)."""
    quiet = rules.pushes.quiet_hours
    return quiet is not None and quiet.contains(now.astimezone(rules.zone))


class RateLimiter:
    """At most ``per_minute`` sends a minute across every process (a Redis counter per minute)."""

    def __init__(self, state: "BotState", per_minute: int):
        self._state, self._per_minute = state, per_minute

    def acquire(self, notes: "Notes | None" = None) -> None:
        """Wait for a slot; ``notes`` (outcomes not yet in Redis) go in the same round trip."""
        if self._per_minute <= 0:
            return
        while True:
            now = self._state.clock()
            minute = int(now // 60)
            key = self._state.keys("ratelimit", minute)
            pipe = self._state.redis.pipeline(transaction=False)
            if notes is not None:
                notes.add_to(pipe)
            pipe.incr(key)
            pipe.expire(key, 120)
            used, _ = pipe.execute()[-2:]
            if used <= self._per_minute:
                return
            time.sleep(min(1.0, max(0.05, (minute + 1) * 60 - now)))  # re-read the clock at least every second


def drain(state: "BotState", max_batches: int | None = None) -> DrainStats:
    """Send every pending push that may go now, in batches; returns what happened."""
    rules = state.rules
    cfg = rules.pushes
    stats = DrainStats()
    recover_stale_claims(state, stats)
    claim_id = uuid.uuid4().hex[:16]
    limiter = RateLimiter(state, cfg.rate_limit_per_minute)
    bulletins: dict[str, tuple[str, str]] = {}
    batches = 0
    _start_marks(state, claim_id)
    with Heartbeat(state, claim_id, cfg.claim_timeout_seconds), \
            ThreadPoolExecutor(cfg.concurrent_sends, thread_name_prefix="push") as pool:
        while max_batches is None or batches < max_batches:
            now = state.now()
            marketing_ok = not in_quiet_hours(rules, now)
            with state.db.write() as session:
                ids = outbox.claim(session, cfg.batch_size, claim_id, marketing_ok, now)
            if not ids:
                break
            batches += 1
            with state.db.read() as session:
                pushes = load_pushes(session, ids, rules, bulletins)
            recent = _wrote_recently(state, [p.openid for p in pushes]) if cfg.customer_service_window_hours else set()
            outcomes = _send_batch(state, pool, cfg.concurrent_sends, pushes, recent, limiter, claim_id)
            with state.db.write() as session:
                outbox.record_outcomes(session, outcomes, state.now(), claim_id)
            for outcome in outcomes:
                stats.add(outcome)
    try:
        state.redis.delete(_marks_key(state, claim_id))  # every outcome is in the database
    except redis_lib.RedisError:
        log.warning("could not drop the push markers of %s; they expire by themselves", claim_id)
    if in_quiet_hours(rules, state.now()):
        with state.db.read() as session:
            stats.held = session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status == "pending", OutboxMessage.marketing.is_(True))) or 0
    stats.held_elsewhere = held_elsewhere(state, exclude=claim_id)
    return stats


def send_now(state: "BotState", ids: list[int]) -> list[outbox.Outcome]:
    """Send these rows now, the moment the transaction that planned them has committed (alerts to staff,
    notices and replies to members), as the drain would: claimed, marked in Redis around each call, sent by
    ``send_push``, the outcomes written in one statement. Rows the drain or another sender took first, or
    that must wait (marketing in quiet hours), are left to the drain. Returns the outcomes of the rows sent."""
    rules, cfg = state.rules, state.rules.pushes
    claim_id = uuid.uuid4().hex[:16]
    outcomes: list[outbox.Outcome] = []
    _start_marks(state, claim_id)
    with Heartbeat(state, claim_id, cfg.claim_timeout_seconds):
        now = state.now()
        with state.db.write() as session:
            claimed = outbox.claim(session, len(ids), claim_id, not in_quiet_hours(rules, now), now, only=ids)
        if claimed:
            with state.db.read() as session:
                pushes = load_pushes(session, claimed, rules, {})
            recent = _wrote_recently(state, [p.openid for p in pushes]) if cfg.customer_service_window_hours else set()
            limiter, notes = RateLimiter(state, cfg.rate_limit_per_minute), Notes(state, claim_id)
            try:
                outcomes = [send_push(state, p, p.openid in recent, limiter, claim_id, notes) for p in pushes]
            finally:
                notes.flush()
            with state.db.write() as session:
                outbox.record_outcomes(session, outcomes, state.now(), claim_id)
    state.redis.delete(_marks_key(state, claim_id))  # every outcome is in the database
    return outcomes


def _send_batch(state: "BotState", pool: ThreadPoolExecutor, threads: int, pushes: list[Push], recent: set[str],
                limiter: RateLimiter, claim_id: str) -> list[outbox.Outcome]:
    """Send a batch on ``threads`` sender threads, each taking the next push until none is left.

    Each thread notes a call's outcome in Redis with its next round trip (the next call's marker or
    the rate limiter's), or at once when it has no next push: one round trip per push, and at any
    moment a thread has at most one call in flight or one outcome on its way to Redis.
    """
    queue = collections.deque(pushes)
    results: dict[int, outbox.Outcome] = {}

    def sender() -> None:
        notes = Notes(state, claim_id)
        try:
            while True:
                try:
                    push = queue.popleft()
                except IndexError:
                    return
                results[push.id] = send_push(state, push, push.openid in recent, limiter, claim_id, notes)
        finally:
            notes.flush()

    for future in [pool.submit(sender) for _ in range(min(threads, len(pushes)))]:
        future.result()
    return [results[push.id] for push in pushes]


class Notes:
    """One sender thread's markers in its claim's Redis hash (``push-marks:<claim>``): field ``<id>:a``
    is set just before a call (attempt and channel), ``<id>:o`` holds the call's outcome (JSON, with
    WeChat's msgid) once it returned. A returned call's outcome waits for the thread's next round
    trip — the next call's marker or the rate limiter's — and is written at once when the thread has
    no next call: one command per push, and at most one outcome on its way per thread."""

    def __init__(self, state: "BotState", claim_id: str):
        self._redis, self.key = state.redis, _marks_key(state, claim_id)
        self._pending: dict[str, str] = {}

    def note(self, push_id: int, outcome: outbox.Outcome) -> None:
        self._pending[f"{push_id}:o"] = json.dumps(outcome.as_marker(), ensure_ascii=False)

    def add_to(self, pipe) -> None:
        if self._pending:
            pipe.hset(self.key, mapping=self._pending)
            self._pending = {}

    def start_call(self, push_id: int, attempt: int, channel: str) -> None:
        """Mark a call as started (with the pending outcome, in one command)."""
        self._redis.hset(self.key, mapping={**self._pending, f"{push_id}:a": f"{attempt}:{channel}"})
        self._pending = {}

    def forget_call(self, push_id: int) -> None:
        """WeChat did not take it: a crash now leaves the row untried, not in doubt."""
        try:
            self._redis.hdel(self.key, f"{push_id}:a")
        except redis_lib.RedisError:
            pass  # the row would be in doubt after a crash: a gap, never a duplicate

    def flush(self) -> None:
        if not self._pending:
            return
        try:
            self._redis.hset(self.key, mapping=self._pending)
            self._pending = {}
        except redis_lib.RedisError:  # the batch write still records it; only a crash now would leave it in doubt
            log.warning("could not note a push outcome in Redis")


class Heartbeat:
    """A Redis key that lives while its sender does: a slow sender's claims are not taken from it."""

    def __init__(self, state: "BotState", claim_id: str, seconds: int):
        self._redis, self._key, self._ttl_ms = state.redis, state.keys("push-sender", claim_id), seconds * 1000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="push-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._redis.set(self._key, "1", px=self._ttl_ms)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._redis.delete(self._key)

    def _beat(self) -> None:
        while not self._stop.wait(self._ttl_ms / 3000):
            try:
                self._redis.set(self._key, "1", px=self._ttl_ms)
            except redis_lib.RedisError:
                log.warning("could not renew the sender heartbeat")  # the next beat tries again


def _alive(state: "BotState", claims: list[str]) -> set[str]:
    pipe = state.redis.pipeline(transaction=False)
    for claim_id in claims:
        pipe.exists(state.keys("push-sender", claim_id))
    return {claim_id for claim_id, alive in zip(claims, pipe.execute()) if alive}


def _marks_key(state: "BotState", claim_id: str) -> str:
    return state.keys("push-marks", claim_id)


def _start_marks(state: "BotState", claim_id: str) -> None:
    """Create the claim's marker hash with its TTL (the senders then only add fields)."""
    pipe = state.redis.pipeline(transaction=False)
    pipe.hset(_marks_key(state, claim_id), "claim", claim_id)
    pipe.expire(_marks_key(state, claim_id), MARKER_TTL)
    pipe.execute()


def _forget_marks(state: "BotState", rows: list[tuple[int, str]]) -> None:
    """Drop the markers of rows whose outcome is now in the database (only to keep Redis small: they
    are per claim, so a marker left behind never misleads a later sender)."""
    fields: dict[str, list[str]] = {}
    for push_id, claim_id in rows:
        fields.setdefault(claim_id, []).extend((f"{push_id}:a", f"{push_id}:o"))
    try:
        pipe = state.redis.pipeline(transaction=False)
        for claim_id, names in fields.items():
            pipe.hdel(_marks_key(state, claim_id), *names)
        pipe.execute()
    except redis_lib.RedisError:
        log.warning("could not drop %d push markers; they expire by themselves", len(rows))


def recover_stale_claims(state: "BotState", stats: DrainStats) -> None:
    """Rows a dead sender claimed: those whose call returned get its outcome (noted in Redis as the
    call returned), untried ones go back to pending, the calls that were in flight are 'unknown'.

    A sender is dead when its heartbeat key has expired (no beat for claim_timeout_seconds), not
    merely because its batch is slow (rate limit, retries): taking rows from a live sender would
    send them twice.
    """
    older_than = state.now() - timedelta(seconds=state.rules.pushes.claim_timeout_seconds)
    with state.db.read() as session:
        claimants = [c for c in outbox.stale_claimants(session, older_than) if c]
    dead = sorted(set(claimants) - _alive(state, claimants)) if claimants else []
    previous: list[tuple[int, str]] | None = None
    while dead:
        with state.db.write() as session:
            rows = outbox.stale_claims(session, older_than, dead)
            if not rows or rows == previous:
                break
            previous = rows
            pipe = state.redis.pipeline(transaction=False)
            for push_id, claim_id in rows:
                pipe.hmget(_marks_key(state, claim_id), f"{push_id}:o", f"{push_id}:a")
            found = pipe.execute()
            outcomes, untried, doubtful = [], [], {}
            for (push_id, _), (marker, attempt) in zip(rows, found):
                outcome = _read_marker(push_id, marker)
                if outcome is not None:
                    outcomes.append(outcome)
                elif attempt or marker:
                    doubtful.setdefault(_attempt_channel(attempt), []).append(push_id)
                else:
                    untried.append(push_id)
            outbox.record_outcomes(session, outcomes, state.now(), dict(rows))
            outbox.release(session, untried, "pending")
            for channel, ids in doubtful.items():
                outbox.release(session, ids, "unknown", "the sender stopped during the call: maybe delivered, "
                                                        "not sent again", channel)
        _forget_marks(state, rows)
        in_doubt = sum(len(ids) for ids in doubtful.values())
        stats.recovered += len(untried)
        stats.recorded += len(outcomes)
        stats.in_doubt += in_doubt
        if outcomes:
            log.info("%d pushes a stopped sender had finished recorded from their Redis markers", len(outcomes))
        if in_doubt:
            log.warning("%d pushes in doubt after a sender stopped mid-call; not resent (WeChat's finish event "
                        "settles template messages)", in_doubt)
    if dead:  # a dead sender holding no row any more: its markers are all in the database
        with state.db.read() as session:
            holding = {h.claim for h in outbox.held_claims(session)}
        try:
            for claim_id in set(dead) - holding:
                state.redis.delete(_marks_key(state, claim_id))
        except redis_lib.RedisError:
            log.warning("could not drop a stopped sender's push markers; they expire by themselves")


def _read_marker(push_id: int, marker: str | None) -> outbox.Outcome | None:
    if not marker:
        return None
    try:
        return outbox.Outcome.from_marker(push_id, json.loads(marker))
    except (ValueError, KeyError, TypeError):
        log.warning("push %s: unreadable outcome marker; taken as in doubt", push_id)
        return None


def held_elsewhere(state: "BotState", exclude: str | None = None) -> list[HeldElsewhere]:
    """Rows other senders still hold, and from when they are taken back should those senders be dead."""
    timeout = timedelta(seconds=state.rules.pushes.claim_timeout_seconds)
    with state.db.read() as session:
        held = [h for h in outbox.held_claims(session) if h.claim != exclude]
    if not held:
        return []
    now = state.now()
    pipe = state.redis.pipeline(transaction=False)
    for h in held:
        pipe.pttl(state.keys("push-sender", h.claim))
    out = []
    for h, ttl_ms in zip(held, pipe.execute()):
        beat = ttl_ms is not None and ttl_ms > 0
        after = max(h.last_claimed + timeout, now + timedelta(milliseconds=ttl_ms) if beat else now)
        out.append(HeldElsewhere(h.claim, h.count, h.first_claimed, after, beat))
    return out


def _wrote_recently(state: "BotState", openids: list[str]) -> set[str]:
    """Members who wrote to the account within the customer-service window (see bot/dispatch.py)."""
    pipe = state.redis.pipeline(transaction=False)
    for openid in openids:
        pipe.exists(state.keys("seen", openid))
    return {openid for openid, seen in zip(openids, pipe.execute()) if seen}


def _attempt_channel(marker: str) -> str | None:
    """The channel an attempt marker names ("<attempt>:<channel>"; older markers hold the attempt only)."""
    _, _, channel = str(marker).partition(":")
    return channel or None


def send_push(state: "BotState", push: Push, customer_service: bool, limiter: RateLimiter,
              claim_id: str = "-", notes: Notes | None = None) -> outbox.Outcome:
    """Send one push; the outcome says sent (with WeChat's msgid), failed, unreachable, or in doubt, and why.

    Retried (``max_attempts``, doubling backoff) only on answers that prove WeChat did not take the
    message: errcodes -1, 45009, 45011, HTTP 5xx, a connection that was never made. A call whose
    answer never came (timeout, connection lost mid-call) is in doubt: not retried, since a duplicate
    is worse than a gap; WeChat's finish event settles it. The outcome is noted in Redis as soon as
    the call returns (``notes``: with this thread's next round trip), so a crash before the batch is
    written leaves in doubt only the calls in flight.
    """
    cfg = state.rules.pushes
    client = state.wechat
    channel = "custom" if customer_service else "template"
    own_notes = notes is None
    notes = Notes(state, claim_id) if notes is None else notes

    def done(status: str, reason: str | None, tries: int, msgid: str | None = None) -> outbox.Outcome:
        outcome = outbox.Outcome(push.id, status, reason, channel, tries, msgid, state.now())
        notes.note(push.id, outcome)
        if own_notes:
            notes.flush()
        if status == "sent":
            _log_push(state, push, channel, msgid)
        return outcome

    reason = None
    attempt = 0
    while attempt < cfg.max_attempts:
        attempt += 1
        limiter.acquire(notes)
        try:
            client.tokens.current()  # fetched (if need be) before the call: no message goes with it
        except (requests.RequestException, TimeoutError, WeChatClientException) as exc:
            reason = f"access_token: {_describe(exc)}"
            notes.flush()
        else:
            notes.start_call(push.id, attempt, channel)  # with the previous call's outcome, if any
            try:
                if channel == "custom":
                    result = client.send_text(push.openid, push.text)
                else:
                    result = client.send_template(push.openid, push.message.template_id, push.data, push.url)
            except WeChatClientException as exc:
                code, reason = errcode(exc), _describe(exc)
                if code in UNREACHABLE:
                    return done("unreachable", reason, attempt)
                if channel == "custom" and code in WINDOW_CLOSED:
                    channel, attempt = "template", attempt - 1  # refused, so not an attempt: the template goes now
                    notes.forget_call(push.id)
                    continue
                if not (code in RETRYABLE or (code is None and (_http_status(exc) or 500) >= 500)):
                    return done("failed", reason, attempt)
            except (requests.Timeout, requests.ConnectionError) as exc:
                if not _never_sent(exc):
                    return done("unknown", f"{_describe(exc)} during the call: maybe delivered, not sent again",
                                attempt)
                reason = f"{_describe(exc)} before sending"
            else:
                if not isinstance(result, dict):  # an answer, but not WeChat's JSON: cannot tell
                    return done("unknown", "unreadable answer: maybe delivered, not sent again", attempt)
                msgid = result.get("msgid")
                return done("sent", None, attempt, str(msgid) if msgid is not None else None)
            # WeChat did not take it: a crash while backing off leaves the row untried, not in doubt.
            notes.forget_call(push.id)
        if attempt < cfg.max_attempts:
            time.sleep(cfg.backoff_seconds * 2 ** (attempt - 1))
    return done("failed", f"{reason} after {cfg.max_attempts}{EXHAUSTED}", cfg.max_attempts)


def _never_sent(exc: BaseException) -> bool:
    """Whether a transport error proves the request never left: no connection could be made."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (requests.ConnectTimeout, urllib3.exceptions.NewConnectionError,
                                urllib3.exceptions.ConnectTimeoutError, ConnectionRefusedError)):
            return True
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError
        if isinstance(reason, BaseException) and id(reason) not in seen:
            current = reason
            continue
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = current.__cause__ or nested or current.__context__
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, WeChatClientException):
        code = errcode(exc)
        return f"{code} {exc.errmsg}" if code is not None else f"HTTP {_http_status(exc)}"
    cause = exc.__cause__  # the transport's own error (bot/http.py wraps urllib3's), e.g. ReadTimeoutError
    return type(cause).__name__ if isinstance(cause, urllib3.exceptions.HTTPError) else type(exc).__name__


def _http_status(exc: WeChatClientException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _log_push(state: "BotState", push: Push, channel: str, msgid: str | None) -> None:
    """One line per push: at INFO when the pushes go to the stand-in inside the bot (the demo), else DEBUG."""
    level = logging.INFO if getattr(state.settings, "fake_wechat", False) else logging.DEBUG
    if log.isEnabledFor(level):
        words = push.text if len(push.text) <= 30 else push.text[:30] + "…"
        log.log(level, "push %s to %s (%s) by %s, msgid %s: %s", push.job, push.who or push.id,
                mask_openid(push.openid), channel, msgid or "-", words)


# --------------------------------------------------------------------------- settling


@dataclass(frozen=True)
class Settled:
    row_id: int | None  # the push the event was about (None: no push matches)
    status: str | None  # its status now
    by: str  # "msgid" | "openid and time" | "none"
    changed: bool  # False: already settled (a retry of the event)


def settle_finish_event(state: "BotState", msgid: str | None, openid: str, status: str,
                        at: datetime) -> Settled:
    """WeChat's TEMPLATESENDJOBFINISH: mark the push it reports delivered, or failed with its status.

    Found by msgid; when no push carries it (the sender died or timed out during the call, so the
    msgid never reached us), the push to that openid in doubt or still being sent, claimed closest
    before the event (within ``SETTLE_WINDOW``). A push still held by a live sender whose call has
    returned is matched only if its noted msgid is this one. Idempotent: a repeated event changes nothing.
    """
    delivered = (status or "").strip().lower() == "success"
    reason = None if delivered else (status or "failed")
    now = state.now()
    with state.db.write() as session:
        row, by = (outbox.by_msgid(session, msgid), "msgid") if msgid else (None, "msgid")
        if row is None:
            by = "openid and time"
            row = _closest_in_doubt(state, outbox.settle_candidates(
                session, openid, at - SETTLE_WINDOW, at + CLOCK_SKEW), msgid)
        if row is None:
            log.info("finish event for msgid %s to %s (%s): no push of ours matches", msgid, mask_openid(openid),
                     status)
            return Settled(None, None, "none", False)
        changed = outbox.settle(session, row.id, delivered, reason, msgid, now)
        if changed and reason and reason.replace(" ", "").lower() == USER_BLOCK.replace(" ", ""):
            outbox.mark_unreachable(session, [row.id], now, reason)
        new_status = session.scalar(select(OutboxMessage.status).where(OutboxMessage.id == row.id))
    if changed:
        log.info("push %s %s by WeChat's finish event (matched by %s)%s", row.id, new_status, by,
                 f": {reason}" if reason else "")
    return Settled(row.id, new_status, by, changed)


def _closest_in_doubt(state: "BotState", candidates: list[outbox.Candidate],
                      msgid: str | None) -> outbox.Candidate | None:
    """The first candidate that can be the reported push: in doubt, or still 'sending' with no
    outcome noted yet (in flight, or its sender died mid-call), or with this very msgid noted."""
    pending = [c for c in candidates if c.status == "sending" and c.claim]
    markers: dict[int, Any] = {}
    if pending:
        try:
            pipe = state.redis.pipeline(transaction=False)
            for c in pending:
                pipe.hget(_marks_key(state, c.claim), f"{c.id}:o")
            markers = {c.id: m for c, m in zip(pending, pipe.execute())}
        except redis_lib.RedisError:
            markers = {}
    for candidate in candidates:
        noted = _read_marker(candidate.id, markers.get(candidate.id))
        if noted is not None:
            if noted.status == "sent" and not (noted.msgid is not None and noted.msgid == str(msgid)):
                continue  # its call returned with another msgid: not this one
            if noted.status in ("failed", "unreachable"):
                continue  # WeChat refused it: nothing to report
        return candidate
    return None


# --------------------------------------------------------------------------- rendering


def load_pushes(session, ids: list[int], rules: Rules, bulletins: dict[str, tuple[str, str]]) -> list[Push]:
    """Render the claimed rows: the member's current data, the row's extras, a voucher if any."""
    rows = session.execute(
        select(OutboxMessage, Member, Voucher)
        .outerjoin(Member, Member.id == OutboxMessage.member_id)
        .outerjoin(Voucher, and_(Voucher.member_id == OutboxMessage.member_id,
                                 Voucher.occasion == OutboxMessage.occasion))
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.id)
    ).all()
    pushes = []
    for row, member, voucher in rows:
        context = push_context(member, row.extra, rules, bulletins, voucher)
        message = rules.pushes.messages[row.message]
        # WeChat's 2023 template rules: keyword fields only (no first/remark line), each one line of ≤ 20 characters.
        data = {key: {"value": field_value(render_text(value, context))} for key, value in message.fields.items()}
        who = f"staff {row.staff_id}" if row.staff_id else (member.card_no if member is not None else row.recipient)
        pushes.append(Push(row.id, row.openid, message, render_text(message.text, context), data, row.job, who,
                           message.link(context, rules.pushes.public_url)))
    return pushes


def push_context(member: Member | None, extra: str | None, rules: Rules,
                 bulletins: dict[str, tuple[str, str]], voucher: Voucher | None = None) -> dict[str, Any]:
    """Everything a push's text may use: the member, the row's extras, its voucher, the month's bulletin (plain text)."""
    context = member_context(member, rules) if member is not None else {}
    if extra:
        context.update(json.loads(extra))
    if voucher is not None:
        context.update(voucher_code=voucher.code, voucher_valid_until=voucher.valid_until.isoformat())
    if "month" in context:
        title, body = read_bulletin(rules, context["month"], bulletins)
        context.update(bulletin_title=title, bulletin=body)
    return context


def member_context(member: Member, rules: Rules) -> dict[str, Any]:
    """What a push may say about its member."""
    tier = rules.tier(member.tier)
    higher = rules.tier_gap(member.tier, Decimal(0)).next_tier or tier
    return {
        "name": member.name,
        "card_no": member.card_no,
        "phone": member.phone,
        "tier_name": tier.name,
        "balance": f"{member.points_balance:,}",
        "birthday": f"{member.birthday.month}月{member.birthday.day}日" if member.birthday else "",
        "next_tier_name": higher.name,
        "next_min_spend": f"{higher.min_spend:,}",
    }
