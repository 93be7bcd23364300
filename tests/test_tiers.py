"""Tier, segment and activity: the pure rule, and the set-based pass that must agree with it."""
from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from storage import ledger, tiers
from storage.db import Database
from storage.models import Member, Purchase
from storage.tiers import MemberFacts, evaluate_member
from tests.factories import make_member

TODAY = date(2026, 11, 23)


def facts(tier="C", spend="0", purchases=0, visits=0, last=None, points=0, top=False) -> MemberFacts:
    last_on = TODAY - timedelta(days=last) if last is not None else None
    return MemberFacts(tier, Decimal(spend), purchases, visits, last_on, points, top)


@pytest.mark.parametrize(
    "f,tier,segment,activity",
    [
        (facts(spend="0"), "D", "lapsed", "churned"),
        (facts(spend="4999.99", purchases=1, visits=1, last=10), "D", "lapsed", "swinging"),
        (facts(spend="5000", purchases=2, visits=1, last=120), "C", "stable", "trending"),
        (facts(spend="19999", purchases=3, visits=2, last=5), "C", "stable", "swinging"),
        (facts(spend="20000", purchases=4, visits=3, last=1), "B", "upgrade", "active"),
        (facts(tier="A", spend="50000", purchases=6, visits=3, last=1), "A", "stable", "active"),
        (facts(spend="0", points=90000, top=True), "D", "retention", "churned"),
        (facts(spend="800", purchases=1, visits=0, last=400, points=90000, top=True), "D", "upgrade", "churned"),
        (facts(tier="A", spend="60000", purchases=1, visits=1, last=300), "A", "lapsed", "trending"),
        (facts(spend="100", purchases=1, visits=1, last=364), "D", "lapsed", "trending"),
        (facts(spend="100", purchases=1, visits=0, last=365), "D", "lapsed", "churned"),
        (facts(spend="100", purchases=1, visits=1, last=90), "D", "lapsed", "trending"),
        (facts(spend="100", purchases=1, visits=1, last=89), "D", "lapsed", "swinging"),
    ],
)
def test_evaluate_member(rules, f, tier, segment, activity):
    result = evaluate_member(f, rules, TODAY)
    assert (result.tier, result.segment, result.activity) == (tier, segment, activity)
    assert result.tier_reason and result.segment_reason and result.activity_reason


def test_thresholds_come_from_the_rules(rules_with):
    stricter = rules_with(segments={"active_min_visits": 5, "lapsed_below_purchases": 4})
    result = evaluate_member(facts(spend="5000", purchases=3, visits=3, last=1), stricter, TODAY)
    assert (result.segment, result.activity) == ("lapsed", "swinging")


@pytest.fixture
def db(db_url) -> Database:
    database = Database(db_url)
    yield database
    database.dispose()


def _random_programme(db: Database, rules, count: int = 60) -> None:
    """Members with random purchases (some refunded) and points over three years."""
    rng = random.Random(7)
    zone = rules.zone
    with db.write() as session:
        for n in range(count):
            member = make_member(session, tier=rng.choice("DCBA"))
            for k in range(rng.choice([0, 0, 1, 2, 3, 4, 6])):
                day = TODAY - timedelta(days=rng.randrange(0, 1100))
                moment = datetime.combine(day, time(rng.randrange(24), 30), zone).astimezone(timezone.utc)
                amount = Decimal(rng.choice([300, 2500, 8000, 21000, 30000]))
                session.add(Purchase(receipt_no=f"RND{n}-{k}", member_id=member.id, amount=amount,
                                     purchased_at=moment, store="S",
                                     refunded_at=moment if rng.random() < 0.1 else None))
            if rng.random() < 0.6:
                ledger.award_points(session, member.id, rng.randrange(1, 100000), expires_on=TODAY)


def test_the_set_based_pass_agrees_with_the_pure_rule(db, rules):
    _random_programme(db, rules)
    with db.write() as session:
        stats = tiers.evaluate_all(session, rules, TODAY)
    assert stats.members == 60
    with db.read() as session:
        cutoff = tiers.points_cutoff(session, rules)
        members = session.scalars(select(Member).order_by(Member.id)).all()
        expected = {m.id: evaluate_member(tiers.member_facts(session, m, rules, TODAY, cutoff), rules, TODAY)
                    for m in members}
        changes = {c.member_id: c.new_tier for c in tiers.tier_changes(session, rules, TODAY)}
    assert cutoff == stats.points_cutoff
    for m in members:
        assert (m.segment, m.activity) == (expected[m.id].segment, expected[m.id].activity), m.card_no
        assert changes.get(m.id, m.tier) == expected[m.id].tier
    assert len(set(stats.segments)) >= 3 and len(set(stats.activities)) >= 3  # the data exercised the rules


def test_members_show_prints_each_with_its_reason(app, state):
    with state.db.write() as session:
        member = make_member(session, name="赵雅琴", tier="B")
        ledger.award_points(session, member.id, 300, expires_on=date(2027, 1, 1))
    result = app.test_cli_runner().invoke(args=["members", "show", member.card_no, "--date", "2026-11-23"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{member.card_no} 赵雅琴 (as of 2026-11-23)"
    assert lines[1].startswith("tier:     B 钻石卡 (the rules now call for D 缤纷卡) — spend 0.00 CNY")
    assert lines[2].startswith("segment:  lapsed — no purchase in 730 days")
    assert lines[3].startswith("activity: churned")
    assert lines[4] == "balance:  300 points — equals the ledger sum; 300 expire on 2027-01-01"
    missing = app.test_cli_runner().invoke(args=["members", "show", "NOPE"])
    assert missing.exit_code == 1 and "no member with card NOPE" in missing.output
