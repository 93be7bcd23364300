"""Guards: who may use a handler. A guard answers the message itself when the sender may not."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.context import Context, Handler

Guard = Callable[["Context"], "str | None"]  # a refusal to send, or None to let the handler run


def _guarded(handler: "Handler", guard: Guard) -> "Handler":
    handler.guards = (*getattr(handler, "guards", ()), guard)  # type: ignore[attr-defined]
    return handler


def refusal(handler: "Handler", ctx: "Context") -> str | None:
    """The first guard's refusal for this handler and sender, or None when every guard lets it run."""
    for guard in getattr(handler, "guards", ()):
        answer = guard(ctx)
        if answer is not None:
            return answer
    return None


def loads_member(loader: Callable) -> Callable[["Handler"], "Handler"]:
    """Load ``ctx.member`` with ``loader(reads, openid, rules, today)``: one statement that brings
    what the handler needs with the member's row (e.g. the points overview for `积分`)."""

    def decorate(handler: "Handler") -> "Handler":
        handler.member_loader = loader  # type: ignore[attr-defined]
        return handler

    return decorate


def member_required(handler: "Handler") -> "Handler":
    """For bound members only; others get the bind hint."""
    return _guarded(handler, lambda ctx: ctx.text("not_bound") if ctx.member is None else None)


def staff_required(*roles: str) -> Callable[["Handler"], "Handler"]:
    """For staff whose WeChat is bound to a staff record with one of ``roles`` (admins always pass)."""

    def decorate(handler: "Handler") -> "Handler":
        def guard(ctx: "Context") -> str | None:
            staff = ctx.staff
            if staff is None or not (staff.role in roles or staff.role == "admin"):
                return ctx.text("staff_only")
            return None

        return _guarded(handler, guard)

    return decorate
