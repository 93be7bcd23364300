"""``members``: imports from the stores, and one member explained."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from flask.cli import AppGroup

from bot.cli.common import DATE_OPTION, day_of, fail, report_import, state
from storage.csvfile import open_csv
from storage.members import find_by_card, import_members, unlock_binding, unreachable_since
from storage.models import Member, MemberChange
from storage.tiers import change_tier, explain_member, hold_end

group = AppGroup("members", help="Members: import from the stores, inspect.")


@group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def members_import(file: Path) -> None:
    """Upsert members from CSV: card_no,name,phone,birthday,tier,points,manager."""
    bot = state()
    with open_csv(file) as lines, bot.db.write() as session:
        report = import_members(session, lines, bot.rules, bot.now(), actor="cli")
    report_import(file, report.errors, report.summary())


@group.command("show")
@click.argument("card_no")
@click.option("--date", "on", type=DATE_OPTION, help="Evaluate as of this day (default today).")
def members_show(card_no: str, on: datetime | None) -> None:
    """Print a member's tier, segment, activity and balance, each with its reason."""
    bot = state()
    rules = bot.rules
    with bot.db.read() as session:
        report = explain_member(session, card_no, rules, day_of(on))
        refused = unreachable_since(session, report.member.id) if report and report.member.unreachable else None
    if report is None:
        fail(f"no member with card {card_no}")
    member, result = report.member, report.evaluation
    tier_line = f"{member.tier} {rules.tier(member.tier).name}"
    if result.tier != member.tier:
        tier_line += f" (the rules now call for {result.tier} {rules.tier(result.tier).name})"
    total = report.ledger_total
    balance_note = "equals the ledger sum" if total == member.points_balance else f"LEDGER SUM IS {total}"
    expiry = f"; {report.next_expiry[0]} expire on {report.next_expiry[1]}" if report.next_expiry else ""
    click.echo(f"{member.card_no} {member.name} (as of {report.today})")
    click.echo(f"tier:     {tier_line} — {result.tier_reason}")
    click.echo(f"segment:  {result.segment} — {result.segment_reason}")
    click.echo(f"activity: {result.activity} — {result.activity_reason}")
    click.echo(f"balance:  {member.points_balance} points — {balance_note}{expiry}")
    followers = "following" if member.subscribed else "unfollowed"
    click.echo(f"wechat:   {'bound' if member.openid else 'not bound'}, {followers}"
               f"{', opted out of marketing' if member.opted_out else ''}{_unreachable(member, refused)}")


def _unreachable(member: Member, refused: MemberChange | None) -> str:
    """Why pushes skip a member WeChat refused delivery to, since when, and what ends it."""
    if not member.unreachable:
        return ""
    text = ", unreachable: WeChat refused delivery"
    if refused is not None:  # marked before the audit trail recorded it: no date to give
        rules = state().rules
        text += f" since {rules.local_time(refused.at)} {rules.timezone} ({refused.detail or 'no reason given'})"
    return text + "; no pushes until the member writes or follows again"


@group.command("unlock")
@click.argument("card_or_openid")
def members_unlock(card_or_openid: str) -> None:
    """Lift a bind lockout: of every WeChat account that failed to bind this card, or of one openid."""
    bot = state()
    lifted = unlock_binding(bot.redis, bot.keys, card_or_openid)
    if not lifted:
        click.echo(f"no lockout for {card_or_openid}")
        return
    click.echo(f"{len(lifted)} lockout lifted for {card_or_openid}" if len(lifted) == 1
               else f"{len(lifted)} lockouts lifted for {card_or_openid}")


@group.command("set-tier")
@click.argument("card_no")
@click.argument("tier")
@click.option("--reason", required=True, help="Why, for the audit trail (e.g. 'VIP agreement 2026').")
def members_set_tier(card_no: str, tier: str, reason: str) -> None:
    """Set a member's tier by hand; it holds for the evaluation window unless purchases earn a higher one."""
    bot = state()
    rules = bot.rules
    if tier not in [t.id for t in rules.tiers]:
        fail(f"tier {tier!r} is not one of {', '.join(t.id for t in rules.tiers)}")
    with bot.db.write() as session:
        member = find_by_card(session, card_no)
        if member is None:
            fail(f"no member with card {card_no}")
        old = change_tier(session, member.id, tier, "cli", bot.today(), reason=reason, source="operator",
                          now=bot.now())
    if old is None:
        click.echo(f"{card_no} is already {tier}")
    else:
        click.echo(f"{card_no}: {old} → {tier}, held until {hold_end('operator', bot.today(), rules)}")
