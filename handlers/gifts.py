"""Gifts in chat: the catalogue in pages, redeeming with a confirmation, the member's codes, cancelling."""
from __future__ import annotations

import math
from typing import Any

import redis as redis_lib

from bot.context import Context, read_only
from bot.dialogs import Ask, Flow, Invalid
from bot.guards import member_required
from rules import echoed
from storage import gifts, ledger
from storage.gifts import GiftRefused, Mailing
from storage.members import mask_openid, normalise_phone


def _actor(ctx: Context) -> str:
    return f"openid:{mask_openid(ctx.openid)}"


# --------------------------------------------------------------------------- the catalogue


def _page_key(ctx: Context) -> str:
    return ctx.key("giftpage", ctx.openid)


def _show_page(ctx: Context, page: int) -> str:
    """Page ``page`` (from 1) of what this member may have now; remembers it for 更多."""
    member = ctx.member
    with ctx.db.read() as session:
        offers = gifts.offers(session, ctx.rules, member, ctx.today)
    if not offers:
        return ctx.text("gifts_none")
    size = ctx.rules.gifts.page_size
    pages = math.ceil(len(offers) / size)
    page = min(max(page, 1), pages)
    try:
        ctx.redis.set(_page_key(ctx), page, ex=ctx.rules.dialog.ttl_seconds)
    except redis_lib.RedisError:
        pass  # without Redis, 更多 starts from the first page
    lines = [ctx.text("gifts_header", name=member.name, balance=f"{member.points_balance:,}", page=page, pages=pages)]
    for offer in offers[(page - 1) * size:page * size]:
        lines.append(_offer_line(ctx, offer))
    lines.append(ctx.text("gifts_footer", example=offers[0].gift.id))
    if page < pages:
        lines.append(ctx.text("gifts_more"))
    elif pages > 1:
        lines.append(ctx.text("gifts_last_page"))
    return "\n".join(lines)


def _offer_line(ctx: Context, offer: gifts.Offer) -> str:
    gift = offer.gift
    stock = ctx.text("gifts_left", left=offer.left) if offer.left > 0 else ctx.text("gifts_sold_out")
    afford = ""
    if gift.kind == "points":
        afford = ctx.text("gifts_short", missing=f"{offer.missing:,}") if offer.missing else ctx.text("gifts_affordable")
    return ctx.text(f"gifts_line_{gift.kind}", id=gift.id, gift_name=gift.name, points=f"{gift.points or 0:,}",
                    price=f"{gift.member_price or 0:,}", stock=stock, afford=afford)


@read_only
@member_required
def gift_list(ctx: Context) -> str:
    """`礼品`: the first page of the gifts this member may have now."""
    return _show_page(ctx, 1)


@member_required
def gift_list_more(ctx: Context) -> str:
    """`更多`: the page after the one shown last (a WeChat retry gets the same page: the message is claimed)."""
    try:
        shown = int(ctx.redis.get(_page_key(ctx)) or 0)
    except (redis_lib.RedisError, ValueError):
        shown = 0
    return _show_page(ctx, shown + 1)


# --------------------------------------------------------------------------- redeeming


def _mail_name(text: str) -> dict[str, Any]:
    name = text.strip()
    if not name or len(name) > 64:
        raise Invalid("gift_ask_name")
    return {"mail_name": name}


def _mail_phone(text: str) -> dict[str, Any]:
    phone = normalise_phone(text)
    if len(phone) != 11 or not phone.startswith("1"):
        raise Invalid("gift_bad_phone")
    return {"mail_phone": phone}


def _mail_address(text: str) -> dict[str, Any]:
    address = " ".join(text.split())
    if len(address) < 5 or len(address) > 200:
        raise Invalid("gift_ask_address")
    return {"mail_address": address}


def _finish(ctx: Context, answers: dict[str, Any]) -> str:
    """The member confirmed: redeem in one transaction, and give the code."""
    mail = None
    if answers["fulfilment"] == "mail":
        mail = Mailing(answers["mail_name"], answers["mail_phone"], answers["mail_address"])
    try:
        with ctx.db.write() as session:
            redemption = gifts.redeem(session, ctx.rules, ctx.member.id, answers["gift_id"], ctx.now, _actor(ctx),
                                      mail=mail)
            balance = ledger.balance(session, ctx.member.id)
    except GiftRefused as refused:
        return ctx.text(refused.message, **refused.values)
    spent = {"points": "gift_spent_points", "vip_item": "gift_spent_vip_item", "vip_gift": "gift_spent_vip_gift"}
    values = {"gift_name": redemption.gift_name, "code": redemption.code,
              "valid_until": redemption.valid_until.isoformat(), "mail_name": redemption.mail_name,
              "mail_phone": redemption.mail_phone, "mail_address": redemption.mail_address}
    values["spent"] = ctx.text(spent[redemption.kind], points=f"{redemption.points:,}", balance=f"{balance:,}",
                               price=answers.get("price", ""))
    return ctx.text("gift_redeemed_mail" if mail else "gift_redeemed_pickup", **values)


