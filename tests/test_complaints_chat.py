"""Complaints through the real webhook: the member's dialog, routing, staff commands, privacy, ratings."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from storage import members, purchases
from storage.models import CallBack, Member, OutboxMessage, Staff, StaffInvite, Ticket, TicketEvent
from storage.staff import create_invite
from tests.factories import image_xml, make_member, make_staff, text_xml, utc_now

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # SQLite and PostgreSQL


@pytest.fixture
def people(state, clock):
    clock.now = NOW.timestamp()
    with state.db.write() as session:
        make_staff(session, "M1", role="manager", openid="o-m1", name="王经理")
        make_staff(session, "S1", role="service", openid="o-s1", name="客服甲")
        make_staff(session, "S2", role="service", openid="o-s2", name="客服乙")
        make_staff(session, "S3", role="service", name="客服丙")  # not bound: never routed to
        make_staff(session, "SUP", role="supervisor", openid="o-sup", name="主管")
        d = make_member(session, name="张小敏", tier="D", openid="o-d")
        d2 = make_member(session, name="刘芳", tier="D", openid="o-d2")
        a = make_member(session, name="周美玲", tier="A", openid="o-a", manager_id="M1")
        return {"d": d.id, "d2": d2.id, "a": a.id}


def _tickets(state) -> list[Ticket]:
    with state.db.read() as session:
        return list(session.scalars(select(Ticket).order_by(Ticket.id)))


def _arrived(state, fake_wechat, openid: str | None = None) -> list[dict]:
    """What WeChat got, once the alerts and notices this process sends at once are out (no drain runs)."""
    state.at_once.wait()
    return [m for m in fake_wechat.sent() if openid is None or m["touser"] == openid]


def _reset(state, fake_wechat) -> None:
    state.at_once.wait()
    fake_wechat.http.post(fake_wechat.url + "/_reset")


def _number(reply: str) -> str:
    return reply.split("单号 ")[1].split("。")[0].split("）")[0].split("，")[0]


def test_the_dialog_asks_category_description_and_confirms(wechat, state, people, fake_wechat):
    assert "请选择投诉类别" in wechat.text("o-d", "投诉")
    assert "请回复类别前的数字" in wechat.text("o-d", "9")
    assert wechat.text("o-d", "1") == "请描述您遇到的问题（可同时发送图片或语音）。"
    assert "请继续描述" in wechat.send(image_xml("o-d", "MEDIA1", "http://pic/1.jpg", 777001, int(wechat.clock())))["Content"]
    confirm = wechat.text("o-d", "戒指的钻石掉了")
    assert "类别：产品质量" in confirm and "内容：戒指的钻石掉了" in confirm and "附件：1 个" in confirm
    opened = wechat.text("o-d", "确认")
    assert opened.startswith("您的投诉已受理，单号 T20261123-0001。")
    assert "客服专员将于 11-23 18:00 前与您联系，并在 11-24 10:00 前处理完毕" in opened  # normal: 8 h / 24 h
    [ticket] = _tickets(state)
    assert (ticket.number, ticket.category, ticket.priority, ticket.assignee_id) == ("T20261123-0001", "产品质量",
                                                                                      "normal", "S1")
    with state.db.read() as session:
        media = session.scalars(select(TicketEvent.body).where(TicketEvent.kind == "media")).all()
    assert media == ["image:MEDIA1 http://pic/1.jpg"]
    [alert] = _arrived(state, fake_wechat, "o-s1")  # at once, without a drain
    assert alert["template_id"] == "TPL_STAFF_ALERT"  # the staff member never wrote: a template
    wechat.text("o-s2", "工单")  # S2 writes: their 48-hour window opens
    wechat.text("o-d2", "投诉 其他 问题")
    wechat.text("o-d2", "确认")
    [alert] = _arrived(state, fake_wechat, "o-s2")
    assert alert["msgtype"] == "text" and "【新投诉 T20261123-0002】" in alert["text"]["content"]

def test_one_line_skips_questions_and_a_retry_opens_one_ticket(wechat, state, people):
    assert "请描述您遇到的问题" in wechat.text("o-d", "投诉 售后服务")
    wechat.text("o-d", "取消")
    confirm = wechat.text("o-d", "投诉 2 维修拖了三周")
    assert "类别：售后服务" in confirm and "维修拖了三周" in confirm
    xml = text_xml("o-d", "确认", msg_id=990001, create_time=int(wechat.clock()))
    first = wechat.send(xml)["Content"]
    again = wechat.send(xml)  # WeChat's retry: same MsgId
    assert again["Content"] == first
    assert len(_tickets(state)) == 1
    assert "请选择投诉类别" in wechat.text("o-d", "投诉 说不清是什么问题")  # a description, category still asked


def test_key_accounts_go_to_their_manager_others_round_robin(wechat, state, people, fake_wechat):
    wechat.text("o-a", "投诉 门店服务 店员态度不好")
    opened = wechat.text("o-a", "确认")
    assert "您的专属客户经理将于 11-23 12:00 前与您联系" in opened  # high: 2 h
    for openid in ("o-d", "o-d2", "o-d"):
        wechat.text(openid, "投诉 其他 问题")
        wechat.text(openid, "确认")
    assignees = [(t.priority, t.assignee_id) for t in _tickets(state)]
    assert assignees == [("high", "M1"), ("normal", "S1"), ("normal", "S2"), ("normal", "S1")]
    to_manager = _arrived(state, fake_wechat, "o-m1")
    assert len(to_manager) == 1
    data = to_manager[0]["data"]
    assert "first" not in data and "remark" not in data and all(len(v["value"]) <= 20 for v in data.values())
    assert data["keyword1"]["value"] == "T20261123-0001" and "周美玲" in data["keyword2"]["value"]


def test_staff_work_from_wechat_and_only_replies_reach_the_member(wechat, state, people, fake_wechat, clock):
    wechat.text("o-d", "投诉 产品质量 项链断了")
    number = _number(wechat.text("o-d", "确认"))
    listing = wechat.text("o-s1", "工单")
    assert listing.startswith("待处理工单 1 个") and number in listing and "张小敏" in listing
    detail = wechat.text("o-s1", f"工单 {number}")
    assert "张小敏（缤纷卡" in detail and "项链断了" in detail and "客户经理：无" in detail
    assert "没有找到您可处理的工单" in wechat.text("o-s2", f"工单 {number}")  # someone else's: not disclosed
    assert number in wechat.text("o-sup", f"工单 {number}")  # the supervisor sees all
    assert "没有听懂" in wechat.text("o-d2", f"工单 {number}")  # a member: the usual hint
    _reset(state, fake_wechat)
    assert wechat.text("o-s1", f"回复 {number} 您好，请带项链到门店检测") == f"已发送给会员（{number}）。"
    assert wechat.text("o-s1", f"回复 {number}") == "格式：回复 单号 内容（内容将发送给会员）"
    sent = fake_wechat.sent()
    assert [(m["touser"], m["msgtype"]) for m in sent] == [("o-d", "text")]
    assert "请带项链到门店检测" in sent[0]["text"]["content"]
    assert "没有听懂" in wechat.text("o-d", "回复 我自己")  # members cannot use staff commands
    assert "转交给 客服乙（S2）" in wechat.text("o-s1", f"转交 {number} S2")
    assert "没有找到您可处理的工单" in wechat.text("o-s1", f"解决 {number} 已处理")  # no longer theirs
    _reset(state, fake_wechat)  # S2's alert about the transfer
    assert "没有编号为 NOPE 的员工" in wechat.text("o-s2", f"转交 {number} NOPE")
    resolved = wechat.text("o-s2", f"解决 {number} 已免费修复")
    assert resolved.startswith(f"工单 {number} 已解决") and "并请会员评价" in resolved
    assert "已经解决" in wechat.text("o-s2", f"解决 {number} 再来一次")
    with state.db.read() as session:
        events = session.execute(select(TicketEvent.kind, TicketEvent.actor).order_by(TicketEvent.id)).all()
        ticket = session.scalar(select(Ticket))
        callbacks = session.scalars(select(CallBack)).all()
    kinds = [k for k, _ in events]
    assert kinds == ["opened", "assigned", "viewed", "viewed", "replied", "transferred", "resolved"]
    assert ("replied", "staff:S1") in events and ("resolved", "staff:S2") in events
    assert ticket.first_response_at is not None and ticket.status == "resolved"
    assert [(c.staff_id, c.reason) for c in callbacks] == [("S2", "resolved")]
    to_member = _arrived(state, fake_wechat, "o-d")
    assert len(to_member) == 1 and "请为本次服务打分" in to_member[0]["text"]["content"]
    # one rating, by digit; low ratings alert the supervisor, and the member is told so
    assert wechat.text("o-d", "2") == "很抱歉这次没能让您满意（2 分）。您的评价已转给服务主管，主管会亲自跟进此事。"
    assert "已评价过" in wechat.text("o-d", f"评价 {number} 5")
    assert "没有听懂" in wechat.text("o-d", "5")  # nothing left to rate
    assert _arrived(state, fake_wechat, "o-sup")
    # the member sees the thread without internal events
    thread = wechat.text("o-d", f"我的投诉 {number}")
    assert "客服：您好，请带项链到门店检测" in thread and "已免费修复" in thread and "S2" not in thread
    assert "已解决" in wechat.text("o-d", "我的投诉")


def test_bad_input_gets_a_clear_answer_and_changes_nothing(wechat, state, people):
    wechat.text("o-d", "投诉 其他 问题")
    number = _number(wechat.text("o-d", "确认"))
    with state.db.read() as session:
        before = session.scalar(select(func.count()).select_from(TicketEvent))
    assert "没有找到您可处理的工单 T20990101-0001" in wechat.text("o-s1", "回复 T20990101-0001 你好")
    assert "没有找到您的投诉" in wechat.text("o-d2", f"补充 {number} 我也要")  # someone else's ticket
    assert wechat.text("o-d", "补充") == "格式：补充 单号 内容"
    assert wechat.text("o-d", f"评价 {number} 9") == "请给出 1 到 5 之间的分数（5 为非常满意）。"
    assert "不在评价期内" in wechat.text("o-d", f"评价 {number} 4")  # not resolved, never asked
    assert wechat.text("o-s1", f"解决 {number}") == "格式：解决 单号 处理结果（处理结果将发送给会员）"
    with state.db.read() as session:
        assert session.scalar(select(func.count()).select_from(TicketEvent)) == before
        assert session.scalar(select(Ticket.rating)) is None


def test_rating_is_asked_only_inside_the_window_and_once(wechat, state, people, redis_client, fake_wechat):
    wechat.text("o-d", "投诉 其他 问题")
    number = _number(wechat.text("o-d", "确认"))
    redis_client.delete(state.keys("seen", "o-d"))  # the member's 48-hour window has closed
    resolved = wechat.text("o-s1", f"解决 {number} 已处理")
    assert "并请会员评价" not in resolved
    [notice] = _arrived(state, fake_wechat, "o-d")
    assert notice["template_id"] == "TPL_TICKET_NOTICE"
    assert "不在评价期内" in wechat.text("o-d", f"评价 {number} 5")
    # 补充 reopens it; resolving again does not ask (never twice, Chatwoot #8726)
    assert "已重新打开" in wechat.text("o-d", f"补充 {number} 还是不行")
    assert "并请会员评价" in wechat.text("o-s1", f"解决 {number} 已更换")  # the window is open now
    assert "已重新打开" in wechat.text("o-d", f"补充 {number} 又坏了")
    assert "并请会员评价" not in wechat.text("o-s1", f"解决 {number} 再次更换")


def test_staff_invite_and_bind(wechat, state, people, clock):
    with state.db.write() as session:
        make_staff(session, "S9", role="service", name="新客服")
        code = create_invite(session, "S9", NOW).code
        old = create_invite(session, "S9", NOW - timedelta(hours=25)).code
    assert "邀请码无效" in wechat.text("o-new", f"员工绑定 {old}")  # expired
    assert "邀请码无效" in wechat.text("o-new", "员工绑定 NOSUCH")
    assert "不能同时作为员工账号" in wechat.text("o-d", f"员工绑定 {code}")  # a member's WeChat
    assert wechat.text("o-new", f"员工绑定 {code}").startswith("新客服，您的微信已绑定员工账号 S9")
    assert "邀请码无效" in wechat.text("o-other", f"员工绑定 {code}")  # used
    assert wechat.text("o-new", "工单") == "目前没有待处理的工单。"
    with state.db.read() as session:
        assert session.get(Staff, "S9").openid == "o-new"
        assert session.get(StaffInvite, code).used_by == "o-new"


def test_a_staff_wechat_cannot_bind_a_member_card(wechat, state, people, redis_client):
    with state.db.write() as session:
        free = make_member(session, name="陈静", tier="C")  # not bound yet
        card_no, phone = free.card_no, free.phone
    refusal = "该微信已绑定员工账号，不能同时绑定会员卡。请用您本人的其他微信号绑定会员卡。"
    assert wechat.text("o-m1", f"绑定 {card_no} {phone}") == refusal  # the right card and phone
    assert wechat.text("o-m1", "绑定") == refusal  # no questions asked either
    assert wechat.text("o-m1", "积分") != refusal  # and no dialog left open
    with state.db.write() as session:  # the operation refuses it too, whoever calls it
        assert members.bind_member(session, "o-s1", card_no, phone, now=utc_now()) == (members.BindOutcome.STAFF, None)
    with state.db.read() as session:
        assert session.get(Member, free.id).openid is None
        assert session.get(Staff, "M1").openid == "o-m1"
    assert not redis_client.keys("*bindfail*")  # not counted as a wrong card or phone
    # the same card binds from the member's own WeChat
    assert wechat.text("o-new", f"绑定 {card_no} {phone}").startswith("陈静，您好！")


def test_human_and_my_clients_and_callbacks(wechat, state, people):
    opened = wechat.text("o-a", "人工客服")
    assert "正在处理中" in wechat.text("o-a", "human")
    [ticket] = _tickets(state)
    # hours away: the member need not wait in the chat (no "请稍候")
    assert opened == f"已为您转接您的专属客户经理（单号 {ticket.number}），将于 11-23 12:00 前在此回复您，您不必在线等候。"
    assert (ticket.kind, ticket.category, ticket.assignee_id) == ("human", "咨询", "M1")
    clients = wechat.text("o-m1", "我的客户")
    assert "周美玲（尊荣钻石卡" in clients and "未结工单 1" in clients
    assert wechat.text("o-s1", "我的客户") == "您名下暂无大客户。"
    wechat.text("o-m1", f"解决 {ticket.number} 已解答")
    listing = wechat.text("o-m1", "回访")
    assert "周美玲" in listing and "投诉解决" in listing
    with state.db.read() as session:
        callback_id = session.scalar(select(CallBack.id))
    assert "没有找到您的待回访任务" in wechat.text("o-s1", f"已回访 {callback_id} 好")
    assert wechat.text("o-m1", f"已回访 {callback_id} 客户满意") == f"回访 #{callback_id} 已完成，备注已记录。"
    assert wechat.text("o-m1", "回访") == "目前没有待回访任务。"


def test_repeated_complaints_are_flagged(wechat, state, people):
    for _ in range(3):
        wechat.text("o-d", "投诉 产品质量 又坏了")
        wechat.text("o-d", "确认")
    assert [t.repeated for t in _tickets(state)] == [False, False, True]
    with state.db.read() as session:
        alerts = session.scalars(select(OutboxMessage.staff_id).where(OutboxMessage.job == "ticket_repeated")).all()
    assert alerts == ["SUP"]


def test_ratings_thank_good_ones_and_answer_low_ones_with_care(wechat, state, people, fake_wechat):
    staff_openids = {"S1": "o-s1", "S2": "o-s2"}
    numbers = []
    for _ in range(2):
        wechat.text("o-d", "投诉 其他 问题")
        numbers.append(_number(wechat.text("o-d", "确认")))
    for ticket in _tickets(state):
        wechat.text(staff_openids[ticket.assignee_id], f"解决 {ticket.number} 已处理")
    assert wechat.text("o-d", f"评价 {numbers[0]} 4 很好") == "感谢您的评价（4 分）！我们会持续改进服务。"
    low = wechat.text("o-d", f"评价 {numbers[1]} 1 没解决")
    assert low == "很抱歉这次没能让您满意（1 分）。您的评价已转给服务主管，主管会亲自跟进此事。"
    assert len(_arrived(state, fake_wechat, "o-sup")) == 1  # the follow-up the member was promised: only the low one


def test_staff_help_lists_the_staff_commands_and_members_keep_theirs(wechat, people):
    staff_help = wechat.text("o-s1", "帮助")
    assert staff_help.startswith("员工可用指令：")
    for command in ("工单 单号", "回复 单号 内容", "待补充 单号 内容", "转交 单号 员工编号", "解决 单号 处理结果",
                    "我的客户", "已回访 编号 备注"):
        assert command in staff_help
    for member_command in ("绑定 卡号 手机号", "积分明细", "兑换 编号", "投诉 ——"):  # a staff WeChat cannot use them
        assert member_command not in staff_help
    member_help = wechat.text("o-d", "帮助")
    assert member_help.startswith("可用指令：") and "绑定 卡号 手机号" in member_help and "回复 单号" not in member_help


def test_a_ticket_names_the_member_and_marks_refunded_purchases(wechat, state, people):
    rules = state.rules
    with state.db.write() as session:
        card_no = session.get(Member, people["d"]).card_no
        for receipt, amount, days_ago in (("RF-A", "500", 1), ("RF-B", "1000", 2), ("RF-C", "2000", 3)):
            purchases.record_purchase(session, purchases.PurchaseIn(
                receipt, card_no, Decimal(amount), NOW - timedelta(days=days_ago), "S1"), rules, now=NOW)
        purchases.refund_purchase(session, "RF-B", purchases.RefundIn(Decimal("300"), "R1"), rules=rules, now=NOW)
        purchases.refund_purchase(session, "RF-C", rules=rules, now=NOW)  # all of it
    wechat.text("o-d", "投诉 产品质量 项链断了")
    number = _number(wechat.text("o-d", "确认"))
    detail = wechat.text("o-s1", f"工单 {number}")

    def day(days_ago: int) -> str:
        return f"{(NOW - timedelta(days=days_ago)).astimezone(rules.zone):%Y-%m-%d}"

    assert f"近期消费：{day(1)} 500.00 元 S1；{day(2)} 1,000.00 元 S1（已退 300.00 元）；{day(3)} 2,000.00 元 S1（已全额退货，不计消费）" \
        in detail
    assert f"11-23 10:00 张小敏（{card_no}） 投诉：项链断了" in detail
    assert "member:" not in detail
