"""The embedded demo: loaded once, members of every tier in the tier their purchases give, staff who can get alerts."""
from __future__ import annotations

import pytest

from sqlalchemy import func, select

from bot.dev.demo import seed_demo_data
from scheduler.jobs import run_job
from storage.models import Member, Staff


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
