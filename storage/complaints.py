"""Complaints as tickets (DOMAIN.md: Complaints): open, route, reply, transfer, resolve, rate, call back.

Every operation takes a session and does not commit. Every action on a ticket is a row in
``ticket_events`` (who, what, when): the thread the member and staff see, the audit trail, and
the source the due times are computed from (``due_times``), so a pause or a reopening recomputes
them. Alerts and notices go through the outbox, each planned once per (job, occasion, recipient).
"""
from __future__ import annotations

import enum
import hashlib
import logging
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rules import BotError, Rules
from rules.complaints import HIGH, ComplaintRules
from storage import outbox
from storage.models import CallBack, Member, OutboxMessage, Purchase, Staff, Ticket, TicketEvent

log = logging.getLogger(__name__)

OPEN_STATES = ("open", "waiting")
SEE_ALL = ("supervisor", "admin")  # roles that see every ticket and account (seed 002 五.1)
MEMBER_VISIBLE = ("opened", "note", "replied", "waiting", "resolved", "reopened")  # the member's thread


class TicketError(BotError):
    """An operation refused: ``message`` names the chat text that says why."""

    def __init__(self, message: str, **values: Any):
        super().__init__(message)
        self.message, self.values = message, values


def local_text(rules: Rules, moment: datetime | None) -> str:
    """'11-23 14:30' in the rules' zone (short: template fields hold 20 characters)."""
    return "" if moment is None else moment.astimezone(rules.zone).strftime("%m-%d %H:%M")


def excerpt(text: str, chars: int) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= chars else one_line[:chars] + "…"


# --------------------------------------------------------------------------- due times from the event log


@dataclass(frozen=True)
class DueTimes:
    response: datetime | None  # None: answered in this period (or resolved)
    resolution: datetime | None  # None: paused (waiting for the member)
    period_start: datetime


def due_times(events: list[tuple[str, datetime]], opened_at: datetime, priority: str,
              rules: ComplaintRules, zone) -> DueTimes:
    """The deadlines a ticket's events give: each period starts at opening or reopening; the first
    reply (or a wait) meets the response deadline; time waiting for the member is added to the
    resolution deadline, in SLA time (calendar, or business hours when configured)."""
    sla = rules.sla[priority]
    start, responded, resolved = opened_at, False, False
    paused_since: datetime | None = None
    paused = timedelta(0)
    for kind, at in events:
        if kind == "reopened":
            start, responded, resolved, paused_since, paused = at, False, False, None, timedelta(0)
        elif kind in ("replied", "note") and paused_since is not None:
            paused += rules.elapsed(paused_since, at, zone)
            paused_since = None
        if kind in ("replied", "waiting"):
            responded = True
        if kind == "waiting" and paused_since is None:
            paused_since = at
        elif kind == "resolved":
            resolved, paused_since = True, None
    response = None if responded or resolved else rules.add_hours(start, sla.first_response_hours, zone)
    resolution = None if paused_since is not None else rules.add_hours(
        start, sla.resolution_hours + paused.total_seconds() / 3600, zone)
    return DueTimes(response, resolution, start)


def recompute(session: Session, rules: Rules, ticket: Ticket) -> DueTimes:
    """Store the due times the ticket's own events give (they survive restarts)."""
    session.flush()
    events = session.execute(select(TicketEvent.kind, TicketEvent.at).where(TicketEvent.ticket_id == ticket.id)
                             .order_by(TicketEvent.id)).all()
    due = due_times([tuple(e) for e in events], ticket.opened_at, ticket.priority, rules.complaints, rules.zone)
    ticket.response_due_at, ticket.resolution_due_at = due.response, due.resolution
    return due


def member_actor(member_id: int) -> str:
    """How a ticket event names the member who acted (``ticket_events.actor``)."""
    return f"member:{member_id}"


def add_event(session: Session, ticket: Ticket, kind: str, actor: str, now: datetime, body: str | None = None,
              delivery: str | None = None) -> TicketEvent:
    event = TicketEvent(ticket_id=ticket.id, kind=kind, actor=actor, body=body, delivery=delivery, at=now)
    session.add(event)
    session.flush()
    return event


# --------------------------------------------------------------------------- opening and routing


def _next_number(session: Session, rules: Rules, now: datetime) -> str:
    day = rules.today(now)
    prefix = f"T{day:%Y%m%d}-"
    last = session.scalar(select(func.max(Ticket.number)).where(Ticket.number.like(prefix + "%")))
    return f"{prefix}{(int(last[len(prefix):]) + 1) if last else 1:04d}"


