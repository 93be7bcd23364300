"""Complaints reach someone who can be alerted: a key account whose manager has no WeChat yet goes to the
service desk (then a supervisor) and the supervisors are told once a day; a transfer to staff without
WeChat is refused; template alerts carry the complaint's first words and its due time; alerts leave at
once, with no drain. Through the real webhook and the WeChat API stand-in, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from storage.models import OutboxMessage, Staff, Ticket, TicketEvent
from tests.factories import make_member, make_staff

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # Monday 10:00 in Shanghai


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # SQLite and PostgreSQL


def _number(reply: str) -> str:
    return reply.split("单号 ")[1].split("。")[0].split("）")[0]


def _arrived(state, fake_wechat, openid: str) -> list[dict]:
    """What WeChat got for ``openid`` once this process's at-once sends are done (nothing drains here)."""
    state.at_once.wait()
    return [m for m in fake_wechat.sent() if m["touser"] == openid]


def _tickets(state) -> list[tuple[str, str | None, str]]:
    with state.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(Ticket.number, Ticket.assignee_id, Ticket.priority).order_by(Ticket.id))]


def _unreachable_alerts(state) -> list[tuple[str, str]]:
    with state.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(OutboxMessage.occasion, OutboxMessage.staff_id)
            .where(OutboxMessage.job == "manager_unreachable").order_by(OutboxMessage.id))]


@pytest.fixture
def chain(state, clock):
    """A chain's first weeks: manager M1 is in the import but has not bound WeChat; the desk and a supervisor have."""
    clock.now = NOW.timestamp()
    with state.db.write() as session:
        make_staff(session, "M1", role="manager", name="王经理")  # never sent 员工绑定
        make_staff(session, "S1", role="service", openid="o-s1", name="客服甲")
        make_staff(session, "SUP", role="supervisor", openid="o-sup", name="陈主管")
        make_member(session, name="周美玲", tier="A", openid="o-a1", manager_id="M1")
        make_member(session, name="吴建华", tier="A", openid="o-a2", manager_id="M1")
        make_member(session, name="孙丽", tier="B", openid="o-b")  # a key account without a manager: the desk


def test_a_key_account_whose_manager_has_no_wechat_reaches_the_desk_and_the_supervisor_is_told(
        wechat, state, chain, fake_wechat, clock):
    wechat.text("o-a1", "投诉 门店服务 店员态度不好")
    opened = wechat.text("o-a1", "确认")
    assert "客服专员将于 11-23 12:00 前与您联系" in opened  # high priority: 2 h, from whoever will answer
    assert "客户经理" not in opened  # no promise that the manager calls
    number = _number(opened)
    assert _tickets(state) == [(number, "S1", "high")]
    [alert] = _arrived(state, fake_wechat, "o-s1")  # the desk, at once
    assert alert["data"]["keyword1"]["value"] == number
    [told] = _arrived(state, fake_wechat, "o-sup")
    assert (told["template_id"], told["data"]["keyword1"]["value"]) == ("TPL_STAFF_ALERT", number)
    assert told["data"]["keyword2"]["value"] == "王经理" and told["data"]["keyword4"]["value"] == "客服甲"

    # the same manager's other key account the same day: routed the same way, the supervisor not told again
    human = wechat.text("o-a2", "人工客服")
    assert human.startswith("已为您转接客服专员") and "客户经理" not in human
    assert [assignee for _, assignee, _ in _tickets(state)] == ["S1", "S1"]
    assert len(_arrived(state, fake_wechat, "o-sup")) == 1
    assert _unreachable_alerts(state) == [("20261123:M1", "SUP")]

    # the next day the supervisor hears of M1 again
    clock.now = (NOW + timedelta(days=1)).timestamp()
    wechat.text("o-a1", "投诉 产品质量 项链断了")
    wechat.text("o-a1", "确认")
    assert _unreachable_alerts(state) == [("20261123:M1", "SUP"), ("20261124:M1", "SUP")]
    assert len(_arrived(state, fake_wechat, "o-sup")) == 2


def test_with_nobody_on_the_desk_a_supervisor_takes_the_ticket(wechat, state, chain, fake_wechat):
    with state.db.write() as session:
        session.get(Staff, "S1").openid = None  # the desk has not bound WeChat either
    wechat.text("o-a1", "投诉 门店服务 店员态度不好")
    opened = wechat.text("o-a1", "确认")
    assert "客服主管将于 11-23 12:00 前与您联系" in opened
    assert [assignee for _, assignee, _ in _tickets(state)] == ["SUP"]
    alerts = _arrived(state, fake_wechat, "o-sup")  # the ticket itself, and the word about the manager
    assert sorted(a["data"]["keyword3"]["value"] for a in alerts) == ["客户经理未绑定微信，已转交", "门店服务"]


def test_a_transfer_to_staff_without_wechat_is_refused_and_changes_nothing(wechat, state, chain, fake_wechat):
    with state.db.write() as session:
        make_staff(session, "S3", role="service", name="客服丙")  # not bound
    wechat.text("o-a1", "投诉 其他 问题")
    number = _number(wechat.text("o-a1", "确认"))
    state.at_once.wait()
    sent_before = len(fake_wechat.sent())
    refusal = wechat.text("o-s1", f"转交 {number} S3")
    assert refusal == ("未转交：客服丙（S3）尚未绑定员工微信，收不到工单提醒。请转交给已绑定的同事，"
                       "或先让其发送“员工绑定 邀请码”。")
    assert [assignee for _, assignee, _ in _tickets(state)] == ["S1"]
    with state.db.read() as session:
        assert not session.scalars(select(TicketEvent).where(TicketEvent.kind == "transferred")).all()
        assert not session.scalars(select(OutboxMessage).where(OutboxMessage.job == "ticket_transferred")).all()
    state.at_once.wait()
    assert len(fake_wechat.sent()) == sent_before  # nobody alerted
    assert "已转交给 陈主管（SUP）" in wechat.text("o-s1", f"转交 {number} SUP")  # a bound colleague: done


def test_template_alerts_carry_the_first_words_and_the_due_time(wechat, state, chain, fake_wechat):
    wechat.text("o-b", "投诉 售后服务 上周在南京西路店买的钻戒，今天发现主石松动，店员说要等三周才能修")
    number = _number(wechat.text("o-b", "确认"))
    [alert] = _arrived(state, fake_wechat, "o-s1")  # S1 never wrote to the account: a template
    data = alert["data"]
    assert data == {"keyword1": {"value": number}, "keyword2": {"value": "孙丽"}, "keyword3": {"value": "售后服务"},
                    "keyword4": {"value": "上周在南京西路店买的钻戒，今天发现主石…"},  # the first words, cut to 20
                    "keyword5": {"value": "11-23 12:00 前首次回复"}}  # high priority: 2 h; no first or remark line

    wechat.text("o-b", f"补充 {number} 第一行\n第二行：店员的答复我也截图了，请一并查看")
    note = _arrived(state, fake_wechat, "o-s1")[-1]["data"]
    assert note["keyword3"]["value"] == "第一行 第二行：店员的答复我也截图了，…"  # one line, cut

    wechat.text("o-s1", f"转交 {number} SUP")  # the supervisor never wrote either: a template
    [moved] = _arrived(state, fake_wechat, "o-sup")
    assert moved["data"]["keyword4"]["value"].startswith("上周在南京西路店买的钻戒")
    assert moved["data"]["keyword5"]["value"] == "11-23 12:00 前处理"  # the nearest due time
    assert all(len(v["value"]) <= 20 for m in fake_wechat.sent() for v in m["data"].values())
