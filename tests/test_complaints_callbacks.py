"""Call-backs (回访) after a key account's first purchase: made when the purchase is recorded (the store
API, the CSV import), once per member; an overdue one is warned once."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from scheduler.jobs import ticket_watch
from storage import complaints
from storage.models import CallBack, Member, OutboxMessage, Staff
from tests.conftest import API_KEY
from tests.factories import make_member, make_staff

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # Monday 10:00 in Shanghai


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # SQLite and PostgreSQL


@pytest.fixture
def shop(state, clock):
    clock.now = NOW.timestamp()
    with state.db.write() as session:
        make_staff(session, "M1", role="manager", openid="o-m1")
        make_staff(session, "S1", role="service", openid="o-s1")
        make_staff(session, "S2", role="service", openid="o-s2")
        members = {
            "b": make_member(session, tier="B", openid="o-b"),  # B: the service desk calls back
            "b2": make_member(session, tier="B", openid="o-b2", manager_id="M1"),  # B with a manager: still the desk
            "a": make_member(session, tier="A", openid="o-a", manager_id="M1"),  # A: their account manager
            "d": make_member(session, tier="D", openid="o-d"),  # D: no call-back
        }
        return {key: (m.id, m.card_no) for key, m in members.items()}


def _purchase(card_no: str, receipt_no: str, at: datetime, amount: str = "1200.00") -> dict:
    return {"receipt_no": receipt_no, "card_no": card_no, "amount": amount,
            "purchased_at": at.isoformat(), "store": "旗舰店"}


def _callbacks(state) -> list[tuple[int, str | None, str, str, datetime]]:
    with state.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(CallBack.member_id, CallBack.staff_id, CallBack.reason, CallBack.source, CallBack.due_at)
            .order_by(CallBack.id))]


def _outbox(state, job: str) -> list[tuple[str, str, str]]:
    with state.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(OutboxMessage.occasion, OutboxMessage.staff_id, OutboxMessage.status)
            .where(OutboxMessage.job == job).order_by(OutboxMessage.id))]


def test_the_store_api_makes_the_first_purchase_call_back_once(app, state, shop, fake_wechat):
    client = app.test_client()
    bought = NOW - timedelta(hours=2)
    batch = [_purchase(shop["b"][1], "R-B1", bought), _purchase(shop["a"][1], "R-A1", bought),
             _purchase(shop["d"][1], "R-D1", bought), _purchase(shop["b2"][1], "R-B2", bought)]
    response = client.post("/api/purchases", json=batch, headers={"X-API-Key": API_KEY})
    assert response.status_code == 200, response.json
    due = bought + timedelta(days=3)  # callback_days.first_purchase
    made = _callbacks(state)
    assert made == [(shop["b"][0], "S1", "first_purchase", f"purchase:{shop['b'][0]}", due),
                    (shop["a"][0], "M1", "first_purchase", f"purchase:{shop['a'][0]}", due),
                    (shop["b2"][0], "S2", "first_purchase", f"purchase:{shop['b2'][0]}", due)]  # the desk, in turn
    # the same receipts again (a retry), and a second purchase of each: nothing new
    assert client.post("/api/purchases", json=batch, headers={"X-API-Key": API_KEY}).status_code == 200
    again = client.post("/api/purchases", json=_purchase(shop["a"][1], "R-A2", NOW), headers={"X-API-Key": API_KEY})
    assert again.status_code == 201
    assert _callbacks(state) == made
    assert sorted(staff for _, staff, _ in _outbox(state, "callback_new")) == ["M1", "S1", "S2"]
    state.at_once.wait()  # the API's process sends the owners' alerts right after the commit: no drain
    assert sorted(m["touser"] for m in fake_wechat.sent()) == ["o-m1", "o-s1", "o-s2"]
    # the watcher makes none itself any more: a pass changes nothing
    assert ticket_watch.run(state, drain=False).callbacks_overdue == 0
    assert _callbacks(state) == made


def test_the_csv_import_makes_them_too_but_not_for_old_history(app, state, shop, tmp_path):
    recent, old = NOW - timedelta(days=1), NOW - timedelta(days=40)
    lines = ["receipt_no,card_no,amount,purchased_at,store"] + [
        ",".join(str(v) for v in _purchase(card, receipt, at).values()) for card, receipt, at in (
            (shop["b"][1], "C-B1", recent), (shop["b"][1], "C-B2", recent),  # two purchases: one call-back
            (shop["a"][1], "C-A1", old),  # a purchase long past, loaded late: its call-back would be overdue
            (shop["d"][1], "C-D1", recent))]
    csv_file = tmp_path / "purchases.csv"
    csv_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runner = app.test_cli_runner()
    for _ in range(2):  # the import run twice: once each
        result = runner.invoke(args=["purchases", "import", str(csv_file)])
        assert result.exit_code == 0, result.output
    assert _callbacks(state) == [(shop["b"][0], "S1", "first_purchase", f"purchase:{shop['b'][0]}",
                                  recent + timedelta(days=3))]
    with state.db.read() as session:
        assert session.get(Member, shop["a"][0]).tier == "A"  # refused for its age, not its tier


def test_an_overdue_call_back_is_warned_once(app, state, shop, clock, fake_wechat):
    client = app.test_client()
    bought = NOW - timedelta(hours=1)
    assert client.post("/api/purchases", json=_purchase(shop["a"][1], "R-A1", bought),
                       headers={"X-API-Key": API_KEY}).status_code == 201
    [(_, _, _, _, due)] = _callbacks(state)
    state.at_once.wait()
    sent_before = len(fake_wechat.sent())  # the new task's alert
    clock.now = (due - timedelta(minutes=1)).timestamp()
    assert ticket_watch.run(state).callbacks_overdue == 0
    clock.now = (due + timedelta(minutes=1)).timestamp()
    assert ticket_watch.run(state).callbacks_overdue == 1
    assert ticket_watch.run(state).callbacks_overdue == 0  # a second pass (or a restart): nothing again
    clock.now = (due + timedelta(days=1)).timestamp()
    assert ticket_watch.run(state).callbacks_overdue == 0
    with state.db.read() as session:
        callback_id = session.scalar(select(CallBack.id))
    assert _outbox(state, "callback_overdue") == [(f"cb{callback_id}", "M1", "sent")]
    overdue = fake_wechat.sent()[sent_before:]
    assert [m["touser"] for m in overdue] == ["o-m1"]
    assert overdue[0]["data"]["keyword1"]["value"] == str(callback_id)


def test_a_call_back_done_in_time_is_never_warned(app, state, shop, clock):
    client = app.test_client()
    assert client.post("/api/purchases", json=_purchase(shop["b"][1], "R-B1", NOW),
                       headers={"X-API-Key": API_KEY}).status_code == 201
    [(_, _, _, _, due)] = _callbacks(state)
    with state.db.read() as session:
        callback_id = session.scalar(select(CallBack.id))
    with state.db.write() as session:  # closed as 已回访 does
        complaints.close_callback(session, NOW, session.get(Staff, "S1"), str(callback_id), "客户满意")
    clock.now = (due + timedelta(hours=1)).timestamp()
    assert ticket_watch.run(state).callbacks_overdue == 0
    assert _outbox(state, "callback_overdue") == []
