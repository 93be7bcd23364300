"""The rule book over time: 挽留 (retention) and 抛弃 (lapsed) walked through the calendar with
`push run … --date`, and what every job writes dated the day it ran for — on SQLite and PostgreSQL.

DOMAIN.md, Tiers: a member without a purchase in two years whose points are in the top share keeps
points and tier for the grace (their points do not expire meanwhile), hears at 30 and 7 days, and is
reset when it ends; lapsed members have their points reset once, A-class keeping their card.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import select

from storage import ledger
from storage.models import LedgerEntry, Member
from storage.purchases import PurchaseIn, record_purchase
from tests.conftest import API_KEY
from tests.factories import make_member, utc_now, words

PUSHES = {"quiet_hours": None, "backoff_seconds": 0, "claim_timeout_seconds": 1, "rate_limit_per_minute": 0}
BOUGHT = date(2027, 1, 5)  # the keeper's last purchase
ENTERS = BOUGHT + timedelta(days=730)  # the first day with no purchase in the 730-day window
GRACE_ENDS = ENTERS + relativedelta(months=6)


@pytest.fixture
def database_url(db_url) -> str:
    return db_url


@pytest.fixture
def rules(rules_with):
    return rules_with(pushes=PUSHES, segments={"top_points_share": 0.25})  # one in four: the keeper


def at_ten(state, clock, day: date) -> None:
    clock.now = datetime.combine(day, time(10), state.rules.zone).timestamp()


def push_run(app, job: str, day: date) -> str:
    result = app.test_cli_runner().invoke(args=["push", "run", job, "--date", day.isoformat()])
    assert result.exit_code == 0, result.output
    return result.output


def nightly(app, day: date) -> None:
    """The night's jobs in their scheduled order (tier_recalc 02:00, points_reset 08:00)."""
    push_run(app, "tier_recalc", day)
    push_run(app, "points_reset", day)


def buy(state, card_no: str, receipt: str, amount: str, day: date) -> None:
    moment = datetime.combine(day, time(11), state.rules.zone).astimezone(timezone.utc)
    with state.db.write() as session:
        result = record_purchase(session, PurchaseIn(receipt, card_no, Decimal(amount), moment, "S1"), state.rules,
                                 now=moment)
    assert result.status == "created", result


def texts_to(fake_wechat, openid: str) -> list[str]:
    return [words(m) for m in fake_wechat.sent() if m["touser"] == openid]


def member(state, member_id: int) -> Member:
    with state.db.read() as session:
        return session.get(Member, member_id)


def show(app, card_no: str, day: date) -> list[str]:
    result = app.test_cli_runner().invoke(args=["members", "show", card_no, "--date", day.isoformat()])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_retention_keeps_points_and_tier_through_the_grace_then_resets(app, state, clock, fake_wechat, wechat):
    at_ten(state, clock, BOUGHT)
    with state.db.write() as session:
        keeper = make_member(session, tier="B", openid="o-keeper")
        for n in range(3):  # members with fewer points: the keeper's balance is in the top share
            make_member(session, openid=f"o-other-{n}")
        others = [m.card_no for m in session.scalars(select(Member).where(Member.openid.like("o-other-%")))]
    buy(state, keeper.card_no, "K1", "30000.00", BOUGHT)  # B 钻石卡: 36,000 points, valid 730 days
    for n, card_no in enumerate(others):
        buy(state, card_no, f"O{n}", "100.00", BOUGHT)
    nightly(app, BOUGHT + timedelta(days=1))
    assert member(state, keeper.id).tier == "B"
    fake_wechat.http.post(fake_wechat.url + "/_reset")

    # The night the window passes: retention starts — the tier stays, no downgrade notice, the grace is told.
    nightly(app, ENTERS)
    kept = member(state, keeper.id)
    assert (kept.tier, kept.segment, kept.retention_grace_until) == ("B", "retention", GRACE_ENDS)
    [told] = texts_to(fake_wechat, "o-keeper")
    assert told == f"36,000\n{GRACE_ENDS}\n积分与权益保留中，消费即续享"
    assert not any("调整" in text for text in texts_to(fake_wechat, "o-keeper"))

    # The next day the lot's 730 days are over: the points are kept, not expired; the tier holds all along.
    nightly(app, ENTERS + timedelta(days=1))
    nightly(app, ENTERS + timedelta(days=40))
    assert (member(state, keeper.id).points_balance, member(state, keeper.id).tier) == (36000, "B")
    lines = show(app, keeper.card_no, ENTERS + timedelta(days=40))
    assert lines[1].startswith(f"tier:     B 钻石卡 — kept until {GRACE_ENDS}")
    assert lines[4] == f"balance:  36000 points — equals the ledger sum; 36000 expire on {GRACE_ENDS}"
    at_ten(state, clock, ENTERS + timedelta(days=40))
    points = wechat.text("o-keeper", "积分")
    assert "36,000" in points and str(GRACE_ENDS) in points

    # 30 and 7 days before the end, then the closing notice; nothing else reached the member.
    for days in (30, 7):
        nightly(app, GRACE_ENDS - timedelta(days=days))
        assert f"还有 {days} 天" in texts_to(fake_wechat, "o-keeper")[-1]
    assert len(texts_to(fake_wechat, "o-keeper")) == 3
    nightly(app, GRACE_ENDS)
    assert "积分已清零" in texts_to(fake_wechat, "o-keeper")[-1]
    after = member(state, keeper.id)
    assert (after.points_balance, after.tier, after.retention_grace_until) == (0, "D", None)
    nightly(app, GRACE_ENDS + timedelta(days=1))
    assert len(texts_to(fake_wechat, "o-keeper")) == 4  # no downgrade notice after the reset's own

    # The reset is dated the day `push run --date` ran for, in 积分明细 too.
    with state.db.read() as session:
        [reset] = session.scalars(select(LedgerEntry).where(LedgerEntry.member_id == keeper.id,
                                                            LedgerEntry.kind == "expire")).all()
    assert state.rules.today(reset.occurred_at) == GRACE_ENDS
    at_ten(state, clock, GRACE_ENDS + timedelta(days=2))
    assert f"{GRACE_ENDS} 过期 -36,000" in wechat.text("o-keeper", "积分明细")


