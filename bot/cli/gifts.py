"""``gifts``: the catalogue with its stock, stock changes, handover in store, one code's history."""
from __future__ import annotations

import re

import click
from flask.cli import AppGroup

from bot.cli.common import fail, state
from storage import gifts
from storage.models import Member, Staff

group = AppGroup("gifts", help="Gifts: catalogue and stock, handover of codes.")

@group.command("list")
def gifts_list() -> None:
    """Every gift with its stock, reserved (open codes) and handed over; withdrawn gifts last."""
    bot = state()
    with bot.db.read() as session:
        lines = gifts.stock_lines(session, bot.rules)
    click.echo(f"{'id':<16} {'kind':<9} {'stock':>6} {'reserved':>8} {'left':>6} {'handed over':>11}  name")
    for line in lines:
        name = line.name if line.in_catalogue else f"{line.name} (withdrawn: not in config.yaml)"
        click.echo(f"{line.gift_id:<16} {line.kind:<9} {line.stock:>6} {line.reserved:>8} {line.available:>6} "
                   f"{line.handed_over:>11}  {name}")


@group.command("stock", context_settings={"ignore_unknown_options": True})
@click.argument("gift_id")
@click.argument("change")
def gifts_stock(gift_id: str, change: str) -> None:
    """Add stock (+N) or take it away (-N); never below what open codes reserve."""
    bot = state()
    if not re.fullmatch(r"[+-]?\d{1,7}", change) or int(change) == 0:
        fail(f"change {change!r} must be +N or -N (N from 1 to 9999999)")
    gift = bot.rules.gifts.gift(gift_id)
    with bot.db.write() as session:
        known = gift.id if gift is not None else None
        if known is None and gift_id not in {line.gift_id for line in gifts.stock_lines(session, bot.rules)}:
            fail(f"no gift {gift_id!r} in config.yaml (gifts.catalogue)")
        row = gifts.adjust_stock(session, known or gift_id, int(change), actor="cli", now=bot.now())
    click.echo(f"{row.gift_id}: stock {row.stock}, reserved {row.reserved}, left {row.stock - row.reserved}")


@group.command("handover")
@click.argument("code")
@click.option("--staff", "staff_id", help="The staff id of who hands it over (default: cli).")
@click.option("--note", help="For a mailed gift: the tracking number or how it was sent.")
def gifts_handover(code: str, staff_id: str | None, note: str | None) -> None:
    """Mark a code collected in store, or a mailed gift sent, once."""
    bot = state()
    with bot.db.write() as session:
        if staff_id is not None and session.get(Staff, staff_id) is None:
            fail(f"no staff {staff_id!r} (flask --app wsgi staff list)")
        actor = f"staff:{staff_id}" if staff_id else "cli"
        closing = gifts.hand_over(session, code, actor, bot.now(), note=note)
        redemption = closing.redemption
        card = session.get(Member, redemption.member_id).card_no if redemption is not None else ""
    if closing.outcome == "not_found":
        fail(f"no redemption with code {gifts.normalise_code(code)}")
    if closing.outcome == "not_open":
        fail(f"{redemption.code} ({redemption.gift_name}, card {card}) was already {redemption.status} "
             f"on {_local(bot, redemption.closed_at)} by {redemption.closed_by}")
    done = "sent" if redemption.status == "mailed" else "handed over"
    click.echo(f"{redemption.code}: {redemption.gift_name} {done} to card {card} by {actor}")


@group.command("show")
@click.argument("code")
def gifts_show(code: str) -> None:
    """One code: its gift, member, status and the history of its status."""
    bot = state()
    with bot.db.read() as session:
        redemption = gifts.find_redemption(session, code)
        if redemption is None:
            fail(f"no redemption with code {gifts.normalise_code(code)}")
        card = session.get(Member, redemption.member_id).card_no
        events = gifts.history(session, redemption.id)
    click.echo(f"{redemption.code} {redemption.gift_id} {redemption.gift_name} — card {card}, "
               f"{redemption.points} points, {redemption.fulfilment}, valid until {redemption.valid_until}")
    if redemption.mail_address:
        click.echo(f"mail to: {redemption.mail_name}, {redemption.mail_phone}, {redemption.mail_address}")
    if redemption.tracking:
        click.echo(f"tracking: {redemption.tracking}")
    click.echo(f"status: {redemption.status}")
    for event in events:
        click.echo(f"  {_local(bot, event.at)}  {event.from_status or '-'} → {event.to_status}  by {event.actor}"
                   + (f"  ({event.note})" if event.note else ""))


def _local(bot, moment) -> str:
    return moment.astimezone(bot.rules.zone).strftime("%Y-%m-%d %H:%M") + f" {bot.rules.timezone}" if moment else "?"
