"""Events for operators and the scheduler: pushes (invitation, reminder, cancellation, move) exactly once,
check-in by CLI and API once, list/show/roster/report, and `rules check` guarding sign-ups."""
from __future__ import annotations

import collections
import csv
import io
from datetime import date, datetime, timezone

import pytest
import yaml
from sqlalchemy import select

from rules import DEFAULT_RULES_PATH
from scheduler import jobs
from storage import events
from storage.models import EventSessionRow, EventSignup
from tests.conftest import API_KEY
from tests.factories import event_config, event_rules, make_member, words

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=timezone.utc)  # noon in Shanghai
AT_THE_DOOR = datetime(2027, 3, 20, 5, 30, tzinfo=timezone.utc)  # 13:30 in Shanghai: session 1 starts at 14:00
PUSHES = {"quiet_hours": None, "backoff_seconds": 0, "rate_limit_per_minute": 0, "customer_service_window_hours": 0}


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # every test here runs on SQLite and on PostgreSQL


@pytest.fixture
def catalogue():
    return [event_config("fashion", sessions=2, capacity=2, tiers=["C", "B", "A"], guests_allowed=1,
                         budget_per_head="300"),
            event_config("jade", capacity=1, signup_opens="2027-03-05T09:00:00")]


@pytest.fixture
def rules(rules_with, base_rules, catalogue):
    return rules_with(events=event_rules(base_rules, *catalogue), pushes=PUSHES)


@pytest.fixture(autouse=True)
def at_noon(clock):
    clock.now = NOW.timestamp()


def book(state, member, event_id="fashion", session_id="1", guests=0, now=NOW):
    with state.db.write() as session:
        return events.sign_up(session, state.rules, state.rules.events.event(event_id), session_id, member, guests,
                              now).signup


def texts(fake_wechat) -> dict[str, list[str]]:
    found = collections.defaultdict(list)
    for message in fake_wechat.sent():
        found[message["touser"]].append(words(message))
    return found


@pytest.fixture
def people(state):
    with state.db.write() as session:
        made = {name: make_member(session, openid=f"o-{name}", tier=tier, name=name)
                for name, tier in [("chen", "C"), ("zhao", "B"), ("zhou", "A"), ("liu", "D"), ("wu", "C")]}
    return made


def test_invitations_go_to_the_target_tiers_once_when_sign_up_opens(state, people, fake_wechat):
    with state.db.write() as session:
        make_member(session, openid="o-lapsed", tier="C", segment="lapsed")  # marketing: skipped
    jobs.run_job(state, "event_invitations", date(2027, 3, 1))
    got = texts(fake_wechat)
    assert set(got) == {"o-chen", "o-zhao", "o-zhou", "o-wu"}  # fashion only: jade opens on the 5th
    assert got["o-chen"][0].endswith("回复“活动”查看并报名")
    jobs.run_job(state, "event_invitations", date(2027, 3, 2))
    assert len(fake_wechat.sent()) == 4  # once per event and member
    jobs.run_job(state, "event_invitations", date(2027, 3, 5))
    assert set(texts(fake_wechat)) == {"o-chen", "o-zhao", "o-zhou", "o-wu", "o-liu"}
    assert len(fake_wechat.sent()) == 9


def test_reminders_the_day_before_to_booked_members_only(state, people, fake_wechat):
    first = book(state, people["chen"], guests=1)
    book(state, people["zhao"], session_id="2")
    book(state, people["zhou"])
    book(state, people["wu"])  # waitlisted too: chen and a guest took both seats of session 1
    jobs.run_job(state, "event_reminders", date(2027, 3, 19))
    got = texts(fake_wechat)
    assert set(got) == {"o-chen"}  # zhou and wu wait for session 1; zhao's session is on the 21st
    assert f"预约码 {first.code}" in got["o-chen"][0] and "2027-03-20 14:00" in got["o-chen"][0]
    jobs.run_job(state, "event_reminders", date(2027, 3, 19))
    jobs.run_job(state, "event_reminders", date(2027, 3, 20))
    got = texts(fake_wechat)
    assert got["o-zhao"] and len(fake_wechat.sent()) == 2


