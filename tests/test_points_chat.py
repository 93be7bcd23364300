"""积分 and 积分明细 through the real webhook."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from rules.base import parse_clock
from scheduler.jobs import run_job
from storage import ledger, purchases
from storage.members import import_members
from tests.factories import make_member, utc_now

IMPORT_HEADER = "card_no,name,phone,birthday,tier,points,manager,spend,spend_since\n"


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # the tests here run on SQLite and on PostgreSQL


@pytest.fixture
def member(state, clock):
    clock.now = datetime(2026, 11, 22, 20, 0, tzinfo=timezone.utc).timestamp()  # 23 Nov 04:00 in Shanghai
    rules = state.rules
    with state.db.write() as session:
        m = make_member(session, name="陈静", tier="C", openid="o-points")
        for n, (amount, when) in enumerate([("12345.60", "2026-03-01T12:00:00"), ("100", "2026-11-22T23:30:00")]):
            purchases.record_purchase(session, purchases.parse_purchase(
                {"receipt_no": f"PC{n}", "card_no": m.card_no, "amount": amount, "purchased_at": when,
                 "store": "S1"}, rules, now=datetime(2026, 11, 23, tzinfo=timezone.utc)), rules,
                now=datetime(2026, 11, 23, tzinfo=timezone.utc))
        ledger.deduct_points(session, m.id, 45, reference="gift", occurred_at=datetime(2026, 11, 23, 4, tzinfo=timezone.utc))
        return m


def test_points_answer(wechat, member):
    reply = wechat.text("o-points", "积分")
    assert reply == (
        f"陈静，您好！\n会员卡：铂金卡（{member.card_no}）\n当前积分：12,400\n"
        "其中 12,300 分将于 2028-02-29 到期，请及时使用。\n"
        "近两年累计消费 12,445.60 元，再消费 7,554.40 元即可升级为钻石卡。"
    )


def test_points_answer_in_safe_mode(wechat, member):
    assert "当前积分：12,400" in wechat.text("o-points", "积分", aes=True)
    assert wechat.text("o-points", "积分明细", aes=True).startswith("最近 3 笔积分记录：")


def test_points_by_menu_and_in_english(wechat, member):
    assert "当前积分：12,400" in wechat.event("o-points", "CLICK", "MENU_POINTS")
    assert "当前积分：12,400" in wechat.text("o-points", "points")


def test_history_lists_the_latest_entries_in_local_dates(wechat, member):
    reply = wechat.text("o-points", "积分明细")
    assert reply.splitlines() == [
        "最近 3 笔积分记录：",
        "2026-11-23 兑换 -45",
        "2026-11-22 消费积分 +100",  # 23:30 Shanghai time
        "2026-03-01 消费积分 +12,345",
    ]


def test_history_shows_at_most_ten(wechat, state, clock):
    with state.db.write() as session:
        m = make_member(session, openid="o-many")
        for n in range(12):
            ledger.award_points(session, m.id, n + 1, expires_on=date(2030, 1, 1), occurred_at=utc_now())
    lines = wechat.text("o-many", "history").splitlines()
    assert lines[0] == "最近 10 笔积分记录：" and len(lines) == 11
    assert lines[1].endswith("+12") and lines[-1].endswith("+3")


def test_top_tier_and_empty_history(wechat, state):
    with state.db.write() as session:
        make_member(session, tier="A", openid="o-top")
    assert "您已是最高等级会员" in wechat.text("o-top", "积分")
    assert "暂无即将到期的积分" in wechat.text("o-top", "积分")
    assert wechat.text("o-top", "积分明细") == "暂无积分记录。"


def test_points_before_binding_gets_the_bind_hint(wechat):
    assert wechat.text("o-stranger", "积分") == "请先绑定会员卡：发送“绑定 卡号 手机号”。"
    assert wechat.text("o-stranger", "积分明细") == "请先绑定会员卡：发送“绑定 卡号 手机号”。"


def test_benefits_say_the_tier_what_it_brings_and_the_spend_to_keep_and_reach(wechat, member):
    reply = wechat.text("o-points", "会员权益")
    assert reply.splitlines() == [
        f"陈静，您是铂金卡会员（{member.card_no}）。",
        "您的专享礼遇：",
        "· 消费积分（每消费 1 元积 1 分）",
        "· 生日与节日祝福",
        "· 每月会员通讯",
        "· 积分到期提醒",
        "· 每月 VIP 专享商品",
        "近两年累计消费 12,445.60 元，已达到铂金卡的保级标准（5,000.00 元）。",
        "再消费 7,554.40 元即可升级为钻石卡。",  # the spend is said once, in the line above
    ]
    assert wechat.text("o-points", "会员等级") == reply


def test_benefits_of_a_member_short_of_keeping_the_tier(wechat, state):
    with state.db.write() as session:
        make_member(session, tier="B", openid="o-short", name="赵雅琴")
    reply = wechat.text("o-short", "benefits")
    assert "近两年累计消费 0.00 元，再消费 20,000.00 元即可保持钻石卡（保级标准 20,000.00 元）。" in reply
    assert "· 生日礼物到店领取" in reply and "升级为尊荣钻石卡" in reply
    assert "请先绑定会员卡" in wechat.text("o-nobody", "会员权益")


def test_an_imported_opening_balance_is_named_as_such(wechat, state, clock):
    csv = ["card_no,name,phone,birthday,tier,points,manager\n", "K0000001,钱多多,13600000001,,C,5000,\n"]
    with state.db.write() as session:
        import_members(session, csv, state.rules, state.now())
    wechat.text("o-opening", "绑定 K0000001 13600000001")
    assert wechat.text("o-opening", "积分明细").splitlines()[1:] == [f"{state.today()} 期初积分 +5,000"]


def _import_and_bind(wechat, state, *rows: str) -> None:
    """Import members (``card,name,phone,tier,spend,spend_since``) and bind each from WeChat ``o-<card>``."""
    lines = []
    for row in rows:
        card, name, phone, tier, spend, since = row.split(",")
        lines.append(f"{card},{name},{phone},,{tier},,,{spend},{since}\n")
    with state.db.write() as session:
        report = import_members(session, [IMPORT_HEADER, *lines], state.rules, state.now())
    assert not report.errors, report.errors
    for row in rows:
        card, _, phone, *_ = row.split(",")
        assert "已绑定成功" in wechat.text(f"o-{card}", f"绑定 {card} {phone}")


def test_spend_carried_in_by_an_import_counts_in_points_benefits_and_members_show(app, wechat, state, clock):
    rules, today = state.rules, state.today()
    first_day = today - timedelta(days=rules.segments.window_days - 1)  # the window's first day
    _import_and_bind(wechat, state,
                     "K1000001,孙丽,13600000011,C,3000.00,",  # carried from the day of the import
                     f"K1000002,周敏,13600000012,C,4000.00,{first_day}",  # started on the window's first day
                     f"K1000003,郑洁,13600000013,C,4000.00,{first_day - timedelta(days=1)}")  # before the window
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    with state.db.write() as session:
        for receipt, amount in (("KS1", "500"), ("KS2", "800")):
            purchases.record_purchase(session, purchases.PurchaseIn(
                receipt, "K1000001", Decimal(amount), now - timedelta(hours=1), "S1"), rules, now=now)
        purchases.refund_purchase(session, "KS2", rules=rules, now=now)  # refunded in full: no spend
    assert wechat.text("o-K1000001", "积分").endswith("近两年累计消费 3,500.00 元，再消费 16,500.00 元即可升级为钻石卡。")
    assert wechat.text("o-K1000001", "会员权益").splitlines()[-2:] == [
        "近两年累计消费 3,500.00 元，再消费 1,500.00 元即可保持铂金卡（保级标准 5,000.00 元）。",
        "再消费 16,500.00 元即可升级为钻石卡。",
    ]
    assert "近两年累计消费 4,000.00 元，再消费 16,000.00 元" in wechat.text("o-K1000002", "积分")
    assert "近两年累计消费 0.00 元，再消费 20,000.00 元" in wechat.text("o-K1000003", "积分")
    shown = app.test_cli_runner().invoke(args=["members", "show", "K1000001", "--date", today.isoformat()]).output
    assert "spend 3500.00 CNY in the last 730 days (with 3000.00 CNY carried in by import)" in shown


def test_a_member_past_the_next_threshold_is_told_when_the_nightly_evaluation_upgrades(wechat, state, clock):
    rules, zone = state.rules, state.rules.zone
    at = rules.jobs.tier_recalc.at  # the evaluation's time of day, as members read it (HH:MM)
    day = state.today()
    evaluation = datetime.combine(day, parse_clock(at), zone)
    clock.now = (evaluation + timedelta(hours=1)).timestamp()  # just after this day's evaluation
    _import_and_bind(wechat, state, "K1000004,钱芳,13600000014,C,30000.00,", "K1000005,吴静,13600000015,C,60000.00,")
    tomorrow = f"{day + timedelta(days=1)} {at}"
    assert wechat.text("o-K1000004", "积分").endswith(
        f"近两年累计消费 30,000.00 元，已达到钻石卡标准，将于 {tomorrow} 等级评估后为您升级。")
    assert f"已达到尊荣钻石卡标准，将于 {tomorrow} 等级评估后" in wechat.text("o-K1000005", "积分")  # past two
    benefits = wechat.text("o-K1000004", "会员权益")
    assert benefits.endswith(f"已达到钻石卡标准，将于 {tomorrow} 等级评估后为您升级。")
    assert benefits.count("近两年累计消费") == 1 and "再消费 0.00 元" not in benefits
    clock.now = (evaluation - timedelta(hours=1)).timestamp()  # before this day's evaluation: this day's
    assert f"将于 {day} {at} 等级评估后为您升级" in wechat.text("o-K1000004", "积分")

    clock.now = (evaluation + timedelta(days=1, minutes=1)).timestamp()
    run_job(state, "tier_recalc", day + timedelta(days=1))  # the evaluation keeps the promise
    assert "会员卡：钻石卡" in wechat.text("o-K1000004", "积分")
    assert "您已是最高等级会员" in wechat.text("o-K1000005", "积分")