def test_a_purchase_during_the_grace_keeps_the_tier_and_stops_the_reset(app, state, clock, fake_wechat):
    at_ten(state, clock, BOUGHT)
    with state.db.write() as session:
        keeper = make_member(session, tier="B", openid="o-keeper")
        small = [make_member(session, openid=f"o-small-{n}") for n in range(3)]
    buy(state, keeper.card_no, "K1", "30000.00", BOUGHT)
    for n, other in enumerate(small):
        buy(state, other.card_no, f"S{n}", "100.00", BOUGHT)
    nightly(app, BOUGHT + timedelta(days=1))
    nightly(app, ENTERS)
    buy(state, keeper.card_no, "K2", "50.00", ENTERS + timedelta(days=10))
    nightly(app, ENTERS + timedelta(days=11))
    for days in (30, 7):
        nightly(app, GRACE_ENDS - timedelta(days=days))
    nightly(app, GRACE_ENDS)
    nightly(app, GRACE_ENDS + timedelta(days=1))
    back = ENTERS + timedelta(days=11)
    after = member(state, keeper.id)
    assert (after.tier, after.points_balance, after.retention_grace_until) == ("B", 36060, None)
    assert not any("清零" in text or "还有" in text or "调整" in text for text in texts_to(fake_wechat, "o-keeper"))
    lines = show(app, keeper.card_no, GRACE_ENDS + timedelta(days=1))
    assert lines[1].startswith(f"tier:     B 钻石卡 — held until {back + timedelta(days=730)}")
    assert lines[4].startswith("balance:  36060 points")
    with state.db.read() as session:  # the kept points now last as if earned that day
        lots = session.execute(select(LedgerEntry.remaining, LedgerEntry.expires_on).where(
            LedgerEntry.member_id == keeper.id, LedgerEntry.kind == "earn").order_by(LedgerEntry.id)).all()
    assert [tuple(lot) for lot in lots] == [(36000, back + timedelta(days=730)), (60, back + timedelta(days=729))]


