"""From a parsed message to a reply: choose a handler, run it once, within WeChat's time budget.

Exactly once: a message whose handler changes something is claimed in Redis before it runs
(``bot.claims``: a short lease on its MsgId, renewed while the handler runs); WeChat's retries,
in any process, wait for and return the first reply, or take over the claim of a copy that died.
An error answer is not kept, so a retry computes the answer afresh, unless the message had
committed a change. A handler marked ``@read_only`` (chosen by a keyword or menu click, which no
dialog state can change) skips the claim: a retry recomputes the same answer and changes nothing.

Redis is a help, not a condition: with Redis down or hung the member still gets a real answer
(without de-duplication, and with no dialog open), and Redis calls on this path use the short
timeouts of ``state.reply_redis`` inside the budget, which runs from the moment the request arrived.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from contextlib import nullcontext
from typing import NamedTuple

from redis.commands.core import Script
from redis.exceptions import RedisError
from wechatpy.messages import BaseMessage, TextMessage

from bot.claims import CHANGED, DONE, WAIT, Claim
from bot.context import Context
from bot.dialogs import NOT_FETCHED
from bot.guards import refusal
from bot.replies import text_reply
from bot.router import Match
from bot.services import BotState
from handlers import HANDLERS
from storage import members
from storage.members import mask_openid

log = logging.getLogger(__name__)

SUCCESS = "success"  # WeChat's "received, no reply" answer
# Events WeChat sends by itself: they do not open the member's 48-hour customer-service window.
SYSTEM_EVENTS = frozenset({"templatesendjobfinish", "masssendjobfinish"})
# The dialog left and the member marked as seen, in one command (a pipeline of two cost twice the client's time).
_LEAVE_DIALOG = Script(None, b"""
redis.call('DEL', KEYS[1])
if KEYS[2] then redis.call('SET', KEYS[2], 1, 'EX', ARGV[1]) end
return 1
""")


class Outcome(NamedTuple):
    """What the dispatcher answered, and whether its error boundary did."""

    reply: str | None
    failed: bool = False


def message_key(message: BaseMessage) -> str:
    """WeChat's identity for de-duplication: MsgId, or sender + CreateTime + Event for events."""
    data = message._data
    msg_id = data.get("MsgId") or data.get("MsgID")  # TEMPLATESENDJOBFINISH spells it MsgID
    if msg_id:
        return f"msg:{msg_id}"
    return f"evt:{data.get('FromUserName')}:{data.get('CreateTime')}:{data.get('Event', '')}"


def answer_once(state: BotState, message: BaseMessage, arrived: float | None = None) -> str | None:
    """Answer ``message``; WeChat's retries (any process) get the first answer and cause no new effects.

    Returns the reply XML (byte for byte the first one, for every copy, unless the handler only
    reads or the answer was an error), or None for "success". ``arrived``: ``time.monotonic()``
    when the request came in.
    """
    rules = state.rules
    deadline = (arrived if arrived is not None else time.monotonic()) + rules.webhook.reply_budget_seconds
    redis = state.reply_redis
    ctx = Context(state=state, rules=rules, message=message, now=state.now())
    window = rules.pushes.customer_service_window_hours
    fixed = keyword_route(ctx)
    openid = ctx.openid
    # Customer-service messages may reach a member for 48 h after they last wrote.
    seen_key = state.keys("seen", openid) if window and not _from_wechat_itself(message) else None
    claim = None
    try:
        if fixed is not None and getattr(HANDLERS.get(fixed.handler), "read_only", False):
            # Nothing to claim: a keyword leaves any half-finished dialog. One command, one round trip.
            _LEAVE_DIALOG(keys=[state.keys("dialog", openid), *([seen_key] if seen_key else [])],
                          args=[window * 3600], client=redis)
        else:
            # One round trip: claim the message and fetch the sender's dialog state.
            claim = Claim(redis, state.keys("reply", message_key(message)), state.keys("dialog", openid),
                          rules.webhook, rules.dialog.ttl_seconds)
            status, found = claim.take(seen=(seen_key, window * 3600) if seen_key else None)
    except RedisError as exc:
        # Better an answer without de-duplication than a 500 that makes WeChat retry anyway.
        log.error("Redis unavailable (%s): answering %s without de-duplication", type(exc).__name__, openid)
        ctx.use_fetched_dialog(None)  # no dialog state is a valid state
        outcome = _answer_within_budget(state, ctx, deadline, fixed)
        return _render(outcome.reply if outcome else None, message)
    if claim is None:
        # Read-only handlers are fast (one or two indexed reads) and change nothing: they run here,
        # without the hand-off to a budget thread; should one ever run late, WeChat's retry asks again.
        ctx.use_fetched_dialog(None)
        return _render(dispatch(ctx, fixed), message)
    if status == WAIT:
        status, found = _wait_for_first_answer(claim, deadline)
    if status == DONE:
        return None if found in (None, SUCCESS) else found[1:]
    if status == CHANGED:  # its first copy died after committing a change, which is not made twice
        xml = _render(ctx.text("done_without_reply"), message)
        claim.finish("X" + xml)
        return xml
    ctx.use_fetched_dialog(found)
    ctx.on_write = claim.mark_changed
    outcome = _answer_within_budget(state, ctx, deadline, fixed, claim)
    if outcome is None:  # still running: its reply goes as a customer-service message
        claim.finish(SUCCESS)
        return None
    xml = _render(outcome.reply, message)
    if outcome.failed and not ctx.wrote:
        claim.release()  # an error answer is not kept: WeChat's retry computes the answer afresh
    else:
        claim.finish(SUCCESS if xml is None else "X" + xml)
    return xml


