"""Gifts in chat, through the real webhook, on SQLite and PostgreSQL: list, redeem, codes, cancel, refusals."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from scheduler.delivery import drain
from storage import gifts, ledger, purchases
from storage.members import add_staff
from storage.models import GiftRedemption, GiftRedemptionEvent, GiftStock, LedgerEntry, Member, OutboxMessage
from tests.factories import GIFT_RULES, make_entitlement, make_member, make_points, make_stock, text_xml, utc_now

NOON = datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc).timestamp()  # 23 Nov 12:00 in Shanghai
CODE = re.compile(r"兑换码：([2-9A-HJ-NP-Z]{8})")

pytestmark = pytest.mark.usefixtures("points_stay_consistent")  # `points check` after every test


@pytest.fixture
def database_url(db_url) -> str:
    return db_url


@pytest.fixture
def rules(rules_with):
    return rules_with(gifts=GIFT_RULES, pushes={"quiet_hours": None, "backoff_seconds": 0})


@pytest.fixture(autouse=True)
def noon(clock):
    clock.now = NOON


def member_with(state, openid: str, points: int = 0, tier: str = "D", **fields) -> Member:
    with state.db.write() as session:
        member = make_member(session, openid=openid, tier=tier, **fields)
        if points:
            make_points(session, member, points)
        return member


def stock(state, gift_id: str, n: int) -> None:
    with state.db.write() as session:
        make_stock(session, gift_id, n)


def counts(state) -> tuple:
    """Everything a refusal must leave alone."""
    with state.db.read() as session:
        return (session.scalar(select(func.count()).select_from(LedgerEntry)),
                session.scalar(select(func.count()).select_from(GiftRedemption)),
                tuple(session.execute(select(GiftStock.gift_id, GiftStock.stock, GiftStock.reserved)
                                      .order_by(GiftStock.gift_id)).all()),
                tuple(session.scalars(select(Member.points_balance).order_by(Member.id))))


def test_list_in_pages_with_stock_cost_and_what_the_member_can_afford(wechat, state):
    member = member_with(state, "o-b", points=5000, tier="B")
    with state.db.write() as session:
        make_entitlement(session, session.get(Member, member.id))
        make_stock(session, "box", 5)
        make_stock(session, "perfume", 2)
        make_stock(session, "vipa", 1)
    first = wechat.text("o-b", "礼品").splitlines()
    assert first == [
        f"{member.name}，您当前积分 5,000。可兑换的礼品（第 1/2 页）：",
        "· [box] 首饰收纳盒 —— 3,000 积分，剩余 5 件，积分足够",
        "· [care] 清洗保养券 —— 800 积分，已兑完，积分足够",
        "· [perfume] 香水礼盒 —— 8,000 积分，剩余 2 件，还差 3,000 积分",
        "发送“兑换 编号”兑换，例如：兑换 box",
        "发送“更多”查看下一页。",
    ]
    second = wechat.text("o-b", "更多").splitlines()
    assert second[0].endswith("（第 2/2 页）：")
    assert second[1] == "· [vipa] 钻石吊坠（11 月 VIP 专享） —— VIP 专享会员价 2,999 元（到店购买，可先预留），剩余 1 件"
    assert second[2].startswith("· [bracelet] 纯银手链 —— VIP 赠品，免积分任选，已兑完")
    assert second[-1] == "已是最后一页，发送“礼品”回到第一页。"
    assert wechat.text("o-b", "more").splitlines()[0].endswith("（第 2/2 页）：")
    assert wechat.event("o-b", "CLICK", "MENU_GIFTS").splitlines()[0].endswith("（第 1/2 页）：")


def test_a_d_member_sees_only_their_tier_and_open_gifts(wechat, state):
    member_with(state, "o-d", points=100)
    lines = wechat.text("o-d", "gifts").splitlines()
    ids = [line.split("]")[0][3:] for line in lines if line.startswith("· [")]
    assert ids == ["box", "care"]  # no perfume (C+), later (not yet), old (over), VIP items, gift list
    assert "请先绑定会员卡" in wechat.text("o-stranger", "礼品")


def test_redeem_confirm_code_my_gifts_and_cancel(wechat, state):
    member = member_with(state, "o-r", points=5000)
    stock(state, "box", 3)
    ask = wechat.text("o-r", "兑换 box")
    assert ask.splitlines() == ["首饰收纳盒", "丝绒首饰盒", "所需积分：3,000，兑换后剩余积分：2,000",
                                "回复“确认”兑换，回复其他内容取消。"]
    done = wechat.text("o-r", "确认")
    code = CODE.search(done).group(1)
    assert "请于 2026-12-23 前凭兑换码到任一门店领取。" in done and "已使用 3,000 积分，剩余 2,000 积分。" in done
    with state.db.read() as session:
        entry = session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "redeem"))
        assert (entry.amount, entry.reference, entry.member_id) == (-3000, code, member.id)
        assert session.get(GiftStock, "box").reserved == 1
    assert wechat.text("o-r", "我的兑换").splitlines() == [
        "您的兑换记录（最近 1 笔）：", f"· 2026-11-23 首饰收纳盒 兑换码 {code} —— 待领取（2026-12-23 前）"]
    assert "每人每月限兑 1 件，您本月已兑换 1 件" in wechat.text("o-r", "兑换 box")

    cancelled = wechat.text("o-r", f"取消兑换 {code.lower()}")
    assert cancelled == f"已取消兑换 首饰收纳盒（{code}），3,000 积分已退回，当前积分 5,000。"
    with state.db.read() as session:
        back = session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "reverse"))
        assert (back.amount, back.reference) == (3000, code)
        assert session.get(GiftStock, "box").reserved == 0
        redemption = session.scalar(select(GiftRedemption))
        statuses = [(e.from_status, e.to_status) for e in gifts.history(session, redemption.id)]
        assert statuses == [(None, "open"), ("open", "cancelled")]
    assert f"兑换码 {code} —— 已取消" in wechat.text("o-r", "my gifts")
    assert wechat.text("o-r", f"取消兑换 {code}") == f"兑换码 {code} 当前状态为“已取消”，不能取消。"
    # The limit counts what is held: after the cancel the member may redeem again.
    assert "兑换后剩余积分：2,000" in wechat.text("o-r", "redeem box")


def test_points_history_names_a_cancelled_redemption_s_points_as_given_back(wechat, state):
    member = member_with(state, "o-h", points=5000)
    stock(state, "box", 3)
    wechat.text("o-h", "兑换 box")
    code = CODE.search(wechat.text("o-h", "确认")).group(1)
    wechat.text("o-h", f"取消兑换 {code}")
    with state.db.write() as session:  # a refund next to it keeps its own name
        purchases.record_purchase(session, purchases.PurchaseIn(
            "R-H1", member.card_no, Decimal("800.00"), datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc), "旗舰店"),
            state.rules, now=datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc))
        purchases.refund_purchase(session, "R-H1", purchases.RefundIn(Decimal("300.00"), "RF1"), rules=state.rules,
                                  now=datetime(2026, 11, 23, 5, 0, tzinfo=timezone.utc))
    lines = wechat.text("o-h", "积分明细").splitlines()
    assert lines[0] == "最近 5 笔积分记录："
    assert {"2026-11-23 兑换 -3,000", "2026-11-23 兑换退回 +3,000", "2026-11-23 消费积分 +800",
            "2026-11-23 退货扣回 -300"} <= set(lines[1:])
    assert sum("退货扣回" in line for line in lines) == 1  # the refund only


def test_anything_but_yes_drops_the_redemption(wechat, state):
    member_with(state, "o-x", points=5000)
    stock(state, "care", 3)
    before = counts(state)
    assert "回复“确认”兑换" in wechat.text("o-x", "兑换 care")
    assert wechat.text("o-x", "算了吧") == "已取消兑换，积分未变动。"
    assert wechat.text("o-x", "确认").startswith("抱歉，没有听懂")  # the dialog is gone
    assert "回复“确认”兑换" in wechat.text("o-x", "兑换 care")
    assert wechat.text("o-x", "取消") == "已取消。"
    assert counts(state) == before


def test_a_wechat_retry_of_the_confirmation_redeems_once(wechat, state):
    member_with(state, "o-retry", points=5000)
    stock(state, "care", 5)
    wechat.text("o-retry", "兑换 care")
    xml = text_xml("o-retry", "确认", msg_id=987654321, create_time=int(NOON))
    first, again = wechat.send(xml), wechat.send(xml)
    assert first == again and CODE.search(first["Content"])
    with state.db.read() as session:
        assert session.scalar(select(func.count()).select_from(GiftRedemption)) == 1
        assert ledger.balance(session, session.scalar(select(Member.id))) == 4200


@pytest.mark.parametrize("openid,tier,points,text,expected", [
    ("o-1", "D", 5000, "兑换 nothing", "没有编号为“nothing”的礼品，发送“礼品”查看可兑换的礼品。"),
    ("o-2", "D", 50000, "兑换 perfume", "“香水礼盒”仅限铂金卡、钻石卡、尊荣钻石卡会员兑换，您当前是缤纷卡。"),
    ("o-3", "D", 2500, "兑换 box", "积分不足：“首饰收纳盒”需要 3,000 积分，您当前有 2,500 积分，还差 500 积分。"),
    ("o-4", "D", 5000, "兑换 later", "“新年福袋”将于 2026-12-01 开放兑换，敬请期待。"),
    ("o-5", "D", 5000, "兑换 old", "“中秋月饼”已于 2026-10-31 结束兑换。"),
    ("o-6", "B", 5000, "兑换 brooch", "“香槟金胸针”是 VIP 赠品，单笔消费满 5,000 元即可获得一次任选资格，您目前没有可用的赠品资格。"),
    ("o-7", "D", 5000, "兑换 care", "很抱歉，“清洗保养券”已兑完。发送“礼品”看看其他礼品。"),
    ("o-8", "D", 5000, "兑换", "请发送“兑换 编号”，例如：兑换 box。发送“礼品”查看礼品编号。"),
    ("o-9", "D", 5000, "取消兑换 ABCDEFGH", "没有找到兑换码“ABCDEFGH”，请核对后重试（发送“我的兑换”查看您的兑换码）。"),
    ("o-10", "D", 5000, "取消兑换", "请发送“取消兑换 兑换码”，例如：取消兑换 K7MX3QPA。发送“我的兑换”查看兑换码。"),
], ids=["unknown", "tier", "points", "not-yet", "no-longer", "no-entitlement", "sold-out", "usage", "code",
        "cancel-usage"])
def test_every_refusal_says_why_and_changes_nothing(wechat, state, openid, tier, points, text, expected):
    member_with(state, openid, points=points, tier=tier)
    stock(state, "box", 5)
    stock(state, "brooch", 5)
    before = counts(state)
    assert wechat.text(openid, text) == expected
    assert counts(state) == before


def test_a_member_cannot_cancel_someone_elses_code(wechat, state):
    member_with(state, "o-owner", points=5000)
    member_with(state, "o-other", points=5000)
    stock(state, "box", 5)
    wechat.text("o-owner", "兑换 box")
    code = CODE.search(wechat.text("o-owner", "确认")).group(1)
    before = counts(state)
    assert wechat.text("o-other", f"取消兑换 {code}") == (
        f"没有找到兑换码“{code}”，请核对后重试（发送“我的兑换”查看您的兑换码）。")
    assert counts(state) == before


def test_the_limit_in_total_and_a_refusal_found_only_at_confirmation(wechat, state):
    member_with(state, "o-p", points=30000, tier="C")
    stock(state, "perfume", 5)
    for _ in range(2):
        wechat.text("o-p", "兑换 perfume")
        assert CODE.search(wechat.text("o-p", "确认"))
    assert wechat.text("o-p", "兑换 perfume") == "“香水礼盒”每人限兑 2 件，您已兑换 2 件。"
    # Shown while in stock, sold out by the time the member confirms: refused, nothing spent.
    member_with(state, "o-q", points=30000, tier="C")
    assert "回复“确认”兑换" in wechat.text("o-q", "兑换 perfume")
    with state.db.write() as session:
        gifts.adjust_stock(session, "perfume", -3, actor="test", now=utc_now())
    before = counts(state)
    assert wechat.text("o-q", "确认") == "很抱歉，“香水礼盒”已兑完。发送“礼品”看看其他礼品。"
    assert counts(state) == before


def test_a_vip_item_is_reserved_at_the_member_price(wechat, state):
    member_with(state, "o-vip", tier="C")
    stock(state, "vipa", 2)
    ask = wechat.text("o-vip", "兑换 vipa")
    assert "VIP 专享会员价 2,999 元，到店付款购买；兑换码有效期 30 天。" in ask
    done = wechat.text("o-vip", "确认")
    code = CODE.search(done).group(1)
    assert "到店后以会员价 2,999 元付款购买。" in done
    assert wechat.text("o-vip", f"取消兑换 {code}") == f"已取消预留 钻石吊坠（11 月 VIP 专享）（{code}）。"


def test_a_mailed_vip_gift_asks_for_the_address_and_alerts_the_manager(wechat, state, fake_wechat):
    with state.db.write() as session:
        add_staff(session, "M9", "王经理", openid="o-manager-m9", now=utc_now())
        add_staff(session, "S1", "客服", openid="o-desk", role="service", now=utc_now())
        member = make_member(session, openid="o-dia", tier="B", manager_id="M9", name="赵雅琴")
        make_entitlement(session, member)
        make_stock(session, "bracelet", 2)
    assert wechat.text("o-dia", "兑换 bracelet") == "该礼品将邮寄给您。请发送收件人姓名（发送“取消”退出）。"
    assert wechat.text("o-dia", "赵雅琴") == "请发送收件人手机号（发送“取消”退出）。"
    assert wechat.text("o-dia", "12345") == "手机号格式不正确，请发送 11 位手机号。"
    assert wechat.text("o-dia", "138 0000 0021") == "请发送详细收件地址（省市区、街道、门牌号）。"
    confirm = wechat.text("o-dia", "上海市静安区南京西路 1 号")
    assert "VIP 赠品，免积分（使用一份赠品资格，您现有 1 份）。" in confirm
    assert "寄往：赵雅琴，13800000021，上海市静安区南京西路 1 号" in confirm
    done = wechat.text("o-dia", "确认")
    code = CODE.search(done).group(1)
    assert "将寄往：赵雅琴，13800000021，上海市静安区南京西路 1 号。" in done
    assert f"{code} —— 待邮寄" in wechat.text("o-dia", "我的兑换")
    assert "没有可用的赠品资格" in wechat.text("o-dia", "兑换 brooch")  # the entitlement is used
    wechat.text("o-manager-m9", "你好")  # the manager wrote within 48 h: the whole alert fits a customer-service text
    drain(state)
    [alert] = [m for m in fake_wechat.sent() if m["touser"] == "o-manager-m9"]
    text = alert["text"]["content"]
    assert code in text and "南京西路 1 号" in text and member.card_no in text
    # Cancelled: the entitlement comes back.
    assert wechat.text("o-dia", f"取消兑换 {code}") == f"已取消 纯银手链（{code}），赠品资格已退回，可重新选择。"
    assert "您还有 1 份 VIP 赠品资格" in wechat.text("o-dia", "我的兑换")


def test_a_member_without_a_manager_gets_the_service_desk(wechat, state):
    with state.db.write() as session:
        add_staff(session, "S1", "客服", openid="o-desk", role="service", now=utc_now())
        member = make_member(session, openid="o-nomgr", tier="A")
        make_entitlement(session, member)
        make_stock(session, "bracelet", 1)
    for answer in ("兑换 bracelet", "钱女士", "13900000000", "北京市朝阳区建国路 88 号", "确认"):
        reply = wechat.text("o-nomgr", answer)
    code = CODE.search(reply).group(1)
    with state.db.read() as session:
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.job == "gifts"))
        assert (row.staff_id, row.occasion, row.message) == ("S1", f"mail:{code}", "gift_mail_alert")
        events = session.scalars(select(GiftRedemptionEvent)).all()
        assert [e.actor.startswith("openid:") for e in events] == [True]
