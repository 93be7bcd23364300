"""积分 and 积分明细 through the real webhook."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from storage import ledger, purchases
from tests.factories import make_member, utc_now


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # the tests here run on SQLite and on PostgreSQL


@pytest.fixture
def member(state, clock):
    clock.now = datetime(2026, 11, 22, 20, 0, tzinfo=timezone.utc).timestamp()  # 23 Nov 04:00 in Shanghai
    rules = state.rules
    with state.db.write() as session:
        m = make_member(session, name="陈静", tier="C", openid="o-points")
        for n, (amount, when) in enumerate([("12345.60", "2026-03-01T12:00:00"), ("100", "2026-11-22T23:30:00")]):
            purchases.record_purchase(session, purchases.parse_purchase(
                {"receipt_no": f"PC{n}", "card_no": m.card_no, "amount": amount, "purchased_at": when,
                 "store": "S1"}, rules, now=datetime(2026, 11, 23, tzinfo=timezone.utc)), rules,
                now=datetime(2026, 11, 23, tzinfo=timezone.utc))
        ledger.deduct_points(session, m.id, 45, reference="gift", occurred_at=datetime(2026, 11, 23, 4, tzinfo=timezone.utc))
        return m


def test_points_answer(wechat, member):
    reply = wechat.text("o-points", "积分")
    assert reply == (
        f"陈静，您好！\n会员卡：铂金卡（{member.card_no}）\n当前积分：12,400\n"
        "其中 12,300 分将于 2028-02-29 到期，请及时使用。\n"
        "近两年累计消费 12,445.60 元，再消费 7,554.40 元即可升级为钻石卡。"
    )


def test_points_answer_in_safe_mode(wechat, member):
    assert "当前积分：12,400" in wechat.text("o-points", "积分", aes=True)
    assert wechat.text("o-points", "积分明细", aes=True).startswith("最近 3 笔积分记录：")


def test_points_by_menu_and_in_english(wechat, member):
    assert "当前积分：12,400" in wechat.event("o-points", "CLICK", "MENU_POINTS")
    assert "当前积分：12,400" in wechat.text("o-points", "points")


def test_history_lists_the_latest_entries_in_local_dates(wechat, member):
    reply = wechat.text("o-points", "积分明细")
    assert reply.splitlines() == [
        "最近 3 笔积分记录：",
        "2026-11-23 兑换 -45",
        "2026-11-22 消费积分 +100",  # 23:30 Shanghai time
        "2026-03-01 消费积分 +12,345",
    ]


def test_history_shows_at_most_ten(wechat, state, clock):
    with state.db.write() as session:
        m = make_member(session, openid="o-many")
        for n in range(12):
            ledger.award_points(session, m.id, n + 1, expires_on=date(2030, 1, 1), occurred_at=utc_now())
    lines = wechat.text("o-many", "history").splitlines()
    assert lines[0] == "最近 10 笔积分记录：" and len(lines) == 11
    assert lines[1].endswith("+12") and lines[-1].endswith("+3")


def test_top_tier_and_empty_history(wechat, state):
    with state.db.write() as session:
        make_member(session, tier="A", openid="o-top")
    assert "您已是最高等级会员" in wechat.text("o-top", "积分")
    assert "暂无即将到期的积分" in wechat.text("o-top", "积分")
    assert wechat.text("o-top", "积分明细") == "暂无积分记录。"


def test_points_before_binding_gets_the_bind_hint(wechat):
    assert wechat.text("o-stranger", "积分") == "请先绑定会员卡：发送“绑定 卡号 手机号”。"
    assert wechat.text("o-stranger", "积分明细") == "请先绑定会员卡：发送“绑定 卡号 手机号”。"


def test_benefits_say_the_tier_what_it_brings_and_the_spend_to_keep_and_reach(wechat, member):
    reply = wechat.text("o-points", "会员权益")
    assert reply.splitlines() == [
        f"陈静，您是铂金卡会员（{member.card_no}）。",
        "您的专享礼遇：",
        "· 消费积分（每消费 1 元积 1 分）",
        "· 生日与节日祝福",
        "· 每月会员通讯",
        "· 积分到期提醒",
        "· 每月 VIP 专享商品",
        "近两年累计消费 12,445.60 元，已达到铂金卡的保级标准（5,000.00 元）。",
        "近两年累计消费 12,445.60 元，再消费 7,554.40 元即可升级为钻石卡。",
    ]
    assert wechat.text("o-points", "会员等级") == reply


def test_benefits_of_a_member_short_of_keeping_the_tier(wechat, state):
    with state.db.write() as session:
        make_member(session, tier="B", openid="o-short", name="赵雅琴")
    reply = wechat.text("o-short", "benefits")
    assert "近两年累计消费 0.00 元，再消费 20,000.00 元即可保持钻石卡（保级标准 20,000.00 元）。" in reply
    assert "· 生日礼物到店领取" in reply and "升级为尊荣钻石卡" in reply
    assert "请先绑定会员卡" in wechat.text("o-nobody", "会员权益")


def test_an_imported_opening_balance_is_named_as_such(wechat, state, clock):
    from storage.members import import_members

    csv = ["card_no,name,phone,birthday,tier,points,manager\n", "K0000001,钱多多,13600000001,,C,5000,\n"]
    with state.db.write() as session:
        import_members(session, csv, state.rules, state.now())
    wechat.text("o-opening", "绑定 K0000001 13600000001")
    assert wechat.text("o-opening", "积分明细").splitlines()[1:] == [f"{state.today()} 期初积分 +5,000"]
