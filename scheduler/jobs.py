"""The scheduled jobs. Each plans its pushes into the outbox, once per occasion, then drains it.

A job's audience is read-only (``push preview`` shows it); ``run_job`` also does the job's
changes (expiring points, resets, tier changes) in the same transaction as the planning.
"""
from __future__ import annotations

import calendar
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from dateutil.relativedelta import relativedelta
from sqlalchemy import String, and_, case, cast, exists, func, literal, select, update
from sqlalchemy.orm import Session

from bot.config import Rules
from storage import ledger, outbox, tiers
from storage.members import record_change
from storage.models import LedgerEntry, Member, Voucher, utcnow
from storage.outbox import Audience, member_audience, staff_alert_audience

log = logging.getLogger(__name__)


@dataclass
class JobPlan:
    """What a job would do for one day: its audiences and anything worth saying."""

    occasion: str
    audiences: list[Audience] = field(default_factory=list)
    note: str | None = None
    changes: dict[str, int] = field(default_factory=dict)  # e.g. {"points expiring": 120}


def birthday_keys(day: date) -> list[int]:
    """The birthday_md values greeted on ``day``: 29 February is greeted on 28 February in other years."""
    keys = [day.month * 100 + day.day]
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        keys.append(229)
    return keys


# --------------------------------------------------------------------------- birthday


def plan_birthday(session: Session, rules: Rules, today: date) -> JobPlan:
    job = rules.jobs.birthday
    message = case(*[(Member.tier == tier, name) for tier, name in job.messages.items()])
    greet = member_audience(
        "birthday", today.isoformat(),
        and_(Member.birthday_md.in_(birthday_keys(today)), Member.tier.in_(job.messages)), message,
    )
    alert_day = today + timedelta(days=job.manager_alert_days_before)
    alert = staff_alert_audience(
        "birthday", f"alert:{alert_day.isoformat()}",
        and_(Member.birthday_md.in_(birthday_keys(alert_day)), Member.tier.in_(job.manager_alert_tiers)),
        job.manager_alert_message,
    )
    return JobPlan(today.isoformat(), [greet, alert])


def give_birthday_vouchers(session: Session, rules: Rules, today: date) -> int:
    """A gift voucher for each member of the voucher tiers greeted today (once per birthday)."""
    job = rules.jobs.birthday
    reason = outbox.marketing_skip_reason()
    eligible = session.scalars(select(Member.id).where(
        Member.birthday_md.in_(birthday_keys(today)), Member.tier.in_(job.voucher_tiers), reason.is_(None),
        ~exists().where(Voucher.member_id == Member.id, Voucher.occasion == today.isoformat()),
    )).all()
    valid_until = today + timedelta(days=job.voucher_valid_days)
    for member_id in eligible:
        session.add(Voucher(code=f"BD{today:%y%m%d}{secrets.token_hex(3).upper()}", member_id=member_id,
                            occasion=today.isoformat(), valid_until=valid_until))
    session.flush()
    return len(eligible)


# --------------------------------------------------------------------------- monthly bulletin


def plan_monthly_bulletin(session: Session, rules: Rules, today: date) -> JobPlan:
    from scheduler.delivery import bulletin_path

    job = rules.jobs.monthly_bulletin
    month = f"{today:%Y-%m}"
    path = bulletin_path(rules, month)
    if not path.is_file():
        return JobPlan(month, note=f"no bulletin file {path}: nothing sent for {month}")
    audience = member_audience("monthly_bulletin", month, Member.tier.in_(job.tiers), job.message,
                               extra=outbox.extra_json(month=month))
    return JobPlan(month, [audience])


# --------------------------------------------------------------------------- points reset


def plan_points_reset(session: Session, rules: Rules, today: date) -> JobPlan:
    job = rules.jobs.points_reset
    retention = Member.segment == "retention"
    until = today + relativedelta(months=rules.retention.grace_months)
    audiences = [
        member_audience("points_reset", f"grace:{until}", and_(retention, Member.retention_grace_until.is_(None)),
                        job.grace_message, extra=outbox.extra_json(grace_until=until)),
        member_audience("points_reset", f"reset:{today}",
                        and_(retention, Member.retention_grace_until <= today), job.reset_message,
                        extra=outbox.extra_json(grace_until=today)),
    ]
    for days in rules.retention.reminder_days_before:
        reset_day = today + timedelta(days=days)
        audiences.append(member_audience(
            "points_reset", f"remind{days}:{reset_day}", and_(retention, Member.retention_grace_until == reset_day),
            job.reminder_message, extra=outbox.extra_json(grace_until=reset_day, days_left=days)))
    expiring_on = today + timedelta(days=rules.points.expiry_reminder_days)
    lots = and_(LedgerEntry.member_id == Member.id, LedgerEntry.kind == "earn", LedgerEntry.remaining > 0,
                LedgerEntry.expires_on == expiring_on)
    points = select(func.sum(LedgerEntry.remaining)).where(lots).scalar_subquery()
    extra = literal('{"points": "') + cast(points, String) + literal(f'", "expires_on": "{expiring_on}"}}')
    audiences.append(member_audience("points_reset", f"lots:{expiring_on}", exists().where(lots),
                                     job.expiry_reminder_message, extra_sql=extra))
    due = session.scalar(select(func.coalesce(func.sum(LedgerEntry.remaining), 0)).where(
        LedgerEntry.kind == "earn", LedgerEntry.remaining > 0, LedgerEntry.expires_on < today))
    resets = session.scalar(select(func.count()).where(retention, Member.retention_grace_until <= today))
    return JobPlan(today.isoformat(), audiences, changes={"points expiring today": int(due or 0),
                                                          "members whose points reset": int(resets or 0)})


