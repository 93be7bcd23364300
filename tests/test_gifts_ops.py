"""Gifts for operators and stores: the catalogue rules, stock and handover (CLI and API), the expiry job,
entitlements from purchases; on SQLite and PostgreSQL."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from rules import ConfigError, DEFAULT_RULES_PATH, parse_rules
from scheduler import jobs
from storage import gifts, ledger, purchases
from storage.codes import ALPHABET as CODE_ALPHABET
from storage.codes import new_code
from storage.members import add_staff
from storage.models import GiftEntitlement, GiftRedemption, GiftStock, LedgerEntry, MemberChange, OutboxMessage
from tests.conftest import API_KEY
from tests.factories import GIFT_RULES, make_member, make_points, make_stock, utc_now, words

NOON = datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc)
GOOD = DEFAULT_RULES_PATH.read_text(encoding="utf-8")

pytestmark = pytest.mark.usefixtures("points_stay_consistent")  # `points check` after every test


@pytest.fixture
def database_url(db_url) -> str:
    return db_url


@pytest.fixture
def rules(rules_with):
    return rules_with(gifts=GIFT_RULES, pushes={"quiet_hours": None, "backoff_seconds": 0})


@pytest.fixture(autouse=True)
def noon(clock):
    clock.now = NOON.timestamp()


def redeemed(state, gift_id: str = "box", points: int = 3000, **member_fields) -> tuple[int, str]:
    with state.db.write() as session:
        member = make_member(session, **member_fields)
        if points:
            make_points(session, member, points)
        if session.get(GiftStock, gift_id) is None:
            make_stock(session, gift_id, 5)
        return member.id, gifts.redeem(session, state.rules, member.id, gift_id, NOON, actor="test").code


# --------------------------------------------------------------------------- rules


def test_the_shipped_catalogue_parses_with_every_kind(base_rules):
    kinds = {g.kind for g in base_rules.gifts.catalogue}
    assert kinds == {"points", "vip_item", "vip_gift"}
    assert len([g for g in base_rules.gifts.catalogue if g.kind == "vip_item" and g.open_on(date(2026, 11, 23))]) == 2
    assert "礼品" in base_rules.messages.help and "礼品" in base_rules.messages.welcome


@pytest.mark.parametrize("change,expected", [
    (("      points: 6000\n", "      points: -1\n"), "gifts.catalogue[1].points: Input should be greater than or equal to 1"),
    (("      kind: vip_gift\n      tiers: [B, A]\n      fulfilment: mail\n",
      "      kind: vip_gift\n      tiers: [B, Z]\n      fulfilment: mail\n"), "gifts name unknown tier(s): Z"),
    (("      member_price: 2999\n", ""), "gifts.catalogue[5]: a vip_item needs member_price"),
    (("      available_until: 2026-11-30\n      limit_per_month: 1\n    - id: vip2611b",
      "      available_until: 2026-12-30\n      limit_per_month: 1\n    - id: vip2611b"),
     "a vip_item is offered within one calendar month"),
    (("    - id: scarf\n", "    - id: box\n"), "gift ids must be unique (case does not count): box"),
    (("      fulfilment: mail\n", "      fulfilment: drone\n"), "gifts.catalogue[9].fulfilment: Input should be 'pickup' or 'mail'"),
    (("  mail_alert_message: gift_mail_alert", "  mail_alert_message: nope"), "gifts name push message(s) not in pushes.messages: nope"),
], ids=["points", "tier", "price", "month", "duplicate", "fulfilment", "push"])
def test_a_bad_catalogue_is_named_by_file_line_and_path(change, expected):
    bad = GOOD.replace(*change, 1)
    assert bad != GOOD
    message = str(pytest.raises(ConfigError, parse_rules, bad, "config.yaml").value)
    assert message.startswith("config.yaml, line ") and expected in message


def test_codes_are_short_unguessable_and_without_look_alikes():
    codes = {new_code(8) for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == 8 and set(c) <= set(CODE_ALPHABET) for c in codes)
    assert not set("01OIL") & set(CODE_ALPHABET)


# --------------------------------------------------------------------------- stock and handover


def test_gifts_list_and_stock_never_below_what_is_reserved(app, state):
    cli = app.test_cli_runner()
    result = cli.invoke(args=["gifts", "stock", "box", "+3"])
    assert result.exit_code == 0 and "box: stock 3, reserved 0, left 3" in result.output
    redeemed(state)
    refused = cli.invoke(args=["gifts", "stock", "box", "-3"])
    assert refused.exit_code == 1 and "cannot take away 3 (at most 2)" in refused.output
    assert cli.invoke(args=["gifts", "stock", "box", "-2"]).exit_code == 0
    assert cli.invoke(args=["gifts", "stock", "nothing", "+2"]).exit_code == 1
    assert cli.invoke(args=["gifts", "stock", "box", "lots"]).exit_code == 1
    listing = cli.invoke(args=["gifts", "list"]).output.splitlines()
    box = next(line for line in listing if line.startswith("box "))
    assert box.split()[:6] == ["box", "points", "1", "1", "0", "0"]
    assert any(line.startswith("care ") for line in listing)


def test_a_withdrawn_gift_keeps_its_open_codes(state, rules_with):
    _, code = redeemed(state)
    withdrawn = rules_with(gifts={**GIFT_RULES, "catalogue": [g for g in GIFT_RULES["catalogue"] if g["id"] != "box"]})
    with state.db.write() as session:
        [line] = [line for line in gifts.stock_lines(session, withdrawn) if line.gift_id == "box"]
        assert (line.in_catalogue, line.name, line.reserved) == (False, "首饰收纳盒", 1)
        assert gifts.hand_over(session, code, "cli", NOON).outcome == "done"
        with pytest.raises(gifts.GiftRefused):
            gifts.redeem(session, withdrawn, 1, "box", NOON, "test")


def test_handover_by_cli_once_then_says_when_and_by_whom(app, state):
    with state.db.write() as session:
        add_staff(session, "M1", "王经理", now=utc_now())
    _, code = redeemed(state)
    cli = app.test_cli_runner()
    first = cli.invoke(args=["gifts", "handover", code.lower(), "--staff", "M1"])
    assert first.exit_code == 0 and f"{code}: 首饰收纳盒 handed over" in first.output and "staff:M1" in first.output
    again = cli.invoke(args=["gifts", "handover", code])
    assert again.exit_code == 1
    assert "was already collected on 2026-11-23 12:00 Asia/Shanghai by staff:M1" in again.output
    assert cli.invoke(args=["gifts", "handover", "ZZZZZZZZ"]).exit_code == 1
    assert cli.invoke(args=["gifts", "handover", code, "--staff", "NOBODY"]).exit_code == 1
    with state.db.read() as session:
        row = session.get(GiftStock, "box")
        assert (row.stock, row.reserved, row.handed_over) == (4, 0, 1)
    shown = cli.invoke(args=["gifts", "show", code]).output
    assert "open → collected  by staff:M1" in shown and "- → open  by test" in shown


def test_handover_by_api_once(app, state):
    _, code = redeemed(state)
    client = app.test_client()
    headers = {"X-API-Key": API_KEY}
    url = f"/api/redemptions/{code}/handover"
    assert client.post(url).status_code == 401
    first = client.post(url, headers=headers)
    assert first.status_code == 200 and first.json["status"] == "collected" and first.json["by"] == "api"
    again = client.post(url, headers=headers, json={"staff": None})
    assert again.status_code == 409
    assert again.json["status"] == "already_closed" and again.json["at"].startswith("2026-11-23T04:00")
    assert client.post("/api/redemptions/NOPE1234/handover", headers=headers).status_code == 404
    bad = client.post(url, headers=headers, json={"shelf": "A"})
    assert bad.status_code == 422 and bad.json["field"] == "shelf"
    assert client.post(url, headers=headers, json={"staff": "NOBODY"}).json["field"] == "staff"
    assert client.post(url, headers=headers, json=["x"]).status_code == 422


def test_a_mailed_gift_is_marked_sent_with_its_tracking_note(app, state):
    with state.db.write() as session:
        member = make_member(session, tier="B")
        session.add(GiftEntitlement(member_id=member.id, source="purchase:X", reason="purchase", created_at=utc_now()))
        make_stock(session, "bracelet", 1)
        code = gifts.redeem(session, state.rules, member.id, "bracelet", NOON, "test",
                            mail=gifts.Mailing("赵", "13800000000", "上海市 1 号")).code
    jobs.run_job(state, "gift_expiry", date(2027, 6, 1), drain=False)  # waits on staff, not on the member
    with state.db.read() as session:
        assert gifts.find_redemption(session, code).status == "open"
    response = app.test_client().post(f"/api/redemptions/{code}/handover", headers={"X-API-Key": API_KEY},
                                      json={"note": "SF1234567890"})
    assert response.status_code == 200 and response.json["status"] == "mailed"
    with state.db.read() as session:
        assert gifts.find_redemption(session, code).tracking == "SF1234567890"


# --------------------------------------------------------------------------- expiry


def test_expiry_returns_points_and_stock_and_tells_the_member_once(app, state, fake_wechat, wechat):
    member_id, code = redeemed(state, "care", points=800, openid="o-expire")  # care codes last 10 days
    _, kept = redeemed(state, "box", openid="o-keep")
    assert jobs.run_job(state, "gift_expiry", date(2026, 12, 3))[0].changes == {"codes expired": 0}
    plan, _, _ = jobs.run_job(state, "gift_expiry", date(2026, 12, 4))
    assert plan.changes == {"codes expired": 1}
    with state.db.read() as session:
        assert gifts.find_redemption(session, code).status == "expired"
        assert gifts.find_redemption(session, kept).status == "open"
        assert ledger.balance(session, member_id) == 800
        assert session.get(GiftStock, "care").reserved == 0
        back = session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "reverse"))
        assert (back.amount, back.reference) == (800, code)
        # The points went back into their lot, so they expire when they would have.
        lot = session.scalar(select(LedgerEntry).where(LedgerEntry.member_id == member_id, LedgerEntry.kind == "earn"))
        assert lot.remaining == 800
    [notice] = [m for m in fake_wechat.sent() if m["touser"] == "o-expire"]
    assert words(notice).split("\n")[1:] == [code, "已过期，发送“礼品”再次兑换"]  # a template: the points are in 积分明细
    jobs.run_job(state, "gift_expiry", date(2026, 12, 5))
    jobs.run_job(state, "gift_expiry", date(2026, 12, 4))
    assert len([m for m in fake_wechat.sent() if m["touser"] == "o-expire"]) == 1
    with state.db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "reverse")) == 1
    preview = app.test_cli_runner().invoke(args=["push", "preview", "gift_expiry", "--date", "2027-01-01"])
    assert preview.exit_code == 0
    history = wechat.text("o-expire", "积分明细").splitlines()  # named for what it is, not as a refund
    assert [line.split(" ", 1)[1] for line in history[1:] if "兑换" in line] == ["兑换退回 +800", "兑换 -800"]
    assert not any("退货扣回" in line for line in history)


def test_an_expired_code_cannot_be_handed_over(state):
    _, code = redeemed(state, "care", points=800)
    jobs.run_job(state, "gift_expiry", date(2026, 12, 10), drain=False)
    with state.db.write() as session:
        closing = gifts.hand_over(session, code, "cli", NOON)
    assert closing.outcome == "not_open" and closing.redemption.status == "expired"


# --------------------------------------------------------------------------- entitlements


def purchase(state, card_no: str, receipt: str, amount: str, when: str = "2026-11-20T10:00:00"):
    with state.db.write() as session:
        return purchases.record_purchase(session, purchases.parse_purchase(
            {"receipt_no": receipt, "card_no": card_no, "amount": amount, "purchased_at": when, "store": "S1"},
            state.rules, now=NOON), state.rules, now=NOON)


def entitlements(state, member_id: int) -> list[str]:
    with state.db.read() as session:
        return sorted(session.scalars(select(GiftEntitlement.source).where(GiftEntitlement.member_id == member_id)))


def test_a_diamond_purchase_of_the_amount_brings_one_entitlement(state):
    with state.db.write() as session:
        diamond, platinum = make_member(session, tier="B"), make_member(session, tier="C")
    purchase(state, diamond.card_no, "R1", "5000.00")
    purchase(state, diamond.card_no, "R1", "5000.00")  # the store's retry
    purchase(state, diamond.card_no, "R2", "4999.99")
    purchase(state, platinum.card_no, "R3", "9000.00")
    assert entitlements(state, diamond.id) == ["purchase:R1"]
    assert entitlements(state, platinum.id) == []


def test_an_a_member_first_purchase_of_the_year_brings_the_annual_gift_told_once(state, fake_wechat):
    with state.db.write() as session:
        add_staff(session, "M1", "王经理", openid="o-m1", now=utc_now())
        member = make_member(session, tier="A", manager_id="M1", openid="o-a")
        make_member(session, tier="A", manager_id="M1", openid="o-a-nothing-bought")
    purchase(state, member.card_no, "R1", "100.00")
    purchase(state, member.card_no, "R2", "200.00")
    purchase(state, member.card_no, "R0", "300.00", when="2025-12-30T10:00:00")  # last year's: no annual gift now
    assert entitlements(state, member.id) == ["annual:2026"]
    with state.db.read() as session:  # purchases plan no pushes: the daily job tells
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    jobs.run_job(state, "gift_expiry", date(2026, 11, 24))
    jobs.run_job(state, "gift_expiry", date(2026, 11, 25))
    with state.db.read() as session:
        planned = session.execute(select(OutboxMessage.recipient, OutboxMessage.message, OutboxMessage.occasion)
                                  .order_by(OutboxMessage.id)).all()
    assert planned == [(f"member:{member.id}", "gift_entitlement", "annual:2026"),
                       (f"staff:M1:member:{member.id}", "gift_entitlement_alert", "annual:2026")]
    sent = {m["touser"]: m for m in fake_wechat.sent()}
    assert sorted(sent) == ["o-a", "o-m1"] and sent["o-m1"]["data"]["keyword2"]["value"] == member.card_no
    with state.db.write() as session:
        make_stock(session, "brooch", 1)
        code = gifts.redeem(session, state.rules, member.id, "brooch", NOON, "test").code
    with state.db.read() as session:
        assert session.scalar(select(GiftRedemption.points).where(GiftRedemption.code == code)) == 0
        assert gifts.unused_entitlements(session, member.id) == 0


def refund(app, receipt: str, body: dict | None = None):
    response = app.test_client().post(f"/api/purchases/{receipt}/refund", json=body, headers={"X-API-Key": API_KEY})
    assert response.status_code == 200, response.json
    return response.json


def test_a_refund_takes_back_an_unused_gift_entitlement_a_used_one_stays(app, state):
    with state.db.write() as session:
        diamond = make_member(session, tier="B")
        make_stock(session, "brooch", 5)
    purchase(state, diamond.card_no, "R1", "5000.00")
    purchase(state, diamond.card_no, "R2", "8000.00")
    purchase(state, diamond.card_no, "R3", "6000.00")
    assert entitlements(state, diamond.id) == ["purchase:R1", "purchase:R2", "purchase:R3"]
    # a partial refund leaving less than the 5,000 that earned it: taken back
    assert refund(app, "R1", {"amount": "0.01", "refund_no": "RF1"})["gift_entitlement"] == "taken_back"
    assert entitlements(state, diamond.id) == ["purchase:R2", "purchase:R3"]
    # one leaving enough: kept; the next one that leaves too little: taken back, once
    assert "gift_entitlement" not in refund(app, "R2", {"amount": "3000.00", "refund_no": "RF1"})
    assert entitlements(state, diamond.id) == ["purchase:R2", "purchase:R3"]
    assert refund(app, "R2", {"amount": "100.00", "refund_no": "RF2"})["gift_entitlement"] == "taken_back"
    assert refund(app, "R2", {"amount": "100.00", "refund_no": "RF2"})["status"] == "already_refunded"
    assert "gift_entitlement" not in refund(app, "R2", {"amount": "100.00", "refund_no": "RF3"})  # gone already
    assert entitlements(state, diamond.id) == ["purchase:R3"]
    # a used one stays: the gift was chosen while the purchase stood
    with state.db.write() as session:
        code = gifts.redeem(session, state.rules, diamond.id, "brooch", NOON, "test").code
    assert refund(app, "R3")["gift_entitlement"] == "kept_used"
    assert entitlements(state, diamond.id) == ["purchase:R3"]
    with state.db.read() as session:
        assert gifts.find_redemption(session, code).status == "open"
        assert gifts.unused_entitlements(session, diamond.id) == 0
        changes = session.scalars(select(MemberChange.detail).where(MemberChange.member_id == diamond.id,
                                                                    MemberChange.action == "refund")).all()
    assert sum("gift entitlement taken back" in c for c in changes) == 2
    assert sum("gift entitlement kept used" in c for c in changes) == 1
    with state.db.write() as session:  # nothing left to choose with
        with pytest.raises(gifts.GiftRefused):
            gifts.redeem(session, state.rules, diamond.id, "brooch", NOON, "test")


def test_a_refund_and_a_gift_choice_at_once_never_both_keep_the_entitlement(state):
    """Refunding a purchase while its entitlement is being used, from two threads, 8 times: either the
    refund takes it back and the choice is refused, or the choice gets it and the refund keeps it."""
    with state.db.write() as session:
        make_stock(session, "brooch", 20)
        members = [make_member(session, tier="B") for _ in range(8)]
    for n, member in enumerate(members):
        purchase(state, member.card_no, f"RACE{n}", "6000.00")
        outcomes: dict[str, object] = {}
        barrier = threading.Barrier(2)

        def choose() -> None:
            barrier.wait()
            try:
                with state.db.write() as session:
                    outcomes["code"] = gifts.redeem(session, state.rules, member.id, "brooch", NOON, "test").code
            except gifts.GiftRefused as exc:
                outcomes["code"] = exc

        def give_back() -> None:
            barrier.wait()
            with state.db.write() as session:
                outcomes["refund"] = purchases.refund_purchase(session, f"RACE{n}", rules=state.rules, now=utc_now()).gift_entitlement

        threads = [threading.Thread(target=choose), threading.Thread(target=give_back)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with state.db.read() as session:
            left = entitlements(state, member.id)
            redeemed = session.scalar(select(func.count()).select_from(GiftRedemption)
                                      .where(GiftRedemption.member_id == member.id))
        if isinstance(outcomes["code"], str):
            assert (outcomes["refund"], left, redeemed) == ("kept_used", [f"purchase:RACE{n}"], 1)
        else:
            assert (outcomes["refund"], left, redeemed) == ("taken_back", [], 0)
    with state.db.read() as session:
        assert session.get(GiftStock, "brooch").reserved == session.scalar(
            select(func.count()).select_from(GiftRedemption))


def test_per_month_limits_count_the_local_month(state):
    """Per-month limits count the rules' local month (Asia/Shanghai), not UTC's."""
    with state.db.write() as session:
        member = make_member(session)
        make_points(session, member, 10_000)
        make_stock(session, "box", 5)
        late = datetime(2026, 11, 30, 15, 30, tzinfo=timezone.utc)  # 30 Nov 23:30 in Shanghai
        gifts.redeem(session, state.rules, member.id, "box", late, "test")
        gifts.redeem(session, state.rules, member.id, "box", late + timedelta(hours=1), "test")  # 1 Dec 00:30
        months = sorted(session.scalars(select(GiftRedemption.month)))
    assert months == ["2026-11", "2026-12"]
