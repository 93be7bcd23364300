"""The points ledger: entries only, oldest points first, never below zero — on SQLite and PostgreSQL."""
from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import func, select, update

from storage import ledger
from storage.db import Database
from storage.ledger import InsufficientPoints
from storage.models import LedgerEntry, Member
from tests.factories import make_member, utc_now


@pytest.fixture
def db(db_url) -> Database:
    database = Database(db_url)
    yield database
    database.dispose()


def _member(db: Database, **fields) -> int:
    with db.write() as session:
        return make_member(session, **fields).id


def _balance(db: Database, member_id: int) -> tuple[int, int]:
    with db.read() as session:
        cached = session.scalar(select(Member.points_balance).where(Member.id == member_id))
        return cached, ledger.ledger_sum(session, member_id)


def _lots(db: Database, member_id: int) -> list[tuple[date, int]]:
    with db.read() as session:
        rows = session.execute(
            select(LedgerEntry.expires_on, LedgerEntry.remaining)
            .where(LedgerEntry.member_id == member_id, LedgerEntry.kind == "earn")
            .order_by(LedgerEntry.expires_on)
        )
        return [tuple(row) for row in rows]


def test_spending_consumes_the_oldest_points_first(db):
    member = _member(db)
    with db.write() as session:
        ledger.award_points(session, member, 100, expires_on=date(2027, 6, 1), occurred_at=utc_now())
        ledger.award_points(session, member, 50, expires_on=date(2027, 1, 1), occurred_at=utc_now())
        ledger.deduct_points(session, member, 70, reference="gift-1", occurred_at=utc_now())
    assert _lots(db, member) == [(date(2027, 1, 1), 0), (date(2027, 6, 1), 80)]
    assert _balance(db, member) == (80, 80)


def test_spending_more_than_the_balance_is_refused_and_changes_nothing(db):
    member = _member(db)
    with db.write() as session:
        ledger.award_points(session, member, 30, expires_on=date(2027, 1, 1), occurred_at=utc_now())
    with pytest.raises(InsufficientPoints) as refused:
        with db.write() as session:
            ledger.deduct_points(session, member, 31, occurred_at=utc_now())
    assert (refused.value.balance, refused.value.needed) == (30, 31)
    assert _balance(db, member) == (30, 30)
    assert _lots(db, member) == [(date(2027, 1, 1), 30)]


def test_the_database_itself_refuses_a_negative_balance(db):
    member = _member(db)
    with pytest.raises(Exception, match="(?i)check|constraint"):
        with db.write() as session:
            session.execute(update(Member).where(Member.id == member).values(points_balance=-1))


def test_an_idempotency_key_makes_a_retry_a_no_op(db):
    member = _member(db)
    with db.write() as session:
        assert ledger.award_points(session, member, 10, expires_on=date(2027, 1, 1), idempotency_key="k1", occurred_at=utc_now())
        assert ledger.award_points(session, member, 10, expires_on=date(2027, 1, 1), idempotency_key="k1", occurred_at=utc_now()) is None
    assert _balance(db, member) == (10, 10)


