"""Member events in chat: the list with seats left, 报名 (a dialog), 我的活动, 取消报名."""
from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from bot.context import Context, read_only
from bot.dialogs import Ask, Flow, Invalid
from bot.guards import member_required
from rules import echoed
from rules.events import Event, EventSession
from storage import events
from storage.events import EventRefused


def _example(ctx: Context) -> str:
    catalogue = ctx.rules.events.catalogue
    return catalogue[0].id if catalogue else "jade"


def _refusal(ctx: Context, refused: EventRefused) -> str:
    return ctx.text(refused.message, example=_example(ctx), **refused.values)


@read_only
@member_required
def list_events(ctx: Context) -> str:
    """Upcoming events open to this member's tier, with the seats left in each session."""
    rules = ctx.rules
    found = events.events_for(rules, ctx.member, ctx.now)
    if not found:
        return ctx.text("events_none")
    with ctx.db.read() as session:
        taken = events.seats_by_session(session, [e.id for e in found])
    lines = [ctx.text("events_header")]
    for event in found:
        lines.append(ctx.text("events_line", **events.event_values(rules, event)))
        for number, es in enumerate(events.open_sessions(rules, event, ctx.now), start=1):
            left = max(es.capacity - taken.get((event.id, es.id), 0), 0)
            lines.append(ctx.text("events_session_line", number=number, seats_left=left,
                                  **events.session_values(rules, event, es)))
    lines.append(ctx.text("events_footer", example=found[0].id))
    return "\n".join(lines)


def _availability(ctx: Context, event: Event, es: EventSession, guests: int) -> dict[str, Any]:
    """Party size and whether it fits now (seats left, or the waitlist is offered), for the confirmation."""
    party = guests + 1
    values = events.session_values(ctx.rules, event, es)
    if party > es.capacity:
        raise Invalid("join_party_too_big", party=party, **values)
    with ctx.db.read() as session:
        taken = events.seats_by_session(session, [event.id]).get((event.id, es.id), 0)
    left = max(es.capacity - taken, 0)
    text = ctx.text("join_seats_left", seats_left=left) if party <= left else ctx.text("join_full_waitlist")
    party_who = ctx.text("join_party_alone") if guests == 0 else ctx.text("join_party_with_guests", guests=guests)
    return {"guests": guests, "party": party, "party_who": party_who, "seats_left": left, "availability": text}


def _join_flow(ctx: Context, event: Event, sessions: list[EventSession]) -> Flow:
    """The questions of 报名 for this event: which session (when several), how many guests, then confirm."""

    def answered() -> dict[str, Any]:
        state = ctx.dialog.state
        return dict(state["data"]) if state else {}

    def pick_session(text: str) -> dict[str, Any]:
        number = text.strip()
        if not number.isdigit() or not 1 <= int(number) <= len(sessions):
            raise Invalid("join_bad_session")
        es = sessions[int(number) - 1]
        chosen = {"session": es.id, **events.session_values(ctx.rules, event, es)}
        so_far = answered()
        if "guests" in so_far:
            chosen |= _availability(ctx, event, es, so_far["guests"])
        return chosen

    def count_guests(text: str) -> dict[str, Any]:
        number = text.strip()
        if not number.isdigit() or int(number) > event.guests_allowed:
            raise Invalid("join_bad_guests")
        es = event.session(answered()["session"])
        return _availability(ctx, event, es, int(number))

    def finish(ctx: Context, answers: dict[str, Any]) -> str:
        return _sign_up(ctx, event, answers["session"], int(answers["guests"]))

    steps = (Ask("session", "join_prompt_session", pick_session), Ask("guests", "join_prompt_guests", count_guests))
    return Flow("join", steps, finish=finish, confirm="join_confirm")


def _sign_up(ctx: Context, event: Event, session_id: str, guests: int) -> str:
    rules = ctx.rules
    try:
        with ctx.db.write() as session:
            result = events.sign_up(session, rules, event, session_id, ctx.member, guests, ctx.now)
            signup = result.signup
    except EventRefused as refused:
        return _refusal(ctx, refused)
    except IntegrityError:  # a live sign-up for another session of the event committed meanwhile
        with ctx.db.read() as session:
            existing = events.live_signup(session, ctx.member.id, event.id)
            if existing is None:
                raise
            return _refusal(ctx, events.already_signed_up(session, rules, existing))
    values = events.event_values(rules, event) | events.session_values(rules, event, event.session(session_id))
    values |= {"code": signup.code, "party": signup.party, "guests": signup.guests}
    if result.booked:
        return ctx.text("join_booked", **values)
    return ctx.text("join_waitlisted", position=result.place, **values)


