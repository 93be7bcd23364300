"""Delivery: the one module that sends every push, from the outbox, through the WeChat API.

Exactly once: a row is claimed in the database before it is sent (no two senders share a
row); just before the HTTP call a marker goes to Redis. A sender that dies leaves rows in
'sending': the next drain puts those without a marker back to 'pending' (never attempted)
and marks those with one 'unknown' (the call may have arrived; sending again could make a
duplicate, which the programme rules out), so a crash never skips an untried member and
never sends anyone twice.
"""
from __future__ import annotations

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
from sqlalchemy import and_, func, select
from wechatpy.exceptions import WeChatClientException

from rules import Rules, render_text
from rules.pushes import PushMessage
from scheduler.bulletins import read_bulletin
from storage import outbox
from storage.models import Member, OutboxMessage, Voucher

if TYPE_CHECKING:
    from bot.services import BotState

log = logging.getLogger(__name__)

UNREACHABLE = {43004, 43019, 43101, 40003}  # unfollowed, blacklisted, refused, invalid openid
RETRYABLE = {-1, 45009, 45011}  # system busy, daily quota, minute quota
MARKER_TTL = 7 * 24 * 3600


@dataclass
class DrainStats:
    sent: int = 0
    failed: int = 0
    unreachable: int = 0
    retried_later: int = 0
    recovered: int = 0
    in_doubt: int = 0
    held: int = 0  # marketing waiting for the end of quiet hours
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: outbox.Outcome) -> None:
        if outcome.status == "sent":
            self.sent += 1
        elif outcome.status == "unreachable":
            self.unreachable += 1
        elif outcome.status == "failed":
            self.failed += 1
        if outcome.reason and outcome.status != "sent":
            self.reasons[outcome.reason] = self.reasons.get(outcome.reason, 0) + 1


@dataclass(frozen=True)
class Push:
    id: int
    openid: str
    message: PushMessage
    text: str
    data: dict[str, dict[str, str]]


def in_quiet_hours(rules: Rules, now: datetime) -> bool:
    """Whether marketing must wait now (the window may span midnight)."""
    quiet = rules.pushes.quiet_hours
    return quiet is not None and quiet.contains(now.astimezone(rules.zone))


class RateLimiter:
    """At most ``per_minute`` sends a minute across every process (a Redis counter per minute)."""

    def __init__(self, state: "BotState", per_minute: int):
        self._state, self._per_minute = state, per_minute

    def acquire(self) -> None:
        if self._per_minute <= 0:
            return
        while True:
            now = self._state.clock()
            minute = int(now // 60)
            key = self._state.keys("ratelimit", minute)
            pipe = self._state.redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 120)
            used, _ = pipe.execute()
            if used <= self._per_minute:
                return
            time.sleep(min(1.0, max(0.05, (minute + 1) * 60 - now)))  # re-read the clock at least every second


def drain(state: "BotState", max_batches: int | None = None) -> DrainStats:
    """Send every pending push that may go now, in batches; returns what happened."""
    rules = state.rules
    cfg = rules.pushes
    stats = DrainStats(recovered=0)
    recover_stale_claims(state, stats)
    claim_id = uuid.uuid4().hex[:16]
    limiter = RateLimiter(state, cfg.rate_limit_per_minute)
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
            recent = _wrote_recently(state, [p.openid for p in pushes]) if cfg.customer_service_window_hours else set()
            outcomes = list(pool.map(lambda push: send_push(state, push, push.openid in recent, limiter), pushes))
            with state.db.write() as session:
                outbox.record_outcomes(session, outcomes, state.now())
            for outcome in outcomes:
                stats.add(outcome)
    if in_quiet_hours(rules, state.now()):
        with state.db.read() as session:
            stats.held = session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status == "pending", OutboxMessage.marketing.is_(True))) or 0
    return stats


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


