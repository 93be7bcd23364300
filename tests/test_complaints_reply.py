"""`回复` / `待补充` when WeChat does not take the customer-service message: a refusal falls back to a
template through the outbox; a timeout is noted in doubt and never resent. Against the WeChat API stand-in."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from rules import Rules
from scheduler.delivery import drain
from storage.models import OutboxMessage, Ticket, TicketEvent
from tests.factories import make_member, make_staff

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai
TIMEOUT = 0.3  # seconds the bot waits for WeChat here (config: pushes.http_timeout_seconds)


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # SQLite and PostgreSQL


@pytest.fixture
def rules(rules_with) -> Rules:
    return rules_with(pushes={"http_timeout_seconds": TIMEOUT})


@pytest.fixture
def ticket_no(wechat, state, clock, fake_wechat) -> str:
    clock.now = NOW.timestamp()
    with state.db.write() as session:
        make_staff(session, "S1", role="service", openid="o-s1", name="客服甲")
        make_member(session, name="张小敏", tier="D", openid="o-d")
    wechat.text("o-d", "投诉 产品质量 项链断了")  # the member writes: their 48-hour window is open
    number = wechat.text("o-d", "确认").split("单号 ")[1].split("。")[0]
    drain(state)  # the assignee's alert goes now, not into the sends below
    fake_wechat.http.post(fake_wechat.url + "/_reset")
    return number


def _replies(state) -> list[tuple[str, str | None]]:
    with state.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(TicketEvent.body, TicketEvent.delivery).where(TicketEvent.kind == "replied")
            .order_by(TicketEvent.id))]


def _reply_pushes(state) -> list[tuple[str, str]]:
    with state.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(OutboxMessage.occasion, OutboxMessage.status).where(OutboxMessage.job == "ticket_reply")
            .order_by(OutboxMessage.id))]


def test_a_refused_customer_service_message_goes_as_a_template(wechat, state, ticket_no, fake_wechat):
    # WeChat: the member's window is closed after all (the bot's note of their last message is older
    # than WeChat's): the reply is refused, and so is the outbox's own customer-service try
    fake_wechat.fail(errcode=45015, times=2)
    answer = wechat.text("o-s1", f"回复 {ticket_no} 请带项链到门店检测")
    assert answer == f"会员 48 小时内未互动，已改为模板消息通知（{ticket_no}）。"
    assert _replies(state) == [("请带项链到门店检测", "template after 45015")]
    assert fake_wechat.sent() == []  # the refused text never arrived
    drain(state)
    [template] = fake_wechat.sent()
    assert (template["touser"], template["template_id"]) == ("o-d", "TPL_TICKET_NOTICE")
    assert template["data"]["keyword1"]["value"] == ticket_no
    assert template["data"]["keyword2"]["value"] == "请带项链到门店检测"
    with state.db.read() as session:
        event_id = session.scalar(select(TicketEvent.id).where(TicketEvent.kind == "replied"))
        assert session.scalar(select(Ticket.first_response_at)) is not None  # answered, though by template
    assert _reply_pushes(state) == [(f"{ticket_no}:{event_id}", "sent")]
    drain(state)
    assert len(fake_wechat.sent()) == 1  # once

    # any other refusal (here a system error) goes to the outbox the same way, which sends it by the
    # channel open then (here a customer-service text again); 待补充 still pauses the clock
    fake_wechat.fail(errcode=-1)
    assert wechat.text("o-s1", f"待补充 {ticket_no} 请发一张发票照片") == \
        f"已发送给会员，工单 {ticket_no} 等待会员补充，解决计时暂停。"
    assert _replies(state)[-1] == ("请发一张发票照片", "template after -1")
    assert len(fake_wechat.sent()) == 1
    drain(state)
    [_, notice] = fake_wechat.sent()
    assert notice["touser"] == "o-d"
    assert notice["text"]["content"] == f"您的投诉 {ticket_no} 有新回复：请发一张发票照片"
    assert [status for _, status in _reply_pushes(state)] == ["sent", "sent"]
    with state.db.read() as session:
        ticket = session.scalar(select(Ticket))
        assert ticket.status == "waiting" and ticket.resolution_due_at is None


def test_a_timeout_is_noted_in_doubt_and_not_resent(wechat, state, ticket_no, fake_wechat):
    fake_wechat.fail(slow_seconds=TIMEOUT * 4)  # WeChat takes the message but answers too late
    answer = wechat.text("o-s1", f"回复 {ticket_no} 请带项链到门店检测")
    assert answer == f"回复已记录，发送结果未知（in doubt: Timeout），请勿重复发送（{ticket_no}）。"
    assert _replies(state) == [("请带项链到门店检测", "in doubt: Timeout")]
    assert _reply_pushes(state) == []  # no template behind it: the member may have it already
    drain(state)
    sent = fake_wechat.sent()
    assert [(m["touser"], m["msgtype"]) for m in sent] == [("o-d", "text")]  # it did arrive, once
    assert "请带项链到门店检测" in sent[0]["text"]["content"]
    # the next reply goes normally
    assert wechat.text("o-s1", f"回复 {ticket_no} 检测结果已出") == f"已发送给会员（{ticket_no}）。"
    assert _replies(state)[-1] == ("检测结果已出", "custom")
    drain(state)
    assert len(fake_wechat.sent()) == 2
