"""Event invitations: members of an event's target tiers (and segments) are invited once its sign-up is open.

Marketing: quiet hours, opt-out and lapsing apply. Planned once per event and member (outbox key
``inv:<event id>``), so members who reach a target tier while sign-up is open are invited the next day.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from rules import Rules
from rules.base import parse_clock
from scheduler.jobs.base import Job, JobPlan
from storage import events


def plan(session: Session, rules: Rules, now: datetime) -> JobPlan:
    today = rules.today(now)
    # Sign-up counts as open if it is open at the job's hour that day.
    moment = rules.local_instant(datetime.combine(today, parse_clock(rules.jobs.event_invitations.at)))
    return JobPlan(today.isoformat(), events.invitation_audiences(rules, moment))


JOB = Job("event_invitations", plan)
