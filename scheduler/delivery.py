"""Delivery: the one module that sends every push, from the outbox, through the WeChat API.

Exactly once, and the database alone decides it: a row is claimed in the database before it
is sent (no two senders share a row), and just before the HTTP call the row notes that the
call is starting (``call_started_at``), committed together with the outcome of the thread's
previous call (sent with WeChat's msgid, failed, unreachable). The call is made only if the
row is still this sender's. A sender that dies leaves rows in 'sending': the next drain puts
those whose call never started back to 'pending' and marks the rest 'unknown' — the calls
that were in flight, and at most one returned call per thread whose outcome was on its way:
the message may have arrived, and sending again could make a duplicate, which the programme
rules out. A call that times out is in doubt for the same reason. WeChat's TEMPLATESENDJOBFINISH
event settles what is in doubt (``settle_finish_event``): delivered, or failed with WeChat's status.

Redis only helps: the rate limit, the shared access_token, the customer-service window and the
senders' heartbeats. When it is down, restarted empty or stalled, delivery goes on (this
process counts the rate limit itself, keeps its token) and nothing is sent twice.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
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
from storage.redis import Fallback

if TYPE_CHECKING:
    from bot.services import BotState

log = logging.getLogger(__name__)

UNREACHABLE = {43004, 43019, 43101, 40003}  # unfollowed, blacklisted, refused, invalid openid
RETRYABLE = {-1, 45009, 45011}  # system busy, daily quota, minute quota: WeChat did not take the message
EXHAUSTED = " attempts"  # how the reason of a push that failed every (retryable) attempt ends
WINDOW_CLOSED = {45015, 45047}  # customer-service window closed / its quota spent: send the template instead
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
    """At most ``per_minute`` sends a minute across every process (a Redis counter per minute).

    While Redis cannot be reached this process counts its own sends against the same limit (WeChat's
    own quota answer, 45011, is retried anyway), and asks Redis again a few seconds later.
    """

    def __init__(self, state: "BotState", per_minute: int, redis_ok: Fallback | None = None):
        self._state, self._per_minute = state, per_minute
        self._redis_ok = redis_ok or Fallback("the push rate limit")
        self._local: dict[int, int] = {}
        self._lock = threading.Lock()

    def acquire(self, before_waiting: Callable[[], None] | None = None) -> None:
        """Wait for a slot; ``before_waiting`` runs once if the slot is not free at once."""
        if self._per_minute <= 0:
            return
        waited = False
        while True:
            now = self._state.clock()
            minute = int(now // 60)
            used = self._redis_ok.call(lambda: self._count_shared(minute), lambda: self._count_here(minute))
            if used <= self._per_minute:
                return
            if before_waiting is not None and not waited:
                before_waiting()
            waited = True
            time.sleep(min(1.0, max(0.05, (minute + 1) * 60 - now)))  # re-read the clock at least every second

    def _count_shared(self, minute: int) -> int:
        key = self._state.keys("ratelimit", minute)
        pipe = self._state.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 120)
        return pipe.execute()[0]

    def _count_here(self, minute: int) -> int:
        with self._lock:
            used = self._local.get(minute, 0) + 1
            self._local = {minute: used}
            return used


def drain(state: "BotState", max_batches: int | None = None) -> DrainStats:
    """Send every pending push that may go now, in batches; returns what happened."""
    rules = state.rules
    cfg = rules.pushes
    stats = DrainStats()
    redis_ok = Fallback("push delivery")
    recover_stale_claims(state, stats, redis_ok)
    claim_id = uuid.uuid4().hex[:16]
    limiter = RateLimiter(state, cfg.rate_limit_per_minute, redis_ok)
    calls = CallLog(state, claim_id)
    bulletins: dict[str, tuple[str, str]] = {}
    batches = 0
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
            recent = _wrote_recently(state, [p.openid for p in pushes], redis_ok) \
                if cfg.customer_service_window_hours else set()
            for outcome in _send_batch(pool, cfg.concurrent_sends, pushes, calls,
                                       lambda push: send_push(state, push, push.openid in recent, limiter, calls)):
                stats.add(outcome)
    if in_quiet_hours(rules, state.now()):
        with state.db.read() as session:
            stats.held = session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status == "pending", OutboxMessage.marketing.is_(True))) or 0
    stats.held_elsewhere = held_elsewhere(state, exclude=claim_id, redis_ok=redis_ok)
    return stats


def send_now(state: "BotState", ids: list[int]) -> list[outbox.Outcome]:
    """Send these rows now, the moment the transaction that planned them has committed (alerts to staff,
    notices and replies to members), as the drain would: claimed, each call noted in its row before it is
    made (``CallLog``), sent by ``send_push``. Rows the drain or another sender took first, or that must
    wait (marketing in quiet hours), are left to the drain. Returns the outcomes of the rows sent."""
    rules, cfg = state.rules, state.rules.pushes
    claim_id = uuid.uuid4().hex[:16]
    redis_ok = Fallback("push delivery")
    calls = CallLog(state, claim_id)
    outcomes: list[outbox.Outcome] = []
    with Heartbeat(state, claim_id, cfg.claim_timeout_seconds):
        now = state.now()
        with state.db.write() as session:
            claimed = outbox.claim(session, len(ids), claim_id, not in_quiet_hours(rules, now), now, only=ids)
        if claimed:
            with state.db.read() as session:
                pushes = load_pushes(session, claimed, rules, {})
            recent = _wrote_recently(state, [p.openid for p in pushes], redis_ok) \
                if cfg.customer_service_window_hours else set()
            limiter = RateLimiter(state, cfg.rate_limit_per_minute, redis_ok)
            try:
                for push in pushes:
                    outcome = send_push(state, push, push.openid in recent, limiter, calls)
                    if outcome is not None:
                        outcomes.append(outcome)
            finally:
                calls.flush()
    return outcomes


def _send_batch(pool: ThreadPoolExecutor, threads: int, pushes: list[Push], calls: "CallLog",
                send: Callable[[Push], outbox.Outcome | None]) -> list[outbox.Outcome]:
    """Send a batch on ``threads`` sender threads, each taking the next push until none is left, then
    writing its last outcome. A push another sender took over meanwhile (``send`` returns None) is not
    this batch's.
    """
    queue = collections.deque(pushes)
    results: dict[int, outbox.Outcome] = {}

    def sender() -> None:
        try:
            while True:
                try:
                    push = queue.popleft()
                except IndexError:
                    return
                outcome = send(push)
                if outcome is not None:
                    results[push.id] = outcome
        finally:
            calls.flush()

    for future in [pool.submit(sender) for _ in range(min(threads, len(pushes)))]:
        future.result()
    return [results[push.id] for push in pushes if push.id in results]


@dataclass
class _Write:
    """What one sender thread needs committed: outcomes of its calls that returned, and the call it starts
    or the refused call it forgets."""

    outcomes: list[outbox.Outcome]
    start: tuple[int, str] | None = None  # (push id, channel)
    forget: int | None = None
    done: bool = False
    ours: bool = False  # the started row is still this sender's: it may call
    error: BaseException | None = None


class CallLog:
    """The calls of one drain's sender threads, written to their outbox rows before and after each call.

    ``start`` commits "about to call WeChat for this row" with the thread's previous outcome (one
    write per push), ``note`` keeps a returned call's outcome for the thread's next write, ``flush``
    writes it at once (the thread has no next call, or is about to wait). The threads' writes are
    committed together (group commit): while one transaction runs, the next one gathers every thread
    that is waiting, so sixteen threads cost a few transactions, not sixteen.
    """

    def __init__(self, state: "BotState", claim_id: str):
        self._db, self._now, self.claim_id = state.db, state.now, claim_id
        self._mine = threading.local()  # each thread's outcomes not written yet
        self._cond = threading.Condition()
        self._queue: list[_Write] = []
        self._writing = False

    def _pending(self) -> list[outbox.Outcome]:
        if not hasattr(self._mine, "outcomes"):
            self._mine.outcomes = []
        return self._mine.outcomes

    def note(self, outcome: outbox.Outcome) -> None:
        self._pending().append(outcome)

    def start(self, push_id: int, channel: str) -> bool:
        """Commit that the call is starting (with this thread's outcomes); False: the row is no longer ours."""
        return self._commit(_Write(list(self._pending()), start=(push_id, channel))).ours

    def forget(self, push_id: int) -> None:
        """WeChat did not take the call: a crash now leaves the row untried, not in doubt."""
        self._commit(_Write(list(self._pending()), forget=push_id))

    def flush(self) -> None:
        if self._pending():
            self._commit(_Write(list(self._pending())))

    def _commit(self, write: _Write) -> _Write:
        with self._cond:
            self._queue.append(write)
            while not write.done and self._writing:
                self._cond.wait()
            leader = not write.done
            if leader:
                batch, self._queue, self._writing = self._queue, [], True
        if leader:
            ours: set[int] = set()
            error: BaseException | None = None
            try:
                ours = self._write(batch)
            except BaseException as exc:  # every thread of the batch learns it; their outcomes stay theirs
                error = exc
            with self._cond:
                for each in batch:
                    each.done, each.error = True, error
                    each.ours = each.start is not None and each.start[0] in ours
                self._writing = False
                self._cond.notify_all()
        if write.error is not None:
            raise write.error
        self._mine.outcomes = []  # all written (only this thread adds to them)
        return write

    def _write(self, batch: list[_Write]) -> set[int]:
        now = self._now()
        with self._db.write() as session:
            outbox.record_outcomes(session, [o for w in batch for o in w.outcomes], now, self.claim_id)
            outbox.forget_calls(session, [w.forget for w in batch if w.forget is not None], self.claim_id)
            return outbox.start_calls(session, dict(w.start for w in batch if w.start is not None),
                                      self.claim_id, now)


class Heartbeat:
    """A Redis key that lives while its sender does: a slow sender's claims are not taken from it.

    Without Redis there is no heartbeat: another drain may then take this sender for dead and
    recover its rows, which the database keeps safe (``outbox.start_calls``, ``outbox.recover_claims``).
    """

    def __init__(self, state: "BotState", claim_id: str, seconds: int):
        self._redis, self._key, self._ttl_ms = state.redis, state.keys("push-sender", claim_id), seconds * 1000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="push-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._renew()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._redis.delete(self._key)
        except redis_lib.RedisError:
            pass  # it expires by itself

    def _beat(self) -> None:
        while not self._stop.wait(self._ttl_ms / 3000):
            self._renew()

    def _renew(self) -> None:
        try:
            self._redis.set(self._key, "1", px=self._ttl_ms)
        except redis_lib.RedisError:
            log.warning("could not renew the sender heartbeat")  # the next beat tries again


def _alive(state: "BotState", claims: list[str], redis_ok: Fallback) -> set[str]:
    """The claims whose sender's heartbeat is there; without Redis, all of them (none is taken over now)."""
    def ask() -> set[str]:
        pipe = state.redis.pipeline(transaction=False)
        for claim_id in claims:
            pipe.exists(state.keys("push-sender", claim_id))
        return {claim_id for claim_id, alive in zip(claims, pipe.execute()) if alive}

    return redis_ok.call(ask, lambda: set(claims))


def recover_stale_claims(state: "BotState", stats: DrainStats, redis_ok: Fallback | None = None) -> None:
    """Rows a dead sender claimed: those whose call never started go back to pending, the calls that
    had started are 'unknown' (in doubt). Decided by the database alone (``outbox.recover_claims``).

    A sender is dead when its heartbeat key has expired (no beat for claim_timeout_seconds), not
    merely because its batch is slow (rate limit, retries): its rows are left to it.
    """
    older_than = state.now() - timedelta(seconds=state.rules.pushes.claim_timeout_seconds)
    with state.db.read() as session:
        claimants = [c for c in outbox.stale_claimants(session, older_than) if c]
    if not claimants:
        return
    dead = sorted(set(claimants) - _alive(state, claimants, redis_ok or Fallback("push delivery")))
    if not dead:
        return
    with state.db.write() as session:
        untried, in_doubt = outbox.recover_claims(session, older_than, dead)
    stats.recovered += untried
    stats.in_doubt += in_doubt
    if in_doubt:
        log.warning("%d pushes in doubt after a sender stopped mid-call; not resent (WeChat's finish event "
                    "settles template messages)", in_doubt)


def held_elsewhere(state: "BotState", exclude: str | None = None,
                   redis_ok: Fallback | None = None) -> list[HeldElsewhere]:
    """Rows other senders still hold, and from when they are taken back should those senders be dead."""
    timeout = timedelta(seconds=state.rules.pushes.claim_timeout_seconds)
    with state.db.read() as session:
        held = [h for h in outbox.held_claims(session) if h.claim != exclude]
    if not held:
        return []
    now = state.now()

    def ask() -> list[int | None]:
        pipe = state.redis.pipeline(transaction=False)
        for h in held:
            pipe.pttl(state.keys("push-sender", h.claim))
        return pipe.execute()

    out = []
    # Without Redis a sender's heartbeat cannot be seen: say it may still be running.
    for h, ttl_ms in zip(held, (redis_ok or Fallback("push delivery")).call(ask, lambda: [None] * len(held))):
        beat = ttl_ms is None or ttl_ms > 0
        after = max(h.last_claimed + timeout, now + timedelta(milliseconds=ttl_ms) if ttl_ms and ttl_ms > 0 else now)
        out.append(HeldElsewhere(h.claim, h.count, h.first_claimed, after, beat))
    return out


def _wrote_recently(state: "BotState", openids: list[str], redis_ok: Fallback) -> set[str]:
    """Members who wrote to the account within the customer-service window (see bot/dispatch.py);
    without Redis nobody is known to have written, and everyone gets the template."""
    def ask() -> set[str]:
        pipe = state.redis.pipeline(transaction=False)
        for openid in openids:
            pipe.exists(state.keys("seen", openid))
        return {openid for openid, seen in zip(openids, pipe.execute()) if seen}

    return redis_ok.call(ask, set)


def send_push(state: "BotState", push: Push, customer_service: bool, limiter: RateLimiter,
              calls: CallLog) -> outbox.Outcome | None:
    """Send one push; the outcome says sent (with WeChat's msgid), failed, unreachable, or in doubt, and why.
    None: the row is no longer this sender's (another drain took this sender for dead): not sent.

    Retried (``max_attempts``, doubling backoff) only on answers that prove WeChat did not take the
    message: errcodes -1, 45009, 45011, HTTP 5xx, a connection that was never made. A call whose
    answer never came (timeout, connection lost mid-call) is in doubt: not retried, since a duplicate
    is worse than a gap; WeChat's finish event settles it. Each call is noted in the row before it is
    made and its outcome written with the thread's next write (``calls``), so a crash leaves in doubt
    only the calls in flight and never sends a row twice.
    """
    cfg = state.rules.pushes
    client = state.wechat
    channel = "custom" if customer_service else "template"

    def done(status: str, reason: str | None, tries: int, msgid: str | None = None) -> outbox.Outcome:
        outcome = outbox.Outcome(push.id, status, reason, channel, tries, msgid, state.now())
        calls.note(outcome)
        if status == "sent":
            _log_push(state, push, channel, msgid)
        return outcome

    reason = None
    attempt = 0
    while attempt < cfg.max_attempts:
        attempt += 1
        limiter.acquire(before_waiting=calls.flush)  # an outcome does not wait a minute for its write
        try:
            client.tokens.current()  # fetched (if need be) before the call: no message goes with it
        except (requests.RequestException, TimeoutError, WeChatClientException, redis_lib.RedisError) as exc:
            reason = f"access_token: {_describe(exc)}"
            calls.flush()
        else:
            if not calls.start(push.id, channel):  # with the previous call's outcome, if any
                log.warning("push %s was taken over by another sender (this one was taken for dead); not sent "
                            "here", push.id)
                return None
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
                    calls.forget(push.id)
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
            calls.forget(push.id)
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
    msgid never reached us), the push to that openid in doubt or with its call under way, claimed
    closest before the event (within ``SETTLE_WINDOW``). Idempotent: a repeated event changes nothing.
    """
    delivered = (status or "").strip().lower() == "success"
    reason = None if delivered else (status or "failed")
    now = state.now()
    with state.db.write() as session:
        row, by = (outbox.by_msgid(session, msgid), "msgid") if msgid else (None, "msgid")
        if row is None:
            by = "openid and time"
            row = next(iter(outbox.settle_candidates(session, openid, at - SETTLE_WINDOW, at + CLOCK_SKEW)), None)
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
