"""Following, binding a member card to WeChat, and unbinding."""
from __future__ import annotations

from bot.context import Context
from storage import members
from storage.members import BindOutcome


def welcome(ctx: Context) -> str:
    with ctx.db.write() as session:
        member = members.set_following(session, ctx.openid, True)
    if member is not None:
        return ctx.text("bind_already", card_no=member.card_no)
    return ctx.text("welcome")


def unfollow(ctx: Context) -> None:
    with ctx.db.write() as session:
        members.set_following(session, ctx.openid, False)
    ctx.dialog.end()
    return None  # WeChat shows nothing to someone who has left


def bind(ctx: Context) -> str:
    """`绑定 <card> <phone>` in one message, or a dialog asking for each in turn."""
    if ctx.member is not None:
        return ctx.text("bind_already", card_no=ctx.member.card_no)
    locked = _lockout_minutes_left(ctx)
    if locked:
        return ctx.text("bind_locked", minutes=locked)
    parts = ctx.args.split()
    state = ctx.dialog.state
    if state is None:
        if len(parts) >= 2:
            return _try_bind(ctx, parts[0], parts[1])
        if len(parts) == 1:
            ctx.dialog.start("bind", "phone", card_no=parts[0])
            return ctx.text("bind_prompt_phone")
        ctx.dialog.start("bind", "card")
        return ctx.text("bind_prompt_card")
    if state["step"] == "card":
        if not parts:
            return ctx.text("bind_prompt_card")
        if len(parts) >= 2:
            ctx.dialog.end()
            return _try_bind(ctx, parts[0], parts[1])
        ctx.dialog.start("bind", "phone", card_no=parts[0])
        return ctx.text("bind_prompt_phone")
    ctx.dialog.end()
    return _try_bind(ctx, state["data"]["card_no"], ctx.args.strip())


def _try_bind(ctx: Context, card_no: str, phone: str) -> str:
    with ctx.db.write() as session:
        outcome, member = members.bind_member(session, ctx.openid, card_no, phone)
        if outcome is BindOutcome.BOUND:
            tier_name = ctx.rules.tier(member.tier).name
            return ctx.text("bind_success", name=member.name, card_no=member.card_no, tier_name=tier_name)
        if outcome is BindOutcome.ALREADY_BOUND:
            return ctx.text("bind_already", card_no=member.card_no)
    if outcome is BindOutcome.CARD_TAKEN:
        return ctx.text("bind_card_taken")
    _count_failure(ctx)
    # Never say which of card or phone was wrong: that would help someone guessing.
    return ctx.text("bind_failed")


def _count_failure(ctx: Context) -> None:
    key = ctx.key("bindfail", ctx.openid)
    window = ctx.rules.binding.lockout_seconds
    pipe = ctx.redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, window, nx=True)
    failures, _ = pipe.execute()
    if failures >= ctx.rules.binding.max_failures:
        ctx.redis.set(ctx.key("bindlock", ctx.openid), 1, ex=window)


def _lockout_minutes_left(ctx: Context) -> int:
    ttl = ctx.redis.ttl(ctx.key("bindlock", ctx.openid))
    return -(-ttl // 60) if ttl and ttl > 0 else 0


def unbind(ctx: Context) -> str:
    with ctx.db.write() as session:
        member = members.unbind_member(session, ctx.openid)
    if member is None:
        return ctx.text("not_bound")
    return ctx.text("unbind_success", card_no=member.card_no)