def recover_stale_claims(state: "BotState", stats: DrainStats) -> None:
    """Rows a dead sender claimed: untried ones go back to pending, ones it may have sent are 'unknown'.

    A sender is dead when its heartbeat key has expired (no beat for claim_timeout_seconds), not
    merely because its batch is slow (rate limit, retries): taking rows from a live sender would
    send them twice.
    """
    older_than = state.now() - timedelta(seconds=state.rules.pushes.claim_timeout_seconds)
    with state.db.read() as session:
        claimants = [c for c in outbox.stale_claimants(session, older_than) if c]
    dead = sorted(set(claimants) - _alive(state, claimants)) if claimants else []
    while dead:
        with state.db.write() as session:
            ids = outbox.stale_claims(session, older_than, dead)
            if not ids:
                return
            pipe = state.redis.pipeline(transaction=False)
            for push_id in ids:
                pipe.exists(state.keys("push-attempt", push_id))
            attempted = pipe.execute()
            doubtful = [i for i, tried in zip(ids, attempted) if tried]
            untried = [i for i, tried in zip(ids, attempted) if not tried]
            outbox.release(session, untried, "pending")
            outbox.release(session, doubtful, "unknown", "the sender stopped during the call: maybe delivered, "
                                                         "not sent again")
        stats.recovered += len(untried)
        stats.in_doubt += len(doubtful)
        if doubtful:
            log.warning("%d pushes in doubt after a sender stopped mid-call; not resent", len(doubtful))


def _wrote_recently(state: "BotState", openids: list[str]) -> set[str]:
    """Members who wrote to the account within the customer-service window (see bot/dispatch.py)."""
    pipe = state.redis.pipeline(transaction=False)
    for openid in openids:
        pipe.exists(state.keys("seen", openid))
    return {openid for openid, seen in zip(openids, pipe.execute()) if seen}


def send_push(state: "BotState", push: Push, customer_service: bool, limiter: RateLimiter) -> outbox.Outcome:
    """Send one push with retries; the outcome says sent, failed, unreachable, and why."""
    cfg = state.rules.pushes
    client = state.wechat
    channel = "custom" if customer_service else "template"
    reason = None
    for attempt in range(1, cfg.max_attempts + 1):
        limiter.acquire()
        state.redis.set(state.keys("push-attempt", push.id), attempt, ex=MARKER_TTL)
        try:
            if customer_service:
                client.send_text(push.openid, push.text)
            else:
                client.send_template(push.openid, push.message.template_id, push.data)
            return outbox.Outcome(push.id, "sent", None, channel, attempt)
        except WeChatClientException as exc:
            code = _code(exc)
            reason = f"{code} {exc.errmsg}" if code is not None else f"HTTP {_http_status(exc)}"
            if code in UNREACHABLE:
                return outbox.Outcome(push.id, "unreachable", reason, channel, attempt)
            if not (code in RETRYABLE or (code is None and (_http_status(exc) or 500) >= 500)):
                return outbox.Outcome(push.id, "failed", reason, channel, attempt)
        except (requests.Timeout, requests.ConnectionError) as exc:
            reason = f"{type(exc).__name__}"
        if attempt < cfg.max_attempts:
            time.sleep(cfg.backoff_seconds * 2 ** (attempt - 1))
    return outbox.Outcome(push.id, "failed", f"{reason} after {cfg.max_attempts} attempts", channel, cfg.max_attempts)


def _code(exc: WeChatClientException) -> int | None:
    try:
        return int(exc.errcode) if exc.errcode is not None else None
    except (TypeError, ValueError):
        return None


def _http_status(exc: WeChatClientException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


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
        text = render_text(message.text, context)
        data = {"first": {"value": text}} | {
            key: {"value": render_text(value, context)} for key, value in message.fields.items()
        }
        pushes.append(Push(row.id, row.openid, message, text, data))
    return pushes


def push_context(member: Member | None, extra: str | None, rules: Rules,
                 bulletins: dict[str, tuple[str, str]], voucher: Voucher | None = None) -> dict[str, Any]:
    """Everything a push's text may use: the member, the row's extras, its voucher, the month's bulletin."""
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