def test_a_cancelled_session_tells_everyone_once_and_ends_every_sign_up(state, people, fake_wechat, rules_with,
                                                                        base_rules, catalogue):
    book(state, people["chen"], guests=1)
    book(state, people["zhou"])  # waitlisted
    book(state, people["zhao"], session_id="2")
    catalogue[0]["sessions"][0]["cancelled"] = True
    state.rules_holder._rules = rules_with(events=event_rules(base_rules, *catalogue), pushes=PUSHES)
    _, planned, _ = jobs.run_job(state, "event_changes", date(2027, 3, 2))
    assert planned == 2
    got = texts(fake_wechat)
    assert set(got) == {"o-chen", "o-zhou"} and "已取消" in got["o-chen"][0]
    with state.db.read() as session:
        statuses = {s.member_id: s.status for s in session.scalars(select(EventSignup))}
        row = session.scalar(select(EventSessionRow).where(EventSessionRow.session_key == "1"))
    assert statuses == {people["chen"].id: "called_off", people["zhou"].id: "expired", people["zhao"].id: "booked"}
    assert row.seats_taken == 0 and row.cancelled_at is not None
    jobs.run_job(state, "event_changes", date(2027, 3, 3))
    assert len(fake_wechat.sent()) == 2  # exactly once


def test_a_moved_session_tells_its_booked_members_once(state, people, fake_wechat, rules_with, base_rules, catalogue):
    book(state, people["chen"])
    catalogue[0]["sessions"][0].update(starts="2027-03-20T15:00:00", ends="2027-03-20T17:00:00", place="五楼")
    state.rules_holder._rules = rules_with(events=event_rules(base_rules, *catalogue), pushes=PUSHES)
    jobs.run_job(state, "event_changes", date(2027, 3, 2))
    jobs.run_job(state, "event_changes", date(2027, 3, 3))
    [text] = texts(fake_wechat)["o-chen"]
    assert "2027-03-20 15:00\n时间地点有变" in text


def test_waitlist_places_expire_once_the_session_has_started(state, people):
    book(state, people["chen"], guests=1)
    book(state, people["zhou"])
    jobs.run_job(state, "event_changes", date(2027, 3, 21))
    with state.db.read() as session:
        assert sorted(s.status for s in session.scalars(select(EventSignup))) == ["booked", "expired"]


def test_check_in_by_cli_and_api_once(app, state, people, clock):
    signup = book(state, people["chen"], guests=1)
    waiting = book(state, people["zhou"])
    book(state, people["zhao"], session_id="2")
    clock.now = AT_THE_DOOR.timestamp()
    runner = app.test_cli_runner()
    first = runner.invoke(args=["events", "checkin", "fashion", signup.code.lower()])
    assert first.exit_code == 0 and f"checked in {people['chen'].card_no} chen, party 2, session 1" in first.output
    again = runner.invoke(args=["events", "checkin", "fashion", people["chen"].card_no])
    assert again.exit_code == 1 and "was already checked in at 2027-03-20 13:30" in again.output
    refused = runner.invoke(args=["events", "checkin", "fashion", waiting.code])
    assert refused.exit_code == 1 and "is not booked (waitlisted)" in refused.output
    client = app.test_client()
    headers = {"X-API-Key": API_KEY}
    answer = client.post("/api/events/fashion/checkin", json={"card_no": people["chen"].card_no}, headers=headers)
    assert answer.status_code == 200 and answer.json["status"] == "already_checked_in"
    assert answer.json["checked_in_at"] == "2027-03-20 13:30"
    with state.db.read() as session:
        zhao_code = session.scalar(select(EventSignup.code).where(EventSignup.member_id == people["zhao"].id))
    clock.now += 24 * 3600  # session 2 is the next day
    answer = client.post("/api/events/fashion/checkin", json={"code": zhao_code}, headers=headers)
    assert answer.status_code == 200 and answer.json["status"] == "checked_in" and answer.json["session"] == "2"
    assert client.post("/api/events/fashion/checkin", json={"code": "NOPE"}, headers=headers).status_code == 404
    assert client.post("/api/events/nosuch/checkin", json={"code": "X"}, headers=headers).status_code == 404
    assert client.post("/api/events/fashion/checkin", json={"code": waiting.code}, headers=headers).status_code == 409
    bad = client.post("/api/events/fashion/checkin", json={"seat": "1"}, headers=headers)
    assert bad.status_code == 422 and bad.json["field"] == "seat"
    assert client.post("/api/events/fashion/checkin", json={"code": "X"}).status_code == 401


