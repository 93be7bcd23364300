"""Points: balance, tier and what expires next; the latest ledger entries."""
from __future__ import annotations

from decimal import Decimal

from bot.context import Context, read_only
from bot.guards import loads_member, member_required
from storage import ledger
from storage.points import PointsOverview, member_with_points
from storage.tiers import earned_tier


def format_points(points: int) -> str:
    return f"{points:,}"


def format_money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


@read_only
@member_required
@loads_member(member_with_points)
def points(ctx: Context) -> str:
    """Balance, tier name, the next points to expire, and the spend still needed for the next tier."""
    member, rules = ctx.member, ctx.rules
    tier = rules.tier(member.tier)
    overview = PointsOverview.of(member, rules, ctx.today)  # loaded with the member: one statement for the answer
    expiring, spend = overview.next_expiry, overview.window_spend
    if expiring:
        expiry = ctx.text("points_expiring", points=format_points(expiring[0]), date=expiring[1].isoformat())
    else:
        expiry = ctx.text("points_no_expiry")
    next_tier = _next_tier_line(ctx, member.tier, spend, spend_shown=False)
    return ctx.text("points_summary", name=member.name, tier_name=tier.name, card_no=member.card_no,
                    balance=format_points(member.points_balance), expiry=expiry, next_tier=next_tier)


def _next_tier_line(ctx: Context, tier_id: str, spend: Decimal, spend_shown: bool) -> str:
    """The way to the tier above — the spend still needed, or, once reached, when the nightly evaluation
    upgrades — or the top-tier thanks. ``spend_shown``: the answer states the spend already."""
    rules = ctx.rules
    gap = rules.tier_gap(tier_id, spend)
    if gap.next_tier is None:
        return ctx.text("points_top_tier")
    if gap.needed:
        upgrade = ctx.text("points_upgrade_needed", needed=format_money(gap.needed), next_tier_name=gap.next_tier.name)
    else:  # tiers change only in the tier_recalc job, to the highest tier the spend reaches
        evaluation = rules.jobs.tier_recalc.next_run(ctx.now, rules.zone)
        upgrade = ctx.text("points_upgrade_due", next_tier_name=rules.tier(earned_tier(spend, rules)).name,
                           evaluated_at=rules.local_time(evaluation))
    return upgrade if spend_shown else ctx.text("points_next_tier", spend=format_money(spend), upgrade=upgrade)


@read_only
@member_required
def history(ctx: Context) -> str:
    """The latest ledger entries: date, kind and signed amount."""
    rules = ctx.rules
    with ctx.db.read() as session:
        entries = ledger.recent_entries(session, ctx.member.id, rules.points.history_length)
    if not entries:
        return ctx.text("history_empty")
    lines = [ctx.text("history_header", count=len(entries))]
    for entry in entries:
        lines.append(ctx.text(
            "history_line",
            date=rules.today(entry.occurred_at).isoformat(),
            kind=getattr(rules.points.kind_names, ledger.display_kind(entry)),
            amount=f"{entry.amount:+,}",
        ))
    return "\n".join(lines)


@read_only
@member_required
@loads_member(member_with_points)
def benefits(ctx: Context) -> str:
    """The member's tier and what it brings, the spend that keeps it and the spend that reaches the next."""
    member, rules = ctx.member, ctx.rules
    tier = rules.tier(member.tier)
    spend = PointsOverview.of(member, rules, ctx.today).window_spend
    keep_needed = max(tier.min_spend - spend, Decimal(0))
    values = {"tier_name": tier.name, "spend": format_money(spend), "min_spend": format_money(tier.min_spend),
              "needed": format_money(keep_needed)}
    if tier.min_spend == 0:
        keep = ctx.text("benefits_keep_base", **values)
    else:
        keep = ctx.text("benefits_keep_short" if keep_needed else "benefits_keep_met", **values)
    next_tier = _next_tier_line(ctx, member.tier, spend, spend_shown=True)  # the keep line states it
    lines = "\n".join(ctx.text("benefits_line", benefit=benefit) for benefit in tier.benefits)
    return ctx.text("benefits_summary", name=member.name, tier_name=tier.name, card_no=member.card_no,
                    benefits=lines, keep=keep, next_tier=next_tier)
