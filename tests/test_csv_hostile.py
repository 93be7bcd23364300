"""Issue 8, the stores' CSV files: never a traceback, never a lost row.

- a field too long for its column, a field over csv's own size limit, a control character, a
  number no column holds: that line is refused with its number and the reason, the other lines
  are imported, and nothing of the refused line is stored;
- the same card on two lines of a members file: both lines refused, each naming the other;
- a file that is not UTF-8: refused as a whole, in one line saying to save it as UTF-8;
- running the same file again changes nothing.

Storage and commands run on SQLite and on PostgreSQL (``db_url``): PostgreSQL refuses what
SQLite stores (a name longer than its column, a NUL), and one refused statement there aborts the
whole import.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, select

from storage import members, purchases
from storage.csvfile import CsvFileError, CsvTable, open_csv
from storage.models import LedgerEntry, Member, MemberChange, Purchase
from tests.factories import make_member, utc_now

HUGE = 200_000  # over csv.field_size_limit() (131,072)
TODAY = date(2026, 11, 23)
AT = datetime(2026, 11, 23, 2, tzinfo=timezone.utc)  # 10:00 on TODAY in the rules' zone


@pytest.fixture
def database_url(db_url: str) -> str:
    """The app (and its commands) on both engines."""
    return db_url


@pytest.fixture
def db(state):
    with state.db.write() as session:
        members.add_staff(session, "M9", "王经理", now=utc_now())
    return state.db


def counts(db) -> dict[str, int]:
    with db.read() as session:
        return {table.__name__: session.scalar(select(func.count()).select_from(table))
                for table in (Member, MemberChange, LedgerEntry, Purchase)}


# --------------------------------------------------------------------------- members: one bad line among good ones

MEMBERS_HEADER = "card_no,name,phone,birthday,tier,points,manager,spend,spend_since\n"
MEMBER_BEFORE = "H1000001,甲,13800000001,1990-01-02,D,100,M9\n"  # line 2
MEMBER_AFTER = "H1000002,乙,13800000002,,C,,,1200.50,2026-01-01\n"  # after the bad line


@pytest.mark.parametrize("bad,line,says", [
    (f"H1000003,{'名' * 100_000},13800000003,,D,,\n", 3,
     "name is 100000 characters long, more than the 64 its column holds"),
    (f"H1000003,{'x' * 65},13800000003,,D,,\n", 3, "name is 65 characters long, more than the 64 its column holds"),
    (f"H1000003,丙,{'1' * 33},,D,,\n", 3, "phone is 33 characters long, more than the 32 its column holds"),
    (f"{'H' * 33},丙,13800000003,,D,,\n", 3, "card_no is 33 characters long, more than the 32 its column holds"),
    (f"H1000003,丙,13800000003,,D,,{'M' * 33}\n", 3,
     "manager is 33 characters long, more than the 32 its column holds"),
    (f"H1000003,丙,13800000003,,{'D' * 17},,\n", 3, "tier is 17 characters long, more than the 16 its column holds"),
    (f"H1000003,{'x' * HUGE},13800000003,,D,,\n", 3, "a field is longer than 131072 characters"),
    (f'H1000003,"{"x" * HUGE}",13800000003,,D,,\n', 3, "a field is longer than 131072 characters"),
    ("H1000003,丙\x00丁,13800000003,,D,,\n", 3, "name contains a control character (U+0000)"),
    ('H1000003,"丙\n丁",13800000003,,D,,\n', 4, "name contains a control character (U+000A)"),
    ("H1000003,丙\x1b[31m,13800000003,,D,,\n", 3, "name contains a control character (U+001B)"),
    ("H1000003,丙,13800000003,,D,1000000000,\n", 3, "points '1000000000' must be at most 999999999"),
    (f"H1000003,丙,13800000003,,D,{'9' * 5000},\n", 3, "points is 5000 characters long, more than the 32"),
    ("H1000003,丙,13800000003,,D,,,1e30,\n", 3, "spend '1e30' must be an amount ≥ 0 with at most 2 decimals"),
    ("H1000003,丙,13800000003,,D,,,NaN,\n", 3, "spend 'NaN' must be an amount"),
    ("H1000003,丙,13800000003,,D,,,,,extra\n", 3, "more fields than the header has columns"),
], ids=["name-100000", "name-65", "phone-33", "card-33", "manager-33", "tier-17", "field-200000",
        "quoted-field-200000", "nul", "quoted-newline", "escape", "points-over-max", "points-5000-digits",
        "spend-1e30", "spend-nan", "extra-field"])
def test_a_bad_members_line_is_refused_and_the_good_ones_kept(db, rules, bad, line, says):
    lines = (MEMBERS_HEADER + MEMBER_BEFORE + bad + MEMBER_AFTER).splitlines(keepends=True)
    with db.write() as session:
        report = members.import_members(session, lines, rules, AT)
    assert (report.created, report.updated, report.unchanged) == (2, 0, 0)
    assert len(report.errors) == 1 and report.errors[0][0] == line and says in report.errors[0][1], report.errors
    assert len(report.errors[0][1]) < 200  # the field does not come back whole
    with db.read() as session:
        assert set(session.scalars(select(Member.card_no))) == {"H1000001", "H1000002"}
        assert members.find_by_card(session, "H1000001").points_balance == 100
        assert str(members.find_by_card(session, "H1000002").carried_spend) == "1200.50"
    before = counts(db)
    with db.write() as session:
        again = members.import_members(session, lines, rules, AT)
    assert (again.created, again.updated, again.unchanged, again.errors) == (0, 0, 2, report.errors)
    assert counts(db) == before


def test_rows_after_a_field_csv_cannot_read_are_imported(db, rules):
    """csv starts again at the next line: a long unquoted field, a long quoted field spanning two lines."""
    text = (MEMBERS_HEADER
            + "H2000001,甲,13800000001,,D,,\n"  # 2
            + f"H2000002,{'x' * HUGE},13800000002,,D,,\n"  # 3: refused
            + "H2000003,乙,13800000003,,D,,\n"  # 4
            + f'H2000004,"{"y" * HUGE}\n'  # 5: refused, and its quoted field goes on …
            + 'tail",13800000004,,D,,\n'  # 6: … to here, read as a line of its own and refused
            + "H2000005,丙,13800000005,,D,,\n")  # 7
    with db.write() as session:
        report = members.import_members(session, text.splitlines(keepends=True), rules, AT)
    assert [line for line, _ in report.errors] == [3, 5, 6]
    assert report.errors[0][1] == report.errors[1][1] == "a field is longer than 131072 characters"
    assert report.created == 3
    with db.read() as session:
        assert sorted(session.scalars(select(Member.card_no))) == ["H2000001", "H2000003", "H2000005"]


@pytest.mark.parametrize("header,says", [
    (f"card_no,name,phone,tier,{'x' * HUGE}\n", "header: a field is longer than 131072 characters"),
    ("card_no,name,phone,tier,name\n", "header: column(s) name appear more than once"),
    ("card_no,name,tier\n", "header lacks column(s): phone"),
    ("", "header lacks column(s): card_no, name, phone, tier"),
], ids=["huge-header", "repeated-column", "missing-column", "empty-file"])
def test_a_header_that_cannot_be_used_refuses_the_file(db, rules, header, says):
    lines = (header + "H3000001,甲,13800000001,D,x\n").splitlines(keepends=True) if header else []
    with db.write() as session:
        report = members.import_members(session, lines, rules, AT)
    assert report.errors == [(1, says)] and report.created == 0
    assert counts(db)["Member"] == 0


# --------------------------------------------------------------------------- members: the same card twice

DUPLICATES = (MEMBERS_HEADER
              + "K1000001,甲,13800000001,,D,,\n"  # 2
              + "K1000002,乙一,13800000002,,C,500,\n"  # 3: K1000002 …
              + "K1000003,丙,13800000003,,D,,\n"  # 4
              + "k1000002,乙二,13800000022,,B,900,\n"  # 5: … again (case does not matter)
              + "K1000004,丁一,13800000004,,D,,\n"  # 6: K1000004 three times
              + "K1000004,丁二,13800000004,,D,,\n"  # 7
              + "K1000004,丁三,13800000004,1990-13-01,D,,\n")  # 8: and a bad birthday


def test_the_same_card_twice_refuses_both_lines_and_a_rerun_changes_nothing(db, rules):
    with db.write() as session:
        make_member(session, card_no="K1000002", name="原名", phone="13800000099", tier="D")
    lines = DUPLICATES.splitlines(keepends=True)
    with db.write() as session:
        report = members.import_members(session, lines, rules, AT)
    assert report.errors == [
        (3, "card_no K1000002 is also on line 5: neither line is imported"),
        (5, "card_no K1000002 is also on line 3: neither line is imported"),
        (6, "card_no K1000004 is also on lines 7, 8: none of these 3 lines is imported"),
        (7, "card_no K1000004 is also on lines 6, 8: none of these 3 lines is imported"),
        (8, "birthday '1990-13-01' is not a date in YYYY-MM-DD form"),
    ]
    assert (report.created, report.updated, report.unchanged) == (2, 0, 0)
    with db.read() as session:
        kept = members.find_by_card(session, "K1000002")
        assert (kept.name, kept.tier, kept.points_balance) == ("原名", "D", 0)  # neither line touched it
        assert members.find_by_card(session, "K1000004") is None
    before = counts(db)
    for _ in range(2):  # the member does not flip between the two lines
        with db.write() as session:
            again = members.import_members(session, lines, rules, AT)
        assert (again.created, again.updated, again.unchanged, again.errors) == (0, 0, 2, report.errors)
        assert counts(db) == before


# --------------------------------------------------------------------------- purchases: one bad line among good ones

PURCHASES_HEADER = "receipt_no,card_no,amount,purchased_at,store\n"
PURCHASE_BEFORE = "P1,C0000001,100.50,2026-10-01T12:00:00+08:00,S1\n"  # line 2
PURCHASE_AFTER = "P2,C0000001,20,2026-10-03 09:30,S2\n"


@pytest.mark.parametrize("bad,line,says", [
    ("P3,C0000001,1e30,2026-10-02T12:00:00,S1\n", 3, "amount: must be at most 9999999999.99"),
    ("P3,C0000001,1E999999,2026-10-02T12:00:00,S1\n", 3, "amount: must be at most 9999999999.99"),
    (f"P3,C0000001,{'9' * 29},2026-10-02T12:00:00,S1\n", 3, "amount: must be at most 9999999999.99"),
    ("P3,C0000001,NaN,2026-10-02T12:00:00,S1\n", 3, "amount: must be a number ≥ 0"),
    ("P3,C0000001,-Infinity,2026-10-02T12:00:00,S1\n", 3, "amount: must be a number ≥ 0"),
    ("P3,C0000001,sNaN,2026-10-02T12:00:00,S1\n", 3, "amount: must be a number ≥ 0"),
    ("P3,C0000001,1.001,2026-10-02T12:00:00,S1\n", 3, "amount: '1.001' has more than 2 decimal places"),
    ("P3,C0000001,10,0001-01-01T00:00:00,S1\n", 3, "purchased_at: '0001-01-01T00:00:00' is out of range"),
    ("P3,C0000001,10,9999-12-31T23:59:59-12:00,S1\n", 3, "purchased_at: '9999-12-31T23:59:59-12:00' is out of range"),
    ("P3,C0000001,10,1999-12-31T23:00:00+00:00,S1\n", 3,
     "purchased_at: '1999-12-31T23:00:00+00:00' is before 2000-01-01"),
    (f"P3,C0000001,10,{'2' * HUGE},S1\n", 3, "a field is longer than 131072 characters"),
    (f"P3,C0000001,10,{'2' * 1000},S1\n", 3, "is not an ISO 8601 date and time"),
    ("P\x003,C0000001,10,2026-10-02T12:00:00,S1\n", 3, "receipt_no: must not contain control characters (U+0000)"),
    ('P3,C0000001,10,2026-10-02T12:00:00,"S\n1"\n', 4, "store: must not contain control characters (U+000A)"),
    (f"{'P' * 65},C0000001,10,2026-10-02T12:00:00,S1\n", 3, "receipt_no: must be at most 64 characters"),
    (f"P3,C0000001,10,2026-10-02T12:00:00,{'店' * 65}\n", 3, "store: must be at most 64 characters"),
    ("P3,C0000001,10,2026-10-02T12:00:00,S1,extra\n", 3, "more fields than the header has columns"),
], ids=["amount-1e30", "amount-1E999999", "amount-29-nines", "amount-NaN", "amount-minus-Infinity", "amount-sNaN",
        "amount-3-decimals", "year-1", "year-9999-minus-12", "before-2000", "field-200000", "date-1000-chars",
        "receipt-nul", "store-newline", "receipt-65", "store-65", "extra-field"])
def test_a_bad_purchases_line_is_refused_and_the_good_ones_kept(db, rules, state, bad, line, says):
    with db.write() as session:
        make_member(session, card_no="C0000001", tier="C")  # rate 1
    lines = (PURCHASES_HEADER + PURCHASE_BEFORE + bad + PURCHASE_AFTER).splitlines(keepends=True)
    with db.write() as session:
        report = purchases.import_purchases(session, lines, rules, state.now())
    assert len(report.errors) == 1 and report.errors[0][0] == line and says in report.errors[0][1], report.errors
    assert len(report.errors[0][1]) < 200
    assert report.summary() == "2 created, 0 duplicate, 1 refused"
    with db.read() as session:
        assert sorted(session.scalars(select(Purchase.receipt_no))) == ["P1", "P2"]
        assert members.find_by_card(session, "C0000001").points_balance == 120
    before = counts(db)
    with db.write() as session:
        again = purchases.import_purchases(session, lines, rules, state.now())
    assert again.summary() == "0 created, 2 duplicate, 1 refused" and again.errors == report.errors
    assert counts(db) == before


# --------------------------------------------------------------------------- the file itself

GBK_MEMBERS = (MEMBERS_HEADER + "G1000001,张三,13800000001,,D,,\n").encode("gbk")


@pytest.mark.parametrize("content,says", [
    (GBK_MEMBERS, "is not UTF-8 text (byte 0xD5 at offset 75, line 2)"),
    (b"card_no,name,phone,tier\nG1,Andr\xe9,13800000001,D\n", "is not UTF-8 text (byte 0xE9 at offset 31, line 2)"),
    ((MEMBERS_HEADER + "G1000001,张三,13800000001,,D,,\n").encode("utf-16"), "is UTF-16 text, not UTF-8"),
], ids=["gbk", "latin-1", "utf-16"])
def test_a_file_not_in_utf8_is_refused_in_one_line(tmp_path, content, says):
    path = tmp_path / "members.csv"
    path.write_bytes(content)
    with pytest.raises(CsvFileError) as refused:
        with open_csv(path):
            pytest.fail("nothing is read from a file that is not UTF-8")
    message = str(refused.value)
    assert message.startswith(f"{path}: {says}: save it as UTF-8") and "CSV UTF-8" in message
    assert "\n" not in message


def test_a_utf8_file_with_or_without_the_bom_reads_alike(tmp_path):
    text = MEMBERS_HEADER + "G1000001,张三,13800000001,,D,,\r\n"
    for name, content in (("plain.csv", text.encode()), ("bom.csv", b"\xef\xbb\xbf" + text.encode())):
        path = tmp_path / name
        path.write_bytes(content)
        with open_csv(path) as lines:
            table = CsvTable(lines)
            records = list(table)
        assert table.columns[0] == "card_no" and [r.values["name"] for r in records] == ["张三"]


# --------------------------------------------------------------------------- the commands


def _one_line(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command,content", [
    ("members", GBK_MEMBERS),
    ("purchases", (PURCHASES_HEADER + "P1,C0000001,10,2026-10-01T12:00:00,上海店\n").encode("gbk")),
], ids=["members", "purchases"])
def test_importing_a_gbk_file_says_save_as_utf8_and_stores_nothing(app, db, tmp_path, command, content):
    with db.write() as session:
        make_member(session, card_no="C0000001", tier="C")
    before = counts(db)
    path = tmp_path / f"{command}.csv"
    path.write_bytes(content)
    line = _one_line(app.test_cli_runner().invoke(args=[command, "import", str(path)]))
    assert line.startswith(f"{path}: is not UTF-8 text (byte 0x") and "save it as UTF-8" in line
    assert counts(db) == before


def test_members_import_cli_reports_every_bad_line_and_keeps_the_good_ones(app, db, tmp_path):
    path = tmp_path / "members.csv"
    path.write_text(MEMBERS_HEADER
                    + "L1000001,甲,13800000001,,D,,\n"
                    + f"L1000002,{'x' * HUGE},13800000002,,D,,\n"
                    + f"L1000003,{'名' * 100},13800000003,,D,,\n"
                    + "L1000001,甲二,13800000011,,D,,\n"
                    + "L1000004,丁,13800000004,,D,,\n", encoding="utf-8")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["members", "import", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"{path}, line 2: card_no L1000001 is also on line 5: neither line is imported",
        f"{path}, line 3: a field is longer than 131072 characters",
        f"{path}, line 4: name is 100 characters long, more than the 64 its column holds",
        f"{path}, line 5: card_no L1000001 is also on line 2: neither line is imported",
    ]
    assert result.stdout.strip() == f"{path}: 1 created, 0 updated, 0 unchanged, 4 rejected"
    again = runner.invoke(args=["members", "import", str(path)])
    assert again.stdout.strip() == f"{path}: 0 created, 0 updated, 1 unchanged, 4 rejected"


def test_purchases_import_cli_keeps_the_good_rows_around_hostile_ones(app, db, tmp_path):
    with db.write() as session:
        make_member(session, card_no="C0000001", tier="C")
    path = tmp_path / "purchases.csv"
    path.write_text(PURCHASES_HEADER
                    + "P1,C0000001,10,2026-10-01T12:00:00,S1\n"
                    + f"P2,C0000001,10,2026-10-01T12:00:00,{'s' * HUGE}\n"
                    + "P3,C0000001,1E999999,2026-10-01T12:00:00,S1\n"
                    + "P4,C0000001,10,0001-01-01T00:00:00,S1\n"
                    + "P5,C0000001,10,2026-10-01T12:00:00,S1\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["purchases", "import", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"{path}, line 3: a field is longer than 131072 characters",
        f"{path}, line 4: amount: must be at most 9999999999.99",
        f"{path}, line 5: purchased_at: '0001-01-01T00:00:00' is out of range",
    ]
    assert result.stdout.strip() == f"{path}: 2 created, 0 duplicate, 3 refused"


@pytest.mark.parametrize("source", ["list", "generator", "file"])
def test_duplicates_are_found_whatever_the_lines_come_from(db, rules, tmp_path, source):
    """The members text is read twice (duplicates first): a list is read again, a file rewound, anything else kept."""
    text = DUPLICATES
    path = tmp_path / "members.csv"
    path.write_text(text, encoding="utf-8")
    with open(path, encoding="utf-8", newline="") as file, db.write() as session:
        lines = {"list": text.splitlines(keepends=True), "generator": (line for line in text.splitlines(keepends=True)),
                 "file": file}[source]
        report = members.import_members(session, lines, rules, AT)
    assert [line for line, _ in report.errors] == [3, 5, 6, 7, 8] and report.created == 2
