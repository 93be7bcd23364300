"""Prepared reads (the member, staff and points reads of every chat message) give what Core gives — on both databases."""
from __future__ import annotations

import threading
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text

from storage import members, purchases
from storage.db import Database
from storage.models import Member
from storage.points import _MEMBER_WITH_POINTS, _values, member_with_points
from tests.factories import make_member, make_points, make_staff

TODAY = date(2026, 11, 23)


@pytest.fixture
def db(db_url) -> Database:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def member_id(db, rules) -> int:
    with db.write() as session:
        member = make_member(session, name="陈静", tier="C", openid="o-reads", birthday=date(1990, 2, 28))
        make_points(session, member, 300, expires_on=date(2027, 6, 30))
        make_points(session, member, 200, expires_on=date(2027, 3, 31))
        make_points(session, member, 50, expires_on=date(2027, 3, 31))
        for n, amount in enumerate(("1234.50", "99.95")):
            purchases.record_purchase(session, purchases.parse_purchase(
                {"receipt_no": f"R{n}", "card_no": member.card_no, "amount": amount,
                 "purchased_at": "2026-10-01T12:00:00", "store": "S1"}, rules,
                now=datetime(2026, 11, 23, tzinfo=timezone.utc)), rules, now=datetime(2026, 11, 23, tzinfo=timezone.utc))
        make_staff(session, "S9", role="manager", openid="o-staff", name="王经理")
        return member.id


def test_member_with_points_is_the_row_core_reads(db, rules, member_id):
    row = member_with_points(db.reads(), "o-reads", rules, TODAY)
    with db.engine.connect() as connection:
        core = connection.execute(_MEMBER_WITH_POINTS.statement, {"openid": "o-reads", **_values(rules, TODAY)}).one()
    assert tuple(row) == tuple(core)
    assert (row.id, row.name, row.tier, row.next_day, row.next_points) == (member_id, "陈静", "C", date(2027, 3, 31), 250)
    assert row.spend == Decimal("1334.45") and isinstance(row.points_balance, int)


def test_member_row_converts_as_core_does(db, member_id):
    row = members.member_row(db.reads(), "o-reads")
    with db.engine.connect() as connection:
        core = connection.execute(members._ROW_BY_OPENID.statement, {"openid": "o-reads"}).one()
    assert tuple(row) == tuple(core)
    assert row.birthday == date(1990, 2, 28)
    assert row.created_at.tzinfo is not None  # the stored UTC times come back aware, as through Core


def test_member_and_staff_rows(db, member_id):
    reads = db.reads()
    assert members.member_row(reads, "o-reads").id == member_id
    assert members.member_row(reads, "o-nobody") is None
    assert members.staff_row(reads, "o-staff").name == "王经理"
    assert members.staff_row(reads, "o-reads") is None
    assert members.member_row(reads, "'; DROP TABLE members; --") is None  # a value, never SQL
    with db.read() as session:
        assert members.find_by_openid(session, "o-reads").id == member_id


def test_reads_see_every_commit_and_keep_no_transaction_open(db, member_id):
    reads = db.reads()
    assert members.member_row(reads, "o-reads").name == "陈静"
    with db.write() as session:  # another connection commits in between
        session.get(Member, member_id).name = "陈静怡"
    assert members.member_row(reads, "o-reads").name == "陈静怡"  # no snapshot held from the first read
    with db.write() as session:  # and nothing the reads hold stops a writer (SQLite's lock, PostgreSQL's)
        session.get(Member, member_id).name = "陈静"


def test_each_thread_reads_on_its_own_connection(db, member_id):
    names = []

    def read() -> None:
        names.append(members.member_row(db.reads(), "o-reads").name)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert names == ["陈静"] * 4
    assert len(db._read_connections._opened) == 4
    db.dispose()
    assert db._read_connections._opened == []


def test_a_dropped_connection_is_replaced(db, member_id):
    if db.is_sqlite:
        pytest.skip("only a server can drop a connection")
    reads = db.reads()
    members.member_row(reads, "o-reads")
    backend = db._read_connections.get().dbapi_connection.get_backend_pid()
    with db.engine.begin() as connection:  # as a database restart would
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    assert members.member_row(reads, "o-reads").id == member_id