def _session_choice(ctx: Context, event: Event, es: EventSession, number: int) -> str:
    values = events.session_values(ctx.rules, event, es)
    return f"{number}. {values['session_label']} {values['starts']} {es.place}"


@member_required
def join(ctx: Context) -> str | None:
    """`报名 <id>`: asks for the session (when several) and guests (when allowed), confirms, books or waitlists."""
    rules = ctx.rules
    state = ctx.dialog.state
    in_dialog = state is not None and state["handler"] == "join"
    if in_dialog:
        event_id = state["data"]["event_id"]  # an answer to one of this dialog's questions
    else:
        parts = ctx.args.split()
        if not parts:
            return ctx.text("join_usage", example=_example(ctx))
        event_id = parts[0]
    event = rules.events.event(event_id)
    refused = None
    if event is None:
        refused = EventRefused("join_unknown", event_id=echoed(event_id))
    else:
        refused = events.refusal_to_join(rules, event, ctx.member, ctx.now)
    sessions = events.open_sessions(rules, event, ctx.now) if event is not None else []
    if refused is None and not sessions:
        refused = EventRefused("join_closed", **events.event_values(rules, event))
    if refused is None and not in_dialog:
        with ctx.db.read() as session:
            existing = events.live_signup(session, ctx.member.id, event.id)
            if existing is not None:
                refused = events.already_signed_up(session, rules, existing)
    if refused is not None:
        if in_dialog:
            ctx.dialog.end()
        return _refusal(ctx, refused)
    given: dict[str, Any] = {"event_id": event.id, "title": event.title, "guests_allowed": event.guests_allowed,
                             "session_count": len(sessions),
                             "sessions": "\n".join(_session_choice(ctx, event, es, n)
                                                   for n, es in enumerate(sessions, 1))}
    if not in_dialog:
        if len(sessions) == 1:
            given |= {"session": sessions[0].id, **events.session_values(rules, event, sessions[0])}
        if event.guests_allowed == 0:
            given["guests"] = 0
            if "session" in given:
                try:
                    given |= _availability(ctx, event, sessions[0], 0)
                except Invalid as invalid:
                    return ctx.text(invalid.message, **(given | invalid.values))
    return _join_flow(ctx, event, sessions).handle(ctx, **given)


@read_only
@member_required
def my_events(ctx: Context) -> str:
    """The member's bookings (with their codes) and waitlist places."""
    rules = ctx.rules
    with ctx.db.read() as session:
        mine = events.member_signups(session, ctx.member.id)
    if not mine:
        return ctx.text("my_events_none")
    lines = [ctx.text("my_events_header")]
    for item in mine:
        signup, row = item.signup, item.row
        event = rules.events.event(signup.event_id)
        es = event.session(row.session_key) if event is not None else None
        values = {"event_id": signup.event_id, "title": row.title, "session_label": row.session_key,
                  "starts": rules.local_time(row.starts_at), "place": row.place, "party": signup.party,
                  "code": signup.code}
        if es is not None:
            values |= events.session_values(rules, event, es)
        if signup.status == "waitlisted":
            lines.append(ctx.text("my_events_waiting", position=item.place, **values))
        else:
            checked = (ctx.text("my_events_checked_in", checked_in_at=rules.local_time(signup.checked_in_at))
                       if signup.checked_in_at else "")
            lines.append(ctx.text("my_events_booked", checked_in=checked, **values))
    return "\n".join(lines)


@member_required
def leave(ctx: Context) -> str:
    """`取消报名 <id>`: frees the seats before the deadline (the waitlist moves up), or leaves the waitlist."""
    event_id = ctx.args.strip()
    if not event_id:
        return ctx.text("leave_usage", example=_example(ctx))
    try:
        with ctx.db.write() as session:
            left = events.cancel_signup(session, ctx.rules, event_id, ctx.member.id, ctx.now)
            signup, row = left.signup, left.row
    except EventRefused as refused:
        return _refusal(ctx, refused)
    values = {"event_id": signup.event_id, "title": row.title, "session_label": row.session_key,
              "party": signup.party}
    event = ctx.rules.events.event(signup.event_id)
    if event is not None and (es := event.session(row.session_key)) is not None:
        values["session_label"] = events.session_label(event, es)
    return ctx.text("leave_done" if left.was_booked else "leave_withdrawn", **values)
