"""From a parsed message to a reply: choose a handler, run it once, within WeChat's time budget."""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout

from wechatpy.messages import BaseMessage, TextMessage
from redis.exceptions import RedisError
from wechatpy.replies import create_reply

from bot.context import Context
from bot.dialogs import NOT_FETCHED
from bot.guards import refusal
from bot.services import BotState
from handlers import HANDLERS

log = logging.getLogger(__name__)

SUCCESS = "success"  # WeChat's "received, no reply" answer
_PENDING = "\x00pending"  # marks a message whose first copy is still being answered


def message_key(message: BaseMessage) -> str:
    """WeChat's identity for de-duplication: MsgId, or sender + CreateTime + Event for events."""
    data = message._data
    if data.get("MsgId"):
        return f"msg:{data['MsgId']}"
    return f"evt:{data.get('FromUserName')}:{data.get('CreateTime')}:{data.get('Event', '')}"


def answer_once(state: BotState, message: BaseMessage) -> str | None:
    """Answer ``message``; WeChat's retries (any process) get the first answer and cause no new effects.

    Returns the reply XML (byte for byte the first one, for every copy), or None for "success".
    """
    webhook = state.rules.webhook
    key = state.keys("reply", message_key(message))
    try:
        # One round trip: claim the message and fetch the sender's dialog state.
        pipe = state.redis.pipeline(transaction=False)
        pipe.set(key, _PENDING, nx=True, ex=webhook.dedup_ttl_seconds)
        pipe.get(state.keys("dialog", message.source))
        window = state.rules.pushes.customer_service_window_hours
        if window:  # WeChat lets us send customer-service messages for 48 h after a member writes
            pipe.set(state.keys("seen", message.source), 1, ex=window * 3600)
        claimed, dialog, *_ = pipe.execute()
    except RedisError:
        # Better an answer without de-duplication than a 500 that makes WeChat retry anyway.
        log.error("Redis unavailable: answering %s without de-duplication", message.source)
        return _render(_answer_within_budget(state, message, webhook.reply_budget_seconds, NOT_FETCHED), message)
    if not claimed:
        return _wait_for_first_answer(state, key, webhook.reply_budget_seconds)
    xml = _render(_answer_within_budget(state, message, webhook.reply_budget_seconds, dialog), message)
    state.redis.set(key, SUCCESS if xml is None else "X" + xml, ex=webhook.dedup_ttl_seconds)
    return xml


def _render(reply: str | None, message: BaseMessage) -> str | None:
    return None if reply is None else create_reply(reply, message).render()


def _wait_for_first_answer(state: BotState, key: str, budget: float) -> str | None:
    deadline = time.monotonic() + budget
    delay = 0.005
    while True:
        stored = state.redis.get(key)
        if stored is not None and stored != _PENDING:
            return None if stored == SUCCESS else stored[1:]
        if stored is None or time.monotonic() >= deadline:
            # The first copy died or is still running: say nothing now, it answers by itself.
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _answer_within_budget(state: BotState, message: BaseMessage, budget: float, dialog: object) -> str | None:
    """Run the handler; if it outlives the budget, answer "success" now and send its reply later."""
    future = state.executor.submit(dispatch, state, message, dialog)
    try:
        return future.result(timeout=budget)
    except FutureTimeout:
        log.warning("reply budget of %.1fs spent for %s; answering by customer-service message", budget, message.source)
        future.add_done_callback(lambda done: _send_late_reply(state, message.source, done))
        return None


def _send_late_reply(state: BotState, openid: str, future: Future) -> None:
    reply = future.result()
    if reply:
        try:
            state.wechat.send_text(openid, reply)
        except Exception:
            log.exception("could not send the late reply to %s", openid)


def dispatch(state: BotState, message: BaseMessage, dialog: object = NOT_FETCHED) -> str | None:
    """Choose and run the handler. The one error boundary: failures are logged and answered politely.

    ``dialog`` is the sender's raw dialog state if the caller fetched it already.
    """
    rules = state.rules
    ctx = Context(state=state, rules=rules, message=message, now=state.now())
    try:
        if dialog is not NOT_FETCHED:
            ctx.use_fetched_dialog(dialog)
        name = choose_handler(ctx)
        if name is None:
            return None
        handler = HANDLERS[name]
        refused = refusal(handler, ctx)
        return refused if refused is not None else handler(ctx)
    except Exception:
        log.exception("handler failed: openid=%s type=%s", message.source, message.type)
        return rules.messages.render("busy")


def choose_handler(ctx: Context) -> str | None:
    """The handler name for this message (setting ``ctx.args``), or None for no reply."""
    message, rules = ctx.message, ctx.rules
    router = ctx.router
    raw = message._data
    if str(raw.get("MsgType", "")).lower() == "event":
        # Read the raw fields: wechatpy parses events it does not know as UnknownMessage.
        event = getattr(message, "event", None) or str(raw.get("Event", "")).lower()
        if event == "click":
            match = router.match_click(raw.get("EventKey") or "")
            if match:
                return match.handler
        return rules.events.get(event)
    if not isinstance(message, TextMessage):
        return rules.fallbacks.other
    text = message.content or ""
    if router.is_cancel(text):
        return "cancel"
    match = router.match_text(text)
    if match:
        ctx.args = match.args
        if ctx.dialog.state:
            ctx.dialog.end()  # a keyword starts afresh and leaves any half-finished dialog
        return match.handler
    if ctx.dialog.state:
        ctx.args = text.strip()
        return ctx.dialog.state["handler"]
    ctx.args = text.strip()
    return rules.fallbacks.text