SUPERVISING = ("supervisor", "admin")  # in this order: admins only where there is no supervisor


def supervisors(session: Session) -> list[str]:
    """Who gets breaches, low ratings and repeated complaints: supervisors, else admins."""
    for role in SUPERVISING:
        found = list(session.scalars(select(Staff.id).where(Staff.role == role).order_by(Staff.id)))
        if found:
            return found
    return []


def reachable(session: Session, staff_id: str | None) -> bool:
    """Whether alerts can reach this staff member: they exist and their WeChat is bound (员工绑定)."""
    return staff_id is not None and session.scalar(select(Staff.openid).where(Staff.id == staff_id)) is not None


def _in_turn(session: Session, role: str, work: type[Ticket] | type[CallBack]) -> str | None:
    """Round-robin among the bound staff of ``role``: the one whose latest assignment of ``work`` (tickets,
    or call-back tasks) is oldest."""
    query = select(Staff.id).where(Staff.role == role, Staff.openid.is_not(None)).order_by(Staff.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()  # two tickets at once take turns (SQLite: the write lock)
    desk = list(session.scalars(query))
    if not desk:
        return None
    owner = Ticket.assignee_id if work is Ticket else CallBack.staff_id
    latest = dict(session.execute(select(owner, func.max(work.id)).where(owner.in_(desk)).group_by(owner)).all())
    return min(desk, key=lambda staff_id: (latest.get(staff_id, 0), staff_id))


def service_desk_next(session: Session, work: type[Ticket] | type[CallBack] = Ticket) -> str | None:
    """The service desk's next in turn: bound staff with role ``service``."""
    return _in_turn(session, "service", work)


@dataclass(frozen=True)
class Routed:
    assignee: str | None  # None: nobody with a bound WeChat to give it to
    unreachable_manager: str | None = None  # the key account's manager, passed over: no WeChat to alert


def choose_assignee(session: Session, rules: Rules, member: Member) -> Routed:
    """Key accounts (high priority) go to their account manager first, if alerts reach the manager; everyone
    else, and a key account whose manager has no bound WeChat yet, to a reachable person: the service desk
    in turn, then the supervisors (else the admins) in turn."""
    passed_over = None
    if rules.complaints.priority_of(member.tier) == HIGH and member.manager_id:
        if reachable(session, member.manager_id):
            return Routed(member.manager_id)
        passed_over = member.manager_id
    assignee = service_desk_next(session)
    for role in SUPERVISING:
        assignee = assignee or _in_turn(session, role, Ticket)
    return Routed(assignee, passed_over)


def who_answers(session: Session, ticket: Ticket, member: Member) -> str:
    """Who the member is told will answer: 'manager' (their own), 'supervisor', or 'desk'."""
    if ticket.assignee_id is not None and ticket.assignee_id == member.manager_id:
        return "manager"
    role = session.scalar(select(Staff.role).where(Staff.id == ticket.assignee_id)) if ticket.assignee_id else None
    return "supervisor" if role in SUPERVISING else "desk"


def _alert_extra(rules: Rules, ticket: Ticket, **more: Any) -> str:
    """What a ticket's alerts say besides the member: its first words and its due times."""
    sla = rules.complaints.sla[ticket.priority]
    due = [d for d in (ticket.response_due_at, ticket.resolution_due_at) if d is not None]
    return outbox.extra_json(ticket_no=ticket.number, category=ticket.category, priority_name=sla.name,
                             excerpt=excerpt(ticket.description, rules.complaints.excerpt_chars),
                             response_due=local_text(rules, ticket.response_due_at),
                             resolution_due=local_text(rules, ticket.resolution_due_at),
                             next_due=local_text(rules, min(due)) if due else "", **more)


def alert_staff(session: Session, rules: Rules, now: datetime, ticket: Ticket, job: str, occasion: str,
                staff_id: str | None, message: str, at_once: bool = True, **more: Any) -> bool:
    """Alert one staff member about ``ticket``, once per (job, occasion); sent the moment the transaction
    commits (``at_once``; the watcher's alerts go with the drain that follows it)."""
    if staff_id is None:
        return False
    return outbox.enqueue_staff_push(session, job, occasion, staff_id, message, now=now, member_id=ticket.member_id,
                                     extra=_alert_extra(rules, ticket, **more), at_once=at_once)


def _alert_manager_unreachable(session: Session, rules: Rules, now: datetime, ticket: Ticket, member: Member,
                               manager_id: str) -> None:
    """Tell the supervisors that a key account's manager has no bound WeChat, so the ticket went to someone
    else: once per manager and day (the outbox key), naming the first such ticket of the day."""
    manager = session.get(Staff, manager_id)
    assignee = session.get(Staff, ticket.assignee_id) if ticket.assignee_id else None
    occasion = f"{rules.today(now):%Y%m%d}:{manager_id}"
    if len(occasion) > 32:  # the outbox's occasion column: a very long staff id goes by its digest
        occasion = occasion[:9] + hashlib.sha1(manager_id.encode()).hexdigest()[:23]
    extra = _alert_extra(rules, ticket, manager_id=manager_id, manager_name=manager.name if manager else manager_id,
                         assignee_name=assignee.name if assignee else "—", name=member.name,
                         tier_name=rules.tier(member.tier).name)
    for sup in supervisors(session):
        outbox.enqueue_staff_push(session, "manager_unreachable", occasion, sup, rules.complaints.pushes.manager_unreachable,
                                  now=now, extra=extra, at_once=True)


@dataclass
class Opened:
    ticket: Ticket
    created: bool  # False: this request had opened it already (a retry)


def open_ticket(session: Session, rules: Rules, now: datetime, member: Member, category: str, description: str,
                request_key: str | None, media: list[str] = (), kind: str = "complaint") -> Opened:
    """Open a ticket for ``member``, route it and alert the assignee at once; once per ``request_key``."""
    if request_key:
        existing = session.scalar(select(Ticket).where(Ticket.request_key == request_key))
        if existing is not None:
            return Opened(existing, False)
    cfg = rules.complaints
    priority = cfg.priority_of(member.tier)
    routed = choose_assignee(session, rules, member)
    assignee = routed.assignee
    for _ in range(5):  # two tickets the same second on PostgreSQL may take one number: the loser retries
        try:
            with session.begin_nested():
                ticket = Ticket(number=_next_number(session, rules, now), member_id=member.id, kind=kind,
                                category=category, priority=priority, status="open", assignee_id=assignee,
                                description=description[:cfg.description_max], request_key=request_key,
                                opened_at=now, period=0, breached=False, repeated=False)
                session.add(ticket)
                session.flush()
            break
        except IntegrityError:
            if request_key:
                existing = session.scalar(select(Ticket).where(Ticket.request_key == request_key))
                if existing is not None:
                    return Opened(existing, False)
    else:
        raise TicketError("busy")
    actor = member_actor(member.id)
    add_event(session, ticket, "opened", actor, now, ticket.description)
    for item in media:
        add_event(session, ticket, "media", actor, now, item)
    add_event(session, ticket, "assigned", "system", now, assignee or "-")
    recompute(session, rules, ticket)
    if assignee is None:
        log.warning("ticket %s: nobody with a bound WeChat to give it to; supervisors alerted", ticket.number)
        for sup in supervisors(session):
            alert_staff(session, rules, now, ticket, "ticket_assigned", ticket.number, sup, cfg.pushes.assigned)
    else:
        alert_staff(session, rules, now, ticket, "ticket_assigned", ticket.number, assignee, cfg.pushes.assigned)
    if routed.unreachable_manager is not None:
        _alert_manager_unreachable(session, rules, now, ticket, member, routed.unreachable_manager)
    _flag_repeated(session, rules, ticket, now)
    return Opened(ticket, True)


def _flag_repeated(session: Session, rules: Rules, ticket: Ticket, now: datetime) -> None:
    """The member's third ticket in one category within 30 days is flagged and the supervisors told."""
    cfg = rules.complaints
    if ticket.kind != "complaint":
        return
    count = session.scalar(select(func.count()).select_from(Ticket).where(
        Ticket.member_id == ticket.member_id, Ticket.category == ticket.category, Ticket.kind == "complaint",
        Ticket.opened_at > now - timedelta(days=cfg.repeated_days)))
    if count >= cfg.repeated_count:
        ticket.repeated = True
        for sup in supervisors(session):
            alert_staff(session, rules, now, ticket, "ticket_repeated", ticket.number, sup, cfg.pushes.repeated,
                        count=count)


# --------------------------------------------------------------------------- the member's side


def member_tickets(session: Session, member_id: int, limit: int = 10) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(Ticket.member_id == member_id)
                                .order_by(Ticket.id.desc()).limit(limit)))


