"""积分 and 积分明细 through the real webhook."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from storage import ledger, purchases
from tests.factories import make_member


@pytest.fixture
def member(state, clock):
    clock.now = datetime(2026, 11, 22, 20, 0, tzinfo=timezone.utc).timestamp()  # 23 Nov 04:00 in Shanghai
    rules = state.rules
    with state.db.write() as session:
        m = make_member(session, name="陈静", tier="C", openid="o-points")
        for n, (amount, when) in enumerate([("12345.60", "2026-03-01T12:00:00"), ("100", "2026-11-22T23:30:00")]):
            purchases.record_purchase(session, purchases.parse_purchase(
                {"receipt_no": f"PC{n}", "card_no": m.card_no, "amount": amount, "purchased_at": when,
                 "store": "S1"}, rules, now=datetime(2026, 11, 23, tzinfo=timezone.utc)), rules)
        ledger.deduct_points(session, m.id, 45, reference="gift")
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
            ledger.award_points(session, m.id, n + 1, expires_on=date(2030, 1, 1))
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
