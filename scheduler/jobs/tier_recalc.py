"""Nightly: segments re-evaluated for everyone; tier upgrades and downgrades take effect, with a notice."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from rules import Rules
from scheduler.jobs.base import Job, JobPlan
from storage import outbox, tiers
from storage.models import Member
from storage.outbox import member_audience

ACTOR = "job:tier_recalc"


def plan(session: Session, rules: Rules, today: date) -> JobPlan:
    changes = tiers.tier_changes_query(rules, today).subquery()
    counts = session.execute(select(changes.c.tier, changes.c.new_tier, func.count())
                             .group_by(changes.c.tier, changes.c.new_tier)).all()
    return JobPlan(today.isoformat(), changes={f"{old} → {new}": n for old, new, n in counts})


def apply(session: Session, rules: Rules, today: date, plan: JobPlan) -> None:
    """Re-evaluate everyone, apply tier changes page by page with their notices, then warn of coming downgrades."""
    tiers.evaluate_all(session, rules, today)
    _apply_changes(session, rules, today, plan)
    _warn_of_downgrades(session, rules, today, plan)


def _apply_changes(session: Session, rules: Rules, today: date, plan: JobPlan, page: int = 5000) -> None:
    order = {t.id: n for n, t in enumerate(rules.tiers)}
    job = rules.jobs.tier_recalc
    last = 0
    while True:
        batch = session.execute(tiers.tier_changes_query(rules, today).where(Member.id > last).limit(page)).all()
        if not batch:
            return
        last = batch[-1][0]
        moved: dict[tuple[str, str], list[int]] = {}  # (message, previous tier) -> members
        for member_id, _card_no, old, new in batch:
            tiers.change_tier(session, member_id, new, ACTOR, today)
            message = job.upgrade_message if order[new] > order[old] else job.downgrade_message
            if message:
                moved.setdefault((message, old), []).append(member_id)
        for (message, old), ids in moved.items():
            outbox.insert_audience(session, member_audience(
                "tier_recalc", today.isoformat(), Member.id.in_(ids), message,
                extra=outbox.extra_json(previous_tier_name=rules.tier(old).name,
                                        previous_min_spend=f"{rules.tier(old).min_spend:,}")))
        plan.changes["tier changes"] = plan.changes.get("tier changes", 0) + len(batch)


JOB = Job("tier_recalc", plan, apply_after=apply)


def _warn_of_downgrades(session: Session, rules: Rules, today: date, plan: JobPlan) -> None:
    """Tell members whose tier the rules will lower in ``segments.downgrade_warning_days`` (once per tier).

    The way Talon.One's "tier will downgrade" notice works: the day, and the spend that keeps the tier.
    One push per member (the amounts differ); after the first night only newly affected members remain.
    """
    message = rules.jobs.tier_recalc.downgrade_warning_message
    if not message:
        return
    warned = []
    for member_id, tier, keep_min, needed, on in session.execute(tiers.downgrade_warnings_query(rules, today)):
        outbox.insert_audience(session, member_audience(
            "tier_recalc", f"warn:{today}", Member.id == member_id, message,
            extra=outbox.extra_json(downgrade_on=on, keep_min_spend=f"{Decimal(keep_min):,.2f}",
                                    keep_needed=f"{Decimal(needed):,.2f}")))
        warned.append(member_id)
    for start in range(0, len(warned), 5000):
        session.execute(update(Member).where(Member.id.in_(warned[start:start + 5000]))
                        .values(downgrade_warned_on=today).execution_options(synchronize_session=False))
    plan.changes["downgrade warnings"] = len(warned)