def checkin_hours(state, rules_with, base_rules, catalogue, opens_before: int, closes_after: int) -> None:
    state.rules_holder._rules = rules_with(events=event_rules(
        base_rules, *catalogue, checkin_opens_hours_before=opens_before, checkin_closes_hours_after=closes_after),
        pushes=PUSHES)


def test_check_in_is_open_on_the_session_s_day_only(app, state, people, clock, rules_with, base_rules, catalogue):
    checkin_hours(state, rules_with, base_rules, catalogue, 1, 3)
    chen = book(state, people["chen"])  # session 1: 2027-03-20 14:00–16:00 in Shanghai, booked on 1 March
    zhao = book(state, people["zhao"])
    runner, client, headers = app.test_cli_runner(), app.test_client(), {"X-API-Key": API_KEY}
    early = runner.invoke(args=["events", "checkin", "fashion", chen.code])
    assert early.exit_code == 1 and early.output.strip() == (
        f"fashion: chen（{people['chen'].card_no}）报名的“活动fashion”第1场（2027-03-20 14:00 开始）尚未开放签到，"
        "签到将于 2027-03-20 13:00 开放。")
    clock.now = datetime(2027, 3, 20, 4, 59, tzinfo=timezone.utc).timestamp()  # 12:59 in Shanghai
    answer = client.post("/api/events/fashion/checkin", json={"code": chen.code}, headers=headers)
    assert answer.status_code == 409
    assert (answer.json["status"], answer.json["opens_at"], answer.json["closes_at"]) == (
        "not_open", "2027-03-20 13:00", "2027-03-20 19:00")
    assert "签到将于 2027-03-20 13:00 开放" in answer.json["error"]
    clock.now += 60
    assert runner.invoke(args=["events", "checkin", "fashion", chen.code]).exit_code == 0
    clock.now = datetime(2027, 3, 20, 11, 0, tzinfo=timezone.utc).timestamp()  # 19:00: closed
    late = client.post("/api/events/fashion/checkin", json={"card_no": people["zhao"].card_no}, headers=headers)
    assert late.status_code == 409 and late.json["status"] == "closed" and late.json["code"] == zhao.code
    assert late.json["error"] == (f"“活动fashion”第1场（2027-03-20 14:00 开始）的签到已于 2027-03-20 19:00 结束，"
                                  f"zhao（{people['zhao'].card_no}）未签到。")
    again = runner.invoke(args=["events", "checkin", "fashion", chen.code])  # when the first was: at any time
    assert again.exit_code == 1 and "was already checked in at 2027-03-20 13:00" in again.output
    report = runner.invoke(args=["events", "report", "fashion"]).output
    assert "session 1: 2 booked (2 seats of 2, fill 100%), 1 attended (1 people), no-show rate 50%" in report


