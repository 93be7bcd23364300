"""Opting out of marketing pushes (退订) and back in (订阅). Staff alerts are not affected."""
from __future__ import annotations

from bot.context import Context
from bot.guards import member_required
from storage.members import set_opted_out


@member_required
def unsubscribe(ctx: Context) -> str:
    with ctx.db.write() as session:
        set_opted_out(session, ctx.member.id, True, f"openid:{ctx.openid}", now=ctx.now)
    return ctx.text("unsubscribed")


@member_required
def subscribe(ctx: Context) -> str:
    with ctx.db.write() as session:
        set_opted_out(session, ctx.member.id, False, f"openid:{ctx.openid}", now=ctx.now)
    return ctx.text("resubscribed")
