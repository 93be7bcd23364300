"""The registry of scheduled jobs, and running or previewing any of them.

Each job is one module here declaring ``JOB`` (its id, what it plans, what it changes); its
rules are the section of the same name under ``jobs:`` (``rules/jobs/``). Adding a job: its
module, its rules section, and one line below. The scheduler, `push preview|run|status` and
catch-up read this registry.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from rules import Rules, render_text
from scheduler import delivery
from scheduler.delivery import DrainStats, push_context
from scheduler.jobs import (birthday, event_changes, event_invitations, event_reminders, gift_expiry, holidays,
                            monthly_bulletin, points_reset, ticket_watch, tier_recalc)
from scheduler.jobs.base import Job, JobPlan
from storage import outbox
from storage.models import Member

if TYPE_CHECKING:
    from bot.services import BotState

log = logging.getLogger(__name__)

JOBS: dict[str, Job] = {job.id: job for job in (
    tier_recalc.JOB,
    points_reset.JOB,
    birthday.JOB,
    holidays.JOB,
    monthly_bulletin.JOB,
    gift_expiry.JOB,
    event_changes.JOB,
    event_invitations.JOB,
    event_reminders.JOB,
)}

# Jobs that run every few minutes rather than once a day: id -> (run(state), minutes from the rules).
WATCHERS = {ticket_watch.ID: (ticket_watch.run, lambda rules: rules.jobs.ticket_watch.every_minutes)}


def job_schedule(rules: Rules) -> dict[str, dict[str, int]]:
    """Each job's cron fields, from its section of config.yaml."""
    return {job_id: rules.jobs.section(job_id).cron_fields() for job_id in JOBS}


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def plan_job(session: Session, rules: Rules, name: str, now: datetime) -> JobPlan:
    if name not in JOBS:
        raise KeyError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    return JOBS[name].plan(session, rules, now)


def run_job(state: "BotState", name: str, today: date, drain: bool = True
            ) -> tuple[JobPlan, int, DrainStats | None]:
    """Plan (and apply) ``name`` for ``today`` in one transaction, then send what may go now.

    The run's moment is the clock's time of day on ``today`` (``BotState.moment_on``): all it
    writes (ledger entries, tier changes, the outbox) is dated ``today``, as `push run --date` says.
    The pushes planned count those the job's changes planned too (tier notices, promotions).
    """
    rules = state.rules
    job = JOBS[name]
    now = state.moment_on(today)
    with state.db.write() as session:
        if job.apply_before:
            job.apply_before(session, rules, now)
        plan = plan_job(session, rules, name, now)
        run = outbox.start_run(session, name, plan.occasion, runner_name(), today, now)
        planned = sum(outbox.insert_audience(session, audience, now) for audience in plan.audiences)
        if job.apply_after:
            planned += job.apply_after(session, rules, now, plan)
        run.planned = planned
        notes = [plan.note] if plan.note else []
        notes += [f"{what}: {n}" for what, n in plan.changes.items()]
        run.note = "; ".join(notes) or None
        run.finished_at = now
    if plan.note:
        log.warning("job %s: %s", name, plan.note)
    log.info("job %s for %s: %d pushes planned%s", name, plan.occasion, planned, f" ({run.note})" if run.note else "")
    stats = delivery.drain(state) if drain else None
    return plan, planned, stats


@dataclass(frozen=True)
class Preview:
    """What a job would do on a day, sending nothing: counts per audience and a few rendered texts."""

    plan: JobPlan
    lines: list[tuple[str, list[outbox.PreviewLine]]]  # (occasion, counts by tier, message, status, reason)
    samples: list[tuple[str, str]]  # (card number, or the staff member and the card, rendered text)


def preview_job(session: Session, rules: Rules, name: str, now: datetime, samples: int = 3) -> Preview:
    """Plan ``name`` at ``now`` inside the caller's transaction, which the caller rolls back."""
    plan = plan_job(session, rules, name, now)
    lines = [(a.occasion, found) for a in plan.audiences if (found := outbox.preview_audience(session, a))]
    rows = [row for audience in plan.audiences for row in outbox.sample_audience(session, audience)][:samples]
    return Preview(plan, lines, [_render_sample(session, rules, JOBS[name], row) for row in rows])


def _render_sample(session: Session, rules: Rules, job: Job, row: dict) -> tuple[str, str]:
    """(who it goes to, by card number as operators know them; the text it would say)."""
    member = session.get(Member, row["member_id"]) if row["member_id"] else None
    context = push_context(member, row["extra"], rules, {})
    for key, value in job.preview_values.items():
        context.setdefault(key, value)
    card = member.card_no if member is not None else "-"
    who = f"staff {row['staff_id']} about {card}" if row["staff_id"] else f"{card} {member.name if member else ''}"
    return who.strip(), render_text(rules.pushes.messages[row["message"]].text, context)