def test_check_in_hours_stop_at_the_session_s_day(app, state, people, clock, rules_with, base_rules, catalogue):
    checkin_hours(state, rules_with, base_rules, catalogue, 24, 24)
    chen = book(state, people["chen"])
    client, headers = app.test_client(), {"X-API-Key": API_KEY}
    clock.now = datetime(2027, 3, 19, 15, 59, tzinfo=timezone.utc).timestamp()  # 23:59 the day before
    answer = client.post("/api/events/fashion/checkin", json={"code": chen.code}, headers=headers)
    assert (answer.json["opens_at"], answer.json["closes_at"]) == ("2027-03-20 00:00", "2027-03-21 00:00")
    clock.now += 60
    answer = client.post("/api/events/fashion/checkin", json={"code": chen.code}, headers=headers)
    assert answer.status_code == 200 and answer.json["checked_in_at"] == "2027-03-20 00:00"


def test_list_show_roster_and_report(app, state, people, clock):
    chen = book(state, people["chen"], guests=1)
    book(state, people["zhou"])
    book(state, people["zhao"], session_id="2")
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["events", "list"]).output
    assert "session 1: 2027-03-20 14:00 三楼: 2/2 seats, 1 bookings, 1 waiting, 0 checked in" in listed
    clock.now = AT_THE_DOOR.timestamp()
    assert runner.invoke(args=["events", "checkin", "fashion", chen.code]).exit_code == 0
    roster = runner.invoke(args=["events", "roster", "fashion", "--csv"]).output
    rows = list(csv.DictReader(io.StringIO(roster.lstrip("\ufeff"))))
    assert [(r["card_no"], r["party"], r["status"]) for r in rows] == [
        (people["chen"].card_no, "2", "booked"), (people["zhou"].card_no, "1", "waitlist 1"),
        (people["zhao"].card_no, "1", "booked")]
    assert rows[0]["checked_in_at"] == "2027-03-20 13:30" and rows[0]["phone"] == people["chen"].phone
    clock.now = datetime(2027, 3, 22, tzinfo=timezone.utc).timestamp()  # both sessions are over
    shown = runner.invoke(args=["events", "show", "fashion"]).output
    assert "session 2 — 2027-03-21 14:00 三楼: 1/2 seats, 1 bookings, 0 waiting (0 seats), 0 checked in, 1 no-shows (100%)" in shown
    assert f"{chen.code}  {people['chen'].card_no} chen  party 2  booked, checked in 2027-03-20 13:30" in shown
    report = runner.invoke(args=["events", "report", "fashion"]).output
    assert "session 1: 1 booked (2 seats of 2, fill 100%), 1 attended (2 people), no-show rate 0%" in report
    assert "total: 2 booked, 1 attended (2 people), no-show rate 50%; cost 600.00 of budget 1,200.00 (50%)" in report
    assert runner.invoke(args=["events", "show", "nosuch"]).exit_code == 1


def test_rules_check_refuses_removing_an_event_with_sign_ups_unless_cancelled(app, state, people, tmp_path):
    book(state, people["chen"])
    data = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    data["events"]["catalogue"] = [event_config("jade")]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["rules", "check", str(path)])
    assert refused.exit_code == 1
    assert "events: fashion session 1 has 1 live sign-up(s) and is no longer in the file" in refused.output
    data["events"]["catalogue"].append(event_config("fashion", sessions=2, cancelled=True))
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert runner.invoke(args=["rules", "check", str(path)]).exit_code == 0


def test_a_raised_capacity_promotes_the_waitlist_in_the_nightly_changes(state, people, rules_with, base_rules,
                                                                      catalogue, fake_wechat):
    book(state, people["chen"], guests=1)
    waiting = book(state, people["zhou"])
    catalogue[0]["sessions"][0]["capacity"] = 3
    state.rules_holder._rules = rules_with(events=event_rules(base_rules, *catalogue), pushes=PUSHES)
    jobs.run_job(state, "event_changes", date(2027, 3, 2))
    jobs.run_job(state, "event_changes", date(2027, 3, 3))
    with state.db.read() as session:
        assert session.get(EventSignup, waiting.id).status == "booked"
        assert session.scalar(select(EventSessionRow.seats_taken).where(EventSessionRow.session_key == "1")) == 3
    [text] = texts(fake_wechat)["o-zhou"]
    assert "候补转正式" in text
