"""Never oversold, never spent twice: real threads racing on SQLite and PostgreSQL (fuint#71, mall#353)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from storage import gifts, ledger
from storage.gifts import GiftRefused
from storage.models import GiftRedemption, GiftStock, LedgerEntry, Member
from tests.conftest import WeChat
from tests.factories import GIFT_RULES, make_entitlement, make_member, make_points, make_stock, text_xml

NOON = datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc)

pytestmark = pytest.mark.usefixtures("points_stay_consistent")  # `points check` after every test


@pytest.fixture
def database_url(db_url) -> str:
    return db_url


@pytest.fixture
def rules(rules_with):
    return rules_with(gifts=GIFT_RULES)


@pytest.fixture(autouse=True)
def noon(clock):
    clock.now = NOON.timestamp()


def race(n: int, attempt) -> list:
    """Run ``attempt(i)`` from ``n`` threads released together; each result or the refusal's message."""
    barrier = threading.Barrier(n)

    def run(i: int):
        barrier.wait()
        try:
            return attempt(i)
        except GiftRefused as refused:
            return refused.message

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def redeem_once(state, member_id: int, gift_id: str):
    with state.db.write() as session:
        return gifts.redeem(session, state.rules, member_id, gift_id, NOON, actor="test").code


def test_fifty_members_confirming_at_once_through_the_webhook_get_exactly_the_stock(app, wechat, state):
    with state.db.write() as session:
        members = [make_member(session, openid=f"o-race-{n}") for n in range(50)]
        for member in members:
            make_points(session, member, 3000)
        make_stock(session, "box", 10)
    for n in range(50):
        assert "回复“确认”兑换" in wechat.text(f"o-race-{n}", "兑换 box")

    def confirm(n: int) -> str:
        client = WeChat(app.test_client(), wechat.clock)  # a client per thread, a MsgId per message
        return client.send(text_xml(f"o-race-{n}", "确认", msg_id=7_000_000 + n, create_time=int(NOON.timestamp())))[
            "Content"]

    replies = race(50, confirm)
    assert sum("兑换码：" in r for r in replies) == 10
    assert sum(r == "很抱歉，“首饰收纳盒”已兑完。发送“礼品”看看其他礼品。" for r in replies) == 40
    with state.db.read() as session:
        row = session.get(GiftStock, "box")
        assert (row.stock, row.reserved, row.stock - row.reserved) == (10, 10, 0)
        assert session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "redeem")) == 10
        assert session.scalar(select(func.count(func.distinct(GiftRedemption.code)))) == 10
        assert session.scalar(select(func.sum(Member.points_balance))) == 40 * 3000


def test_one_member_with_points_for_three_racing_twenty_redemptions(state):
    with state.db.write() as session:
        member = make_member(session)
        make_points(session, member, 3 * 800)
        make_stock(session, "care", 100)
    results = race(20, lambda _: redeem_once(state, member.id, "care"))
    codes = [r for r in results if r != "gift_short_points"]
    assert len(codes) == 3 and len(set(codes)) == 3
    with state.db.read() as session:
        assert ledger.balance(session, member.id) == 0
        assert session.get(GiftStock, "care").reserved == 3
        assert session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "redeem")) == 3


@pytest.mark.parametrize("gift_id,tier,limit", [("box", "D", 1), ("perfume", "C", 2), ("vipa", "C", 1)])
def test_per_member_limits_hold_under_the_race(state, gift_id, tier, limit):
    with state.db.write() as session:
        member = make_member(session, tier=tier)
        make_points(session, member, 100_000)
        make_stock(session, gift_id, 50)
    results = race(12, lambda _: redeem_once(state, member.id, gift_id))
    assert len([r for r in results if not r.startswith("gift_over")]) == limit
    with state.db.read() as session:
        assert session.get(GiftStock, gift_id).reserved == limit


def test_one_entitlement_gives_one_gift_under_the_race(state):
    with state.db.write() as session:
        member = make_member(session, tier="B")
        make_entitlement(session, member)
        make_stock(session, "brooch", 50)
    results = race(10, lambda _: redeem_once(state, member.id, "brooch"))
    assert results.count("gift_no_entitlement") == 9


def test_a_code_is_handed_over_or_cancelled_once_under_the_race(state):
    with state.db.write() as session:
        member = make_member(session)
        make_points(session, member, 3000)
        make_stock(session, "box", 5)
    code = redeem_once(state, member.id, "box")

    def close(i: int) -> str:
        with state.db.write() as session:
            if i % 2:
                return gifts.hand_over(session, code, f"staff:{i}", NOON).outcome
            return gifts.cancel(session, state.rules, code, member.id, "member", NOON).outcome

    outcomes = race(10, close)
    assert outcomes.count("done") == 1 and outcomes.count("not_open") == 9
    with state.db.read() as session:
        row = session.get(GiftStock, "box")
        redemption = gifts.find_redemption(session, code)
        if redemption.status == "collected":
            assert (row.stock, row.reserved, row.handed_over, ledger.balance(session, member.id)) == (4, 0, 1, 0)
        else:
            assert (row.stock, row.reserved, row.handed_over, ledger.balance(session, member.id)) == (5, 0, 0, 3000)
        assert len(gifts.history(session, redemption.id)) == 2


def test_a_confirmation_sent_twice_at_once_redeems_once_and_both_are_answered(app, wechat, state, double_tap):
    with state.db.write() as session:
        member = make_member(session, openid="o-double")
        make_points(session, member, 10_000)
        make_stock(session, "box", 5)
    assert "回复“确认”兑换" in wechat.text("o-double", "兑换 box")
    done, repeated = sorted(double_tap(wechat, "o-double", "确认"), key=lambda reply: "兑换码：" not in reply)
    assert done.startswith("兑换成功！首饰收纳盒\n兑换码：") and "剩余 7,000 积分" in done
    assert repeated == "已收到您的确认，正在为您办理，请勿重复发送；办理结果见另一条回复。"
    with state.db.read() as session:
        assert session.scalar(select(func.count()).select_from(GiftRedemption)) == 1
        assert session.get(Member, member.id).points_balance == 7_000
