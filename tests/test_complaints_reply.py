"""`回复` / `待补充` go through the outbox's own sender at once: a refused customer-service text falls back to
the template in the same send, a passing refusal is tried again, a timeout is noted in doubt (said in Chinese)
and never resent, a member who cannot get it is named. Against the WeChat API stand-in."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select, update

from rules import Rules
from scheduler.delivery import drain
from storage.models import Member, OutboxMessage, Ticket, TicketEvent
from tests.factories import make_member, make_staff

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai
TIMEOUT = 0.3  # seconds the bot waits for WeChat here (config: pushes.http_timeout_seconds)


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # SQLite and PostgreSQL


@pytest.fixture
def rules(rules_with) -> Rules:
    return rules_with(pushes={"http_timeout_seconds": TIMEOUT, "backoff_seconds": 0.01})


@pytest.fixture
def ticket_no(wechat, state, clock, fake_wechat) -> str:
    clock.now = NOW.timestamp()
    with state.db.write() as session:
        make_staff(session, "S1", role="service", openid="o-s1", name="客服甲")
        make_member(session, name="张小敏", tier="D", openid="o-d")
    wechat.text("o-d", "投诉 产品质量 项链断了")  # the member writes: their 48-hour window is open
    number = wechat.text("o-d", "确认").split("单号 ")[1].split("。")[0]
    state.at_once.wait()  # the assignee's alert is out, not mixed with the sends below
    fake_wechat.http.post(fake_wechat.url + "/_reset")
    return number


def _replies(state) -> list[tuple[str, str | None]]:
    with state.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(TicketEvent.body, TicketEvent.delivery).where(TicketEvent.kind == "replied")
            .order_by(TicketEvent.id))]


def _reply_pushes(state) -> list[tuple[str, str, str | None]]:
    with state.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(OutboxMessage.occasion, OutboxMessage.status, OutboxMessage.channel)
            .where(OutboxMessage.job == "ticket_reply").order_by(OutboxMessage.id))]


def test_a_refused_customer_service_message_goes_as_a_template_at_once(wechat, state, ticket_no, fake_wechat):
    # WeChat: the member's window is closed after all (the bot's note of their last message is older than
    # WeChat's): the text is refused, and the template goes in the same send, before the staff is answered
    fake_wechat.fail(errcode=45015)
    answer = wechat.text("o-s1", f"回复 {ticket_no} 请带项链到门店检测")
    assert answer == f"会员 48 小时内未互动，已改为模板消息通知（{ticket_no}）。"
    assert _replies(state) == [("请带项链到门店检测", "template")]
    [template] = fake_wechat.sent()  # the refused text never arrived
    assert (template["touser"], template["template_id"]) == ("o-d", "TPL_TICKET_NOTICE")
    assert template["data"] == {"keyword1": {"value": ticket_no}, "keyword2": {"value": "请带项链到门店检测"},
                                "keyword3": {"value": "发送“我的投诉”查看全文"}}  # no first or remark line
    with state.db.read() as session:
        event_id = session.scalar(select(TicketEvent.id).where(TicketEvent.kind == "replied"))
        assert session.scalar(select(Ticket.first_response_at)) is not None  # answered, though by template
    assert _reply_pushes(state) == [(f"{ticket_no}:{event_id}", "sent", "template")]
    drain(state)
    assert len(fake_wechat.sent()) == 1  # once

    # a passing refusal (system busy) is tried again like any push, by the same sender; 待补充 pauses the clock
    fake_wechat.fail(errcode=-1)
    assert wechat.text("o-s1", f"待补充 {ticket_no} 请发一张发票照片") == \
        f"已发送给会员，工单 {ticket_no} 等待会员补充，解决计时暂停。"
    assert _replies(state)[-1] == ("请发一张发票照片", "custom")
    [_, notice] = fake_wechat.sent()
    assert notice["touser"] == "o-d"
    assert notice["text"]["content"] == f"您的投诉 {ticket_no} 有新回复：请发一张发票照片"
    assert [status for _, status, _ in _reply_pushes(state)] == ["sent", "sent"]
    with state.db.read() as session:
        ticket = session.scalar(select(Ticket))
        assert ticket.status == "waiting" and ticket.resolution_due_at is None


def test_a_timeout_is_in_doubt_told_in_chinese_and_never_resent(wechat, state, ticket_no, fake_wechat):
    fake_wechat.fail(slow_seconds=TIMEOUT * 4)  # WeChat takes the message but answers too late
    answer = wechat.text("o-s1", f"回复 {ticket_no} 请带项链到门店检测")
    assert answer == (f"回复已记录，但微信在 {TIMEOUT:g} 秒内没有答复，无法确认会员是否已收到。为免重复，系统不会重发，"
                      f"请勿再次发送（{ticket_no}）。")
    [(body, delivery)] = _replies(state)
    assert body == "请带项链到门店检测" and delivery.startswith("in doubt: ")
    assert [(status, channel) for _, status, channel in _reply_pushes(state)] == [("unknown", "custom")]
    drain(state)
    sent = fake_wechat.sent()
    assert [(m["touser"], m["msgtype"]) for m in sent] == [("o-d", "text")]  # it did arrive, once
    assert "请带项链到门店检测" in sent[0]["text"]["content"]
    # the next reply goes normally
    assert wechat.text("o-s1", f"回复 {ticket_no} 检测结果已出") == f"已发送给会员（{ticket_no}）。"
    assert _replies(state)[-1] == ("检测结果已出", "custom")
    drain(state)
    assert len(fake_wechat.sent()) == 2


def test_a_reply_to_a_member_who_cannot_get_it_says_so(wechat, state, ticket_no, fake_wechat):
    fake_wechat.block("o-d", 43004)  # the member unfollowed meanwhile
    assert wechat.text("o-s1", f"回复 {ticket_no} 您好") == \
        f"回复已记录，但会员目前收不到公众号消息（已解绑、取消关注或拒收），未能送达（{ticket_no}）。"
    assert _replies(state)[-1][1] == "unreachable: 43004 require subscribe"
    with state.db.write() as session:
        session.execute(update(Member).values(openid=None))  # and then unbound: nothing is even tried
    assert "未能送达" in wechat.text("o-s1", f"回复 {ticket_no} 还在吗")
    assert _replies(state)[-1] == ("还在吗", "not sent: not bound")
    assert fake_wechat.sent() == []
