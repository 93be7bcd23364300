"""Events in chat through the real webhook: the list, 报名 as a dialog, the waitlist, 我的活动, 取消报名."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from scheduler.delivery import drain
from storage.models import EventSessionRow, EventSignup, OutboxMessage
from tests.factories import event_config, event_rules, make_member, text_xml, words

SHANGHAI_2027_03_01_NOON = datetime(2027, 3, 1, 4, 0, tzinfo=timezone.utc).timestamp()
PUSHES = {"quiet_hours": None, "backoff_seconds": 0, "rate_limit_per_minute": 0}


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # every test here runs on SQLite and on PostgreSQL


@pytest.fixture
def rules(rules_with, base_rules):
    catalogue = [
        event_config("fashion", sessions=2, capacity=3, tiers=["C", "B", "A"], guests_allowed=1, title="春季时尚发布会"),
        event_config("jade", capacity=2, title="翡翠讲座"),
        event_config("later", signup_opens="2027-03-10T10:00:00", title="稍后开放"),
        event_config("gone", title="已取消活动", cancelled=True),
    ]
    return rules_with(events=event_rules(base_rules, *catalogue), pushes=PUSHES)


@pytest.fixture(autouse=True)
def march(clock):
    clock.now = SHANGHAI_2027_03_01_NOON


def bound(state, openid: str, tier: str = "C"):
    with state.db.write() as session:
        return make_member(session, openid=openid, tier=tier)


def signups(state) -> list[tuple[str, str, str, int]]:
    with state.db.read() as session:
        return [(s.event_id, s.status, s.code, s.party) for s in session.scalars(select(EventSignup).order_by(EventSignup.id))]


def seats(state, event_id: str, key: str = "1") -> int:
    with state.db.read() as session:
        return session.scalar(select(EventSessionRow.seats_taken).where(
            EventSessionRow.event_id == event_id, EventSessionRow.session_key == key)) or 0


def pushed_text(message: dict) -> str:
    """What a push said, as a template (its keyword fields) or as a customer-service text."""
    return words(message)


def test_the_list_shows_events_open_to_the_tier_with_seats_left(wechat, state):
    bound(state, "o-c", "C")
    bound(state, "o-d", "D")
    reply = wechat.text("o-c", "活动")
    assert "【fashion】春季时尚发布会" in reply and "【jade】翡翠讲座" in reply
    assert "稍后开放" not in reply and "已取消活动" not in reply
    assert "1. 第1场 2027-03-20 14:00 三楼，余位 3/3" in reply
    assert "2. 第2场 2027-03-21 14:00 三楼，余位 3/3" in reply
    d_reply = wechat.event("o-d", "CLICK", "MENU_EVENTS")
    assert "翡翠讲座" in d_reply and "春季时尚发布会" not in d_reply
    assert wechat.text("o-stranger", "events") == "请先绑定会员卡：发送“绑定 卡号 手机号”。"


def test_join_asks_session_and_guests_confirms_and_books_with_a_code(wechat, state):
    bound(state, "o-c")
    assert "请回复场次序号" in wechat.text("o-c", "报名 fashion")
    assert "请回复 1 到 2 之间的场次序号" in wechat.text("o-c", "5")
    assert "最多可携带 1 位亲友" in wechat.text("o-c", "2")
    assert "须为 0 到 1 之间的整数" in wechat.text("o-c", "2")  # more guests than allowed: asked again
    confirm = wechat.text("o-c", "1")
    assert "场次：第2场（2027-03-21 14:00，三楼）" in confirm and "人数：2 人（本人及 1 位亲友）" in confirm
    assert "目前尚余 3 个席位" in confirm
    assert signups(state) == []  # nothing before the confirmation
    booked = wechat.text("o-c", "确认")
    [(event_id, status, code, party)] = signups(state)
    assert (event_id, status, party) == ("fashion", "booked", 2)
    assert booked.startswith("报名成功！") and f"预约码：{code}" in booked and "时间：2027-03-21 14:00 – 16:00" in booked
    assert seats(state, "fashion", "2") == 2
    assert "第2场 2027-03-21 14:00 三楼，余位 1/3" in wechat.text("o-c", "活动")
    mine = wechat.text("o-c", "我的活动")
    assert f"【fashion】春季时尚发布会（第2场，2027-03-21 14:00，三楼）2 人，预约码 {code}" in mine


def test_a_single_session_without_guests_goes_straight_to_the_confirmation(wechat, state):
    bound(state, "o-d", "D")
    confirm = wechat.text("o-d", "join JADE")
    assert confirm.startswith("请确认报名：\n翡翠讲座") and "目前尚余 2 个席位" in confirm
    assert "报名成功" in wechat.text("o-d", "yes")


def test_a_party_without_guests_is_just_the_member(wechat, state):
    bound(state, "o-alone")
    confirm = wechat.text("o-alone", "报名 jade")  # no guests allowed: not asked
    assert "人数：1 人（本人）" in confirm and "亲友" not in confirm
    wechat.text("o-alone", "取消")
    wechat.text("o-alone", "报名 fashion")
    wechat.text("o-alone", "1")
    confirm = wechat.text("o-alone", "0")  # guests allowed, none brought
    assert "人数：1 人（本人）" in confirm and "亲友" not in confirm


def test_refusals_say_why_and_change_nothing(wechat, state, clock):
    bound(state, "o-d", "D")
    bound(state, "o-c", "C")
    assert wechat.text("o-d", "报名") == "请发送“报名 活动编号”，例如：报名 fashion。发送“活动”查看可报名的活动。"
    assert wechat.text("o-d", "报名 nosuch") == "没有编号为“nosuch”的活动。发送“活动”查看可报名的活动。"
    assert wechat.text("o-d", "报名 fashion") == "“春季时尚发布会”面向铂金卡、钻石卡、尊荣钻石卡会员，您目前是缤纷卡，暂不能报名。"
    assert wechat.text("o-d", "报名 later") == "“稍后开放”将于 2027-03-10 10:00 开放报名，届时欢迎报名。"
    assert wechat.text("o-d", "报名 gone") == "很抱歉，“已取消活动”已取消。"
    wechat.text("o-c", "报名 jade")
    wechat.text("o-c", "确认")
    [(_, _, code, _)] = signups(state)
    assert wechat.text("o-c", "报名 jade") == (
        f"您已报名“翡翠讲座”（单场，2027-03-20 14:00），预约码 {code}。如需更改，请先发送“取消报名 jade”。")
    assert wechat.text("o-d", "取消报名 fashion") == "您没有报名编号为“fashion”的活动。发送“我的活动”查看您的报名。"
    clock.now = datetime(2027, 3, 17, 10, 0, tzinfo=timezone.utc).timestamp()  # 18:00 in Shanghai: the deadline
    assert wechat.text("o-c", "取消报名 jade") == "“翡翠讲座”的在线取消截止时间为 2027-03-17 18:00，现已无法在线取消，请联系门店。"
    clock.now = datetime(2027, 3, 18, 10, 0, tzinfo=timezone.utc).timestamp()
    assert wechat.text("o-d", "报名 jade") == "“翡翠讲座”报名已于 2027-03-18 18:00 截止。"
    assert len(signups(state)) == 1 and signups(state)[0][1] == "booked" and seats(state, "jade") == 1


def test_a_confirmation_sent_twice_at_once_books_once_and_both_are_answered(wechat, state, double_tap):
    bound(state, "o-d", "D")
    assert wechat.text("o-d", "报名 jade").startswith("请确认报名：")
    done, repeated = sorted(double_tap(wechat, "o-d", "确认"), key=lambda reply: not reply.startswith("报名成功"))
    [(_, status, code, _)] = signups(state)
    assert status == "booked" and done.startswith("报名成功！") and f"预约码：{code}" in done
    assert repeated == "已收到您的确认，正在为您办理，请勿重复发送；办理结果见另一条回复。"
    assert seats(state, "jade") == 1


@pytest.mark.parametrize("command, answer", [("报名", "没有编号为“{id}”的活动。"), ("取消报名", "您没有报名编号为“{id}”的活动。")],
                         ids=["join", "leave"])
def test_an_unknown_id_of_ten_thousand_characters_comes_back_short(wechat, state, command, answer):
    bound(state, "o-c")
    reply = wechat.text("o-c", f"{command} {'x' * 10_000}")
    assert reply.startswith(answer.format(id="x" * 32 + "…")) and len(reply) < 100


def test_a_full_session_offers_the_waitlist_and_a_cancellation_promotes_by_push_once(wechat, state, fake_wechat):
    for n in range(4):
        bound(state, f"o-{n}", "D")
    for n in range(2):
        wechat.text(f"o-{n}", "报名 jade")
        assert "报名成功" in wechat.text(f"o-{n}", "确认")
    confirm = wechat.text("o-2", "报名 jade")
    assert "该场次名额已满，确认后将为您登记候补" in confirm
    assert "您目前排第 1 位" in wechat.text("o-2", "确认")
    wechat.text("o-3", "报名 jade")
    assert "您目前排第 2 位" in wechat.text("o-3", "确认")
    assert "候补第 2 位，1 人" in wechat.text("o-3", "我的活动")
    assert wechat.text("o-0", "取消报名 jade") == "已取消“翡翠讲座”（单场）的报名，1 个席位已释放。"
    statuses = [s[1] for s in signups(state)]
    assert statuses == ["cancelled", "booked", "booked", "waitlisted"] and seats(state, "jade") == 2
    assert "候补第 1 位" in wechat.text("o-3", "我的活动")
    drain(state)
    sent = fake_wechat.sent()
    assert [m["touser"] for m in sent] == ["o-2"]
    text = pushed_text(sent[0])  # o-2 wrote within 48 hours: a customer-service text
    assert "已从候补转为正式报名" in text and f"预约码 {signups(state)[2][2]}" in text
    drain(state)
    assert len(fake_wechat.sent()) == 1
    assert wechat.text("o-3", "取消报名 jade") == "已退出“翡翠讲座”（单场）的候补名单。"
    assert [s[1] for s in signups(state)] == ["cancelled", "booked", "booked", "withdrawn"]


def test_the_same_message_retried_books_once(wechat, state):
    bound(state, "o-c")
    wechat.text("o-c", "报名 jade")
    xml = text_xml("o-c", "确认", msg_id=424242, create_time=int(wechat.clock()))
    first = wechat.send(xml)["Content"]
    again = wechat.send(xml)["Content"]
    assert first == again and "报名成功" in first
    assert len(signups(state)) == 1 and seats(state, "jade") == 1
    with state.db.read() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
