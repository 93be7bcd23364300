"""Scheduled pushes end to end: jobs → outbox → delivery over HTTP to the WeChat API stand-in."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone

import pytest
import yaml
from sqlalchemy import func, select

from scheduler import jobs
from scheduler.jobs import birthday
from scheduler.delivery import drain
from storage import ledger
from storage.models import JobRun, LedgerEntry, Member, MemberChange, OutboxMessage, Voucher
from tests.conftest import AES_KEY, APPID, ROOT, TOKEN
from tests.factories import make_member, utc_now, words

PUSHES = {"quiet_hours": None, "backoff_seconds": 0, "claim_timeout_seconds": 1, "batch_size": 10,
          "concurrent_sends": 4, "lease_seconds": 2, "rate_limit_per_minute": 0}


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # every test here runs on SQLite and on PostgreSQL


@pytest.fixture
def rules(rules_with):
    return rules_with(pushes=PUSHES)


def bound(session, n: int, **fields) -> Member:
    return make_member(session, openid=f"o-{n}-{fields.get('tier', 'D')}", **fields)


def per_recipient(sent: list[dict]) -> collections.Counter:
    return collections.Counter(message["touser"] for message in sent)


# --------------------------------------------------------------------------- birthday


def test_birthday_by_tier_with_gift_alert_and_skips(app, state, db, fake_wechat):
    today = date(2026, 11, 23)
    with db.write() as session:
        from storage.members import add_staff

        add_staff(session, "M1", "王经理", openid="o-manager", now=utc_now())
        d = bound(session, 1, tier="D", birthday=date(1990, 11, 23))
        b = bound(session, 2, tier="B", birthday=date(1980, 11, 23))
        a = bound(session, 3, tier="A", birthday=date(1970, 11, 30), manager_id="M1")  # in 7 days
        bound(session, 4, tier="C", birthday=date(1991, 11, 23), opted_out=True)
        bound(session, 5, tier="C", birthday=date(1992, 11, 23), subscribed=False)
        bound(session, 6, tier="C", birthday=date(1993, 11, 23), segment="lapsed")
        make_member(session, tier="C", birthday=date(1994, 11, 23))  # not bound
        bound(session, 8, tier="D", birthday=date(1990, 11, 24))  # tomorrow
    plan, planned, stats = jobs.run_job(state, "birthday", today)
    assert stats.sent == 3
    sent = {m["touser"]: m for m in fake_wechat.sent()}
    assert set(sent) == {d.openid, b.openid, "o-manager"}
    assert "生日快乐" in words(sent[d.openid]) and "first" not in sent[d.openid]["data"]  # WeChat's 2023 rules
    with db.read() as session:
        voucher = session.scalar(select(Voucher).where(Voucher.member_id == b.id))
    assert voucher.valid_until == today + timedelta(days=30)
    assert voucher.code in words(sent[b.openid])
    staff_alert = sent["o-manager"]  # WeChat's 2023 rules: no first/remark lines in staff templates
    assert staff_alert["template_id"] == "TPL_STAFF_ALERT" and set(staff_alert["data"]) == {"keyword1", "keyword2"}
    assert staff_alert["data"]["keyword1"]["value"] == a.name

    again = jobs.run_job(state, "birthday", today)  # a rerun sends nobody anything twice
    assert again[1] == 0 and len(fake_wechat.sent()) == 3

    status = app.test_cli_runner().invoke(args=["push", "status"]).output
    assert "birthday 2026-11-23" in status
    for line in ("sent: 3", "skipped: 1 (lapsed)", "skipped: 1 (not bound)", "skipped: 1 (opted out)",
                 "skipped: 1 (unfollowed)"):
        assert line in status, status


@pytest.mark.parametrize("today,greeted", [(date(2027, 2, 28), True), (date(2028, 2, 28), False),
                                           (date(2028, 2, 29), True), (date(2027, 3, 1), False)])
def test_29_february_birthdays_are_greeted_on_28_february_in_other_years(state, db, fake_wechat, today, greeted):
    with db.write() as session:
        leapling = bound(session, 1, tier="C", birthday=date(1980, 2, 29))
    jobs.run_job(state, "birthday", today)
    assert (leapling.openid in per_recipient(fake_wechat.sent())) is greeted


def test_preview_sends_nothing_and_shows_samples(app, db, fake_wechat):
    with db.write() as session:
        card = bound(session, 1, tier="B", birthday=date(1980, 11, 23), name="赵雅琴").card_no
        bound(session, 2, tier="D", birthday=date(1980, 11, 23), opted_out=True)
    result = app.test_cli_runner().invoke(args=["push", "preview", "birthday", "--date", "2026-11-23"])
    assert result.exit_code == 0, result.output
    assert "tier B: 1 would get birthday_gift" in result.output
    assert "tier D: 1 skipped birthday_greeting (opted out)" in result.output
    assert f"sample to {card} 赵雅琴: 赵雅琴，祝您生日快乐" in result.output  # by card number, as operators know them
    assert fake_wechat.sent() == []
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert session.scalar(select(func.count()).select_from(Voucher)) == 0


# --------------------------------------------------------------------------- bulletin


def test_monthly_bulletin_goes_to_c_b_a_and_a_missing_month_sends_nothing(app, state, db, fake_wechat):
    with db.write() as session:
        members = [bound(session, n, tier=t) for n, t in enumerate("DCBA")]
    _, planned, stats = jobs.run_job(state, "monthly_bulletin", date(2026, 12, 1))
    assert planned == 3 and stats.sent == 3
    recipients = per_recipient(fake_wechat.sent())
    assert set(recipients) == {m.openid for m in members[1:]}
    assert "十二月会员月刊" in fake_wechat.sent()[0]["data"]["keyword1"]["value"]
    _, planned, _ = jobs.run_job(state, "monthly_bulletin", date(2031, 1, 1))
    assert planned == 0
    status = app.test_cli_runner().invoke(args=["push", "status"]).output
    assert "monthly_bulletin 2031-01" in status and "no bulletin file" in status


# --------------------------------------------------------------------------- delivery


def _one_push(state, db, **member_fields) -> Member:
    with db.write() as session:
        member = bound(session, 1, tier="C", birthday=date(1990, 6, 1), **member_fields)
    with db.write() as session:
        from storage import outbox

        for audience in birthday.plan(session, state.rules, datetime(2026, 6, 1, 2, tzinfo=timezone.utc)).audiences:
            outbox.insert_audience(session, audience, now=utc_now())
    return member


def _row(db) -> OutboxMessage:
    with db.read() as session:
        return session.scalar(select(OutboxMessage).where(OutboxMessage.job == "birthday",
                                                          OutboxMessage.recipient.like("member:%")))


def test_an_expired_token_is_fetched_again_once(state, db, fake_wechat):
    _one_push(state, db)
    state.wechat.tokens.current()  # a token is cached ...
    fake_wechat.expire_token()  # ... and WeChat stops accepting it
    assert drain(state).sent == 1
    assert fake_wechat.stats()["token_fetches"] == 2


def test_a_token_is_dropped_only_if_it_is_still_the_one_that_failed(state, fake_wechat):
    tokens = state.wechat.tokens
    first = tokens.current()
    assert tokens.drop_if_same("some-older-token") is False and tokens.current() == first
    assert tokens.drop_if_same(first) is True
    assert tokens.current() != first


def test_busy_answers_are_retried(state, db, fake_wechat):
    _one_push(state, db)
    fake_wechat.fail(errcode=45009, times=2)
    assert drain(state).sent == 1
    assert _row(db).attempts == 3


def test_server_errors_fail_after_the_configured_attempts(state, db, fake_wechat):
    _one_push(state, db)
    fake_wechat.fail(http_status=500, times=10)
    stats = drain(state)
    row = _row(db)
    assert stats.failed == 1 and row.status == "failed" and row.reason == "HTTP 500 after 4 attempts"
    assert fake_wechat.sent() == []


def test_a_blocked_member_is_marked_unreachable_and_not_retried(state, db, fake_wechat):
    member = _one_push(state, db)
    fake_wechat.block(member.openid, 43004)
    assert drain(state).unreachable == 1
    row = _row(db)
    assert (row.status, row.attempts) == ("unreachable", 1) and row.reason.startswith("43004")
    with db.read() as session:
        assert session.get(Member, member.id).unreachable is True


def test_quiet_hours_hold_marketing_but_not_staff_alerts(state, db, fake_wechat, rules_with):
    state.rules_holder._rules = rules_with(pushes={**PUSHES, "quiet_hours": {"start": "00:00", "end": "23:59:59"}})
    with db.write() as session:
        from storage.members import add_staff

        add_staff(session, "M1", "王经理", openid="o-manager", now=utc_now())
        bound(session, 1, tier="A", birthday=date(1970, 11, 23), manager_id="M1")
        bound(session, 2, tier="A", birthday=date(1970, 11, 30), manager_id="M1")
    _, _, stats = jobs.run_job(state, "birthday", date(2026, 11, 23))
    assert [m["touser"] for m in fake_wechat.sent()] == ["o-manager"]
    assert stats.held == 1
    state.rules_holder._rules = rules_with(pushes=PUSHES)  # quiet hours over
    assert drain(state).sent == 1


def test_members_who_wrote_recently_get_a_customer_service_message(state, db, wechat, fake_wechat):
    member = _one_push(state, db)
    wechat.text(member.openid, "积分")  # within the last 48 hours
    drain(state)
    [message] = fake_wechat.sent()
    assert message["kind"] == "custom" and "生日快乐" in message["text"]["content"]


def test_wechats_own_reports_do_not_open_the_customer_service_window(state, db, wechat, fake_wechat):
    member = _one_push(state, db)
    wechat.event(member.openid, "TEMPLATESENDJOBFINISH")  # WeChat reporting on an earlier push, not the member
    drain(state)
    [message] = fake_wechat.sent()
    assert message["kind"] == "template"


def test_pushes_that_failed_for_a_passing_reason_are_sent_again_after_a_look(app, state, db, fake_wechat):
    with db.write() as session:
        busy = bound(session, 1, tier="C", birthday=date(1990, 6, 1))
    fake_wechat.fail(errcode=45009, times=4)  # over quota for every attempt
    jobs.run_job(state, "birthday", date(2026, 6, 1))
    assert fake_wechat.sent() == []
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["push", "retry-failed", "birthday", "--occasion", "2026-06-01"], input="n\n")
    assert f"{busy.card_no}" in refused.output and "45009" in refused.output and fake_wechat.sent() == []
    result = runner.invoke(args=["push", "retry-failed", "birthday", "--occasion", "2026-06-01", "--yes"])
    assert result.exit_code == 0 and "1 pushes sent again: sent 1" in result.output, result.output
    assert per_recipient(fake_wechat.sent()) == {busy.openid: 1}
    again = runner.invoke(args=["push", "retry-failed", "birthday", "--occasion", "2026-06-01", "--yes"])
    assert "no push failed for a passing reason" in again.output


def test_push_status_shows_times_in_the_rules_zone(app, state, db, fake_wechat):
    jobs.run_job(state, "birthday", date(2026, 6, 1))
    output = app.test_cli_runner().invoke(args=["push", "status"]).output
    assert "Asia/Shanghai: 0 planned" in output and " UTC" not in output


def test_the_rate_limit_holds_sends_to_the_next_minute(state, db, fake_wechat, rules_with, clock):
    import threading

    state.rules_holder._rules = rules_with(pushes={**PUSHES, "rate_limit_per_minute": 2})
    with db.write() as session:
        for n in range(3):
            bound(session, n, tier="C", birthday=date(1990, 6, 1))
    clock.now = (int(time.time()) // 60) * 60 + 1.0
    worker = threading.Thread(target=lambda: jobs.run_job(state, "birthday", date(2026, 6, 1)))
    worker.start()
    deadline = time.monotonic() + 10
    while len(fake_wechat.sent()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert len(fake_wechat.sent()) == 2  # the third waits for the next minute
    clock.now += 60
    worker.join(timeout=10)
    assert len(fake_wechat.sent()) == 3


def test_a_reply_past_the_budget_arrives_as_a_customer_service_message(state, wechat, fake_wechat, rules_with):
    from handlers import HANDLERS

    def slow(ctx):
        time.sleep(0.5)
        return "慢慢来的回答"

    HANDLERS["slow_for_test"] = slow
    try:
        routes = [r.model_dump() for r in state.rules.routes] + [{"handler": "slow_for_test", "exact": ["慢"]}]
        webhook = {"reply_budget_seconds": 0.1, "claim_lease_seconds": 0.05}
        state.rules_holder._rules = rules_with(routes=routes, webhook=webhook, pushes=PUSHES)
        assert wechat.text("o-slow", "慢") == "success"
        deadline = time.monotonic() + 5
        while not fake_wechat.sent() and time.monotonic() < deadline:
            time.sleep(0.05)
        [message] = fake_wechat.sent()
        assert message["kind"] == "custom" and message["touser"] == "o-slow"
        assert message["text"]["content"] == "慢慢来的回答"
    finally:
        del HANDLERS["slow_for_test"]


# --------------------------------------------------------------------------- crashes and replicas


def _env(db_url: str, redis_url: str, fake_wechat, rules_path) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, "REDIS_PREFIX": "test",
            "WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_SECRET": "s", "WECHAT_AES_KEY": AES_KEY,
            "WECHAT_API_BASE": fake_wechat.api_base, "RULES_PATH": str(rules_path), "TZ": "UTC",
            "LOG_LEVEL": "WARNING"}


def _write_rules(rules, path) -> None:
    path.write_text(yaml.safe_dump(rules.model_dump(mode="json"), allow_unicode=True), encoding="utf-8")


def test_a_sender_killed_mid_fan_out_and_rerun_sends_everyone_exactly_once(
        state, db, db_url, redis_url, fake_wechat, tmp_path, clock):
    with db.write() as session:
        members = [bound(session, n, tier="C", birthday=date(1990, 6, 1)) for n in range(60)]
    rules_path = tmp_path / "config.yaml"
    _write_rules(state.rules, rules_path)
    fake_wechat.fail(times=25)  # 25 normal answers, then every answer hangs (recorded first)
    fake_wechat.fail(slow_seconds=60, times=10_000)
    sender = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "push", "run", "birthday", "--date", "2026-06-01"],
        cwd=ROOT, env=_env(db_url, redis_url, fake_wechat, rules_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counts, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until every sender thread hangs in a call
        counts.append(len(fake_wechat.sent()))
        if len(counts) > 10 and counts[-1] >= 25 and counts[-1] == counts[-10]:
            break
        time.sleep(0.1)
    os.kill(sender.pid, signal.SIGKILL)
    sender.wait()
    assert 25 <= counts[-1] < 60  # killed in the middle
    fake_wechat.http.post(fake_wechat.url + "/_reset_failures")
    time.sleep(1.1)  # the dead sender's claims go stale
    clock.now = time.time()
    _, planned, stats = jobs.run_job(state, "birthday", date(2026, 6, 1))
    assert planned == 0  # everyone was planned by the first run
    received = per_recipient(fake_wechat.sent())
    assert received == {m.openid: 1 for m in members}
    # Only the calls hung when it died are in doubt (one per sender thread) and not resent; the untried
    # one of its last batch is sent now.
    assert stats.in_doubt == counts[-1] - 25 == PUSHES["concurrent_sends"]
    assert stats.recovered == 1


def test_two_schedulers_started_together_fire_each_job_once(state, db, db_url, redis_url, fake_wechat, tmp_path):
    zone = state.rules.zone
    soon = datetime.now(zone) + timedelta(seconds=5)
    with db.write() as session:
        members = [bound(session, n, tier="C", birthday=soon.date()) for n in range(5)]
    jobs_now = state.rules.jobs
    late = "23:59:59"  # the other jobs are not due (a scheduler that starts runs the jobs it missed today)
    not_due = {name: section.model_copy(update={"at": late}) for name, section in jobs_now.sections().items()}
    rules = state.rules.model_copy(update={"jobs": jobs_now.model_copy(update={
        **not_due, "birthday": jobs_now.birthday.model_copy(update={"at": soon.strftime("%H:%M:%S")}),
    })})
    rules_path = tmp_path / "config.yaml"
    _write_rules(rules, rules_path)
    env = _env(db_url, redis_url, fake_wechat, rules_path)
    schedulers = [subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "run"],
                                   cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(2)]
    try:
        deadline = time.monotonic() + 30
        while len(fake_wechat.sent()) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)
    finally:
        for process in schedulers:
            process.terminate()
            process.wait(timeout=10)
    assert per_recipient(fake_wechat.sent()) == {m.openid: 1 for m in members}
    with db.read() as session:
        runs = session.scalars(select(JobRun).where(JobRun.job == "birthday")).all()
    assert len(runs) == 1 and runs[0].occasion == soon.date().isoformat()


def test_a_standby_takes_over_when_the_active_scheduler_dies(state, redis_client):
    from scheduler.lease import Lease

    key = state.keys("scheduler", "lease")
    active, standby = Lease(redis_client, key, 1), Lease(redis_client, key, 1)
    assert active.refresh() and not standby.refresh()
    assert active.refresh()  # renewing its own lease
    time.sleep(1.2)  # the active one died: no renewals
    assert standby.refresh() and not active.refresh()


def test_the_rules_time_zone_not_the_server_clock_decides_the_day(state, monkeypatch):
    from apscheduler.triggers.cron import CronTrigger

    from scheduler.jobs import job_schedule
    from scheduler.runner import SchedulerRunner

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        # 17:30 UTC on 31 December is 01:30 on 1 January in Shanghai.
        state.clock = lambda: datetime(2026, 12, 31, 17, 30, tzinfo=timezone.utc).timestamp()
        assert SchedulerRunner(state).today() == date(2027, 1, 1)
        fields = job_schedule(state.rules)
        birthday = CronTrigger(timezone=state.rules.zone, **fields["birthday"])
        first = birthday.get_next_fire_time(None, datetime(2026, 12, 31, 17, 30, tzinfo=timezone.utc))
        assert first.astimezone(timezone.utc) == datetime(2027, 1, 1, 1, 0, tzinfo=timezone.utc)  # 09:00 Shanghai
        bulletin = CronTrigger(timezone=state.rules.zone, **fields["monthly_bulletin"])
        month_start = bulletin.get_next_fire_time(None, datetime(2026, 12, 31, 17, 30, tzinfo=timezone.utc))
        assert month_start.astimezone(state.rules.zone).date() == date(2027, 1, 1)
    finally:
        monkeypatch.undo()
        time.tzset()


# --------------------------------------------------------------------------- points reset, tiers, opt-out


def test_retention_grace_reminders_and_reset(state, db, fake_wechat, rules_with):
    state.rules_holder._rules = rules_with(pushes=PUSHES, segments={"top_points_share": 0.67})
    start = date(2026, 1, 10)
    with db.write() as session:
        keeper = bound(session, 1, tier="B")  # no purchase in two years, many points
        ledger.award_points(session, keeper.id, 50_000, expires_on=date(2030, 1, 1), occurred_at=utc_now())
        buyer = bound(session, 2, tier="B")
        ledger.award_points(session, buyer.id, 40_000, expires_on=date(2030, 1, 1), occurred_at=utc_now())
        bound(session, 3, tier="D")
    jobs.run_job(state, "points_reset", start)
    texts = {m["touser"]: words(m) for m in fake_wechat.sent()}
    assert "2026-07-10" in texts[keeper.openid] and "积分与权益保留中" in texts[keeper.openid] and buyer.openid in texts
    jobs.run_job(state, "points_reset", start)  # told once
    assert len(fake_wechat.sent()) == 2

    with db.write() as session:  # the buyer comes back during the grace period
        from storage.purchases import PurchaseIn, record_purchase
        from decimal import Decimal

        record_purchase(session, PurchaseIn("G1", buyer.card_no, Decimal("100"),
                                            datetime(2026, 3, 1, 4, tzinfo=timezone.utc), "S"), state.rules, now=utc_now())
    for day, expected in ((date(2026, 6, 10), "还有 30 天"), (date(2026, 7, 3), "还有 7 天")):
        jobs.run_job(state, "points_reset", day)
        assert expected in words(fake_wechat.sent()[-1])
        assert fake_wechat.sent()[-1]["touser"] == keeper.openid
    jobs.run_job(state, "points_reset", date(2026, 7, 10))
    last = fake_wechat.sent()[-1]
    assert last["touser"] == keeper.openid and "积分已清零" in words(last)
    with db.read() as session:
        kept = session.get(Member, keeper.id)
        assert (kept.points_balance, kept.tier, kept.retention_grace_until) == (0, "D", None)
        assert session.scalar(select(LedgerEntry.amount).where(
            LedgerEntry.member_id == keeper.id, LedgerEntry.kind == "expire")) == -50_000
        assert session.get(Member, buyer.id).points_balance == 40_120  # bought in the meantime (rate 1.2): kept
        # The drop to the base tier is in the audit trail, like every change to a member.
        audit = session.scalars(select(MemberChange.detail).where(
            MemberChange.member_id == keeper.id, MemberChange.action == "tier",
            MemberChange.actor == "job:points_reset")).all()
        assert audit == ["B → D (retention grace ended)"]
        assert not session.scalar(select(MemberChange.id).where(
            MemberChange.member_id == buyer.id, MemberChange.action == "tier"))
    assert per_recipient(fake_wechat.sent())[buyer.openid] == 1


def test_expiring_lots_are_reminded_and_expired(state, db, fake_wechat):
    from decimal import Decimal

    from storage.purchases import PurchaseIn, record_purchase

    with db.write() as session:
        member = bound(session, 1, tier="C")
        ledger.award_points(session, member.id, 321, expires_on=date(2026, 12, 23), occurred_at=utc_now())
        for n, month in enumerate((3, 9)):  # a regular customer, not lapsed
            record_purchase(session, PurchaseIn(f"E{n}", member.card_no, Decimal("0.50"),
                                                datetime(2026, month, 1, tzinfo=timezone.utc), "S"), state.rules, now=utc_now())
    jobs.run_job(state, "points_reset", date(2026, 11, 23))
    [reminder] = fake_wechat.sent()
    assert words(reminder).startswith("321\n2026-12-23\n积分即将到期")
    jobs.run_job(state, "points_reset", date(2026, 12, 24))
    with db.read() as session:
        assert session.get(Member, member.id).points_balance == 0


def test_tier_recalculation_applies_changes_with_notices(state, db, fake_wechat):
    from decimal import Decimal

    from storage.purchases import PurchaseIn, record_purchase

    with db.write() as session:
        riser = bound(session, 1, tier="D")
        faller = bound(session, 2, tier="A")
        for n, month in enumerate((3, 10)):  # both buy twice a year or so: neither is lapsed
            record_purchase(session, PurchaseIn(f"T{n}", riser.card_no, Decimal("12500"),
                                                datetime(2026, month, 1, tzinfo=timezone.utc), "S"), state.rules, now=utc_now())
            record_purchase(session, PurchaseIn(f"F{n}", faller.card_no, Decimal("800"),
                                                datetime(2026, month, 2, tzinfo=timezone.utc), "S"), state.rules, now=utc_now())
    jobs.run_job(state, "tier_recalc", date(2026, 11, 23))
    with db.read() as session:
        assert session.get(Member, riser.id).tier == "B" and session.get(Member, faller.id).tier == "D"
    texts = {m["touser"]: words(m) for m in fake_wechat.sent()}
    assert texts[riser.openid].startswith("钻石卡\n会员卡已升级") and texts[faller.openid].startswith("缤纷卡\n会员卡已调整")
    assert "恢复需消费50,000元\n尊荣钻石卡" in texts[faller.openid]  # what it takes to get the old tier back


def test_unsubscribe_and_subscribe_in_chat(wechat, state, db, fake_wechat):
    member = _one_push(state, db)
    assert "已为您退订" in wechat.text(member.openid, "退订")
    with db.read() as session:
        assert session.get(Member, member.id).opted_out is True
    assert "已恢复接收" in wechat.text(member.openid, "订阅")
    with db.read() as session:
        assert session.get(Member, member.id).opted_out is False


def test_a_rules_reload_re_plans_the_jobs(settings, rules, redis_client, tmp_path):
    from bot.app import create_app
    from bot.settings import Settings
    from scheduler.runner import SchedulerRunner

    path = tmp_path / "config.yaml"
    _write_rules(rules, path)
    app = create_app(Settings(**{**settings.__dict__, "rules_path": path}), redis_client=redis_client)
    state = app.extensions["bot"]
    runner = SchedulerRunner(state)
    runner.scheduler.start(paused=True)  # planned, never fired
    runner.plan(state.rules)
    state.rules_holder.on_reload(runner.plan)
    assert "hour='9', minute='0'" in str(runner.scheduler.get_job("birthday").trigger)
    moved = rules.model_copy(update={"jobs": rules.jobs.model_copy(update={
        "birthday": rules.jobs.birthday.model_copy(update={"at": "10:30"})})})
    _write_rules(moved, path)
    assert state.rules_holder.reload()
    assert "hour='10', minute='30'" in str(runner.scheduler.get_job("birthday").trigger)
    runner.scheduler.shutdown(wait=False)
    state.db.dispose()


def test_a_job_left_half_run_by_a_dead_scheduler_runs_again_on_takeover(state, db, fake_wechat):
    from scheduler.runner import SchedulerRunner

    runner = SchedulerRunner(state)
    today = runner.today()
    with db.write() as session:
        member = bound(session, 1, tier="C", birthday=today.replace(year=1990))
    # The previous active scheduler marked the job running, then died before finishing it.
    state.redis.set(state.keys("running", "birthday", today.isoformat()), "dead-holder", ex=3600)
    assert runner.lease.refresh()
    runner.run_once_today("birthday")
    runner.run_once_today("birthday")  # done for today: not again
    assert per_recipient(fake_wechat.sent()) == {member.openid: 1}
    assert not state.redis.exists(state.keys("running", "birthday", today.isoformat()))


def test_a_slow_sender_keeps_its_claims_and_a_dead_one_loses_them(state, db):
    from scheduler.delivery import DrainStats, Heartbeat, recover_stale_claims
    from storage import outbox

    with db.write() as session:
        bound(session, 1, tier="C", birthday=date(1990, 6, 1))
    jobs.run_job(state, "birthday", date(2026, 6, 1), drain=False)
    with db.write() as session:  # claimed long ago, by a sender still busy with its batch
        assert len(outbox.claim(session, 10, "slow", True, state.now() - timedelta(minutes=10))) == 1
    with Heartbeat(state, "slow", 1):
        alive = DrainStats()
        recover_stale_claims(state, alive)
    dead = DrainStats()
    recover_stale_claims(state, dead)  # its heartbeat stopped: it died
    assert (alive.recovered, dead.recovered) == (0, 1)


# --------------------------------------------------------------------------- holidays


def test_holiday_greetings_by_tier_skip_lapsed_and_opted_out(state, db, fake_wechat):
    with db.write() as session:
        d = bound(session, 1, tier="D")
        a = bound(session, 2, tier="A")
        bound(session, 3, tier="C", segment="lapsed")
        bound(session, 4, tier="C", opted_out=True)
    _, planned, stats = jobs.run_job(state, "holidays", date(2027, 2, 6))  # 春节 2027
    texts = {m["touser"]: words(m) for m in fake_wechat.sent()}
    assert texts[d.openid] == f"春节\n{d.name}\n感谢陪伴，祝您和家人幸福安康"
    assert texts[a.openid].endswith("节日心意已备好，欢迎到店小坐")  # the warmer greeting for A
    assert set(texts) == {d.openid, a.openid} and (planned, stats.sent) == (4, 2)
    with db.read() as session:
        reasons = set(session.scalars(select(OutboxMessage.reason).where(OutboxMessage.status == "skipped")))
    assert reasons == {"lapsed", "opted out"}
    jobs.run_job(state, "holidays", date(2027, 2, 6))  # once per holiday, whatever reruns
    assert len(fake_wechat.sent()) == 2
    _, planned, _ = jobs.run_job(state, "holidays", date(2027, 2, 7))
    assert planned == 0 and len(fake_wechat.sent()) == 2


def test_a_day_given_to_two_holidays_is_refused(rules_with):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="2027-02-06 is given to both"):
        rules_with(jobs={**rules_with().jobs.model_dump(mode="json"), "holidays": {
            "at": "09:30", "messages": {"D": "holiday_greeting"},
            "holidays": [{"id": "a", "name": "甲", "dates": ["2027-02-06"]},
                         {"id": "b", "name": "乙", "dates": ["2027-02-06"]}]}})


# --------------------------------------------------------------------------- one push for one occasion


def test_one_push_to_one_member_or_staff_is_planned_once_and_delivered(state, db, fake_wechat, rules_with):
    from storage import outbox
    from storage.members import add_staff

    state.rules_holder._rules = rules_with(pushes={**PUSHES, "quiet_hours": {"start": "00:00", "end": "23:59:59"}})
    with db.write() as session:
        add_staff(session, "S1", "李客服", openid="o-service", now=utc_now())
        opted_out = bound(session, 1, tier="C", opted_out=True)
        lapsed = bound(session, 2, tier="D", segment="lapsed")
        extra = outbox.extra_json(voucher_code="X1", voucher_valid_until="2026-12-01")
        assert outbox.enqueue_member_push(session, "gifts", "code-X1", opted_out.id, "birthday_gift",
                                          extra=extra, marketing=False, now=utc_now())
        assert not outbox.enqueue_member_push(session, "gifts", "code-X1", opted_out.id, "birthday_gift",
                                              extra=extra, marketing=False, now=utc_now())
        assert outbox.enqueue_member_push(session, "gifts", "news", lapsed.id, "birthday_greeting", now=utc_now())
        assert outbox.enqueue_staff_push(session, "tickets", "T1", "S1", "manager_birthday_alert", member_id=lapsed.id, now=utc_now())
        assert not outbox.enqueue_staff_push(session, "tickets", "T1", "S1", "manager_birthday_alert",
                                             member_id=lapsed.id, now=utc_now())
    drain(state)
    sent = {m["touser"]: m for m in fake_wechat.sent()}
    # A service message reaches an opted-out member even in quiet hours; marketing to a lapsed one does not.
    assert sorted(sent) == ["o-1-C", "o-service"]
    assert "X1" in words(sent["o-1-C"])
    assert lapsed.name == sent["o-service"]["data"]["keyword1"]["value"]  # staff templates: no first line
    with db.read() as session:
        skipped = session.scalars(select(OutboxMessage).where(OutboxMessage.status == "skipped")).all()
        assert [(row.member_id, row.reason) for row in skipped] == [(lapsed.id, "lapsed")]
