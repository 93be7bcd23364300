"""Nightly: segments re-evaluated for everyone; tier upgrades and downgrades take effect, with a notice."""
from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
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


def apply(session: Session, rules: Rules, today: date, plan: JobPlan, page: int = 5000) -> None:
    """Re-evaluate everyone, apply tier changes page by page, and plan the notices."""
    tiers.evaluate_all(session, rules, today)
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
            tiers.change_tier(session, member_id, new, ACTOR)
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
