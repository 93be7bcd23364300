"""Commands for purchases, points and member evaluation."""
from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click
from flask.cli import AppGroup

from bot.cli import members_cli, state

purchases_cli = AppGroup("purchases", help="Purchases from the store systems.")
points_cli = AppGroup("points", help="The points ledger.")


@purchases_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def purchases_import(file: Path) -> None:
    """Record purchases from CSV: receipt_no,card_no,amount,purchased_at,store (idempotent)."""
    from storage.purchases import import_purchases

    bot = state()
    with file.open(encoding="utf-8-sig", newline="") as lines, bot.db.write() as session:
        report = import_purchases(session, lines, bot.rules, actor="cli")
    for line, reason in report.errors:
        click.echo(f"{file}, line {line}: {reason}", err=True)
    click.echo(f"{file}: {report.summary()}")
    if report.errors:
        sys.exit(1)


@members_cli.command("show")
@click.argument("card_no")
@click.option("--date", "on", type=click.DateTime(["%Y-%m-%d"]), help="Evaluate as of this day (default today).")
def members_show(card_no: str, on: datetime | None) -> None:
    """Print a member's tier, segment, activity and balance, each with its reason."""
    from storage import ledger, tiers
    from storage.members import find_by_card
    from storage.points import points_overview

    bot = state()
    rules = bot.rules
    today = on.date() if on else bot.now().astimezone(rules.zone).date()
    with bot.db.read() as session:
        member = find_by_card(session, card_no)
        if member is None:
            click.echo(f"no member with card {card_no}", err=True)
            sys.exit(1)
        cutoff = tiers.points_cutoff(session, rules)
        facts = tiers.member_facts(session, member, rules, today, cutoff)
        total = ledger.ledger_sum(session, member.id)
        expiring = points_overview(session, member.id, rules, today).next_expiry
    result = tiers.evaluate_member(facts, rules, today)
    tier_line = f"{member.tier} {rules.tier(member.tier).name}"
    if result.tier != member.tier:
        tier_line += f" (the rules now call for {result.tier} {rules.tier(result.tier).name})"
    balance_note = "equals the ledger sum" if total == member.points_balance else f"LEDGER SUM IS {total}"
    expiry = f"; {expiring[0]} expire on {expiring[1]}" if expiring else ""
    click.echo(f"{member.card_no} {member.name} (as of {today})")
    click.echo(f"tier:     {tier_line} — {result.tier_reason}")
    click.echo(f"segment:  {result.segment} — {result.segment_reason}")
    click.echo(f"activity: {result.activity} — {result.activity_reason}")
    click.echo(f"balance:  {member.points_balance} points — {balance_note}{expiry}")
    followers = "following" if member.subscribed else "unfollowed"
    click.echo(f"wechat:   {'bound' if member.openid else 'not bound'}, {followers}"
               f"{', opted out of marketing' if member.opted_out else ''}")


@points_cli.command("check")
def points_check() -> None:
    """Prove every cached balance equals the sum of its ledger; exit 1 listing any that do not."""
    from storage.ledger import check_balances

    with state().db.read() as session:
        mismatches = check_balances(session)
    for m in mismatches:
        click.echo(f"{m.card_no}: cached {m.cached}, ledger sum {m.ledger}", err=True)
    if mismatches:
        sys.exit(1)
    click.echo("every balance equals the sum of its ledger")


COMMANDS = (purchases_cli, points_cli)
