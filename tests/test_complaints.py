"""Complaints below the chat: due times from the event log, the watcher, concurrency, the report, CLI and API."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from rules.complaints import BusinessHours
from scheduler.jobs import ticket_watch
from storage import complaints
from storage.models import Member, OutboxMessage, Staff, Ticket, TicketEvent
from tests.conftest import API_KEY
from tests.factories import make_member, make_staff

UTC = timezone.utc
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai


@pytest.fixture
def database_url(db_url) -> str:
    return db_url


def test_due_times_come_from_the_event_log(base_rules):
    cfg, zone = base_rules.complaints, base_rules.zone
    opened = NOW
    due = complaints.due_times([("opened", opened)], opened, "normal", cfg, zone)
    assert (due.response, due.resolution) == (opened + timedelta(hours=8), opened + timedelta(hours=24))
    replied = [("opened", opened), ("replied", opened + timedelta(hours=1))]
    assert complaints.due_times(replied, opened, "high", cfg, zone).response is None
    # waiting for the member pauses the resolution clock; the member's answer resumes it, shifted
    paused = replied + [("waiting", opened + timedelta(hours=2))]
    assert complaints.due_times(paused, opened, "normal", cfg, zone).resolution is None
    resumed = paused + [("note", opened + timedelta(hours=7))]
    assert complaints.due_times(resumed, opened, "normal", cfg, zone).resolution == opened + timedelta(hours=29)
    # a reopening starts a new period with both deadlines
    reopened = resumed + [("resolved", opened + timedelta(hours=8)), ("reopened", opened + timedelta(days=2))]
    due = complaints.due_times(reopened, opened, "normal", cfg, zone)
    assert due.response == opened + timedelta(days=2, hours=8) and due.resolution == opened + timedelta(days=3)


def test_business_hours_skip_nights_weekends_and_holidays(base_rules):
    zone = base_rules.zone
    hours = BusinessHours(start="09:00", end="18:00", weekdays=[1, 2, 3, 4, 5], holidays=[date(2026, 11, 30)])
    friday_5pm = datetime(2026, 11, 27, 17, 0, tzinfo=zone)
    # 1 h on Friday, Saturday/Sunday off, Monday the 30th a holiday: 8 h → Tuesday 16:00
    assert hours.add(friday_5pm, 8, zone) == datetime(2026, 12, 1, 16, 0, tzinfo=zone)
    assert hours.between(friday_5pm, datetime(2026, 12, 1, 16, 0, tzinfo=zone), zone) == timedelta(hours=8)


@pytest.fixture
def desk(state, clock):
    clock.now = NOW.timestamp()
    with state.db.write() as session:
        make_staff(session, "S1", role="service", openid="o-s1")
        make_staff(session, "S2", role="service", openid="o-s2")
        make_staff(session, "SUP", role="supervisor", openid="o-sup")
        d = make_member(session, tier="D", openid="o-d")
        a = make_member(session, tier="A", openid="o-a", manager_id="S2")
        return {"d": d.id, "a": a.id}


def _open(state, member_id: int, at: datetime, key: str) -> str:
    with state.db.write() as session:
        member = session.get(Member, member_id)
        return complaints.open_ticket(session, state.rules, at, member, "其他", "问题", key).ticket.number


def _staff(state, staff_id: str):
    with state.db.read() as session:
        return session.get(Staff, staff_id)


def _outbox(state, job: str) -> list[tuple[str, str]]:
    with state.db.read() as session:
        return [tuple(r) for r in session.execute(select(OutboxMessage.occasion, OutboxMessage.staff_id)
                                                  .where(OutboxMessage.job == job).order_by(OutboxMessage.id))]


def test_the_watcher_warns_at_75_percent_and_at_breach_exactly_once(state, desk, clock):
    number = _open(state, desk["d"], NOW, "k1")  # normal: response 8 h, resolution 24 h
    clock.now = (NOW + timedelta(hours=5)).timestamp()
    assert ticket_watch.run(state, drain=False).warned == 0  # 62 % of the response time
    clock.now = (NOW + timedelta(hours=6, minutes=5)).timestamp()  # 76 %
    assert ticket_watch.run(state, drain=False).warned == 1
    assert ticket_watch.run(state, drain=False).warned == 0  # a second pass (or a restart) repeats nothing
    assert _outbox(state, "ticket_warn") == [(f"{number}:r0", "S1")]
    clock.now = (NOW + timedelta(hours=8, minutes=1)).timestamp()  # 18:01 local: breached
    report = ticket_watch.run(state, drain=False)
    assert report.breached == 1 and ticket_watch.run(state, drain=False).breached == 0
    assert _outbox(state, "ticket_breach") == [(f"{number}:r0", "SUP")]
    with state.db.read() as session:
        ticket = session.scalar(select(Ticket))
        assert ticket.breached and ticket.response_due_at == NOW + timedelta(hours=8)  # stored: survives restarts
        assert session.scalars(select(TicketEvent.kind).where(TicketEvent.kind == "breached")).all() == ["breached"]


def test_normal_tickets_are_not_warned_at_night_high_ones_are(state, desk, clock):
    night_open = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 20:00 local
    normal = _open(state, desk["d"], night_open, "k1")
    high = _open(state, desk["a"], night_open, "k2")  # A: high, 2 h to respond, to the manager S2
    clock.now = (night_open + timedelta(hours=6, minutes=10)).timestamp()  # 02:10 local
    ticket_watch.run(state, drain=False)
    assert [o for o, _ in _outbox(state, "ticket_breach")] == [f"{high}:r0"]
    assert _outbox(state, "ticket_warn") == []  # normal at 77 % but night; high went straight past 75 % to breach
    clock.now = (night_open + timedelta(hours=12, minutes=10)).timestamp()  # 08:10 local: morning
    ticket_watch.run(state, drain=False)
    assert (f"{normal}:r0", "SUP") in _outbox(state, "ticket_breach")


def test_two_staff_resolving_and_replying_at_once(state, desk):
    number = _open(state, desk["d"], NOW, "k1")
    sup, s1 = _staff(state, "SUP"), _staff(state, "S1")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def act(staff, what: str) -> None:
        barrier.wait()
        try:
            with state.db.write() as session:
                if what == "resolve":
                    complaints.resolve(session, state.rules, NOW, staff, number, f"由 {staff.id} 解决", False)
                else:
                    complaints.reply(session, state.rules, NOW, staff, number, f"{staff.id} 的回复")
            outcomes.append("done")
        except complaints.TicketError as exc:
            outcomes.append(exc.message)

    for what in ("reply", "resolve"):
        threads = [threading.Thread(target=act, args=(who, what)) for who in (sup, s1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert outcomes[:2] == ["done", "done"]  # both replies recorded
    assert sorted(outcomes[2:]) == ["done", "staff_already_resolved"]  # one resolution
    with state.db.read() as session:
        events = session.execute(select(TicketEvent.kind, TicketEvent.body).order_by(TicketEvent.id)).all()
        assert [k for k, _ in events].count("replied") == 2 and [k for k, _ in events].count("resolved") == 1
        assert len(_outbox(state, "ticket_resolved")) == 1


def test_tickets_opened_at_once_get_distinct_numbers(state, desk):
    numbers: list[str] = []
    barrier = threading.Barrier(4)

    def open_one(n: int) -> None:
        barrier.wait()
        numbers.append(_open(state, desk["d"], NOW, f"k{n}"))

    threads = [threading.Thread(target=open_one, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == [f"T20261123-000{n}" for n in range(1, 5)]
    assert _open(state, desk["d"], NOW, "k1") in numbers  # the same request again: the same ticket


def test_report_cli_and_api(state, desk, app):
    number = _open(state, desk["d"], NOW, "k1")
    with state.db.write() as session:
        s1 = session.get(Staff, "S1")
        complaints.reply(session, state.rules, NOW + timedelta(hours=1), s1, number, "您好")
        complaints.resolve(session, state.rules, NOW + timedelta(hours=3), s1, number, "已处理", True)
        ticket = session.scalar(select(Ticket))
        complaints.rate(session, state.rules, NOW + timedelta(hours=4), desk["d"], ticket, 4, None)
    client = app.test_client()
    response = client.get("/api/reports/complaints?month=2026-11", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    data = response.json
    assert (data["opened"], data["resolved"], data["resolved_within_sla"]) == (1, 1, 1.0)
    assert (data["median_first_response_hours"], data["median_resolution_hours"], data["average_rating"]) == (1.0, 3.0, 4.0)
    assert data["by_priority"]["normal"]["opened"] == 1 and data["by_category"]["其他"]["resolved"] == 1
    assert client.get("/api/reports/complaints?month=2026-13", headers={"X-API-Key": API_KEY}).status_code == 422
    assert client.get("/api/reports/complaints").status_code == 401
    out = app.test_cli_runner().invoke(args=["complaints", "report", "--month", "2026-11"])
    assert out.exit_code == 0 and "opened    1" in out.output and "rating 4 (1)" in out.output
    bad = app.test_cli_runner().invoke(args=["complaints", "report", "--month", "nope"])
    assert bad.exit_code == 1


def test_staff_invite_command(app, state, desk):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["staff", "invite", "S1"])
    assert result.exit_code == 0 and "员工绑定" in result.output
    assert runner.invoke(args=["staff", "invite", "NOPE"]).exit_code == 1