def member_ticket(session: Session, member_id: int, number: str) -> Ticket:
    ticket = session.scalar(select(Ticket).where(Ticket.number == number.strip().upper(),
                                                 Ticket.member_id == member_id))
    if ticket is None:
        raise TicketError("complaint_unknown", ticket_no=number.strip()[:20])
    return ticket


def thread(session: Session, ticket: Ticket, kinds: tuple[str, ...] | None = None) -> list[TicketEvent]:
    query = select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id)
    if kinds is not None:
        query = query.where(TicketEvent.kind.in_(kinds))
    return list(session.scalars(query))


def open_human_ticket(session: Session, member_id: int) -> Ticket | None:
    return session.scalar(select(Ticket).where(Ticket.member_id == member_id, Ticket.kind == "human",
                                               Ticket.status.in_(OPEN_STATES)).order_by(Ticket.id.desc()).limit(1))


class Added(enum.Enum):
    ADDED = "added"
    REOPENED = "reopened"


def add_note(session: Session, rules: Rules, now: datetime, member_id: int, number: str, text: str) -> tuple[Ticket, Added]:
    """The member's 补充: added to an open ticket (it ends a wait), or reopens one resolved lately."""
    ticket = _locked(session, member_ticket(session, member_id, number))
    cfg = rules.complaints
    outcome = Added.ADDED
    if ticket.status == "resolved":
        if ticket.resolved_at is None or now - ticket.resolved_at > timedelta(days=cfg.reopen_days):
            raise TicketError("complaint_closed", ticket_no=ticket.number)
        ticket.status, ticket.period, ticket.resolved_at = "open", ticket.period + 1, None
        add_event(session, ticket, "reopened", member_actor(member_id), now, text)
        outcome = Added.REOPENED
    else:
        ticket.status = "open"
        add_event(session, ticket, "note", member_actor(member_id), now, text)
    recompute(session, rules, ticket)
    event_count = session.scalar(select(func.count()).select_from(TicketEvent).where(TicketEvent.ticket_id == ticket.id))
    alert_staff(session, rules, now, ticket, "ticket_note", f"{ticket.number}:{event_count}", ticket.assignee_id,
                cfg.pushes.member_note, note=excerpt(text, cfg.excerpt_chars))
    return ticket, outcome


