"""Members from the stores (CSV import) and binding a WeChat account to a card."""
from __future__ import annotations

import threading
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, select

from bot.dev.fake_wechat import finish_event_xml
from storage import members
from storage.db import Database
from storage.ledger import ledger_sum
from storage.members import BindOutcome
from storage.models import LedgerEntry, Member, MemberChange, OutboxMessage
from tests.factories import make_member, utc_now


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # the tests here run on SQLite and on PostgreSQL


TODAY = date(2026, 11, 23)
AT = datetime(2026, 11, 23, 2, tzinfo=timezone.utc)  # 10:00 on TODAY in the rules' zone
CSV = """card_no,name,phone,birthday,tier,points,manager
D1000001,张三,138-0000-0001,1990-05-01,D,100,
C1000001,李四,+86 13800000002,1985-02-28,C,,
A1000001,王五,13800000003,,A,5000,M9
X-BAD,赵六,13800000004,1990-13-01,D,,
B1000001,钱七,13800000005,1970-01-01,Z,,
B1000002,孙八,13800000006,1970-01-01,B,-5,
B1000003,周九,13800000007,1970-01-01,B,,NOPE
,吴十,13800000008,1970-01-01,B,,
"""


@pytest.fixture
def db(db_url) -> Database:
    database = Database(db_url)
    with database.write() as session:
        members.add_staff(session, "M9", "王经理", now=utc_now())
    yield database
    database.dispose()


def test_import_keeps_good_rows_and_names_bad_ones(db, rules):
    with db.write() as session:
        report = members.import_members(session, CSV.splitlines(keepends=True), rules, AT)
    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)
    assert report.errors == [
        (5, "birthday '1990-13-01' is not a date in YYYY-MM-DD form"),
        (6, "tier 'Z' is not one of D, C, B, A"),
        (7, "points '-5' must be a whole number ≥ 0"),
        (8, "manager 'NOPE' is not a known staff id"),
        (9, "card_no is empty"),
    ]
    with db.read() as session:
        a = members.find_by_card(session, "A1000001")
        c = members.find_by_card(session, "C1000001")
        assert a.manager_id == "M9" and a.points_balance == 5000 == ledger_sum(session, a.id)
        assert c.phone == "13800000002" and c.birthday == date(1985, 2, 28) and c.birthday_md == 228


def test_reimporting_the_same_file_changes_nothing(db, rules):
    lines = CSV.splitlines(keepends=True)
    with db.write() as session:
        members.import_members(session, lines, rules, AT)
    with db.write() as session:
        again = members.import_members(session, lines, rules, AT)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 2  # two opening balances
        assert session.scalar(select(func.count()).select_from(MemberChange)) == 3


def test_import_updates_changed_fields_and_records_them(db, rules):
    with db.write() as session:
        members.import_members(session, CSV.splitlines(keepends=True), rules, AT)
    changed = "card_no,name,phone,birthday,tier\nD1000001,张三丰,13800000001,1990-05-01,C\n"
    with db.write() as session:
        report = members.import_members(session, changed.splitlines(keepends=True), rules, AT)
    assert report.updated == 1
    with db.read() as session:
        member = members.find_by_card(session, "D1000001")
        change = session.scalars(select(MemberChange).where(MemberChange.member_id == member.id)
                                 .order_by(MemberChange.id.desc())).first()
    assert (member.name, member.tier) == ("张三丰", "C")
    assert change.detail == "changed name, tier"


def test_import_without_required_columns_says_which(db, rules):
    with db.write() as session:
        report = members.import_members(session, ["card_no,name\n", "X1,a\n"], rules, AT)
    assert report.errors == [(1, "header lacks column(s): phone, tier")]


