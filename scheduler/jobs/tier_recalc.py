"""Nightly: segments re-evaluated for everyone; tier upgrades and downgrades take effect, with a notice."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from rules import Rules
from scheduler.jobs.base import Job, JobPlan
from storage import outbox, tiers
from storage.models import Member
from storage.outbox import member_audience

ACTOR = "job:tier_recalc"


def plan(session: Session, rules: Rules, now: datetime) -> JobPlan:
    today = rules.today(now)
    changes = tiers.tier_changes_query(rules, today, tiers.points_cutoff(session, rules)).subquery()
    counts = session.execute(select(changes.c.tier, changes.c.new_tier, func.count())
                             .group_by(changes.c.tier, changes.c.new_tier)).all()
    return JobPlan(today.isoformat(), changes={f"{old} → {new}": n for old, new, n in counts})


def apply(session: Session, rules: Rules, now: datetime, plan: JobPlan) -> int:
    """Re-evaluate everyone, apply tier changes page by page with their notices, then warn of coming downgrades.
    Returns the pushes planned."""
    today = rules.today(now)
    tiers.evaluate_all(session, rules, today, now=now)
    cutoff = tiers.points_cutoff(session, rules)
    return (_apply_changes(session, rules, now, today, cutoff, plan)
            + _warn_of_downgrades(session, rules, now, today, cutoff, plan))


def _apply_changes(session: Session, rules: Rules, now: datetime, today: date, cutoff: int | None, plan: JobPlan,
                   page: int = 5000) -> int:
    order = {t.id: n for n, t in enumerate(rules.tiers)}
    job = rules.jobs.tier_recalc
    last, planned = 0, 0
    while True:
        batch = session.execute(tiers.tier_changes_query(rules, today, cutoff).where(Member.id > last)
                                .limit(page)).all()
        if not batch:
            return planned
        last = batch[-1][0]
        moved: dict[tuple[str, str], list[int]] = {}  # (message, previous tier) -> members
        for member_id, _card_no, old, new in batch:
            tiers.change_tier(session, member_id, new, ACTOR, today, now=now)
            message = job.upgrade_message if order[new] > order[old] else job.downgrade_message
            if message:
                moved.setdefault((message, old), []).append(member_id)
        for (message, old), ids in moved.items():
            planned += outbox.insert_audience(session, member_audience(
                "tier_recalc", today.isoformat(), Member.id.in_(ids), message,
                extra=outbox.extra_json(previous_tier_name=rules.tier(old).name,
                                        previous_min_spend=f"{rules.tier(old).min_spend:,}")), now)
        plan.changes["tier changes"] = plan.changes.get("tier changes", 0) + len(batch)


JOB = Job("tier_recalc", plan, apply_after=apply)


def _warn_of_downgrades(session: Session, rules: Rules, now: datetime, today: date, cutoff: int | None,
                        plan: JobPlan) -> int:
    """Tell members whose tier the rules will lower in ``segments.downgrade_warning_days`` (once per tier).

    The way Talon.One's "tier will downgrade" notice works: the day, and the spend that keeps the tier.
    One push per member (the amounts differ); after the first night only newly affected members remain.
    """
    message = rules.jobs.tier_recalc.downgrade_warning_message
    if not message:
        return 0
    warned, planned = [], 0
    for member_id, tier, keep_min, needed, on in session.execute(tiers.downgrade_warnings_query(rules, today, cutoff)):
        planned += outbox.insert_audience(session, member_audience(
            "tier_recalc", f"warn:{today}", Member.id == member_id, message,
            extra=outbox.extra_json(downgrade_on=on, keep_min_spend=f"{Decimal(keep_min):,.2f}",
                                    keep_needed=f"{Decimal(needed):,.2f}")), now)
        warned.append(member_id)
    for start in range(0, len(warned), 5000):
        session.execute(update(Member).where(Member.id.in_(warned[start:start + 5000]))
                        .values(downgrade_warned_on=today).execution_options(synchronize_session=False))
    plan.changes["downgrade warnings"] = len(warned)
    return planned