class Rated(enum.Enum):
    THANKS = "rate_thanks"
    LOW = "rate_low"  # at most low_rating_at_most: an apology, the supervisors follow up
    ALREADY = "rate_already"
    NOT_ASKED = "rate_not_asked"


def awaiting_rating(session: Session, rules: Rules, now: datetime, member_id: int) -> Ticket | None:
    """The member's ticket asked to rate within the window and not rated yet (the latest)."""
    since = now - timedelta(hours=rules.complaints.rating_window_hours)
    return session.scalar(select(Ticket).where(Ticket.member_id == member_id, Ticket.rating.is_(None),
                                               Ticket.rating_asked_at > since, Ticket.status == "resolved")
                          .order_by(Ticket.rating_asked_at.desc()).limit(1))


def rate(session: Session, rules: Rules, now: datetime, member_id: int, ticket: Ticket, score: int,
         comment: str | None) -> Rated:
    """One rating per ticket, only while the request to rate is within its window; 1–2 alert the supervisors."""
    cfg = rules.complaints
    if ticket.rating is not None:
        return Rated.ALREADY
    since = now - timedelta(hours=cfg.rating_window_hours)
    done = session.execute(
        update(Ticket).where(Ticket.id == ticket.id, Ticket.rating.is_(None), Ticket.rating_asked_at > since,
                             Ticket.status == "resolved")
        .values(rating=score, rating_comment=comment).execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        session.refresh(ticket)
        return Rated.ALREADY if ticket.rating is not None else Rated.NOT_ASKED
    session.refresh(ticket)
    add_event(session, ticket, "rated", member_actor(member_id), now, f"{score}" + (f" {comment}" if comment else ""))
    if score > cfg.low_rating_at_most:
        return Rated.THANKS
    for sup in supervisors(session):
        alert_staff(session, rules, now, ticket, "ticket_low_rating", ticket.number, sup, cfg.pushes.low_rating,
                    rating=score, comment=excerpt(comment or "", cfg.excerpt_chars))
    return Rated.LOW


# --------------------------------------------------------------------------- the staff side


def sees_all(staff) -> bool:
    return staff.role in SEE_ALL


def _locked(session: Session, ticket: Ticket) -> Ticket:
    """Re-read the ticket under a row lock (PostgreSQL; SQLite's write lock serialises writers already)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Ticket.id).where(Ticket.id == ticket.id).with_for_update())
    session.refresh(ticket)
    return ticket


def staff_ticket(session: Session, staff, number: str, lock: bool = False) -> Ticket:
    """A ticket this staff member may see: their own, or any for a supervisor. Someone else's ticket is
    answered like an unknown number (its existence is not disclosed)."""
    wanted = number.strip().upper()
    ticket = session.scalar(select(Ticket).where(Ticket.number == wanted))
    if ticket is None or not (sees_all(staff) or ticket.assignee_id == staff.id):
        raise TicketError("staff_ticket_unknown", ticket_no=number.strip()[:20])
    return _locked(session, ticket) if lock else ticket


def staff_open_tickets(session: Session, staff) -> list[Ticket]:
    """Open tickets by the nearest due time: my own, or every one for a supervisor."""
    query = select(Ticket).where(Ticket.status.in_(OPEN_STATES))
    if not sees_all(staff):
        query = query.where(Ticket.assignee_id == staff.id)
    due = func.coalesce(Ticket.response_due_at, Ticket.resolution_due_at)
    return list(session.scalars(query.order_by(due.is_(None), due, Ticket.id).limit(30)))


@dataclass
class TicketView:
    ticket: Ticket
    member: Member
    manager: Staff | None
    purchases: list[Purchase]
    earlier: list[Ticket]
    events: list[TicketEvent]


def view_ticket(session: Session, staff, number: str, now: datetime) -> TicketView:
    """What `工单 <no>` shows; the viewing itself is recorded (who saw a customer record, and when)."""
    ticket = staff_ticket(session, staff, number)
    member = session.get(Member, ticket.member_id)
    add_event(session, ticket, "viewed", f"staff:{staff.id}", now)
    purchases = list(session.scalars(select(Purchase).where(Purchase.member_id == member.id)
                                     .order_by(Purchase.purchased_at.desc()).limit(3)))
    earlier = list(session.scalars(select(Ticket).where(Ticket.member_id == member.id, Ticket.id != ticket.id)
                                   .order_by(Ticket.id.desc()).limit(5)))
    events = thread(session, ticket, kinds=MEMBER_VISIBLE + ("media", "transferred", "rated"))
    manager = session.get(Staff, member.manager_id) if member.manager_id else None
    return TicketView(ticket, member, manager, purchases, earlier, events)


@dataclass
class Replied:
    ticket: Ticket
    event: TicketEvent
    push: OutboxMessage  # its row in the outbox (status 'skipped' with the reason when the member cannot get it)


def reply(session: Session, rules: Rules, now: datetime, staff, number: str, text: str,
          wait: bool = False) -> Replied:
    """Record a staff reply (``wait``: and pause the resolution clock until the member answers) and plan
    it for the member through the outbox (a customer-service text while their window is open, else the
    template); the caller sends it once this commits. It is the only staff text that ever reaches a member."""
    if not text.strip():
        raise TicketError("staff_wait_usage" if wait else "staff_reply_usage")
    ticket = staff_ticket(session, staff, number, lock=True)
    if ticket.status == "resolved":
        raise TicketError("staff_already_resolved", ticket_no=ticket.number)
    event = add_event(session, ticket, "replied", f"staff:{staff.id}", now, text.strip())
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    if wait:
        add_event(session, ticket, "waiting", f"staff:{staff.id}", now)
        ticket.status = "waiting"
    recompute(session, rules, ticket)
    occasion = f"{ticket.number}:{event.id}"
    outbox.enqueue_member_push(session, "ticket_reply", occasion, ticket.member_id, rules.complaints.pushes.reply,
                               now=now, marketing=False, extra=outbox.extra_json(ticket_no=ticket.number,
                                                                                 reply=event.body))
    return Replied(ticket, event, outbox.find_push(session, "ticket_reply", occasion))


def note_delivery(session: Session, event_id: int, delivery: str) -> None:
    session.execute(update(TicketEvent).where(TicketEvent.id == event_id).values(delivery=delivery[:64])
                    .execution_options(synchronize_session=False))


def transfer(session: Session, rules: Rules, now: datetime, staff, number: str, to_staff_id: str) -> Ticket:
    ticket = staff_ticket(session, staff, number, lock=True)
    target = session.get(Staff, to_staff_id.strip())
    if target is None:
        raise TicketError("staff_transfer_unknown", staff_id=to_staff_id.strip()[:32])
    if ticket.status == "resolved":
        raise TicketError("staff_already_resolved", ticket_no=ticket.number)
    if target.openid is None:  # the new assignee would never hear of it
        raise TicketError("staff_transfer_unreachable", staff_id=target.id, staff_name=target.name)
    previous = ticket.assignee_id
    ticket.assignee_id = target.id
    event = add_event(session, ticket, "transferred", f"staff:{staff.id}", now, f"{previous or '-'} -> {target.id}")
    alert_staff(session, rules, now, ticket, "ticket_transferred", f"{ticket.number}:{event.id}", target.id,
                rules.complaints.pushes.transferred, by=staff.name)
    return ticket


def resolve(session: Session, rules: Rules, now: datetime, staff, number: str, summary: str,
            window_open: bool) -> tuple[Ticket, bool]:
    """Resolve once (a second, concurrent 解决 is told it is resolved already); the member gets the summary,
    with one request to rate while their customer-service window is open; the assignee a call-back task."""
    if not summary.strip():
        raise TicketError("staff_resolve_usage")
    cfg = rules.complaints
    ticket = staff_ticket(session, staff, number, lock=True)
    done = session.execute(
        update(Ticket).where(Ticket.id == ticket.id, Ticket.status != "resolved")
        .values(status="resolved", resolved_at=now, summary=summary.strip())
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        raise TicketError("staff_already_resolved", ticket_no=ticket.number)
    session.refresh(ticket)
    add_event(session, ticket, "resolved", f"staff:{staff.id}", now, ticket.summary)
    recompute(session, rules, ticket)
    ask = window_open and ticket.rating is None and ticket.rating_asked_at is None
    if ask:
        ticket.rating_asked_at, ticket.rating_asked_period = now, ticket.period
    outbox.enqueue_member_push(session, "ticket_resolved", f"{ticket.number}:{ticket.period}", ticket.member_id,
                               cfg.pushes.resolved_rate if ask else cfg.pushes.resolved, now=now, marketing=False,
                               extra=outbox.extra_json(ticket_no=ticket.number, summary=ticket.summary), at_once=True)
    days = cfg.callback_days.get("resolved")
    if days is not None:
        create_callback(session, rules, now, f"ticket:{ticket.id}:{ticket.period}", ticket.member_id,
                        ticket.assignee_id or staff.id, "resolved", now + timedelta(days=days), ticket.id)
    return ticket, ask


@dataclass
class Client:
    member: Member
    last_purchase: datetime | None
    birthday_in: int | None  # days until the next birthday, when within 30
    open_tickets: int


def my_clients(session: Session, rules: Rules, staff, today: date, limit: int = 30) -> list[Client]:
    """My key accounts (a supervisor: every member with a manager), highest tier first."""
    query = select(Member).where(Member.manager_id.is_not(None))
    if not sees_all(staff):
        query = query.where(Member.manager_id == staff.id)
    tiers = [t.id for t in rules.tiers]
    members = sorted(session.scalars(query.limit(500)), key=lambda m: (-tiers.index(m.tier) if m.tier in tiers else 0,
                                                                        m.card_no))[:limit]
    ids = [m.id for m in members]
    last = dict(session.execute(select(Purchase.member_id, func.max(Purchase.purchased_at))
                                .where(Purchase.member_id.in_(ids)).group_by(Purchase.member_id)).all()) if ids else {}
    open_counts = dict(session.execute(select(Ticket.member_id, func.count()).where(
        Ticket.member_id.in_(ids), Ticket.status.in_(OPEN_STATES)).group_by(Ticket.member_id)).all()) if ids else {}
    return [Client(m, last.get(m.id), _days_to_birthday(m.birthday, today), open_counts.get(m.id, 0))
            for m in members]


def _days_to_birthday(birthday: date | None, today: date) -> int | None:
    if birthday is None:
        return None
    for year in (today.year, today.year + 1):
        try:
            day = birthday.replace(year=year)
        except ValueError:  # 29 February in a common year: greeted on the 28th
            day = date(year, 2, 28)
        if day >= today:
            gap = (day - today).days
            return gap if gap <= 30 else None
    return None


# --------------------------------------------------------------------------- call-backs (回访)


def create_callback(session: Session, rules: Rules, now: datetime, source: str, member_id: int,
                    staff_id: str | None, reason: str, due_at: datetime, ticket_id: int | None = None) -> bool:
    """One call-back task per source (a purchase, a ticket's resolution); its owner is alerted."""
    if session.scalar(select(CallBack.id).where(CallBack.source == source)) is not None:
        return False
    try:
        with session.begin_nested():
            callback = CallBack(source=source, member_id=member_id, staff_id=staff_id, ticket_id=ticket_id,
                                reason=reason, due_at=due_at, created_at=now)
            session.add(callback)
            session.flush()
    except IntegrityError:
        return False
    if staff_id is not None:
        outbox.enqueue_staff_push(session, "callback_new", f"cb{callback.id}", staff_id, rules.complaints.pushes.callback,
                                  now=now, member_id=member_id, at_once=True,
                                  extra=outbox.extra_json(callback_no=callback.id, due=local_text(rules, due_at),
                                                          reason=reason))
    return True


def staff_callbacks(session: Session, staff) -> list[tuple[CallBack, Member]]:
    query = select(CallBack, Member).join(Member, Member.id == CallBack.member_id).where(CallBack.done_at.is_(None))
    if not sees_all(staff):
        query = query.where(CallBack.staff_id == staff.id)
    return [tuple(row) for row in session.execute(query.order_by(CallBack.due_at, CallBack.id).limit(30))]


def close_callback(session: Session, now: datetime, staff, number: str, note: str) -> CallBack:
    text = number.strip().lstrip("#")
    if not text.isdigit() or not note.strip():
        raise TicketError("staff_callback_usage")
    callback = session.get(CallBack, int(text))
    if callback is None or not (sees_all(staff) or callback.staff_id == staff.id):
        raise TicketError("staff_callback_unknown", callback_no=text[:12])
    done = session.execute(update(CallBack).where(CallBack.id == callback.id, CallBack.done_at.is_(None))
                           .values(done_at=now, done_by=staff.id, note=note.strip())
                           .execution_options(synchronize_session=False)).rowcount
    session.refresh(callback)
    if not done:
        raise TicketError("staff_callback_unknown", callback_no=text[:12])
    return callback


def first_purchase_callback(session: Session, rules: Rules, now: datetime, member: Member,
                            purchased_at: datetime) -> bool:
    """The call-back after a key account's first purchase (seed 000), made when the purchase is recorded:
    B members' for the service desk, A members' for their account manager (config), due
    ``callback_days.first_purchase`` days after the purchase. Once per member (the unique source); a
    purchase recorded when its call-back would be overdue already (old history imported late) makes none."""
    cfg = rules.complaints
    days = cfg.callback_days.get("first_purchase")
    owner_kind = cfg.callback_first_purchase_tiers.get(member.tier)
    if days is None or owner_kind is None:
        return False
    due_at = purchased_at + timedelta(days=days)
    if due_at <= now:
        return False
    purchases = session.scalar(select(func.count()).select_from(Purchase).where(Purchase.member_id == member.id))
    if purchases != 1:  # not the first (the one being recorded is flushed already)
        return False
    owner = member.manager_id if owner_kind == "manager" else None
    owner = owner or service_desk_next(session, CallBack)
    return create_callback(session, rules, now, f"purchase:{member.id}", member.id, owner, "first_purchase", due_at)


# --------------------------------------------------------------------------- the watcher


@dataclass
class WatchReport:
    warned: int = 0
    breached: int = 0
    held_for_night: int = 0
    callbacks_overdue: int = 0
    notes: list[str] = field(default_factory=list)


def watch(session: Session, rules: Rules, now: datetime) -> WatchReport:
    """Warn assignees at 75 % of each deadline and alert supervisors at a breach (marking the ticket
    breached), each exactly once per deadline and period (the outbox key); normal-priority tickets are
    not warned at night. Overdue call-backs are warned once."""
    cfg = rules.complaints
    report = WatchReport()
    night = cfg.night is not None and cfg.night.contains(now.astimezone(rules.zone))
    sups = supervisors(session)
    tickets = session.scalars(select(Ticket).where(Ticket.status.in_(OPEN_STATES)).order_by(Ticket.id)).all()
    for ticket in tickets:
        sla = cfg.sla[ticket.priority]
        quiet = night and ticket.priority != HIGH
        for kind, due, hours in (("r", ticket.response_due_at, sla.first_response_hours),
                                 ("s", ticket.resolution_due_at, sla.resolution_hours)):
            if due is None:
                continue
            occasion = f"{ticket.number}:{kind}{ticket.period}"
            if now >= due:
                if not _breach_recorded(session, ticket, occasion):
                    ticket.breached = True
                    add_event(session, ticket, "breached", "job:ticket_watch", now, occasion)
                    report.breached += 1
                if quiet:
                    report.held_for_night += 1
                    continue
                for sup in sups:
                    alert_staff(session, rules, now, ticket, "ticket_breach", occasion, sup, cfg.pushes.breach,
                                at_once=False, deadline="首次响应" if kind == "r" else "解决", due=local_text(rules, due))
            elif cfg.elapsed(now, due, rules.zone) <= timedelta(hours=hours * (1 - cfg.warn_at_share)):
                if quiet:
                    report.held_for_night += 1
                    continue
                if alert_staff(session, rules, now, ticket, "ticket_warn", occasion, ticket.assignee_id, cfg.pushes.warning,
                               at_once=False, deadline="首次响应" if kind == "r" else "解决", due=local_text(rules, due)):
                    report.warned += 1
    overdue = session.execute(select(CallBack).where(CallBack.done_at.is_(None), CallBack.due_at <= now,
                                                     CallBack.staff_id.is_not(None))).scalars().all()
    for callback in overdue:
        if outbox.enqueue_staff_push(session, "callback_overdue", f"cb{callback.id}", callback.staff_id,
                                     cfg.pushes.callback_overdue, now=now, member_id=callback.member_id,
                                     extra=outbox.extra_json(callback_no=callback.id,
                                                             due=local_text(rules, callback.due_at))):
            report.callbacks_overdue += 1
    return report


def _breach_recorded(session: Session, ticket: Ticket, occasion: str) -> bool:
    return session.scalar(select(TicketEvent.id).where(TicketEvent.ticket_id == ticket.id,
                                                       TicketEvent.kind == "breached",
                                                       TicketEvent.body == occasion).limit(1)) is not None


# --------------------------------------------------------------------------- the report


def month_bounds(rules: Rules, month: str) -> tuple[datetime, datetime]:
    """The UTC instants a 'YYYY-MM' month starts and ends in the rules' zone."""
    try:
        year, number = (int(part) for part in month.split("-"))
        first = date(year, number, 1)
    except (ValueError, TypeError):
        raise TicketError("month", month=month) from None
    following = date(year + (number == 12), number % 12 + 1, 1)
    return rules.local_midnight(first), rules.local_midnight(following)


def _median_hours(spans: list[timedelta]) -> float | None:
    return round(statistics.median(s.total_seconds() for s in spans) / 3600, 2) if spans else None


# The columns a summary reads: the report loads these, not whole tickets (descriptions stay on disk).
SUMMARY_COLUMNS = (Ticket.id, Ticket.member_id, Ticket.priority, Ticket.category, Ticket.opened_at,
                   Ticket.first_response_at, Ticket.resolved_at, Ticket.resolution_due_at, Ticket.rating,
                   Ticket.repeated)


def tickets_between(session: Session, start: datetime, end: datetime, members: Select | None = None) -> tuple[list, list]:
    """Tickets opened in [start, end) and tickets resolved in it (of ``members`` only, a select of member ids, if
    given), as rows of ``SUMMARY_COLUMNS``."""

    def rows(column) -> list:
        query = select(*SUMMARY_COLUMNS).where(column >= start, column < end)
        if members is not None:
            query = query.where(Ticket.member_id.in_(members))
        return list(session.execute(query))

    return rows(Ticket.opened_at), rows(Ticket.resolved_at)


def within_sla(ticket) -> bool:
    """A resolved ticket met its promise: resolved by its (last period's) resolution due time."""
    return ticket.resolution_due_at is not None and ticket.resolved_at <= ticket.resolution_due_at


def summarise(opened: list, resolved: list) -> dict[str, Any]:
    """The report's figures over tickets opened and tickets resolved in one period (rows or tickets)."""
    within = [t for t in resolved if within_sla(t)]
    ratings = [t.rating for t in resolved if t.rating is not None]
    return {
        "opened": len(opened),
        "resolved": len(resolved),
        "resolved_within_sla": round(len(within) / len(resolved), 4) if resolved else None,
        "median_first_response_hours": _median_hours(
            [t.first_response_at - t.opened_at for t in opened if t.first_response_at is not None]),
        "median_resolution_hours": _median_hours([t.resolved_at - t.opened_at for t in resolved]),
        "average_rating": round(sum(ratings) / len(ratings), 2) if ratings else None,
        "ratings": len(ratings),
    }


def report(session: Session, rules: Rules, month: str) -> dict[str, Any]:
    """Opened and resolved in ``month`` (local), the share resolved within the SLA, median first
    response and resolution hours, the average rating: overall, by priority and by category."""
    start, end = month_bounds(rules, month)
    opened, resolved = tickets_between(session, start, end)

    def grouped(key: str) -> dict[str, Any]:
        values = sorted({getattr(t, key) for t in opened + resolved})
        return {v: summarise([t for t in opened if getattr(t, key) == v], [t for t in resolved if getattr(t, key) == v])
                for v in values}

    return {"month": month, **summarise(opened, resolved), "by_priority": grouped("priority"),
            "by_category": grouped("category")}
