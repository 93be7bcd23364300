"""Following, binding a member card to WeChat, and unbinding."""
from __future__ import annotations

from typing import Any

from bot.context import Context
from bot.dialogs import Ask, Flow, Invalid
from storage import members
from storage.members import BindOutcome


def welcome(ctx: Context) -> str:
    with ctx.db.write() as session:
        member = members.set_following(session, ctx.openid, True, now=ctx.now)
        if member is not None:  # followed again while still bound: no bind hint, a welcome back
            return ctx.text("welcome_back", name=member.name, card_no=member.card_no,
                            tier_name=ctx.rules.tier(member.tier).name)
    return ctx.text("welcome")


def unfollow(ctx: Context) -> None:
    with ctx.db.write() as session:
        members.set_following(session, ctx.openid, False, now=ctx.now)
    ctx.dialog.end()
    return None  # WeChat shows nothing to someone who has left


def _card_and_maybe_phone(text: str) -> dict[str, Any]:
    """The card; a reply of "card phone" answers both questions at once."""
    parts = text.split()
    if not parts:
        raise Invalid("bind_prompt_card")
    return dict(zip(("card_no", "phone"), parts))


def _try_bind(ctx: Context, answers: dict[str, Any]) -> str:
    with ctx.db.write() as session:
        outcome, member = members.bind_member(session, ctx.openid, answers["card_no"], answers["phone"], now=ctx.now)
        if outcome is BindOutcome.BOUND:
            tier_name = ctx.rules.tier(member.tier).name
            return ctx.text("bind_success", name=member.name, card_no=member.card_no, tier_name=tier_name)
        if outcome is BindOutcome.ALREADY_BOUND:
            return ctx.text("bind_already", card_no=member.card_no)
    if outcome is BindOutcome.CARD_TAKEN:
        return ctx.text("bind_card_taken")
    if outcome is BindOutcome.STAFF:
        return ctx.text("bind_staff_account")
    tries_left = members.record_bind_failure(ctx.redis, ctx.state.keys, ctx.openid, ctx.rules.binding,
                                             answers["card_no"])
    # Never say which of card or phone was wrong: that would help someone guessing.
    if tries_left == 0:
        return ctx.text("bind_locked", minutes=members.bind_lockout_minutes(ctx.redis, ctx.state.keys, ctx.openid))
    if tries_left is None:
        return ctx.text("bind_failed")
    return ctx.text("bind_failed_tries_left", tries_left=tries_left)


BIND = Flow("bind", (Ask("card_no", "bind_prompt_card", _card_and_maybe_phone),
                     Ask("phone", "bind_prompt_phone")), finish=_try_bind)


def bind(ctx: Context) -> str | None:
    """`绑定 <card> <phone>` in one message, or a dialog asking for each in turn."""
    if ctx.member is not None:
        return ctx.text("bind_already", card_no=ctx.member.card_no)
    if ctx.staff is not None:  # told before the questions; bind_member refuses it too
        return ctx.text("bind_staff_account")
    locked = members.bind_lockout_minutes(ctx.redis, ctx.state.keys, ctx.openid)
    if locked:
        return ctx.text("bind_locked", minutes=locked)
    card_no, phone, *_ = ctx.args.split() + [None, None]
    return BIND.handle(ctx, card_no=card_no, phone=phone)


def unbind(ctx: Context) -> str:
    with ctx.db.write() as session:
        member = members.unbind_member(session, ctx.openid, now=ctx.now)
    if member is None:
        return ctx.text("not_bound")
    return ctx.text("unbind_success", card_no=member.card_no)
