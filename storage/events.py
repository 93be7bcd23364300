"""Member events: signing up for a session, the waitlist, cancelling, check-in, and what operators read.

Seats are held by the database. Every operation that takes or frees seats first locks the
session's row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite ``db.write()`` holds the write
lock from BEGIN IMMEDIATE), so sign-ups to one session are serialised and their ids follow the
order they commit; the seats themselves move only through conditional UPDATEs
(``seats_taken + n <= capacity``) checked by rowcount, backed by CHECK constraints. Freeing seats
and promoting the next on the waitlist happen in the caller's one transaction (pretix#1163).

Functions take a session and never commit. Refusals raise ``EventRefused`` with the member-facing
message name and its values, before anything is written.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String as SqlString
from sqlalchemy import Select, and_, case, cast, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from rules import BotError, Rules, echoed
from rules.events import Event, EventSession
from storage import outbox
from storage.codes import new_code, normalise_code
from storage.models import EventSessionRow, EventSignup, Member

LIVE = ("booked", "waitlisted")
PROMOTION_JOB = "event_promotion"  # the outbox job of waitlist promotions (occasion: promo:<signup id>)
BOOKING_CODE_LENGTH = 6  # read aloud at the door (storage/codes.py)


class EventRefused(BotError):
    """A sign-up, cancellation or check-in that may not happen: ``message`` names the text, nothing changed."""

    def __init__(self, message: str, **values: Any):
        super().__init__(message)
        self.message, self.values = message, values


# --------------------------------------------------------------------------- what members are told


def session_label(event: Event, es: EventSession) -> str:
    """'第1场' for numbered sessions, the session's place otherwise ('南京西路旗舰店')."""
    if len(event.sessions) == 1:
        return "单场"
    index = event.sessions.index(es) + 1
    return f"第{index}场" if es.id.isdigit() else f"第{index}场·{es.place}"


def event_values(rules: Rules, event: Event) -> dict[str, Any]:
    """An event's texts for messages: title, form, where, sign-up window."""
    first = min(event.sessions, key=lambda s: s.starts)
    return {"event_id": event.id, "title": event.title, "form": event.form, "where": event.where,
            "signup_opens": rules.local_time(rules.local_instant(event.signup_opens)),
            "signup_closes": rules.local_time(rules.local_instant(event.signup_closes)),
            "cancel_until": rules.local_time(rules.local_instant(event.cancel_until)),
            "first_starts": rules.local_time(rules.local_instant(first.starts)),
            "guests_allowed": event.guests_allowed}


def session_values(rules: Rules, event: Event, es: EventSession) -> dict[str, Any]:
    return {"session_label": session_label(event, es), "place": es.place, "capacity": es.capacity,
            "starts": rules.local_time(rules.local_instant(es.starts)),
            "ends": rules.local_instant(es.ends).astimezone(rules.zone).strftime("%H:%M")}


# --------------------------------------------------------------------------- who may sign up, and when


def refusal_to_join(rules: Rules, event: Event, member: Any, now: datetime) -> EventRefused | None:
    """Why ``member`` may not sign up for ``event`` now (None: they may). Checks the rules only."""
    values = event_values(rules, event)
    if event.cancelled:
        return EventRefused("join_cancelled", **values)
    if member.tier not in event.tiers or (event.segments and member.segment not in event.segments):
        names = "、".join(rules.tier(t).name for t in event.tiers)
        return EventRefused("join_not_for_tier", tier_names=names, tier_name=rules.tier(member.tier).name, **values)
    if now < rules.local_instant(event.signup_opens):
        return EventRefused("join_not_open", **values)
    if now >= rules.local_instant(event.signup_closes):
        return EventRefused("join_closed", **values)
    return None


def open_sessions(rules: Rules, event: Event, now: datetime) -> list[EventSession]:
    """The sessions one can still sign up for: not cancelled, not started."""
    return [s for s in event.sessions if not s.cancelled and rules.local_instant(s.starts) > now]


def events_for(rules: Rules, member: Any, now: datetime) -> list[Event]:
    """Events this member could sign up for now, soonest first."""
    found = [e for e in rules.events.catalogue
             if refusal_to_join(rules, e, member, now) is None and open_sessions(rules, e, now)]
    return sorted(found, key=lambda e: min(s.starts for s in e.sessions))


