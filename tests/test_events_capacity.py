"""Seats held by the database under real threads, on SQLite and PostgreSQL: no overbooking, the
waitlist in commit order, promotions exactly once, and every waitlist entry ending in one final state."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from storage import events
from storage.events import EventRefused
from storage.models import EventSessionRow, EventSignup, OutboxMessage
from tests.factories import event_config, event_rules, make_member

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=timezone.utc)


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # every test here runs on SQLite and on PostgreSQL


@pytest.fixture
def rules(rules_with, base_rules):
    catalogue = [event_config("gala", capacity=30), event_config("small", capacity=3, guests_allowed=2)]
    return rules_with(events=event_rules(base_rules, *catalogue))


def members(db, count: int, tier: str = "D") -> list[SimpleNamespace]:
    with db.write() as session:
        made = [make_member(session, tier=tier) for _ in range(count)]
        return [SimpleNamespace(id=m.id, tier=m.tier, segment=m.segment) for m in made]


def at_once(work, items) -> list:
    """Run ``work(item)`` for every item in its own thread, all released together; results in item order."""
    barrier = threading.Barrier(len(items))
    results: list = [None] * len(items)

    def run(index, item):
        barrier.wait()
        try:
            results[index] = work(item)
        except Exception as exc:  # kept for the assertions
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, item)) for i, item in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def sign_up(db, rules, event_id: str, member, guests: int = 0):
    with db.write() as session:
        result = events.sign_up(session, rules, rules.events.event(event_id), "1", member, guests, NOW)
        return result.signup.id, result.booked, result.place


def cancel(db, rules, event_id: str, member):
    with db.write() as session:
        left = events.cancel_signup(session, rules, event_id, member.id, NOW)
        return [p.id for p in left.promoted]


def row_of(db, event_id: str) -> EventSessionRow:
    with db.read() as session:
        return session.scalar(select(EventSessionRow).where(EventSessionRow.event_id == event_id))


def live(db, event_id: str, status: str) -> list[EventSignup]:
    with db.read() as session:
        return list(session.scalars(select(EventSignup).where(EventSignup.event_id == event_id,
                                                              EventSignup.status == status).order_by(EventSignup.id)))


def test_80_confirming_at_once_for_30_seats_then_10_cancelling_at_once(db, rules):
    people = members(db, 80)
    results = at_once(lambda m: sign_up(db, rules, "gala", m), people)
    assert not [r for r in results if isinstance(r, Exception)], results
    booked = [r for r in results if r[1]]
    waiting = [r for r in results if not r[1]]
    assert len(booked) == 30 and len(waiting) == 50
    assert row_of(db, "gala").seats_taken == 30
    # Each was told a distinct place, and the places follow the order the sign-ups committed in (their ids:
    # the session row is locked before the insert, so ids are handed out in commit order).
    told = {signup_id: place for signup_id, _, place in waiting}
    assert sorted(told.values()) == list(range(1, 51))
    assert [told[s.id] for s in live(db, "gala", "waitlisted")] == list(range(1, 51))

    first_ten = [s.id for s in live(db, "gala", "waitlisted")][:10]
    leavers = [m for m, r in zip(people, results) if r[1]][:10]
    promoted = at_once(lambda m: cancel(db, rules, "gala", m), leavers)
    assert not [p for p in promoted if isinstance(p, Exception)], promoted
    assert sorted(i for ids in promoted for i in ids) == sorted(first_ten)  # exactly ten, each once, the first ten
    assert row_of(db, "gala").seats_taken == 30
    assert len(live(db, "gala", "booked")) == 30 and len(live(db, "gala", "waitlisted")) == 40
    with db.read() as session:
        pushes = session.execute(select(OutboxMessage.occasion, OutboxMessage.member_id)
                                 .where(OutboxMessage.job == "event_promotion")).all()
    assert sorted(o for o, _ in pushes) == sorted(f"promo:{i}" for i in first_ten)
    assert len({member for _, member in pushes}) == 10


def test_one_member_confirming_twice_at_once_gets_one_sign_up(db, rules):
    [member] = members(db, 1)
    results = at_once(lambda m: sign_up(db, rules, "gala", m), [member] * 6)
    assert sum(1 for r in results if isinstance(r, tuple)) == 1
    assert all(isinstance(r, (tuple, EventRefused, IntegrityError)) for r in results), results
    assert len(live(db, "gala", "booked")) == 1 and row_of(db, "gala").seats_taken == 1


def test_the_first_waiting_party_that_fits_is_promoted(db, rules):
    a, b, c, d = members(db, 4)
    assert sign_up(db, rules, "small", a)[1] and sign_up(db, rules, "small", b, guests=1)[1]  # 3 of 3 seats
    c_id, c_booked, c_place = sign_up(db, rules, "small", c, guests=2)
    d_id, d_booked, d_place = sign_up(db, rules, "small", d)
    assert (c_booked, c_place, d_booked, d_place) == (False, 1, False, 2)
    assert cancel(db, rules, "small", a) == [d_id]  # one seat free: the party of three does not fit, D does
    assert cancel(db, rules, "small", d) == []  # still one seat: C still does not fit
    assert cancel(db, rules, "small", b) == [c_id]  # three seats: C now fits
    assert row_of(db, "small").seats_taken == 3


def test_higher_tiers_first_when_configured(db, rules_with, base_rules):
    rules = rules_with(events=event_rules(base_rules, event_config("small", capacity=1), waitlist_order="tier"))
    [first, low] = members(db, 2, "D")
    [high] = members(db, 1, "A")
    sign_up(db, rules, "small", first)
    low_id, _, _ = sign_up(db, rules, "small", low)
    high_id, _, high_place = sign_up(db, rules, "small", high)
    assert high_place == 1  # ahead of the D member who came first
    assert cancel(db, rules, "small", first) == [high_id]


def test_refusals_change_nothing(db, rules):
    [member] = members(db, 1)
    event = rules.events.event("small")
    with db.write() as session:
        with pytest.raises(EventRefused) as refused:
            events.sign_up(session, rules, event, "1", member, 3, NOW)
        assert refused.value.message == "join_bad_guests"
        with pytest.raises(EventRefused) as refused:
            events.sign_up(session, rules, event, "1", member, 0, datetime(2026, 12, 1, tzinfo=timezone.utc))
        assert refused.value.message == "join_not_open"
        with pytest.raises(EventRefused) as refused:
            events.cancel_signup(session, rules, "small", member.id, NOW)
        assert refused.value.message == "leave_not_signed_up"
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(EventSignup)) == 0


def test_the_database_refuses_overbooking_whatever_the_code_does(db, rules):
    [member] = members(db, 1)
    sign_up(db, rules, "small", member)
    with pytest.raises(IntegrityError), db.write() as session:
        session.execute(update(EventSessionRow).values(seats_taken=4))  # capacity 3: the CHECK says no
    with pytest.raises(IntegrityError), db.write() as session:  # a second live sign-up for the event
        session.add(EventSignup(session_id=row_of(db, "small").id, event_id="small", member_id=member.id,
                                guests=0, party=1, status="waitlisted", live_event="small", code="XX1"))
    with pytest.raises(IntegrityError), db.write() as session:  # ended, yet still holding the event
        session.execute(update(EventSignup).values(status="withdrawn"))
