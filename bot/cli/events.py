"""``events``: the year's events with their sign-ups, check-in at the door, the roster, the report."""
from __future__ import annotations

import csv
import sys
from decimal import Decimal

import click
from flask.cli import AppGroup

from bot.cli.common import fail, state
from rules.events import Event
from storage import events

group = AppGroup("events", help="Member events: sign-ups, waitlists, check-in, rosters and reports.")


def _event(event_id: str) -> Event:
    event = state().rules.events.event(event_id)
    if event is None:
        known = ", ".join(e.id for e in state().rules.events.catalogue)
        fail(f"no event {event_id!r} in the rules; events: {known}")
    return event


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


@group.command("list")
def events_list() -> None:
    """Every event in the rules: per session, seats booked of capacity, waitlist, check-ins."""
    bot = state()
    rules, now = bot.rules, bot.now()
    with bot.db.read() as session:
        for event in rules.events.catalogue:
            flag = " [cancelled]" if event.cancelled else ""
            click.echo(f"{event.id}  {event.title} ({event.form}, {event.where}) tiers {','.join(event.tiers)}; "
                       f"sign-up {rules.local_time(rules.local_instant(event.signup_opens))} – "
                       f"{rules.local_time(rules.local_instant(event.signup_closes))}{flag}")
            for fig, es in zip(events.event_figures(session, rules, event, now), event.sessions):
                gone = " [cancelled]" if es.cancelled else ""
                click.echo(f"  session {es.id}: {rules.local_time(rules.local_instant(es.starts))} {es.place}: "
                           f"{fig.seats_taken}/{fig.capacity} seats, {fig.bookings} bookings, "
                           f"{fig.waitlisted} waiting, {fig.attended} checked in{gone}")


@group.command("show")
@click.argument("event_id")
def events_show(event_id: str) -> None:
    """One event's bookings, waitlist, check-ins and no-shows, per session."""
    bot = state()
    rules, now = bot.rules, bot.now()
    event = _event(event_id)
    with bot.db.read() as session:
        figures = {f.session_key: f for f in events.event_figures(session, rules, event, now)}
        lines = events.roster(session, event.id)
    deadline = rules.local_time(rules.local_instant(event.cancel_until))
    click.echo(f"{event.id}  {event.title}  cancellation until {deadline}")
    for es in event.sessions:
        fig = figures[es.id]
        no_shows = f", {fig.no_shows} no-shows ({_percent(fig.no_show_rate)})" if fig.ended else ""
        click.echo(f"session {es.id} — {rules.local_time(rules.local_instant(es.starts))} {es.place}: "
                   f"{fig.seats_taken}/{fig.capacity} seats, {fig.bookings} bookings, {fig.waitlisted} waiting "
                   f"({fig.waiting_seats} seats), {fig.attended} checked in{no_shows}")
        for line in (item for item in lines if item.session_key == es.id):
            signup, member = line.signup, line.member
            if signup.status == "booked":
                seen = (f"checked in {rules.local_time(signup.checked_in_at)}" if signup.checked_in_at
                        else ("no-show" if fig.ended else "expected"))
                what = f"booked{' (from the waitlist)' if signup.promoted_at else ''}, {seen}"
            elif signup.status == "waitlisted":
                what = f"waiting #{line.place}"
            else:
                what = signup.status
            click.echo(f"  {signup.code}  {member.card_no} {member.name}  party {signup.party}  {what}")


@group.command("roster")
@click.argument("event_id")
@click.option("--csv", "as_csv", is_flag=True, help="CSV for the store (UTF-8 with BOM, opens in Excel).")
def events_roster(event_id: str, as_csv: bool) -> None:
    """The guest list: booked members and their parties per session (the waitlist after, marked)."""
    bot = state()
    rules = bot.rules
    event = _event(event_id)
    with bot.db.read() as session:
        lines = [line for line in events.roster(session, event.id) if line.signup.status in events.LIVE]
    header = ["session", "starts", "place", "code", "card_no", "name", "phone", "party", "guests", "status",
              "checked_in_at"]
    rows = []
    for line in lines:
        es = event.session(line.session_key)
        signup, member = line.signup, line.member
        status = "booked" if signup.status == "booked" else f"waitlist {line.place}"
        rows.append([line.session_key, rules.local_time(rules.local_instant(es.starts)) if es else "",
                     es.place if es else "", signup.code, member.card_no, member.name, member.phone, signup.party,
                     signup.guests, status, rules.local_time(signup.checked_in_at) if signup.checked_in_at else ""])
    if as_csv:
        sys.stdout.write("\ufeff")
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return
    for row in rows:
        click.echo("  ".join(str(value) for value in row))
    click.echo(f"{sum(1 for line in lines if line.signup.status == 'booked')} bookings, "
               f"{sum(line.signup.party for line in lines if line.signup.status == 'booked')} people")


@group.command("checkin")
@click.argument("event_id")
@click.argument("code_or_card")
def events_checkin(event_id: str, code_or_card: str) -> None:
    """Mark a booking attended, by booking code or card number, on the session's day (events.checkin_*);
    a second check-in says when the first was."""
    bot = state()
    rules = bot.rules
    event = _event(event_id)
    try:
        with bot.db.write() as session:
            done = events.check_in(session, rules, event, code_or_card, "cli", bot.now())
    except events.EventRefused as refused:  # not on the session's day: when check-in opens (or closed)
        fail(f"{event.id}: {rules.messages.render(refused.message, **refused.values)}")
    if done.status == "not_found":
        fail(f"{event.id}: no sign-up with code or card {code_or_card}")
    member, signup = done.member, done.signup
    who = f"{member.card_no} {member.name}, party {signup.party}, session {done.row.session_key}"
    if done.status == "not_booked":
        fail(f"{event.id}: {who} is not booked ({signup.status}): not checked in")
    if done.status == "already":
        fail(f"{event.id}: {who} was already checked in at {rules.local_time(signup.checked_in_at)}")
    click.echo(f"{event.id}: checked in {who} at {rules.local_time(signup.checked_in_at)}")


@group.command("report")
@click.argument("event_id")
def events_report(event_id: str) -> None:
    """After the event: booked, attended, no-show rate, fill rate per session, cost against budget."""
    bot = state()
    rules = bot.rules
    event = _event(event_id)
    with bot.db.read() as session:
        figures = events.event_figures(session, rules, event, bot.now())
    click.echo(f"{event.id}  {event.title}  budget {event.budget_per_head} per head")
    for fig in figures:
        click.echo(f"session {fig.session_key}: {fig.bookings} booked ({fig.seats_taken} seats of {fig.capacity}, "
                   f"fill {_percent(fig.fill_rate)}), {fig.attended} attended ({fig.attended_seats} people), "
                   f"no-show rate {_percent(fig.no_show_rate)}")
    people = sum(f.attended_seats for f in figures)
    seats = sum(f.capacity for f in figures)
    cost = event.budget_per_head * people
    budget = event.budget_per_head * seats
    used = f"{cost / budget:.0%}" if budget else "-"
    bookings = sum(f.bookings for f in figures)
    no_shows = sum(f.no_shows for f in figures)
    ended = all(f.ended for f in figures)
    rate = _percent(no_shows / bookings if ended and bookings else None)
    click.echo(f"total: {bookings} booked, {sum(f.attended for f in figures)} attended ({people} people), "
               f"no-show rate {rate}; cost {_money(cost)} of budget {_money(budget)} ({used})")


def _money(amount: Decimal) -> str:
    return f"{amount:,.2f}"
