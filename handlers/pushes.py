"""WeChat's report on a template message (TEMPLATESENDJOBFINISH): settles the push it is about."""
from __future__ import annotations

from datetime import datetime, timezone

from bot.context import Context
from scheduler.delivery import settle_finish_event


def push_finished(ctx: Context) -> None:
    """Mark the push WeChat reports delivered, or failed with WeChat's status; WeChat gets "success"."""
    raw = ctx.message._data  # wechatpy's TemplateSendJobFinishEvent reads MsgID as an integer: keep it as sent
    msgid = str(raw.get("MsgID") or raw.get("MsgId") or "").strip() or None
    status = str(raw.get("Status") or "").strip() or "failed: no status"
    try:
        at = datetime.fromtimestamp(int(raw.get("CreateTime")), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        at = ctx.now
    settle_finish_event(ctx.state, msgid, ctx.openid, status, at)
    return None
