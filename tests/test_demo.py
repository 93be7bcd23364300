"""The embedded demo: loaded once, members of every tier in the tier their purchases give, staff who can get alerts."""
from __future__ import annotations

import pytest

from sqlalchemy import delete, func, select

from bot.dev.demo import DEMO_STOCK, seed_demo_data, seed_demo_stock
from scheduler.jobs import run_job
from storage import ledger
from storage.gifts import adjust_stock
from storage.models import GiftStock, Member, Staff
from tests.factories import utc_now


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # the tests here run on SQLite and on PostgreSQL


def test_demo_data_is_loaded_once_and_its_staff_can_be_alerted(state, fake_wechat):
    seed_demo_data(state)
    seed_demo_data(state)  # every start calls it: the second changes nothing
    with state.db.read() as session:
        tiers = dict(session.execute(select(Member.card_no, Member.tier)).all())
        assert tiers["A0000001"] == "A" and tiers["B0000001"] == "B" and tiers["D0000001"] == "D"
        assert session.scalar(select(func.count()).select_from(Staff).where(Staff.openid.is_(None))) == 0
    run_job(state, "tier_recalc", state.today())
    with state.db.read() as session:  # the demo purchases keep every demo member in their tier
        assert dict(session.execute(select(Member.card_no, Member.tier)).all()) == tiers


def test_the_demo_catalogue_has_stock_so_gifts_can_be_redeemed(state, wechat, app):
    seed_demo_data(state)
    seed_demo_data(state)  # a restart adds no stock
    catalogue = [gift.id for gift in state.rules.gifts.catalogue]
    with state.db.read() as session:
        stock = dict(session.execute(select(GiftStock.gift_id, GiftStock.stock)).all())
    assert stock == {gift_id: DEMO_STOCK for gift_id in catalogue}
    listed = app.test_cli_runner().invoke(args=["gifts", "list"])
    assert listed.exit_code == 0 and "care" in listed.output
    assert wechat.text("o-demo-c", "绑定 C0000001 13800000011").startswith("陈静，您好！")
    gifts_page = wechat.text("o-demo-c", "礼品")
    assert "清洗保养券" in gifts_page and "已兑完" not in gifts_page
    assert "所需积分：800" in wechat.text("o-demo-c", "兑换 care")
    done = wechat.text("o-demo-c", "确认")
    assert "兑换码：" in done, done
    with state.db.read() as session:
        assert session.get(GiftStock, "care").reserved == 1
        assert ledger.check_balances(session) == []
    # an operator's stock is left alone by the next start; a gift added to the catalogue gets its stock
    with state.db.write() as session:
        adjust_stock(session, "scarf", -DEMO_STOCK, actor="test", now=utc_now())
        session.execute(delete(GiftStock).where(GiftStock.gift_id == "box"))
    assert seed_demo_stock(state) == ["box"]
    with state.db.read() as session:
        assert (session.get(GiftStock, "scarf").stock, session.get(GiftStock, "box").stock) == (0, DEMO_STOCK)