MAIL_STEPS = (Ask("mail_name", "gift_ask_name", _mail_name), Ask("mail_phone", "gift_ask_phone", _mail_phone),
              Ask("mail_address", "gift_ask_address", _mail_address))
FLOWS = {
    "pickup": Flow("redeem", (), finish=_finish, confirm="gift_confirm", declined="gift_redeem_dropped"),
    "mail": Flow("redeem", MAIL_STEPS, finish=_finish, confirm="gift_confirm_mail", declined="gift_redeem_dropped"),
}


@member_required
def redeem(ctx: Context) -> str | None:
    """`兑换 <id>`: the gift, its cost and the balance after, a confirmation (and for a mailed gift the
    address first); `确认` redeems, anything else drops it."""
    state = ctx.dialog.state
    if state is not None and state["handler"] == "redeem":
        return FLOWS[state["data"]["fulfilment"]].handle(ctx)
    gift_id = ctx.args.strip()
    if not gift_id:
        return ctx.text("gift_redeem_usage")
    try:
        gift = gifts.find_gift(ctx.rules, gift_id)
        with ctx.db.read() as session:
            gifts.check_redeem(session, ctx.rules, gift, ctx.member, ctx.today)
            entitlements = gifts.unused_entitlements(session, ctx.member.id) if gift.kind == "vip_gift" else 0
    except GiftRefused as refused:
        return ctx.text(refused.message, **refused.values)
    balance = ctx.member.points_balance
    price = f"{gift.member_price:,}" if gift.member_price is not None else ""
    cost = ctx.text(f"gift_cost_{gift.kind}", points=f"{gift.points or 0:,}",
                    balance_after=f"{balance - (gift.points or 0):,}", price=price,
                    valid_days=ctx.rules.gifts.valid_days(gift), entitlements=entitlements)
    return FLOWS[gift.fulfilment].handle(ctx, gift_id=gift.id, fulfilment=gift.fulfilment, gift_name=gift.name,
                                         description=gift.description, cost=cost, price=price)


# --------------------------------------------------------------------------- the member's codes


def status_text(ctx: Context, redemption) -> str:
    if redemption.status == "open":
        if redemption.fulfilment == "mail":
            return ctx.text("gift_status_open_mail")
        return ctx.text("gift_status_open", valid_until=redemption.valid_until.isoformat())
    return ctx.text(f"gift_status_{redemption.status}")


@read_only
@member_required
def my_gifts(ctx: Context) -> str:
    """`我的兑换`: the member's latest redemptions with their codes and status, and entitlements left."""
    with ctx.db.read() as session:
        redemptions = gifts.member_redemptions(session, ctx.member.id)
        entitled = gifts.unused_entitlements(session, ctx.member.id)
    lines = []
    if redemptions:
        lines.append(ctx.text("my_gifts_header", count=len(redemptions)))
        for r in redemptions:
            lines.append(ctx.text("my_gifts_line", date=ctx.rules.today(r.created_at).isoformat(),
                                  gift_name=r.gift_name, code=r.code, status=status_text(ctx, r)))
    else:
        lines.append(ctx.text("my_gifts_empty"))
    if entitled:
        lines.append(ctx.text("my_gifts_entitlements", count=entitled))
    return "\n".join(lines)


@member_required
def cancel_redemption(ctx: Context) -> str:
    """`取消兑换 <code>`: the member's own code not yet handed over; points, stock and entitlement come back."""
    code = gifts.normalise_code(ctx.args)
    if not code:
        return ctx.text("gift_cancel_usage")
    with ctx.db.write() as session:
        closing = gifts.cancel(session, ctx.rules, code, ctx.member.id, _actor(ctx), ctx.now)
        balance = ledger.balance(session, ctx.member.id)
    redemption = closing.redemption
    if closing.outcome == "not_found":
        return ctx.text("gift_code_unknown", code=echoed(code, 16))
    if closing.outcome != "done":
        return ctx.text("gift_cancel_refused", code=redemption.code, status=status_text(ctx, redemption))
    if redemption.kind != "points":
        return ctx.text(f"gift_cancelled_{redemption.kind}", gift_name=redemption.gift_name, code=redemption.code)
    return ctx.text("gift_cancelled", gift_name=redemption.gift_name, code=redemption.code,
                    points=f"{closing.points_back:,}", balance=f"{balance:,}")