def apply_points_reset(session: Session, rules: Rules, today: date, plan: JobPlan) -> None:
    """Expire due lots, start grace periods, and reset those whose grace ended without a purchase."""
    plan.changes["points expired"] = ledger.expire_due_lots(session, today)
    until = today + relativedelta(months=rules.retention.grace_months)
    session.execute(update(Member).where(Member.segment == "retention", Member.retention_grace_until.is_(None))
                    .values(retention_grace_until=until).execution_options(synchronize_session=False))
    ended = and_(Member.retention_grace_until <= today)
    # Bought in the meantime: the nightly evaluation no longer puts them in retention.
    session.execute(update(Member).where(ended, Member.segment != "retention")
                    .values(retention_grace_until=None).execution_options(synchronize_session=False))
    to_reset = select(Member.id).where(ended, Member.segment == "retention")
    plan.changes["members reset"] = ledger.reset_points_bulk(
        session, to_reset, reason="retention grace ended", key_prefix=f"retention:{today}:")
    # No purchase in the window: the rules' earned tier is the base tier.
    session.execute(update(Member).where(Member.id.in_(to_reset))
                    .values(tier=rules.tiers[0].id, retention_grace_until=None, segment="lapsed")
                    .execution_options(synchronize_session=False))


# --------------------------------------------------------------------------- tier recalculation


def plan_tier_recalc(session: Session, rules: Rules, today: date) -> JobPlan:
    changes = tiers.tier_changes_query(rules, today).subquery()
    counts = session.execute(select(changes.c.tier, changes.c.new_tier, func.count())
                             .group_by(changes.c.tier, changes.c.new_tier)).all()
    return JobPlan(today.isoformat(), changes={f"{old} → {new}": n for old, new, n in counts})


def apply_tier_recalc(session: Session, rules: Rules, today: date, plan: JobPlan, page: int = 5000) -> None:
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
        ups, downs = [], []
        for member_id, card_no, old, new in batch:
            session.execute(update(Member).where(Member.id == member_id).values(tier=new)
                            .execution_options(synchronize_session=False))
            record_change(session, member_id, "tier", "job:tier_recalc", f"{old} → {new}")
            (ups if order[new] > order[old] else downs).append(member_id)
        for ids, message in ((ups, job.upgrade_message), (downs, job.downgrade_message)):
            if ids and message:
                outbox.insert_audience(session, member_audience("tier_recalc", today.isoformat(),
                                                                Member.id.in_(ids), message))
        plan.changes["tier changes"] = plan.changes.get("tier changes", 0) + len(batch)


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Job:
    plan: Callable[[Session, Rules, date], JobPlan]
    apply_before: Callable[[Session, Rules, date], int] | None = None  # before planning (vouchers)
    apply_after: Callable[[Session, Rules, date, JobPlan], None] | None = None


JOBS: dict[str, Job] = {
    "birthday": Job(plan_birthday, apply_before=give_birthday_vouchers),
    "monthly_bulletin": Job(plan_monthly_bulletin),
    "points_reset": Job(plan_points_reset, apply_after=apply_points_reset),
    "tier_recalc": Job(plan_tier_recalc, apply_after=apply_tier_recalc),
}


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def plan_job(session: Session, rules: Rules, name: str, today: date) -> JobPlan:
    if name not in JOBS:
        raise KeyError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    if name == "points_reset":
        tiers.evaluate_all(session, rules, today)  # "bought in the meantime" is read from the segment
    return JOBS[name].plan(session, rules, today)


def run_job(state, name: str, today: date, drain: bool = True):
    """Plan (and apply) ``name`` for ``today`` in one transaction, then send what may go now."""
    from scheduler.delivery import drain as drain_outbox

    rules = state.rules
    job = JOBS[name]
    with state.db.write() as session:
        if job.apply_before:
            job.apply_before(session, rules, today)
        plan = plan_job(session, rules, name, today)
        run = outbox.start_run(session, name, plan.occasion, runner_name())
        planned = sum(outbox.insert_audience(session, audience) for audience in plan.audiences)
        if job.apply_after:
            job.apply_after(session, rules, today, plan)
        run.planned = planned
        notes = [plan.note] if plan.note else []
        notes += [f"{what}: {n}" for what, n in plan.changes.items()]
        run.note = "; ".join(notes) or None
        run.finished_at = utcnow()
    if plan.note:
        log.warning("job %s: %s", name, plan.note)
    log.info("job %s for %s: %d pushes planned%s", name, plan.occasion, planned, f" ({run.note})" if run.note else "")
    stats = drain_outbox(state) if drain else None
    return plan, planned, stats