def test_members_import_cli(app, tmp_path):
    path = tmp_path / "members.csv"
    path.write_text("card_no,name,phone,birthday,tier\nD2000001,甲,13800000011,1990-01-02,D\n"
                    "D2000002,乙,13800000012,1990-01-32,D\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["members", "import", str(path)])
    assert result.exit_code == 1
    assert f"{path}, line 3: birthday '1990-01-32' is not a date" in result.output
    assert "1 created, 0 updated, 0 unchanged, 1 rejected" in result.output


# --------------------------------------------------------------------------- binding (storage)


def test_one_openid_per_member_and_one_member_per_openid(db):
    with db.write() as session:
        first = make_member(session, phone="13911111111")
        second = make_member(session, phone="13922222222")
        card1, card2 = first.card_no, second.card_no
    with db.write() as session:
        assert members.bind_member(session, "o1", card1, "139 1111 1111", now=utc_now())[0] is BindOutcome.BOUND
    with db.write() as session:
        assert members.bind_member(session, "o2", card1, "13911111111", now=utc_now())[0] is BindOutcome.CARD_TAKEN
        assert members.bind_member(session, "o1", card2, "13922222222", now=utc_now())[0] is BindOutcome.ALREADY_BOUND
        assert members.bind_member(session, "o3", card2, "13900000000", now=utc_now())[0] is BindOutcome.NO_MATCH


def test_concurrent_binds_of_one_card_bind_it_once(db):
    with db.write() as session:
        card = make_member(session, phone="13933333333").card_no
    outcomes: list[BindOutcome] = []
    barrier = threading.Barrier(6)

    def bind(openid: str) -> None:
        barrier.wait()
        with db.write() as session:
            outcomes.append(members.bind_member(session, openid, card, "13933333333", now=utc_now())[0])

    threads = [threading.Thread(target=bind, args=(f"race-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.value for o in outcomes) == ["bound"] + ["card_taken"] * 5
    with db.read() as session:
        assert session.scalar(select(Member.openid).where(Member.card_no == card)).startswith("race-")


# --------------------------------------------------------------------------- binding (through WeChat)


@pytest.fixture
def card(state):
    with state.db.write() as session:
        member = make_member(session, name="陈静", phone="13800000011", tier="C")
        return member.card_no


def test_follow_bind_and_unbind_through_wechat(wechat, card):
    assert "绑定 卡号 手机号" in wechat.event("o-member", "subscribe")
    assert wechat.text("o-member", f"绑定 {card} 13800000011") == f"陈静，您好！会员卡 {card}（铂金卡）已绑定成功。"
    assert "您已绑定会员卡" in wechat.text("o-member", f"bind {card} 13800000011")
    assert wechat.text("o-member", "解绑") == f"已解除会员卡 {card} 的绑定。"
    assert "请先绑定" in wechat.text("o-member", "unbind")


def test_wrong_pair_does_not_say_which_part(wechat, card):
    wrong_phone = wechat.text("o-guess-1", f"绑定 {card} 13800000000")
    wrong_card = wechat.text("o-guess-2", "绑定 Z9999999 13800000011")
    assert wrong_phone == wrong_card == "卡号或手机号不正确，请核对后重试（还可尝试 4 次）。"


def test_five_failures_lock_the_openid_out_for_the_hour(wechat, card, redis_client):
    for left in (4, 3, 2, 1):  # the member is told how many tries are left before the lockout
        assert f"不正确，请核对后重试（还可尝试 {left} 次）" in wechat.text("o-brute", f"绑定 {card} 10000000000")
    assert "尝试次数过多" in wechat.text("o-brute", f"绑定 {card} 10000000000")  # the fifth locks
    locked = wechat.text("o-brute", f"绑定 {card} 13800000011")  # even the right pair
    assert "尝试次数过多" in locked and "60 分钟" in locked
    assert "绑定成功" in wechat.text("o-other", f"绑定 {card} 13800000011")  # others are not locked


def test_an_operator_unlocks_by_card_or_openid(app, wechat, card, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="storage.members")
    for _ in range(5):
        wechat.text("o-locked-account-1", f"绑定 {card} 10000000000")
        wechat.text("o-locked-account-2", "绑定 Z0000009 10000000000")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["members", "unlock", card])
    assert result.exit_code == 0 and "1 lockout lifted" in result.output
    assert "绑定成功" in wechat.text("o-locked-account-1", f"绑定 {card} 13800000011")
    assert "尝试次数过多" in wechat.text("o-locked-account-2", f"绑定 {card} 13800000011")
    assert "1 lockout lifted" in runner.invoke(args=["members", "unlock", "o-locked-account-2"]).output
    assert "no lockout" in runner.invoke(args=["members", "unlock", "o-locked-account-2"]).output
    logged = caplog.text
    assert "bind lockout: o-lo…nt-1 after 5" in logged and "bound to card" in logged
    assert "o-locked-account-1" not in logged  # openids are masked


def test_bind_as_a_dialog(wechat, card):
    assert "请发送您的会员卡号" in wechat.text("o-dialog", "绑定")
    assert "请发送会员卡登记的手机号" in wechat.text("o-dialog", card)
    assert "绑定成功" in wechat.text("o-dialog", "13800000011")


def test_cancel_leaves_the_dialog(wechat, card):
    wechat.text("o-cancel", "绑定")
    assert wechat.text("o-cancel", "取消") == "已取消。"
    assert "没有听懂" in wechat.text("o-cancel", card)  # no longer read as a card number
    assert wechat.text("o-cancel", "cancel") == "当前没有进行中的操作。"


def test_a_keyword_leaves_a_half_finished_dialog(wechat, card):
    wechat.text("o-switch", "绑定")
    assert "可用指令" in wechat.text("o-switch", "帮助")
    assert "没有听懂" in wechat.text("o-switch", card)


def test_the_dialog_expires(wechat, card, redis_client, state):
    wechat.text("o-expire", "绑定")
    key = state.keys("dialog", "o-expire")
    assert 0 < redis_client.ttl(key) <= state.rules.dialog.ttl_seconds
    redis_client.delete(key)  # what the TTL does after ten minutes
    assert "没有听懂" in wechat.text("o-expire", card)


def test_unfollow_marks_the_member_unsubscribed(wechat, card, state):
    wechat.text("o-leaver", f"绑定 {card} 13800000011")
    assert wechat.event("o-leaver", "unsubscribe") == "success"
    with state.db.read() as session:
        assert members.find_by_card(session, card).subscribed is False
    wechat.event("o-leaver", "subscribe")
    with state.db.read() as session:
        assert members.find_by_card(session, card).subscribed is True


def test_help_and_unknown_text(wechat):
    assert "绑定 卡号 手机号" in wechat.text("o-help", "帮助")
    assert "可用指令" in wechat.text("o-help", "  HELP ")
    assert "可用指令" in wechat.event("o-help", "CLICK", "MENU_HELP")
    assert wechat.text("o-help", "今天天气怎么样") == "抱歉，没有听懂“今天天气怎么样”。发送“帮助”查看可用指令。"


def test_following_again_while_bound_is_a_welcome_back(wechat, card):
    wechat.text("o-again", f"绑定 {card} 13800000011")
    wechat.event("o-again", "unsubscribe")
    reply = wechat.event("o-again", "subscribe")
    assert reply.startswith(f"陈静，欢迎回来！您的会员卡 {card}（铂金卡）")
    assert "绑定 卡号 手机号" not in reply


def test_staff_list(app, state):
    from storage.members import add_staff

    with state.db.write() as session:
        add_staff(session, "M1", "王经理", openid="o-manager-0001", now=utc_now())
        add_staff(session, "S1", "客服小李", role="service", now=utc_now())
        make_member(session, manager_id="M1")
        make_member(session, manager_id="M1")
    out = app.test_cli_runner().invoke(args=["staff", "list"]).output.splitlines()
    assert out[0].split()[:4] == ["M1", "王经理", "manager", "2"] and "o-ma…0001" in out[0]
    assert out[1].split()[:4] == ["S1", "客服小李", "service", "0"] and "alerts cannot reach them" in out[1]


# --------------------------------------------------------------------------- WeChat refusing delivery


def _refused_by_wechat(wechat, state, clock, member, msgid: int) -> None:
    """A template push to ``member`` that WeChat then reports refused: the member blocked the account's messages."""
    with state.db.write() as session:
        session.add(OutboxMessage(job="birthday", occasion=f"o{msgid}", recipient=f"member:{member.id}",
                                  member_id=member.id, openid=member.openid, message="birthday_greeting",
                                  status="sent", msgid=str(msgid), channel="template", created_at=state.now()))
    clock.now += 1
    assert wechat.send(finish_event_xml(member.openid, msgid, "failed:user block", int(clock()))) == "success"


@pytest.mark.parametrize("again", ["帮助", "积分", "follow"])
def test_a_member_wechat_refused_is_reachable_again_once_they_write_or_follow(app, wechat, state, clock, again):
    with state.db.write() as session:
        member = make_member(session, openid="o-blocker", tier="C")
    runner = app.test_cli_runner()

    def wechat_line() -> str:
        shown = runner.invoke(args=["members", "show", member.card_no])
        assert shown.exit_code == 0, shown.output
        return next(line for line in shown.output.splitlines() if line.startswith("wechat:"))

    assert wechat_line() == "wechat:   bound, following"
    _refused_by_wechat(wechat, state, clock, member, 9101)
    since = state.rules.local_time(state.now())
    refused = (f"wechat:   bound, following, unreachable: WeChat refused delivery since {since} Asia/Shanghai "
               "(failed:user block); no pushes until the member writes or follows again")
    assert wechat_line() == refused
    if again == "follow":
        assert wechat.event("o-blocker", "unsubscribe") == "success"
        assert wechat_line() == refused.replace("following", "unfollowed", 1)  # leaving is no sign of delivery
        assert "欢迎回来" in wechat.event("o-blocker", "subscribe")
    else:
        assert "积分" in wechat.text("o-blocker", again)
    assert wechat_line() == "wechat:   bound, following"
    wechat.text("o-blocker", "帮助")  # reachable already: nothing more is written
    with state.db.read() as session:
        trail = session.scalars(select(MemberChange.action).where(
            MemberChange.member_id == member.id, MemberChange.action.in_(["unreachable", "reachable"]))
            .order_by(MemberChange.id)).all()
    assert trail == ["unreachable", "reachable"]
