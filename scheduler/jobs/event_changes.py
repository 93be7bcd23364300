"""Event changes: sessions (or events) marked ``cancelled: true`` and sessions moved in config.yaml.

Everyone signed up to a cancelled session is told once (outbox key ``cx:<session row>``) and their
sign-ups are called off (bookings) or expire (waitlist places) in the same transaction; booked
members of a session whose time or place changed are told once per version (``mv:<row>:<hash>``).
Waitlist places of sessions that started before the day expire; seats a raised capacity freed go to
the waitlist. Run at once with `push run event_changes`.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from rules import Rules
from scheduler.jobs.base import Job, JobPlan
from storage import events


def _start(rules: Rules, now: datetime) -> datetime:
    """The job's moment: the start of the day it runs for (a rerun or `push run --date` does the same)."""
    return rules.local_midnight(rules.today(now))


def plan(session: Session, rules: Rules, now: datetime) -> JobPlan:
    changes = events.change_audiences(session, rules, _start(rules, now))
    return JobPlan(rules.today(now).isoformat(), changes.audiences)


def apply_after(session: Session, rules: Rules, now: datetime, plan: JobPlan) -> int:
    now = _start(rules, now)
    plan.changes.update(events.apply_changes(session, events.change_audiences(session, rules, now), now))
    promoted = events.promote_everywhere(session, rules, now)
    plan.changes["waitlist places promoted"] = promoted
    return promoted  # one push each


JOB = Job("event_changes", plan, apply_after=apply_after)
