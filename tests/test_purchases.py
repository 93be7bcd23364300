"""Purchases in from the stores: validation, points by tier, idempotency, refunds, CSV import."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from storage import purchases
from storage.db import Database
from storage.members import find_by_card
from storage.models import LedgerEntry, Purchase
from storage.purchases import FieldError, parse_purchase
from tests.factories import make_member, utc_now

GOOD = {"receipt_no": "R1", "card_no": "b0000001", "amount": "1999.99",
        "purchased_at": "2026-11-01T10:00:00", "store": "上海南京路店"}


@pytest.fixture
def db(db_url) -> Database:
    database = Database(db_url)
    yield database
    database.dispose()


def test_a_purchase_without_offset_is_shanghai_time(rules):
    purchase = parse_purchase(GOOD, rules, utc_now())
    assert purchase.purchased_at == datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)
    assert purchase.card_no == "B0000001" and purchase.amount == Decimal("1999.99")
    with_offset = parse_purchase({**GOOD, "purchased_at": "2026-11-01T10:00:00+00:00"}, rules, utc_now())
    assert with_offset.purchased_at.hour == 10


@pytest.mark.parametrize(
    "change,field,message",
    [
        ({"amount": "-1"}, "amount", "must be a number ≥ 0"),
        ({"amount": "abc"}, "amount", "is not a number"),
        ({"amount": "1.234"}, "amount", "more than 2 decimal places"),
        ({"amount": True}, "amount", "must be a number"),
        ({"amount": None}, "amount", "is required"),
        ({"purchased_at": "yesterday"}, "purchased_at", "is not an ISO 8601"),
        ({"purchased_at": "2099-01-01T00:00:00"}, "purchased_at", "is in the future"),
        ({"receipt_no": ""}, "receipt_no", "is required"),
        ({"store": "x" * 65}, "store", "at most 64"),
        ({"colour": "red"}, "colour", "unknown field"),
        # issue 8: what JSON and CSV can be made to say; each a FieldError, never another exception
        ({"amount": "1e30"}, "amount", "must be at most 9999999999.99"),
        ({"amount": "1E999999"}, "amount", "must be at most 9999999999.99"),
        ({"amount": Decimal("1E+308")}, "amount", "must be at most 9999999999.99"),
        ({"amount": "9" * 29}, "amount", "must be at most 9999999999.99"),
        ({"amount": 10**5000}, "amount", "must be at most 9999999999.99"),
        ({"amount": 1e308}, "amount", "must be at most 9999999999.99"),
        ({"amount": float("nan")}, "amount", "must be a number ≥ 0"),
        ({"amount": float("inf")}, "amount", "must be a number ≥ 0"),
        ({"amount": "sNaN"}, "amount", "must be a number ≥ 0"),
        ({"amount": "1e-999999"}, "amount", "more than 2 decimal places"),
        ({"amount": [1]}, "amount", "must be a number"),
        ({"amount": "x" * 100_000}, "amount", "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx… is not a number"),
        ({"purchased_at": "0001-01-01T00:00:00"}, "purchased_at", "is out of range"),
        ({"purchased_at": "0001-01-01T00:00:00+14:00"}, "purchased_at", "is out of range"),
        ({"purchased_at": "9999-12-31T23:59:59-12:00"}, "purchased_at", "is out of range"),
        ({"purchased_at": "1999-12-31T23:59:59+00:00"}, "purchased_at", "is before 2000-01-01"),
        ({"purchased_at": 1700000000}, "purchased_at", "must be ISO 8601 text"),
        ({"purchased_at": "2026-11-01T10:00:00\x00"}, "purchased_at", "is not an ISO 8601"),
        ({"receipt_no": "R\x001"}, "receipt_no", "must not contain control characters (U+0000)"),
        ({"card_no": "B000\ud8000001"}, "card_no", "must not contain control characters (U+D800)"),
        ({"store": "店\r\n名"}, "store", "must not contain control characters (U+000D)"),
        ({"receipt_no": Decimal("1.5")}, "receipt_no", "must be text"),
        ({"receipt_no": ["R1"]}, "receipt_no", "must be text"),
        ({"receipt_no": "R" * 100_000}, "receipt_no", "at most 64 characters"),
    ],
)
def test_bad_fields_are_named(rules, change, field, message):
    with pytest.raises(FieldError) as bad:
        parse_purchase({**GOOD, **change}, rules, utc_now())
    assert bad.value.field == field and message in str(bad.value)
    assert len(str(bad.value)) < 120  # what the caller sent does not come back whole


def test_json_numbers_and_negative_zero(rules):
    """The API reads JSON numbers as Decimal: an integer receipt number is text, -0 is 0."""
    purchase = parse_purchase({**GOOD, "receipt_no": Decimal("12345"), "amount": Decimal("-0")}, rules, utc_now())
    assert purchase.receipt_no == "12345" and str(purchase.amount) == "0.00"


def test_points_are_amount_times_the_tier_rate_rounded_down(db, rules):
    with db.write() as session:
        make_member(session, card_no="B0000001", tier="B")  # rate 1.2
        result = purchases.record_purchase(session, parse_purchase(GOOD, rules, utc_now()), rules, now=utc_now())
    assert (result.status, result.points) == ("created", 2399)  # 1999.99 × 1.2 = 2399.988
    with db.read() as session:
        lot = session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "earn"))
        assert lot.amount == 2399 and lot.reference == "R1"
        assert lot.expires_on == date(2028, 10, 31)  # purchase day + 730 days
        assert find_by_card(session, "B0000001").points_balance == 2399


def test_the_same_receipt_twice_is_a_duplicate_and_earns_once(db, rules):
    with db.write() as session:
        make_member(session, card_no="B0000001", tier="B")
    for expected in ("created", "duplicate"):
        with db.write() as session:
            assert purchases.record_purchase(session, parse_purchase(GOOD, rules, utc_now()), rules, now=utc_now()).status == expected
    with db.write() as session:
        clash = purchases.record_purchase(session, parse_purchase({**GOOD, "amount": "5"}, rules, utc_now()), rules, now=utc_now())
    assert clash.status == "refused" and "already recorded with another card or amount" in clash.reason
    with db.read() as session:
        assert find_by_card(session, "B0000001").points_balance == 2399


def test_an_unknown_card_is_refused(db, rules):
    with db.write() as session:
        result = purchases.record_purchase(session, parse_purchase(GOOD, rules, utc_now()), rules, now=utc_now())
    assert result.status == "refused" and "B0000001 is not a known member" in result.reason
    with db.read() as session:
        assert session.scalar(select(Purchase.id)) is None


def test_refund_reverses_the_points_left(db, rules):
    from storage import ledger

    with db.write() as session:
        member = make_member(session, card_no="B0000001", tier="B")
        purchases.record_purchase(session, parse_purchase(GOOD, rules, utc_now()), rules, now=utc_now())
        ledger.deduct_points(session, member.id, 2000, occurred_at=utc_now())  # spent most of it on a gift
    with db.write() as session:
        refund = purchases.refund_purchase(session, "R1", rules=rules, now=utc_now())
    assert (refund.status, refund.points_reversed, refund.shortfall) == ("refunded", 399, 2000)
    with db.write() as session:
        assert purchases.refund_purchase(session, "R1", rules=rules, now=utc_now()).status == "already_refunded"
        assert purchases.refund_purchase(session, "NOPE", rules=rules, now=utc_now()).status == "not_found"
    with db.read() as session:
        assert find_by_card(session, "B0000001").points_balance == 0
        assert ledger.check_balances(session) == []


def test_refund_after_the_points_expired_takes_nothing_from_other_points(db, rules):
    from storage import ledger

    with db.write() as session:
        member = make_member(session, card_no="B0000001", tier="B")
        purchases.record_purchase(session, parse_purchase(GOOD, rules, utc_now()), rules, now=utc_now())  # 2,399 points
        ledger.award_points(session, member.id, 500, expires_on=date(2099, 1, 1), reference="later", occurred_at=utc_now())
    with db.write() as session:
        assert ledger.expire_due_lots(session, utc_now(), date(2099, 1, 1)) == 2399
    with db.write() as session:
        refund = purchases.refund_purchase(session, "R1", rules=rules, now=utc_now())
    assert (refund.points_reversed, refund.shortfall, refund.points_expired) == (0, 0, 2399)
    assert refund.as_dict()["points_expired"] == 2399
    with db.read() as session:
        assert find_by_card(session, "B0000001").points_balance == 500  # the later points stay
        assert ledger.check_balances(session) == []


def test_partial_refunds_add_up_and_lower_the_spend_tiers_count(db, rules):
    from storage import ledger

    with db.write() as session:
        make_member(session, card_no="B0000001", tier="B")
        purchases.record_purchase(session, parse_purchase({**GOOD, "amount": "30000"}, rules, utc_now()), rules, now=utc_now())
    with db.write() as session:
        for n in range(3):  # three thirds: their floors add up to all the points
            result = purchases.refund_purchase(session, "R1", purchases.RefundIn(Decimal("10000"), f"P{n}"),
                                               rules=rules, now=utc_now())
            assert result.status == "refunded"
    with db.read() as session:
        member = find_by_card(session, "B0000001")
        assert member.points_balance == 0 and ledger.check_balances(session) == []
        purchase = session.scalar(select(Purchase))
        assert purchase.refunded_amount == Decimal("30000.00") and purchase.refunded_at is not None


def test_a_partial_refund_lowers_the_spend_by_its_amount(db, rules):
    from storage import tiers

    with db.write() as session:
        make_member(session, card_no="B0000001", tier="B")
        purchases.record_purchase(session, parse_purchase({**GOOD, "amount": "25000"}, rules, utc_now()), rules, now=utc_now())
        purchases.refund_purchase(session, "R1", purchases.RefundIn(Decimal("6000"), "P1"), rules=rules, now=utc_now())
    with db.read() as session:
        today = rules.today(utc_now())
        facts = tiers.member_facts(session, find_by_card(session, "B0000001"), rules, today, None)
        assert facts.spend == Decimal("19000.00") and facts.purchases == 1  # still a visit
        assert [c.new_tier for c in tiers.tier_changes(session, rules, today)] == ["C"]


def test_refunds_from_csv(app, state, tmp_path):
    with state.db.write() as session:
        make_member(session, card_no="B0000001", tier="B")
        for n in (1, 2):
            purchases.record_purchase(session, parse_purchase({**GOOD, "receipt_no": f"R{n}"}, state.rules,
                                                              utc_now()), state.rules, now=utc_now())
    path = tmp_path / "refunds.csv"
    path.write_text("receipt_no,refund_no,amount\nR1,RF1,999.50\nR2,,\nNOPE,RF9,1\nR1,RF2,abc\n", encoding="utf-8")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["refunds", "import", str(path)])
    assert result.exit_code == 1
    assert "line 4: receipt_no NOPE is not a known purchase" in result.output
    assert "line 5: amount: 'abc' is not a number" in result.output
    assert f"{path}: 2 refunded, 0 already refunded, 2 refused" in result.output
    again = runner.invoke(args=["refunds", "import", str(path)])
    assert f"{path}: 0 refunded, 2 already refunded, 2 refused" in again.output
    with state.db.read() as session:  # R2 in full (2,399), R1's half: floor(2,399 × 999.50 / 1,999.99) = 1,198
        assert find_by_card(session, "B0000001").points_balance == 2 * 2399 - 2399 - 1198


def test_csv_import_keeps_good_rows_and_is_idempotent(app, state, tmp_path):
    with state.db.write() as session:
        make_member(session, card_no="C0000001", tier="C")
    path = tmp_path / "purchases.csv"
    path.write_text(
        "receipt_no,card_no,amount,purchased_at,store\n"
        "P1,C0000001,100.50,2026-10-01T12:00:00+08:00,S1\n"
        "P2,C0000001,12.5x,2026-10-02T12:00:00,S1\n"
        "P3,NOBODY,10,2026-10-02T12:00:00,S1\n"
        "P4,C0000001,20,2026-10-03 09:30,S2\n",
        encoding="utf-8",
    )
    runner = app.test_cli_runner()
    first = runner.invoke(args=["purchases", "import", str(path)])
    assert first.exit_code == 1
    assert f"{path}, line 3: amount: '12.5x' is not a number" in first.output
    assert f"{path}, line 4: card_no NOBODY is not a known member" in first.output
    assert "2 created, 0 duplicate, 2 refused" in first.output
    again = runner.invoke(args=["purchases", "import", str(path)])
    assert "0 created, 2 duplicate, 2 refused" in again.output
    with state.db.read() as session:
        assert find_by_card(session, "C0000001").points_balance == 120  # 100 + 20 at rate 1


@pytest.mark.parametrize("receipt_no", ["R\x001", "R" * 65, "R" * 100_000, "R\ud800", "R\n1", ""],
                         ids=["nul", "65-chars", "100000-chars", "surrogate", "newline", "empty"])
def test_refunding_a_receipt_no_purchase_can_have_is_not_found(db, rules, receipt_no):
    """PostgreSQL refuses a NUL in a query: such receipts are not looked up at all."""
    with db.write() as session:
        assert purchases.refund_purchase(session, receipt_no, rules=rules, now=utc_now()).status == "not_found"