def test_concurrent_spends_never_overdraw(db):
    """Twenty threads each try to spend 30 of 250 points at once: exactly eight succeed."""
    member = _member(db)
    with db.write() as session:
        ledger.award_points(session, member, 100, expires_on=date(2027, 1, 1), occurred_at=utc_now())
        ledger.award_points(session, member, 150, expires_on=date(2027, 6, 1), occurred_at=utc_now())
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def spend() -> None:
        barrier.wait()
        try:
            with db.write() as session:
                ledger.deduct_points(session, member, 30, occurred_at=utc_now())
            outcomes.append("spent")
        except InsufficientPoints:
            outcomes.append("refused")

    threads = [threading.Thread(target=spend) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("spent") == 8 and outcomes.count("refused") == 12
    assert _balance(db, member) == (10, 10)
    assert sum(remaining for _, remaining in _lots(db, member)) == 10


def test_due_lots_expire_as_ledger_entries(db):
    first, second = _member(db), _member(db)
    with db.write() as session:
        ledger.award_points(session, first, 100, expires_on=date(2026, 1, 1), occurred_at=utc_now())
        ledger.award_points(session, first, 40, expires_on=date(2027, 1, 1), occurred_at=utc_now())
        ledger.deduct_points(session, first, 30, occurred_at=utc_now())  # from the 2026 lot: 70 of it left to expire
        ledger.award_points(session, second, 5, expires_on=date(2026, 1, 1), occurred_at=utc_now())
    with db.write() as session:
        assert ledger.expire_due_lots(session, utc_now(), date(2026, 1, 2)) == 75
    with db.write() as session:
        assert ledger.expire_due_lots(session, utc_now(), date(2026, 1, 2)) == 0  # nothing twice
    assert _balance(db, first) == (40, 40)
    assert _balance(db, second) == (0, 0)
    with db.read() as session:
        kinds = session.scalars(select(LedgerEntry.amount).where(LedgerEntry.kind == "expire")
                                .order_by(LedgerEntry.amount)).all()
    assert kinds == [-70, -5]


def test_expiry_pages_through_members_and_skips_those_with_nothing_due(db, monkeypatch):
    monkeypatch.setattr(ledger, "BATCH", 2)  # several pages from a handful of members
    members = [_member(db) for _ in range(7)]
    with db.write() as session:
        for n, member in enumerate(members):
            ledger.award_points(session, member, 10 + n, expires_on=date(2026, 1, 1) if n % 3 else date(2027, 1, 1), occurred_at=utc_now())
            ledger.award_points(session, member, 1, expires_on=date(2027, 1, 1), occurred_at=utc_now())
    with db.write() as session:
        assert ledger.expire_due_lots(session, utc_now(), date(2026, 6, 1)) == sum(10 + n for n in range(7) if n % 3)
    for n, member in enumerate(members):
        assert _balance(db, member) == ((11 + n, 11 + n) if n % 3 == 0 else (1, 1))
    with db.read() as session:
        assert ledger.check_balances(session) == []


def test_a_lot_expiring_today_is_still_good_today(db):
    member = _member(db)
    with db.write() as session:
        ledger.award_points(session, member, 9, expires_on=date(2026, 3, 1), occurred_at=utc_now())
        assert ledger.expire_due_lots(session, utc_now(), date(2026, 3, 1)) == 0
    assert _balance(db, member) == (9, 9)


def test_bulk_reset_zeroes_each_member_once(db):
    members = [_member(db) for _ in range(3)]
    with db.write() as session:
        ledger.award_points(session, members[0], 100, expires_on=date(2027, 1, 1), occurred_at=utc_now())
        ledger.adjust_points(session, members[1], 20, note="goodwill", now=utc_now())
    chosen = select(Member.id).where(Member.id.in_(members))
    with db.write() as session:
        assert ledger.reset_points_bulk(session, chosen, reason="retention", key_prefix="reset:2026-05:", now=utc_now()) == 2
    with db.write() as session:
        ledger.award_points(session, members[0], 7, expires_on=date(2027, 1, 1), occurred_at=utc_now())  # bought afterwards
        assert ledger.reset_points_bulk(session, chosen, reason="retention", key_prefix="reset:2026-05:", now=utc_now()) == 0
    assert [_balance(db, m) for m in members] == [(7, 7), (0, 0), (0, 0)]


def test_single_reset_and_reversal_report_what_they_did(db):
    member = _member(db)
    with db.write() as session:
        ledger.award_points(session, member, 50, expires_on=date(2027, 1, 1), occurred_at=utc_now())
        ledger.deduct_points(session, member, 45, occurred_at=utc_now())
        reversal = ledger.reverse_points(session, member, 20, reference="R1", idempotency_key="refund:R1", now=utc_now())
    assert (reversal.reversed_points, reversal.shortfall) == (5, 15)
    with db.write() as session:
        assert "shortfall 15" in session.get(LedgerEntry, reversal.entry_id).note
        ledger.adjust_points(session, member, 12, note="manual", now=utc_now())
        reset = ledger.reset_points(session, member, reason="retention", idempotency_key="reset:1", now=utc_now())
        assert session.get(LedgerEntry, reset).amount == -12
        assert ledger.reset_points(session, member, reason="retention", idempotency_key="reset:1", now=utc_now()) is None
    assert _balance(db, member) == (0, 0)


def test_check_balances_finds_a_cache_that_drifted(db):
    member = _member(db)
    with db.write() as session:
        ledger.award_points(session, member, 10, expires_on=date(2027, 1, 1), occurred_at=utc_now())
    with db.read() as session:
        assert ledger.check_balances(session) == []
    with db.write() as session:  # simulate a write that bypassed the ledger
        session.execute(update(Member).where(Member.id == member).values(points_balance=11))
    with db.read() as session:
        [mismatch] = ledger.check_balances(session)
    assert (mismatch.member_id, mismatch.cached, mismatch.ledger) == (member, 11, 10)


def test_points_check_cli(app, state):
    with state.db.write() as session:
        member = make_member(session)
        ledger.award_points(session, member.id, 10, expires_on=date(2027, 1, 1), occurred_at=utc_now())
    runner = app.test_cli_runner()
    good = runner.invoke(args=["points", "check"])
    assert good.exit_code == 0 and "every balance equals" in good.output
    with state.db.write() as session:
        session.execute(update(Member).where(Member.id == member.id).values(points_balance=3))
    bad = runner.invoke(args=["points", "check"])
    assert bad.exit_code == 1 and f"{member.card_no}: cached 3, ledger sum 10" in bad.output


def test_ledger_amounts_are_never_edited(db):
    """Spending and expiry add entries; earlier entries keep their amounts."""
    member = _member(db)
    with db.write() as session:
        ledger.award_points(session, member, 60, expires_on=date(2026, 1, 1), occurred_at=utc_now())
        ledger.deduct_points(session, member, 10, occurred_at=utc_now())
        ledger.expire_due_lots(session, utc_now(), date(2026, 2, 1))
    with db.read() as session:
        amounts = session.scalars(select(LedgerEntry.amount).where(LedgerEntry.member_id == member)
                                  .order_by(LedgerEntry.id)).all()
        count = session.scalar(select(func.count()).select_from(LedgerEntry))
    assert amounts == [60, -10, -50] and count == 3