def test_lapsed_members_points_are_reset_once_and_a_class_keep_their_card(app, state, clock, fake_wechat):
    today = date(2028, 3, 1)
    at_ten(state, clock, today)
    long_ago = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with state.db.write() as session:
        key_account = make_member(session, tier="A", openid="o-a", created_at=long_ago)
        diamond = make_member(session, tier="B", openid="o-b", created_at=long_ago)
        newcomer = make_member(session, tier="D", openid="o-new", created_at=utc_now())
    for card_no, receipt in ((key_account.card_no, "A"), (diamond.card_no, "B")):
        buy(state, card_no, f"{receipt}-old", "60000.00", today - timedelta(days=800))  # outside the window
    buy(state, diamond.card_no, "B-new", "1000.00", today - timedelta(days=100))  # one purchase inside it
    with state.db.write() as session:  # points that never expire: only the lapsing resets them
        ledger.adjust_points(session, key_account.id, 5000, note="goodwill", now=utc_now())
    buy(state, newcomer.card_no, "N1", "1000.00", today - timedelta(days=5))
    nightly(app, today)
    a, b, new = member(state, key_account.id), member(state, diamond.id), member(state, newcomer.id)
    assert (a.segment, b.segment) == ("lapsed", "lapsed")
    assert (a.tier, a.points_balance) == ("A", 0)  # keeps the card, points reset
    assert (b.tier, b.points_balance) == ("D", 0)
    assert new.points_balance == 1000  # lapsed after one purchase, but not known for two years: kept
    assert show(app, key_account.card_no, today)[1].startswith("tier:     A 尊荣钻石卡 — kept while lapsed")

    # Points earned after the reset are not reset again while the member stays lapsed.
    buy(state, key_account.card_no, "A-back", "10.00", today + timedelta(days=3))  # one purchase: still lapsed
    buy(state, diamond.card_no, "B-back", "2000.00", today + timedelta(days=3))  # a second one: stable again
    nightly(app, today + timedelta(days=4))
    again = member(state, key_account.id)
    assert (again.segment, again.tier, again.points_balance) == ("lapsed", "A", 15)  # not reset a second time
    back = member(state, diamond.id)
    assert (back.segment, back.points_balance, back.lapsed_reset_on) == ("stable", 2000, None)
    with state.db.read() as session:
        reset = session.scalars(select(LedgerEntry.member_id).where(LedgerEntry.reference == "lapsed")).all()
    assert sorted(reset) == sorted([key_account.id, diamond.id])


def test_a_member_upgraded_by_carried_spend_is_stable_and_keeps_getting_the_bulletin(app, state, clock, fake_wechat,
                                                                                      tmp_path):
    day = date(2026, 12, 2)
    at_ten(state, clock, day)
    csv = tmp_path / "members.csv"
    csv.write_text("card_no,name,phone,birthday,tier,points,manager,spend,spend_since\n"
                   "M0000001,钱多多,13500000009,,D,,,6000.00,\n", encoding="utf-8")
    assert app.test_cli_runner().invoke(args=["members", "import", str(csv)]).exit_code == 0
    with state.db.write() as session:
        session.execute(Member.__table__.update().where(Member.card_no == "M0000001").values(openid="o-carried"))
    push_run(app, "tier_recalc", day + timedelta(days=1))
    moved = show(app, "M0000001", day + timedelta(days=1))
    assert moved[1].startswith("tier:     C 铂金卡 —")
    assert moved[2].startswith("segment:  stable — 6000.00 CNY spend carried in by import; no purchase recorded yet")
    fake_wechat.http.post(fake_wechat.url + "/_reset")
    push_run(app, "monthly_bulletin", date(2027, 1, 1))
    assert texts_to(fake_wechat, "o-carried"), "the platinum member's January bulletin"


def test_partial_refunds_reverse_their_own_share_and_the_last_what_is_left(app, state, clock):
    at_ten(state, clock, date(2026, 11, 2))
    with state.db.write() as session:
        diamond = make_member(session, tier="B")  # 1.2 points per CNY
    client = app.test_client()
    headers = {"X-API-Key": API_KEY}
    bought = client.post("/api/purchases", headers=headers, json={
        "receipt_no": "R1001", "card_no": diamond.card_no, "amount": "1001.00",
        "purchased_at": "2026-11-01T10:00:00", "store": "S1"})
    assert bought.status_code == 201 and bought.json["points"] == 1201
    reversed_points = []
    for n, amount in enumerate(("333.33", "333.33", "334.34")):
        answer = client.post("/api/purchases/R1001/refund", headers=headers,
                             json={"amount": amount, "refund_no": f"RF{n}"})
        assert answer.status_code == 200, answer.json
        reversed_points.append(answer.json["points_reversed"])
    assert reversed_points == [399, 399, 403]
    assert member(state, diamond.id).points_balance == 0


def test_push_run_counts_the_tier_notices_it_plans(app, state, clock, fake_wechat):
    day = date(2026, 11, 23)
    at_ten(state, clock, day)
    with state.db.write() as session:
        riser = make_member(session, tier="D", openid="o-riser")
    for n, month in enumerate((3, 10)):
        buy(state, riser.card_no, f"T{n}", "12500.00", date(2026, month, 1))
    output = push_run(app, "tier_recalc", day)
    assert output.startswith("tier_recalc for 2026-11-23: 1 pushes planned"), output
    assert "sent 1," in output and texts_to(fake_wechat, "o-riser")[0].startswith("钻石卡\n会员卡已升级")