# --------------------------------------------------------------------------- seats


def _insert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_session_row(session: Session, rules: Rules, event: Event, es: EventSession, now: datetime) -> EventSessionRow:
    """The session's seat row, created if needed, locked until the transaction ends."""
    session.execute(
        _insert(session)(EventSessionRow).values(
            event_id=event.id, session_key=es.id, title=event.title, starts_at=rules.local_instant(es.starts),
            ends_at=rules.local_instant(es.ends), place=es.place, capacity=es.capacity, seats_taken=0,
            created_at=now)
        .on_conflict_do_nothing(index_elements=["event_id", "session_key"])
    )
    return _locked_row(session, and_(EventSessionRow.event_id == event.id, EventSessionRow.session_key == es.id))


def _locked_row(session: Session, where) -> EventSessionRow:
    query = select(EventSessionRow).where(where).execution_options(populate_existing=True)
    if _is_postgresql(session):
        query = query.with_for_update()  # SQLite: the write transaction already holds the lock
    return session.scalars(query).one()


def _take_seats(session: Session, row: EventSessionRow, seats: int, capacity: int) -> bool:
    """Take ``seats`` if they fit under ``capacity`` (the rules' current one); True if taken."""
    taken = session.execute(
        update(EventSessionRow)
        .where(EventSessionRow.id == row.id, EventSessionRow.seats_taken + seats <= capacity)
        .values(seats_taken=EventSessionRow.seats_taken + seats, capacity=capacity)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken:
        session.refresh(row)
    return bool(taken)


def _free_seats(session: Session, row: EventSessionRow, seats: int) -> None:
    freed = session.execute(
        update(EventSessionRow)
        .where(EventSessionRow.id == row.id, EventSessionRow.seats_taken >= seats)
        .values(seats_taken=EventSessionRow.seats_taken - seats)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not freed:
        raise RuntimeError(f"session row {row.id} holds fewer than {seats} seats: seat count broken")
    session.refresh(row)


def _priority(rules: Rules, tier: str) -> int:
    """Waitlist priority: 0 for everyone (arrival order), or higher tiers first when configured."""
    if rules.events.waitlist_order != "tier":
        return 0
    ids = [t.id for t in rules.tiers]
    return len(ids) - 1 - ids.index(tier)


def live_signup(session: Session, member_id: int, event_id: str) -> EventSignup | None:
    return session.scalar(select(EventSignup).where(
        EventSignup.member_id == member_id, EventSignup.live_event == event_id))


def waitlist_place(session: Session, signup: EventSignup) -> int:
    """1 for the first on the session's waitlist."""
    ahead = session.scalar(select(func.count()).select_from(EventSignup).where(
        EventSignup.session_id == signup.session_id, EventSignup.status == "waitlisted",
        or_(EventSignup.priority < signup.priority,
            and_(EventSignup.priority == signup.priority, EventSignup.id < signup.id))))
    return int(ahead or 0) + 1


@dataclass
class SignUp:
    signup: EventSignup
    booked: bool
    place: int | None  # on the waitlist
    promoted: list[EventSignup] = field(default_factory=list)  # others promoted first (capacity raised)


def already_signed_up(session: Session, rules: Rules, signup: EventSignup) -> EventRefused:
    """The refusal for a member who has a live sign-up for the event."""
    event = rules.events.event(signup.event_id)
    row = session.get(EventSessionRow, signup.session_id)
    values = {"event_id": signup.event_id, "title": row.title, "code": signup.code,
              "starts": rules.local_time(row.starts_at), "session_label": row.session_key}
    if event is not None and (es := event.session(row.session_key)) is not None:
        values |= session_values(rules, event, es)
    if signup.status == "waitlisted":
        return EventRefused("join_already_waiting", position=waitlist_place(session, signup), **values)
    return EventRefused("join_already", **values)


def sign_up(session: Session, rules: Rules, event: Event, session_id: str, member: Any, guests: int,
            now: datetime) -> SignUp:
    """Book ``member`` and ``guests`` into the session, or put them on its waitlist when it is full.

    Refused (``EventRefused``, nothing written): cancelled, not for the member's tier, not open or
    closed, a session that is cancelled or has started, more guests than allowed, a party larger
    than the session, or a live sign-up for the event already.
    """
    refused = refusal_to_join(rules, event, member, now)
    if refused is not None:
        raise refused
    values = event_values(rules, event)
    es = event.session(session_id)
    if es is None or es not in open_sessions(rules, event, now):
        raise EventRefused("join_closed" if es is not None and not es.cancelled else "join_cancelled", **values)
    if not 0 <= guests <= event.guests_allowed:
        raise EventRefused("join_bad_guests", **values)
    party = guests + 1
    if party > es.capacity:
        raise EventRefused("join_party_too_big", party=party, **values, **session_values(rules, event, es))
    row = lock_session_row(session, rules, event, es, now)
    existing = live_signup(session, member.id, event.id)
    if existing is not None:
        raise already_signed_up(session, rules, existing)
    promoted = promote_waitlist(session, rules, row, now)  # seats a raised capacity freed go to those waiting
    booked = _take_seats(session, row, party, es.capacity)
    signup = EventSignup(session_id=row.id, event_id=event.id, member_id=member.id, guests=guests, party=party,
                         status="booked" if booked else "waitlisted", live_event=event.id,
                         priority=_priority(rules, member.tier), code=new_code(BOOKING_CODE_LENGTH), created_at=now,
                         booked_at=now if booked else None)
    session.add(signup)
    session.flush()
    return SignUp(signup, booked, None if booked else waitlist_place(session, signup), promoted)


def promote_waitlist(session: Session, rules: Rules, row: EventSessionRow, now: datetime) -> list[EventSignup]:
    """Give free seats of a locked session row to the waitlist, in order: the first whose party fits,
    again while any fits. Each promoted member is told by push, once (outbox key promo:<id>)."""
    event = rules.events.event(row.event_id)
    es = event.session(row.session_key) if event is not None else None
    if es is None or event.cancelled or es.cancelled or rules.local_instant(es.starts) <= now:
        return []  # a removed, cancelled or started session promotes nobody
    promoted = []
    while True:
        free = es.capacity - row.seats_taken
        if free <= 0:
            break
        nxt = session.scalar(
            select(EventSignup)
            .where(EventSignup.session_id == row.id, EventSignup.status == "waitlisted", EventSignup.party <= free)
            .order_by(EventSignup.priority, EventSignup.id).limit(1)
        )
        if nxt is None or not _take_seats(session, row, nxt.party, es.capacity):
            break
        moved = session.execute(
            update(EventSignup).where(EventSignup.id == nxt.id, EventSignup.status == "waitlisted")
            .values(status="booked", booked_at=now, promoted_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not moved:  # cannot happen under the row lock; never leave seats taken for nobody
            raise RuntimeError(f"waitlist entry {nxt.id} changed under the session lock")
        session.refresh(nxt)
        outbox.enqueue_member_push(
            session, PROMOTION_JOB, f"promo:{nxt.id}", nxt.member_id, rules.events.pushes.promoted,
            extra=outbox.extra_json(**event_values(rules, event), **session_values(rules, event, es),
                                    code=nxt.code, party=nxt.party),
            now=now, marketing=False)
        promoted.append(nxt)
    return promoted


@dataclass
class Leaving:
    signup: EventSignup
    row: EventSessionRow
    was_booked: bool
    promoted: list[EventSignup]


def cancel_signup(session: Session, rules: Rules, event_id: str, member_id: int, now: datetime) -> Leaving:
    """The member's live sign-up for the event ends: a booking frees its seats before the event's
    cancellation deadline and the waitlist is promoted in this transaction; a waitlist place is
    withdrawn at any time. Refused: nothing live (``leave_not_signed_up``), past the deadline."""
    signup = live_signup(session, member_id, event_id.strip()) or _live_by_case(session, member_id, event_id)
    if signup is None:
        raise EventRefused("leave_not_signed_up", event_id=echoed(event_id))
    row = _locked_row(session, EventSessionRow.id == signup.session_id)
    session.refresh(signup)  # as it is now that the session is ours: a retry may have ended it meanwhile
    if signup.status not in LIVE:
        raise EventRefused("leave_not_signed_up", event_id=echoed(event_id))
    event = rules.events.event(signup.event_id)
    values = {"event_id": signup.event_id, "title": row.title, "session_label": row.session_key}
    if event is not None:
        values |= event_values(rules, event)
        if (es := event.session(row.session_key)) is not None:
            values |= session_values(rules, event, es)
    was_booked = signup.status == "booked"
    if was_booked and event is not None and now >= rules.local_instant(event.cancel_until):
        raise EventRefused("leave_too_late", **values)
    if was_booked and row.starts_at <= now:
        raise EventRefused("leave_too_late", **({"cancel_until": rules.local_time(row.starts_at)} | values))
    ended = session.execute(
        update(EventSignup).where(EventSignup.id == signup.id, EventSignup.status == signup.status)
        .values(status="cancelled" if was_booked else "withdrawn", live_event=None, ended_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not ended:
        raise EventRefused("leave_not_signed_up", event_id=echoed(event_id))
    session.refresh(signup)
    promoted: list[EventSignup] = []
    if was_booked:
        _free_seats(session, row, signup.party)
        promoted = promote_waitlist(session, rules, row, now)
    return Leaving(signup, row, was_booked, promoted)


def _live_by_case(session: Session, member_id: int, typed: str) -> EventSignup | None:
    """Members type ids in any case: find the live sign-up whose event id matches ignoring case."""
    return session.scalar(select(EventSignup).where(
        EventSignup.member_id == member_id, func.lower(EventSignup.live_event) == typed.strip().lower()))


# --------------------------------------------------------------------------- a member's sign-ups


@dataclass(frozen=True)
class MySignup:
    signup: EventSignup
    row: EventSessionRow
    place: int | None


def member_signups(session: Session, member_id: int) -> list[MySignup]:
    """The member's live sign-ups (bookings and waitlist places), soonest session first."""
    rows = session.execute(
        select(EventSignup, EventSessionRow).join(EventSessionRow, EventSessionRow.id == EventSignup.session_id)
        .where(EventSignup.member_id == member_id, EventSignup.status.in_(LIVE))
        .order_by(EventSessionRow.starts_at, EventSignup.id)
    ).all()
    return [MySignup(s, r, waitlist_place(session, s) if s.status == "waitlisted" else None) for s, r in rows]


def seats_by_session(session: Session, event_ids: Sequence[str]) -> dict[tuple[str, str], int]:
    """Seats taken per (event id, session id), for the sessions that have a row."""
    rows = session.execute(select(EventSessionRow.event_id, EventSessionRow.session_key, EventSessionRow.seats_taken)
                           .where(EventSessionRow.event_id.in_(list(event_ids))))
    return {(e, s): taken for e, s, taken in rows}


# --------------------------------------------------------------------------- at the door


@dataclass(frozen=True)
class CheckIn:
    status: str  # checked_in | already | not_found | not_booked
    signup: EventSignup | None = None
    member: Member | None = None
    row: EventSessionRow | None = None


def checkin_window(rules: Rules, starts: datetime, ends: datetime) -> tuple[datetime, datetime]:
    """When check-in opens and closes for a session from ``starts`` to ``ends``: ``events.checkin_*`` hours
    around it, but within the session's day in the rules' time zone (attendance counts where the check-in is)."""
    cfg = rules.events
    day_starts = rules.local_midnight(rules.today(starts))
    day_ends = rules.local_midnight(rules.today(ends) + timedelta(days=1))
    return (max(starts - timedelta(hours=cfg.checkin_opens_hours_before), day_starts),
            min(ends + timedelta(hours=cfg.checkin_closes_hours_after), day_ends))


def check_in(session: Session, rules: Rules, event: Event, code_or_card: str, by: str, now: datetime) -> CheckIn:
    """Mark a booking attended, once; by booking code or by the member's card number.

    Refused (``EventRefused``: ``checkin_not_open`` or ``checkin_closed``, naming when, nothing written)
    outside its session's ``checkin_window``; a booking checked in already says when, at any time.
    """
    wanted = code_or_card.strip()
    found = session.execute(
        select(EventSignup, Member).join(Member, Member.id == EventSignup.member_id)
        .where(EventSignup.event_id == event.id, or_(EventSignup.code == normalise_code(wanted), Member.card_no == wanted))
        .order_by(case((EventSignup.status == "booked", 0), (EventSignup.status == "waitlisted", 1), else_=2),
                  EventSignup.id.desc())
        .limit(1)
    ).first()
    if found is None:
        return CheckIn("not_found")
    signup, member = found
    row = session.get(EventSessionRow, signup.session_id)
    if signup.status != "booked":
        return CheckIn("not_booked", signup, member, row)
    if signup.checked_in_at is not None:
        return CheckIn("already", signup, member, row)
    es = event.session(row.session_key)  # the file's times (a move not yet applied), else the row's
    starts, ends = ((rules.local_instant(es.starts), rules.local_instant(es.ends)) if es is not None
                    else (row.starts_at, row.ends_at))
    opens, closes = checkin_window(rules, starts, ends)
    if not opens <= now < closes:
        values = {"event_id": event.id, "title": row.title, "session_label": row.session_key,
                  "starts": rules.local_time(starts), "opens": rules.local_time(opens),
                  "closes": rules.local_time(closes), "card_no": member.card_no, "name": member.name,
                  "code": signup.code, "party": signup.party}
        if es is not None:
            values["session_label"] = session_label(event, es)
        raise EventRefused("checkin_not_open" if now < opens else "checkin_closed", **values)
    marked = session.execute(
        update(EventSignup).where(EventSignup.id == signup.id, EventSignup.status == "booked",
                                  EventSignup.checked_in_at.is_(None))
        .values(checked_in_at=now, checked_in_by=by)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(signup)
    return CheckIn("checked_in" if marked else "already", signup, member, row)


# --------------------------------------------------------------------------- operators


@dataclass(frozen=True)
class RosterLine:
    session_key: str
    signup: EventSignup
    member: Member
    place: int | None


def roster(session: Session, event_id: str) -> list[RosterLine]:
    """Every sign-up of the event with its member, by session, bookings first, waitlist in order."""
    rows = session.execute(
        select(EventSessionRow.session_key, EventSignup, Member)
        .join(EventSignup, EventSignup.session_id == EventSessionRow.id)
        .join(Member, Member.id == EventSignup.member_id)
        .where(EventSessionRow.event_id == event_id)
        .order_by(EventSessionRow.starts_at, EventSessionRow.session_key,
                  case((EventSignup.status == "booked", 0), (EventSignup.status == "waitlisted", 1), else_=2),
                  EventSignup.priority, EventSignup.id)
    ).all()
    places: dict[str, int] = {}
    lines = []
    for key, signup, member in rows:
        place = None
        if signup.status == "waitlisted":
            places[key] = place = places.get(key, 0) + 1
        lines.append(RosterLine(key, signup, member, place))
    return lines


@dataclass
class SessionFigures:
    session_key: str
    capacity: int
    seats_taken: int = 0
    bookings: int = 0
    waitlisted: int = 0  # sign-ups
    waiting_seats: int = 0
    attended: int = 0  # bookings checked in
    attended_seats: int = 0  # people: members and their guests
    no_shows: int = 0  # bookings not checked in, once the session has ended
    cancelled: int = 0
    started: bool = False
    ended: bool = False

    @property
    def fill_rate(self) -> float:
        return self.seats_taken / self.capacity if self.capacity else 0.0

    @property
    def no_show_rate(self) -> float | None:
        return self.no_shows / self.bookings if self.ended and self.bookings else None


def event_figures(session: Session, rules: Rules, event: Event, now: datetime,
                  members: Select | None = None) -> list[SessionFigures]:
    """Per session of the event (as in config.yaml): seats, bookings, waitlist, attendance, no-shows.

    With ``members`` (a select of member ids: a manager's key accounts) only their sign-ups count;
    the seats taken stay the session's.
    """
    joined = EventSignup.session_id == EventSessionRow.id
    if members is not None:
        joined = and_(joined, EventSignup.member_id.in_(members))
    figures = {es.id: SessionFigures(es.id, es.capacity, started=rules.local_instant(es.starts) <= now,
                                     ended=rules.local_instant(es.ends) <= now) for es in event.sessions}
    rows = session.execute(
        select(EventSessionRow.session_key, EventSessionRow.seats_taken, EventSignup.status, EventSignup.party,
               EventSignup.checked_in_at.is_not(None))
        .join(EventSignup, joined, isouter=True)
        .where(EventSessionRow.event_id == event.id)
    ).all()
    for key, taken, status, party, attended in rows:
        fig = figures.get(key)
        if fig is None:
            continue
        fig.seats_taken = taken
        if status == "booked":
            fig.bookings += 1
            if attended:
                fig.attended += 1
                fig.attended_seats += party
            elif fig.ended:
                fig.no_shows += 1
        elif status == "waitlisted":
            fig.waitlisted += 1
            fig.waiting_seats += party
        elif status in ("cancelled", "withdrawn"):
            fig.cancelled += 1
    return list(figures.values())


def removed_with_signups(session: Session, rules: Rules) -> list[tuple[str, str, int]]:
    """Sessions with live sign-ups that ``rules`` no longer have (event or session removed):
    (event id, session id, live sign-ups). They must be marked ``cancelled: true`` instead."""
    rows = session.execute(
        select(EventSessionRow.event_id, EventSessionRow.session_key, func.count(EventSignup.id))
        .join(EventSignup, EventSignup.session_id == EventSessionRow.id)
        .where(EventSignup.status.in_(LIVE))
        .group_by(EventSessionRow.event_id, EventSessionRow.session_key)
        .order_by(EventSessionRow.event_id, EventSessionRow.session_key)
    ).all()
    missing = []
    for event_id, key, count in rows:
        event = next((e for e in rules.events.catalogue if e.id == event_id), None)
        if event is None or event.session(key) is None:
            missing.append((event_id, key, count))
    return missing


# --------------------------------------------------------------------------- scheduled pushes


def _extra_with_signup(constants: dict[str, Any]):
    """The outbox ``extra`` JSON of a push about a sign-up: ``constants`` plus its code and party (SQL)."""
    head = json.dumps(constants, ensure_ascii=False, default=str)[:-1]
    return (literal(head + ', "code": "', SqlString) + EventSignup.code + literal('", "party": ', SqlString)
            + cast(EventSignup.party, SqlString) + literal("}", SqlString))


def _signups_of(row_id: int, statuses: Sequence[str]):
    return and_(Member.id == EventSignup.member_id, EventSignup.session_id == row_id, EventSignup.status.in_(statuses))


def invitation_audiences(rules: Rules, now: datetime) -> list[outbox.Audience]:
    """Target tiers (and segments) of every event whose sign-up is open now: invited once per event."""
    audiences = []
    for event in rules.events.catalogue:
        opens, closes = rules.local_instant(event.signup_opens), rules.local_instant(event.signup_closes)
        if event.cancelled or not opens <= now < closes:
            continue
        where = Member.tier.in_(event.tiers)
        if event.segments:
            where = and_(where, Member.segment.in_(event.segments))
        audiences.append(outbox.member_audience(
            "event_invitations", f"inv:{event.id}", where, rules.events.pushes.invitation,
            extra=outbox.extra_json(**event_values(rules, event))))
    return audiences


def reminder_audiences(session: Session, rules: Rules, now: datetime) -> list[outbox.Audience]:
    """Booked members of sessions starting on the day ``events.reminder_days_before`` from today."""
    day = rules.today(now) + timedelta(days=rules.events.reminder_days_before)
    start, end = rules.local_midnight(day), rules.local_midnight(day + timedelta(days=1))
    audiences = []
    rows = select(EventSessionRow).where(EventSessionRow.starts_at >= start, EventSessionRow.starts_at < end,
                                         EventSessionRow.cancelled_at.is_(None))
    for row in session.scalars(rows):
        event = rules.events.event(row.event_id)
        es = event.session(row.session_key) if event is not None else None
        if es is None or es.cancelled or event.cancelled:
            continue
        constants = event_values(rules, event) | session_values(rules, event, es)
        audiences.append(outbox.member_audience(
            "event_reminders", f"rem:{row.id}", _signups_of(row.id, ["booked"]), rules.events.pushes.reminder,
            extra_sql=_extra_with_signup(constants), marketing=False))
    return audiences


@dataclass
class Changes:
    audiences: list[outbox.Audience] = field(default_factory=list)
    cancelled_rows: list[int] = field(default_factory=list)
    moved_rows: dict[int, tuple[datetime, datetime, str]] = field(default_factory=dict)


def change_audiences(session: Session, rules: Rules, now: datetime) -> Changes:
    """Cancelled sessions (or events) not yet called off, and sessions moved in config.yaml: who is told what."""
    changes = Changes()
    for row in session.scalars(select(EventSessionRow).where(EventSessionRow.cancelled_at.is_(None))
                               .order_by(EventSessionRow.id)):
        event = rules.events.event(row.event_id)
        es = event.session(row.session_key) if event is not None else None
        if es is None:
            continue  # removed from the file: `rules check` refuses that while sign-ups are live
        constants = event_values(rules, event) | session_values(rules, event, es)
        if event.cancelled or es.cancelled:
            constants["starts"] = rules.local_time(row.starts_at)  # as members were told
            changes.audiences.append(outbox.member_audience(
                "event_changes", f"cx:{row.id}", _signups_of(row.id, LIVE), rules.events.pushes.cancelled,
                extra_sql=_extra_with_signup(constants), marketing=False))
            changes.cancelled_rows.append(row.id)
            continue
        starts, ends = rules.local_instant(es.starts), rules.local_instant(es.ends)
        if (starts, ends, es.place) != (row.starts_at, row.ends_at, row.place) and starts > now:
            version = hashlib.sha1(f"{starts.isoformat()}|{ends.isoformat()}|{es.place}".encode()).hexdigest()[:10]
            changes.audiences.append(outbox.member_audience(
                "event_changes", f"mv:{row.id}:{version}", _signups_of(row.id, ["booked"]), rules.events.pushes.moved,
                extra_sql=_extra_with_signup(constants), marketing=False))
            changes.moved_rows[row.id] = (starts, ends, es.place)
    return changes


def promote_everywhere(session: Session, rules: Rules, now: datetime) -> int:
    """Promote the waitlists of sessions with free seats (a capacity raised in config.yaml); returns how many."""
    waiting = select(EventSignup.session_id).where(EventSignup.status == "waitlisted").distinct()
    promoted = 0
    for row_id in session.scalars(waiting).all():
        promoted += len(promote_waitlist(session, rules, _locked_row(session, EventSessionRow.id == row_id), now))
    return promoted


def apply_changes(session: Session, changes: Changes, now: datetime) -> dict[str, int]:
    """After the notices are planned: call off the sign-ups of cancelled sessions, note moves, and expire
    the waitlists of sessions that have started. Every waitlist entry ends in one final state."""
    called_off = expired = 0
    for row_id in changes.cancelled_rows:
        called_off += session.execute(
            update(EventSignup).where(EventSignup.session_id == row_id, EventSignup.status == "booked")
            .values(status="called_off", live_event=None, ended_at=now).execution_options(synchronize_session=False)
        ).rowcount
        expired += session.execute(
            update(EventSignup).where(EventSignup.session_id == row_id, EventSignup.status == "waitlisted")
            .values(status="expired", live_event=None, ended_at=now).execution_options(synchronize_session=False)
        ).rowcount
        session.execute(update(EventSessionRow).where(EventSessionRow.id == row_id)
                        .values(seats_taken=0, cancelled_at=now).execution_options(synchronize_session=False))
    for row_id, (starts, ends, place) in changes.moved_rows.items():
        session.execute(update(EventSessionRow).where(EventSessionRow.id == row_id)
                        .values(starts_at=starts, ends_at=ends, place=place)
                        .execution_options(synchronize_session=False))
    started = select(EventSessionRow.id).where(EventSessionRow.starts_at <= now)
    expired += session.execute(
        update(EventSignup).where(EventSignup.status == "waitlisted", EventSignup.session_id.in_(started))
        .values(status="expired", live_event=None, ended_at=now).execution_options(synchronize_session=False)
    ).rowcount
    return {"sign-ups called off": called_off, "waitlist places expired": expired,
            "sessions moved": len(changes.moved_rows)}
