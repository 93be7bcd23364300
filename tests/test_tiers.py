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
from tests.factories import make_member, utc_now, words

TODAY = date(2026, 11, 23)


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # the app-level tests here run on SQLite and on PostgreSQL


def facts(tier="C", spend="0", purchases=0, visits=0, last=None, points=0, top=False, carried="0",
          held_days=None, grace_days=None) -> MemberFacts:
    last_on = TODAY - timedelta(days=last) if last is not None else None
    held_until = TODAY + timedelta(days=held_days) if held_days is not None else None
    grace_until = TODAY + timedelta(days=grace_days) if grace_days is not None else None
    return MemberFacts(tier, Decimal(spend), purchases, visits, last_on, points, top, Decimal(carried), held_until,
                       grace_until)


@pytest.mark.parametrize(
    "f,tier,segment,activity",
    [
        (facts(spend="0"), "D", "lapsed", "churned"),
        (facts(spend="4999.99", purchases=1, visits=1, last=10), "D", "lapsed", "swinging"),
        (facts(spend="5000", purchases=2, visits=1, last=120), "C", "stable", "trending"),
        (facts(spend="19999", purchases=3, visits=2, last=5), "C", "stable", "swinging"),
        (facts(spend="20000", purchases=4, visits=3, last=1), "B", "upgrade", "active"),
        (facts(tier="A", spend="50000", purchases=6, visits=3, last=1), "A", "stable", "active"),
        # retention keeps the tier (and the points) through the grace: DOMAIN.md, 挽留群体
        (facts(spend="0", points=90000, top=True), "C", "retention", "churned"),
        (facts(tier="B", spend="0", points=10, grace_days=5), "B", "retention", "churned"),
        (facts(tier="B", spend="0", points=10, grace_days=0), "D", "lapsed", "churned"),
        # lapsed: A-class keep their card; others drop to what their spend earns
        (facts(tier="A", spend="1000", purchases=1, visits=1, last=100), "A", "lapsed", "trending"),
        (facts(tier="B", spend="1000", purchases=1, visits=1, last=100), "D", "lapsed", "trending"),
        # spend carried in by import: few purchases recorded are no lapse (history before the bot unknown)
        (facts(tier="C", carried="6000"), "C", "stable", "churned"),
        (facts(tier="C", spend="100", purchases=1, visits=1, last=10, carried="6000"), "C", "stable", "swinging"),
        (facts(spend="800", purchases=1, visits=0, last=400, points=90000, top=True), "D", "upgrade", "churned"),
        (facts(tier="A", spend="60000", purchases=1, visits=1, last=300), "A", "lapsed", "trending"),
        (facts(spend="100", purchases=1, visits=1, last=364), "D", "lapsed", "trending"),
        (facts(spend="100", purchases=1, visits=0, last=365), "D", "lapsed", "churned"),
        (facts(spend="100", purchases=1, visits=1, last=90), "D", "lapsed", "trending"),
        (facts(spend="100", purchases=1, visits=1, last=89), "D", "lapsed", "swinging"),
        # a tier set by import or an operator holds (and its member is not lapsed) until the hold ends
        (facts(tier="B", held_days=1), "B", "stable", "churned"),
        (facts(tier="B", held_days=0), "D", "lapsed", "churned"),
        (facts(tier="C", spend="52000", purchases=2, visits=2, last=5, held_days=300), "A", "stable", "swinging"),
        (facts(tier="D", carried="6000", held_days=300), "C", "stable", "churned"),
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
            holds = rng.random() < 0.3  # set by import some time ago: holds for the window
            member = make_member(session, tier=rng.choice("DCBA"), tier_source="import" if holds else "earned",
                                 tier_since=TODAY - timedelta(days=rng.randrange(0, 900)) if holds else None,
                                 carried_spend=Decimal(rng.choice([0, 6000, 25000])) if holds else Decimal(0),
                                 carried_spend_since=TODAY - timedelta(days=rng.randrange(0, 900)) if holds else None,
                                 retention_grace_until=TODAY + timedelta(days=rng.randrange(-5, 100))
                                 if rng.random() < 0.2 else None)
            for k in range(rng.choice([0, 0, 1, 2, 3, 4, 6])):
                day = TODAY - timedelta(days=rng.randrange(0, 1100))
                moment = datetime.combine(day, time(rng.randrange(24), 30), zone).astimezone(timezone.utc)
                amount = Decimal(rng.choice([300, 2500, 8000, 21000, 30000]))
                session.add(Purchase(receipt_no=f"RND{n}-{k}", member_id=member.id, amount=amount,
                                     purchased_at=moment, store="S",
                                     refunded_at=moment if rng.random() < 0.1 else None, created_at=moment))
            if rng.random() < 0.6:
                ledger.award_points(session, member.id, rng.randrange(1, 100000), expires_on=TODAY, occurred_at=utc_now())


def test_the_set_based_pass_agrees_with_the_pure_rule(db, rules):
    _random_programme(db, rules)
    with db.write() as session:
        stats = tiers.evaluate_all(session, rules, TODAY, now=utc_now())
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
        ledger.award_points(session, member.id, 300, expires_on=date(2027, 1, 1), occurred_at=utc_now())
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


# --------------------------------------------------------------------------- imported tiers hold


IMPORTED = "card_no,name,phone,birthday,tier,points,manager,spend,spend_since\n"


def _import(state, *rows: str):
    from storage.members import import_members

    with state.db.write() as session:
        report = import_members(session, [IMPORTED, *rows], state.rules, state.now())
    assert not report.errors, report.errors


def _recalc(state, clock, day: date):
    from scheduler.jobs import run_job

    clock.now = datetime.combine(day, time(10), state.rules.zone).timestamp()  # outside quiet hours
    return run_job(state, "tier_recalc", day)


def _member(state, card_no: str) -> Member:
    with state.db.read() as session:
        return session.scalar(select(Member).where(Member.card_no == card_no))


def test_an_imported_tier_holds_for_the_window_then_is_warned_once_and_lowered(app, state, clock, fake_wechat):
    start = date(2026, 11, 23)
    clock.now = datetime.combine(start, time(10), state.rules.zone).timestamp()
    _import(state, "H0000001,孙丽,13500000001,,B,,,,")
    from storage.members import bind_member

    with state.db.write() as session:
        bind_member(session, "o-held", "H0000001", "13500000001", now=utc_now())
    _recalc(state, clock, start)
    assert _member(state, "H0000001").tier == "B"  # no purchase in the bot, yet not demoted
    shown = app.test_cli_runner().invoke(args=["members", "show", "H0000001", "--date", "2026-11-24"]).output
    assert "tier:     B 钻石卡 — held until 2028-11-22: set by import" in shown

    _recalc(state, clock, date(2028, 10, 22))  # 31 days before the hold ends: nothing yet
    assert fake_wechat.sent() == []
    _recalc(state, clock, date(2028, 10, 23))  # 30 days before: told once, with what keeps the tier
    [warning] = fake_wechat.sent()
    assert warning["touser"] == "o-held"
    assert words(warning) == "钻石卡\n2028-11-22\n保级还差 20,000.00 元"
    _recalc(state, clock, date(2028, 10, 24))
    assert len(fake_wechat.sent()) == 1  # exactly once
    assert _member(state, "H0000001").tier == "B"
    _recalc(state, clock, date(2028, 11, 22))  # the hold has ended
    member = _member(state, "H0000001")
    assert (member.tier, member.segment) == ("D", "lapsed")  # two years without a purchase
    assert len(fake_wechat.sent()) == 1  # lapsed members get no marketing: the notice is planned as skipped


def test_purchases_earning_a_higher_tier_lift_an_imported_one(state, clock):
    from storage.purchases import PurchaseIn, record_purchase

    clock.now = datetime.combine(date(2026, 11, 23), time(10), state.rules.zone).timestamp()
    _import(state, "H0000002,周敏,13500000002,,C,,,,")
    with state.db.write() as session:
        record_purchase(session, PurchaseIn("HOLD-1", "H0000002", Decimal("52000"),
                                            datetime(2026, 11, 23, 2, tzinfo=timezone.utc), "S"), state.rules, now=utc_now())
    _recalc(state, clock, date(2026, 11, 23))
    member = _member(state, "H0000002")
    assert (member.tier, member.tier_source) == ("A", "earned")


def test_spend_carried_in_by_an_import_counts_while_inside_the_window(state, clock):
    clock.now = datetime.combine(date(2026, 11, 23), time(10), state.rules.zone).timestamp()
    _import(state, "H0000003,吴静,13500000003,,C,,,30000,2026-06-01", "H0000004,郑洁,13500000004,,D,,,6000,")
    _recalc(state, clock, date(2026, 11, 23))
    assert _member(state, "H0000003").tier == "B"  # 30,000 carried: more than the imported C
    assert _member(state, "H0000004").tier == "C"
    _recalc(state, clock, date(2028, 5, 31))  # the carried spend has left the window, and the hold ended
    assert _member(state, "H0000003").tier == "D"


def test_reimporting_with_spend_changes_nothing(state, clock):
    from storage.members import import_members

    row = "H0000005,钱芳,13500000005,,B,,,25000,\n"
    _import(state, row)
    clock.now += 3 * 86400  # the same file again three days later
    with state.db.write() as session:
        report = import_members(session, [IMPORTED, row], state.rules, state.now())
    assert (report.unchanged, report.updated) == (1, 0)


def test_an_operator_sets_a_tier_that_holds(app, state, clock):
    with state.db.write() as session:
        member = make_member(session, tier="D")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["members", "set-tier", member.card_no, "A", "--reason", "VIP agreement"])
    assert result.exit_code == 0 and f"{member.card_no}: D → A, held until" in result.output
    _recalc(state, clock, state.today())
    assert _member(state, member.card_no).tier == "A"
    with state.db.read() as session:
        from storage.models import MemberChange

        assert session.scalar(select(MemberChange.detail).where(MemberChange.member_id == member.id)) == \
            "D → A (VIP agreement)"
    bad = runner.invoke(args=["members", "set-tier", member.card_no, "Z", "--reason", "x"])
    assert bad.exit_code == 1 and "tier 'Z' is not one of D, C, B, A" in bad.output