def _from_wechat_itself(message: BaseMessage) -> bool:
    data = message._data
    return str(data.get("MsgType", "")).lower() == "event" and str(data.get("Event", "")).lower() in SYSTEM_EVENTS


def _render(reply: str | None, message: BaseMessage) -> str | None:
    return None if reply is None else text_reply(message.source, message.target, reply)


def _wait_for_first_answer(claim: Claim, deadline: float) -> tuple[str, str | None]:
    """While another copy holds a live lease: wait for its reply (DONE), or for the claim, once that copy
    released it or died; (DONE, None), "success", when the budget runs out or Redis fails."""
    delay = 0.005
    while time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
        try:
            status, found = claim.take()
        except RedisError:
            return DONE, None  # the first copy answers by itself
        if status != WAIT:
            return status, found
    return DONE, None  # the first copy is still running: it answers by itself


def _answer_within_budget(state: BotState, ctx: Context, deadline: float, fixed: Match | None,
                          claim: Claim | None = None) -> Outcome | None:
    """Run the handler, ``claim``'s lease renewed meanwhile; if it outlives the budget, return None
    ("success" now) and send its reply later."""
    future = state.executor.submit(_run, ctx, fixed)
    with claim.renewed() if claim is not None else nullcontext():
        try:
            return future.result(timeout=max(deadline - time.monotonic(), 0.05))
        except FutureTimeout:
            openid = ctx.openid
            log.warning("reply budget spent for %s; answering by customer-service message", openid)
            future.add_done_callback(lambda done: _send_late_reply(state, openid, done))
            return None


def _send_late_reply(state: BotState, openid: str, future: Future) -> None:
    reply = future.result().reply
    if reply:
        try:
            state.wechat.send_text(openid, reply)
        except Exception:
            log.exception("could not send the late reply to %s", openid)


def dispatch(ctx: Context, fixed: Match | None = NOT_FETCHED) -> str | None:  # type: ignore[assignment]
    """Choose and run the handler. The one error boundary: failures are logged and answered politely.

    ``fixed``: the keyword route, if the caller looked it up already.
    """
    return _run(ctx, fixed).reply


def _run(ctx: Context, fixed: Match | None = NOT_FETCHED) -> Outcome:  # type: ignore[assignment]
    """``dispatch``, saying whether the error boundary answered (an answer not to keep for retries)."""
    try:
        name = choose_handler(ctx, keyword_route(ctx) if fixed is NOT_FETCHED else fixed)
        reply = None
        if name is not None:
            handler = HANDLERS[name]
            ctx.member_loader = getattr(handler, "member_loader", None)
            refused = refusal(handler, ctx)
            reply = refused if refused is not None else handler(ctx)
    except Exception:
        log.exception("handler failed: openid=%s type=%s", ctx.openid, ctx.message.type)
        # After a committed change, "try again later" would have the member make it twice.
        return Outcome(ctx.text("done_without_reply" if ctx.wrote else "busy"), failed=True)
    _note_reachable(ctx)
    return Outcome(reply)


def _note_reachable(ctx: Context) -> None:
    """A member WeChat refused delivery to has written or followed again: pushes reach them again.

    Read from the member row the message loads anyway (``ctx.member``); written only when the flag is set.
    """
    if _from_wechat_itself(ctx.message) or str(ctx.message._data.get("Event", "")).lower() == "unsubscribe":
        return
    try:
        member = ctx.member
        if member is not None and member.unreachable:
            with ctx.db.write() as session:
                if members.mark_reachable(session, member.id, f"openid:{ctx.openid}", ctx.now):
                    log.info("%s wrote to the account: reachable again", mask_openid(ctx.openid))
    except Exception:  # the answer still goes out; the next message tries again
        log.exception("could not mark %s reachable", mask_openid(ctx.openid))


def keyword_route(ctx: Context) -> Match | None:
    """The handler a keyword, a menu click or an event chooses: what no dialog state can change."""
    message, rules, router = ctx.message, ctx.rules, ctx.router
    raw = message._data
    if str(raw.get("MsgType", "")).lower() == "event":
        # Read the raw fields: wechatpy parses events it does not know as UnknownMessage.
        event = getattr(message, "event", None) or str(raw.get("Event", "")).lower()
        if event == "click":
            match = router.match_click(str(raw.get("EventKey") or ""))
            if match:
                return match
        handler = rules.wechat_events.get(event)
        return Match(handler) if handler else None
    if not isinstance(message, TextMessage):
        return None
    text = message.content or ""
    if router.is_cancel(text):
        return Match("cancel")
    return router.match_text(text)


def choose_handler(ctx: Context, fixed: Match | None) -> str | None:
    """The handler name for this message (setting ``ctx.args``), or None for no reply."""
    message, rules = ctx.message, ctx.rules
    if str(message._data.get("MsgType", "")).lower() == "event":
        return fixed.handler if fixed else None
    if not isinstance(message, TextMessage):
        return rules.fallbacks.other
    if fixed is not None:
        if fixed.handler != "cancel" and ctx.dialog.state:
            ctx.dialog.end()  # a keyword starts afresh and leaves any half-finished dialog
        ctx.args = fixed.args
        return fixed.handler
    ctx.args = (message.content or "").strip()
    if ctx.dialog.state:
        return ctx.dialog.state["handler"]
    return rules.fallbacks.text
