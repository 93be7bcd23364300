"""Rules of member events (DOMAIN.md: Events; seed 000 第五节 五): the catalogue, its sessions and texts.

Times in the file are local times in the rules' time zone (``2027-03-20 14:00``); the rules
root turns them into instants (``Rules.event_instant``).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rules.base import Frozen, MessageTexts, by_id, unique_ids

EVENT_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
SEGMENTS = ("upgrade", "stable", "retention", "lapsed")


class EventSession(Frozen):
    """One sitting of an event: a time, a place and a number of seats (guests take seats too)."""

    id: str = Field(min_length=1, max_length=16, pattern=EVENT_ID)
    starts: datetime  # local time
    ends: datetime
    place: str = Field(min_length=1, max_length=128)
    capacity: int = Field(ge=1, le=100_000)
    cancelled: bool = False  # a session with sign-ups is cancelled, not removed: everyone is told once

    @model_validator(mode="after")
    def _ends_after_start(self) -> "EventSession":
        if self.starts.tzinfo is not None or self.ends.tzinfo is not None:
            raise ValueError("write times without an offset: they are local times in the rules' time zone")
        if self.ends <= self.starts:
            raise ValueError(f"ends ({self.ends}) must be after starts ({self.starts})")
        return self


class Event(Frozen):
    id: str = Field(min_length=1, max_length=24, pattern=EVENT_ID)  # what members type: 报名 <id>
    title: str = Field(min_length=1, max_length=64)
    theme: str = ""
    form: str = Field(min_length=1)  # 沙龙, 旅游, 讲座, 店面拜访, 聚餐 …
    region: str | None = None
    store: str | None = None
    description: str = ""
    tiers: list[str] = Field(min_length=1)  # tier ids that may sign up
    segments: list[Literal["upgrade", "stable", "retention", "lapsed"]] = Field(default_factory=list)  # empty: any
    signup_opens: datetime  # local times
    signup_closes: datetime
    cancel_until: datetime  # members may cancel in chat until this moment
    guests_allowed: int = Field(default=0, ge=0, le=20)  # guests per member, each taking a seat
    budget_per_head: Decimal = Field(default=Decimal(0), ge=0)
    sessions: list[EventSession] = Field(min_length=1)
    cancelled: bool = False  # everyone signed up is told once; nobody can sign up

    @model_validator(mode="after")
    def _consistent(self) -> "Event":
        if not (self.region or self.store):
            raise ValueError("an event needs a region or a store")
        ids = [s.id for s in self.sessions]
        if len(set(ids)) != len(ids):
            raise ValueError(f"session ids must be unique within the event, got {ids}")
        for name in ("signup_opens", "signup_closes", "cancel_until"):
            if getattr(self, name).tzinfo is not None:
                raise ValueError(f"{name}: write times without an offset (local time in the rules' time zone)")
        if self.signup_closes <= self.signup_opens:
            raise ValueError("signup_closes must be after signup_opens")
        first = min(s.starts for s in self.sessions)
        if self.signup_closes > first:
            raise ValueError(f"signup_closes ({self.signup_closes}) must not be after the first session starts "
                             f"({first})")
        if self.cancel_until > first:
            raise ValueError(f"cancel_until ({self.cancel_until}) must not be after the first session starts ({first})")
        return self

    def session(self, session_id: str) -> EventSession | None:
        return next((s for s in self.sessions if s.id == session_id), None)

    @property
    def where(self) -> str:
        return self.store or self.region or ""


class EventPushes(Frozen):
    """The pushes.messages each event occasion sends."""

    invitation: str  # to the target tiers when sign-up opens (marketing)
    reminder: str  # to booked members the day before
    promoted: str  # a waitlist place became a booking
    cancelled: str  # the event or the session was cancelled
    moved: str  # a session's time or place changed


class EventRules(Frozen):
    """``events:``: how sign-ups work, and the year's events."""

    waitlist_order: Literal["arrival", "tier"] = "arrival"  # tier: higher tiers first, then arrival
    reminder_days_before: int = Field(default=1, ge=1, le=30)
    # Check-in at the door, on the session's day only (attendance counts in the period of the check-in):
    # from this many hours before the session starts to this many after it ends, within that day.
    checkin_opens_hours_before: int = Field(default=2, ge=0, le=24)
    checkin_closes_hours_after: int = Field(default=2, ge=0, le=24)
    pushes: EventPushes
    catalogue: list[Event] = Field(default_factory=list)

    @field_validator("catalogue")
    @classmethod
    def _unique_ids(cls, events: list[Event]) -> list[Event]:
        return unique_ids(events, "event")

    def event(self, event_id: str) -> Event | None:
        """The event with this id, as members type it (case does not matter)."""
        return by_id(self.catalogue, event_id)

    def push_messages(self) -> list[str]:
        return list(self.pushes.model_dump().values())

    def tiers_named(self) -> list[str]:
        return [tier for event in self.catalogue for tier in event.tiers]


class EventsMessages(MessageTexts):
    events_header: str
    events_line: str
    events_session_line: str
    events_footer: str
    events_none: str
    join_usage: str
    join_unknown: str
    join_not_for_tier: str
    join_not_open: str
    join_closed: str
    join_cancelled: str
    join_already: str
    join_already_waiting: str
    join_prompt_session: str
    join_bad_session: str
    join_prompt_guests: str
    join_bad_guests: str
    join_party_too_big: str
    join_confirm: str
    join_party_alone: str  # who the party is, in join_confirm: no guests
    join_party_with_guests: str
    join_seats_left: str
    join_full_waitlist: str
    join_booked: str
    join_waitlisted: str
    my_events_header: str
    my_events_booked: str
    my_events_waiting: str
    my_events_checked_in: str
    my_events_none: str
    leave_usage: str
    leave_not_signed_up: str
    leave_too_late: str
    leave_done: str
    leave_withdrawn: str
    checkin_not_open: str
    checkin_closed: str
