"""Help, fallbacks and leaving dialogs."""
from __future__ import annotations

from bot.context import Context, read_only
from rules import echoed


@read_only
def show_help(ctx: Context) -> str:
    """The member commands; from a staff account, the staff commands (a staff WeChat cannot bind a card)."""
    return ctx.text("staff_help" if ctx.staff is not None else "help")


def unknown_text(ctx: Context) -> str:
    return ctx.text("unknown_text", text=echoed(ctx.args, 20))


def media_received(ctx: Context) -> str:
    return ctx.text("media_received")


def cancel(ctx: Context) -> str:
    return ctx.text("dialog_cancelled" if ctx.dialog.end() else "nothing_to_cancel")
