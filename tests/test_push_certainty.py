"""Certainty about pushes: each call's outcome noted as it returns, WeChat's finish events settling what
is in doubt, timeouts treated like crashes, operators seeing and requeueing single members, and the
embedded default sending to the API stand-in inside the bot."""
from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select

from bot.dev.fake_wechat import finish_event_xml
from scheduler import jobs
from scheduler.delivery import CallLog, DrainStats, drain, recover_stale_claims
from storage import outbox
from storage.models import Member, OutboxMessage
from tests.conftest import ROOT, TOKEN, free_port
from tests.factories import make_member, utc_now, words
from tests.test_pushes import PUSHES, _env, _write_rules

DAY = date(2026, 6, 1)


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # every test here runs on SQLite and on PostgreSQL


@pytest.fixture
def rules(rules_with):
    return rules_with(pushes=PUSHES)


@pytest.fixture
def webhook(app):
    """The app served over real HTTP on a free loopback port (the stand-in posts finish events to it)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/wechat"
    server.shutdown()
    thread.join(timeout=5)


def members(db, n: int, **fields) -> list[Member]:
    with db.write() as session:
        return [make_member(session, openid=f"o-{i}-C", tier="C", birthday=date(1990, 6, 1), **fields)
                for i in range(n)]


def statuses(db) -> collections.Counter:
    with db.read() as session:
        return collections.Counter(session.scalars(select(OutboxMessage.status)))


def rows(db) -> dict[str, OutboxMessage]:
    with db.read() as session:
        return {row.openid: row for row in session.scalars(select(OutboxMessage))}


def finish_events(fake_wechat, webhook: str, **body) -> dict:
    answer = fake_wechat.http.post(fake_wechat.url + "/_finish_events",
                                   json={"webhook": webhook, "token": TOKEN, **body}).json()
    assert set(answer["answers"]) <= {"200 success"}, answer  # signed like WeChat, answered "success"
    return answer


# --------------------------------------------------------------------------- a crash mid fan-out


def test_a_sender_killed_mid_fan_out_leaves_only_its_calls_in_flight_in_doubt(
        state, db, db_url, redis_url, fake_wechat, webhook, tmp_path, clock):
    people = members(db, 200)
    rules = state.rules.model_copy(update={"pushes": state.rules.pushes.model_copy(update={"batch_size": 50})})
    state.rules_holder._rules = rules
    rules_path = tmp_path / "config.yaml"
    _write_rules(rules, rules_path)
    fake_wechat.fail(slow_seconds=0.02, times=80)  # a slow API: 80 answers ...
    fake_wechat.fail(slow_seconds=60, times=10_000)  # ... then every call hangs (recorded first: it arrived)
    sender = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "push", "run", "birthday", "--date", DAY.isoformat()],
        cwd=ROOT, env=_env(db_url, redis_url, fake_wechat, rules_path),
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "sender.log").open("wb"))
    concurrent = rules.pushes.concurrent_sends
    deadline = time.monotonic() + 30
    while len(fake_wechat.sent()) < 80 + concurrent and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    os.kill(sender.pid, signal.SIGKILL)
    sender.wait()
    log = (tmp_path / "sender.log").read_text(errors="replace")
    assert len(fake_wechat.sent()) == 80 + concurrent, log  # 80 answered, one call hanging in each sender thread
    # Each answer went to the database with its thread's next call, so all 80 are there; the calls hanging
    # were noted in their rows before they were made.
    assert statuses(db) == {"sent": 80, "sending": 50 - 30, "pending": 100}
    with db.read() as session:
        started = session.scalar(select(func.count()).where(OutboxMessage.status == "sending",
                                                            OutboxMessage.call_started_at.is_not(None)))
    assert started == concurrent

    fake_wechat.http.post(fake_wechat.url + "/_reset_failures")
    time.sleep(rules.pushes.claim_timeout_seconds + 0.1)  # the dead sender's claims go stale
    clock.now = time.time()
    _, planned, stats = jobs.run_job(state, "birthday", DAY)
    assert planned == 0
    assert per_recipient(fake_wechat.sent()) == {m.openid: 1 for m in people}  # everyone exactly once
    # Only the calls in flight are in doubt; the second batch's rows never tried are sent now.
    assert (stats.in_doubt, stats.recovered) == (concurrent, 50 - 30 - concurrent)
    assert statuses(db) == {"sent": 200 - concurrent, "unknown": concurrent}
    assert all(row.msgid for row in rows(db).values() if row.status == "sent")

    clock.now = time.time()
    answer = finish_events(fake_wechat, webhook)  # WeChat reports every template message it delivered
    assert answer["posted"] == 200
    assert statuses(db) == {"delivered": 200}
    with db.read() as session:  # the ones in doubt matched by member and time, and given their msgid
        assert session.scalar(select(OutboxMessage.id).where(OutboxMessage.msgid.is_(None))) is None


def per_recipient(sent: list[dict]) -> collections.Counter:
    return collections.Counter(message["touser"] for message in sent)


def test_a_dead_senders_rows_are_judged_by_the_database_alone_whatever_redis_lost(state, db):
    people = members(db, 4)
    jobs.run_job(state, "birthday", DAY, drain=False)
    claimed_at = state.now() - timedelta(minutes=10)
    with db.write() as session:
        ids = outbox.claim(session, 10, "deadbeef", True, claimed_at)
    by_openid = {m.openid: i for m, i in zip(people, ids)}
    sent, refused, in_flight, untried = (by_openid[m.openid] for m in people)
    calls = CallLog(state, "deadbeef")  # what the sender wrote before it was killed
    assert calls.start(sent, "template")
    calls.note(outbox.Outcome(sent, "sent", None, "template", 1, "777", claimed_at))
    assert calls.start(refused, "template")  # with the outcome before it
    calls.note(outbox.Outcome(refused, "unreachable", "43004 require subscribe", "template", 1))
    assert calls.start(in_flight, "custom")  # called, no answer yet
    state.redis.flushdb()  # Redis restarted with its data gone: nothing of the sender's is left there

    stats = DrainStats()
    recover_stale_claims(state, stats)  # no heartbeat for "deadbeef": its sender is dead
    assert (stats.in_doubt, stats.recovered) == (1, 1)
    with db.read() as session:
        got = {row.id: row for row in session.scalars(select(OutboxMessage))}
        assert session.get(Member, people[1].id).unreachable is True
    assert (got[sent].status, got[sent].msgid, got[sent].sent_at) == ("sent", "777", claimed_at)
    assert (got[refused].status, got[refused].reason) == ("unreachable", "43004 require subscribe")
    assert (got[in_flight].status, got[in_flight].channel) == ("unknown", "custom")
    assert got[untried].status == "pending" and got[untried].claim is None

    # Had that sender been alive after all: it may not call the row given back, and the answer of its
    # call in flight still counts.
    assert not calls.start(untried, "template")
    calls.note(outbox.Outcome(in_flight, "sent", None, "custom", 1, None, state.now()))
    calls.flush()
    assert rows(db)[people[2].openid].status == "sent"
    assert rows(db)[people[3].openid].status == "pending"


# --------------------------------------------------------------------------- timeouts and refused connections


def test_a_timed_out_call_is_in_doubt_not_retried_and_its_finish_event_settles_it(
        state, db, fake_wechat, webhook, rules_with, clock):
    state.rules_holder._rules = rules_with(pushes={**PUSHES, "http_timeout_seconds": 0.3})
    [member] = members(db, 1)
    jobs.run_job(state, "birthday", DAY, drain=False)
    fake_wechat.fail(slow_seconds=1)  # WeChat takes the message but answers too late
    stats = drain(state)
    assert (stats.sent, stats.in_doubt, stats.failed) == (0, 1, 0)
    row = rows(db)[member.openid]
    assert row.status == "unknown" and row.attempts == 1 and row.msgid is None
    assert row.reason == "ReadTimeoutError during the call: maybe delivered, not sent again"
    assert len(fake_wechat.sent()) == 1  # not sent a second time
    time.sleep(1)
    clock.now = time.time()
    finish_events(fake_wechat, webhook)
    row = rows(db)[member.openid]
    assert row.status == "delivered" and row.msgid == str(fake_wechat.sent()[0]["msgid"])


def test_a_refused_connection_proves_nothing_was_sent_and_is_retried(state, db, fake_wechat):
    import dataclasses

    from scheduler.delivery import RateLimiter, load_pushes, send_push

    [member] = members(db, 1)
    jobs.run_job(state, "birthday", DAY, drain=False)
    state.settings = dataclasses.replace(state.settings, wechat_api_base=f"http://127.0.0.1:{free_port()}/cgi-bin/")
    state._wechat = None
    state.redis.set(state.keys("wechat", "token"), "T-shared", ex=600)  # a token in hand: the send meets the port
    with db.write() as session:
        [row_id] = outbox.claim(session, 10, "c1", True, state.now())
    with db.read() as session:
        [push] = load_pushes(session, [row_id], state.rules, {})
    calls = CallLog(state, "c1")
    outcome = send_push(state, push, False, RateLimiter(state, 0), calls)
    assert (outcome.status, outcome.attempts) == ("failed", 4)
    assert outcome.reason == "NewConnectionError before sending after 4 attempts"
    # No call is left marked as started: a crash meanwhile would have left the row untried, not in doubt.
    row = rows(db)[member.openid]
    assert (row.status, row.call_started_at) == ("sending", None)
    calls.flush()  # the thread's last outcome
    row = rows(db)[member.openid]
    assert (row.status, row.attempts, row.claim) == ("failed", 4, None)


def test_busy_answers_then_success_record_the_msgid(state, db, fake_wechat):
    [member] = members(db, 1)
    jobs.run_job(state, "birthday", DAY, drain=False)
    fake_wechat.fail(errcode=-1, times=1)
    fake_wechat.fail(http_status=503, times=1)
    assert drain(state).sent == 1
    row = rows(db)[member.openid]
    assert (row.status, row.attempts, row.msgid) == ("sent", 3, str(fake_wechat.sent()[0]["msgid"]))


def test_a_closed_customer_service_window_falls_back_to_the_template(state, db, wechat, fake_wechat):
    [member] = members(db, 1)
    wechat.text(member.openid, "积分")  # wrote recently: a customer-service text is tried first
    jobs.run_job(state, "birthday", DAY, drain=False)
    fake_wechat.fail(errcode=45015)  # ... but WeChat says the window has closed
    assert drain(state).sent == 1
    [message] = fake_wechat.sent()
    assert message["kind"] == "template"
    row = rows(db)[member.openid]
    assert (row.channel, row.attempts) == ("template", 1)


# --------------------------------------------------------------------------- WeChat's finish events


def _event(wechat, openid: str, msgid, status: str, at: datetime):
    return wechat.send(finish_event_xml(openid, msgid, status, int(at.timestamp())))


def _row(session, **values) -> OutboxMessage:
    values = {"job": "birthday", "occasion": "2026-06-01", "message": "birthday_greeting", "created_at": utc_now(),
              **values}
    row = OutboxMessage(**values)
    session.add(row)
    session.flush()
    return row


def test_finish_events_settle_by_msgid_or_by_member_and_time(state, db, wechat, clock):
    now = state.now()
    with db.write() as session:
        blocked = make_member(session, openid="o-blocked")
        sent = _row(session, recipient="test:1", openid="o-1", status="sent", msgid="5001", channel="template")
        doubt_old = _row(session, recipient="test:2", openid="o-2", status="unknown",
                         claimed_at=now - timedelta(minutes=30))
        doubt_new = _row(session, recipient="test:3", openid="o-2", occasion="2026-06-02", status="unknown",
                         claimed_at=now - timedelta(minutes=2))
        refused = _row(session, recipient=f"member:{blocked.id}", member_id=blocked.id, openid="o-blocked",
                       status="unknown", claimed_at=now - timedelta(minutes=1))
    assert _event(wechat, "o-1", 5001, "success", now) == "success"
    assert _event(wechat, "o-2", 9001, "success", now) == "success"  # no msgid on record: the latest claim
    assert _event(wechat, "o-2", 9002, "success", now) == "success"  # the older one is 30 minutes back: not it
    assert _event(wechat, "o-blocked", 9003, "failed:user block", now) == "success"
    assert _event(wechat, "o-nobody", 9004, "success", now) == "success"  # not ours: answered, nothing changes
    with db.read() as session:
        got = {row.id: row for row in session.scalars(select(OutboxMessage))}
        assert session.get(Member, blocked.id).unreachable is True
    assert (got[sent.id].status, got[sent.id].settled_at is not None) == ("delivered", True)
    assert (got[doubt_new.id].status, got[doubt_new.id].msgid) == ("delivered", "9001")
    assert got[doubt_old.id].status == "unknown"
    assert (got[refused.id].status, got[refused.id].reason) == ("failed", "failed:user block")

    clock.now += 1
    _event(wechat, "o-blocked", 9003, "success", now)  # a repeated report changes nothing
    with db.read() as session:
        assert session.get(OutboxMessage, refused.id).status == "failed"


def test_two_reports_for_one_member_in_the_same_second_both_settle(state, db, wechat):
    now = state.now()
    with db.write() as session:
        first = _row(session, recipient="member:1", openid="o-1", status="sent", msgid="1")
        second = _row(session, recipient="member:1", openid="o-1", occasion="2026-06-02", status="sent", msgid="2")
    _event(wechat, "o-1", 1, "success", now)
    _event(wechat, "o-1", 2, "failed: system failed", now)  # same sender, CreateTime and Event
    with db.read() as session:
        assert session.get(OutboxMessage, first.id).status == "delivered"
        assert session.get(OutboxMessage, second.id).reason == "failed: system failed"


def test_a_report_on_a_push_still_being_sent_survives_the_senders_write(state, db, wechat):
    [member] = members(db, 1)
    jobs.run_job(state, "birthday", DAY, drain=False)
    with db.write() as session:
        [row_id] = outbox.claim(session, 10, "live", True, state.now())
    calls = CallLog(state, "live")
    assert calls.start(row_id, "template")
    _event(wechat, member.openid, 4242, "success", state.now())  # the call is in flight: matched by member
    calls.note(outbox.Outcome(row_id, "sent", None, "template", 1, "4242"))  # the call returns afterwards
    calls.flush()
    row = rows(db)[member.openid]
    assert (row.status, row.msgid, row.attempts, row.claim) == ("delivered", "4242", 1, None)


def test_a_report_matches_only_a_call_that_started_and_a_returned_call_only_by_its_msgid(state, db, wechat):
    [member] = members(db, 1)
    jobs.run_job(state, "birthday", DAY, drain=False)
    with db.write() as session:
        [row_id] = outbox.claim(session, 10, "live", True, state.now())
    _event(wechat, member.openid, 9, "success", state.now())  # claimed, not called yet: not this one
    assert rows(db)[member.openid].status == "sending"
    calls = CallLog(state, "live")
    assert calls.start(row_id, "template")
    calls.note(outbox.Outcome(row_id, "sent", None, "template", 1, "10"))
    calls.flush()
    _event(wechat, member.openid, 11, "success", state.now())  # another push's report
    assert rows(db)[member.openid].status == "sent"
    _event(wechat, member.openid, 10, "success", state.now())
    assert rows(db)[member.openid].status == "delivered"


# --------------------------------------------------------------------------- operators


def test_push_status_counts_each_outcome_and_lists_the_members_in_doubt(app, state, db):
    people = members(db, 5)
    jobs.run_job(state, "birthday", DAY, drain=False)
    with db.write() as session:
        for member, status in zip(people, ("sent", "delivered", "failed", "unknown", "unknown")):
            session.execute(OutboxMessage.__table__.update().where(OutboxMessage.member_id == member.id)
                            .values(status=status, claimed_at=state.now(), channel="template"))
    runner = app.test_cli_runner()
    status = runner.invoke(args=["push", "status"]).output
    assert "sent 1, delivered 1, failed 1, in doubt 2" in status, status
    listing = runner.invoke(args=["push", "status", "--in-doubt", "birthday"])
    assert listing.exit_code == 0, listing.output
    assert "2 pushes in doubt" in listing.output
    for member in people[3:]:
        assert f"2026-06-01  {member.card_no} {member.name}  template  claimed" in listing.output
    assert people[0].card_no not in listing.output
    assert f"push requeue-unknown birthday --occasion 2026-06-01 --card {people[3].card_no}" in listing.output


def test_requeue_unknown_can_take_single_members(app, state, db):
    people = members(db, 3)
    jobs.run_job(state, "birthday", DAY, drain=False)
    with db.write() as session:
        session.execute(OutboxMessage.__table__.update().values(status="unknown"))
    result = app.test_cli_runner().invoke(args=[
        "push", "requeue-unknown", "birthday", "--occasion", "2026-06-01", "--card", people[0].card_no,
        "--card", people[2].card_no, "--card", "X0000000", "--yes"])
    assert result.exit_code == 0, result.output
    assert "2 pushes back to pending" in result.output and "X0000000: no push of birthday in doubt" in result.output
    with db.read() as session:
        got = dict(session.execute(select(OutboxMessage.member_id, OutboxMessage.status)).all())
    assert got == {people[0].id: "pending", people[1].id: "unknown", people[2].id: "pending"}


def test_push_run_says_when_a_stopped_senders_pushes_are_recovered(app, state, db, fake_wechat, clock):
    people = members(db, 3)
    jobs.run_job(state, "birthday", DAY, drain=False)
    with db.write() as session:  # a sender claimed them just now, then was killed
        outbox.claim(session, 2, "crashed", True, state.now())
    result = app.test_cli_runner().invoke(args=["push", "run", "birthday", "--date", DAY.isoformat()])
    assert result.exit_code == 0, result.output
    assert "sent 1," in result.output  # the one it had not claimed
    recover = state.now() + timedelta(seconds=state.rules.pushes.claim_timeout_seconds)
    assert "2 pushes are held by another sender" in result.output
    local = recover.astimezone(state.rules.zone)
    assert (f"its heartbeat has stopped: they are recovered from {local:%Y-%m-%d %H:%M:%S} Asia/Shanghai "
            f"(pushes.claim_timeout_seconds = 1 s after their claim)") in result.output, result.output
    assert len(fake_wechat.sent()) == 1
    clock.now += 2  # past the claim timeout: the next run takes them back and sends them
    result = app.test_cli_runner().invoke(args=["push", "run", "birthday", "--date", DAY.isoformat()])
    assert "sent 2," in result.output and "a stopped sender's pushes: 2 never tried sent now" in result.output
    assert per_recipient(fake_wechat.sent()) == {m.openid: 1 for m in people}


# --------------------------------------------------------------------------- the embedded default


def test_settings_use_the_stand_in_only_on_the_embedded_default():
    from bot.settings import FAKE_WECHAT_API_BASE, WECHAT_API_BASE, Settings

    embedded = Settings.from_env({})
    assert embedded.fake_wechat and embedded.wechat_api_base == FAKE_WECHAT_API_BASE
    told = Settings.from_env({"WECHAT_API_BASE": "http://127.0.0.1:8765/cgi-bin/"})
    assert not told.fake_wechat and told.wechat_api_base == "http://127.0.0.1:8765/cgi-bin/"
    production = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0", "WECHAT_TOKEN": "t",
                                    "WECHAT_APPID": "a", "WECHAT_SECRET": "s"})
    assert not production.fake_wechat and production.wechat_api_base == WECHAT_API_BASE


def test_the_embedded_default_sends_pushes_to_the_stand_in_inside_the_bot(sqlite_url, rules, caplog):
    from werkzeug.serving import make_server

    from bot.app import create_app
    from bot.cli.serve import mount_fake_wechat
    from bot.settings import Settings

    settings = Settings.from_env({"DATABASE_URL": sqlite_url})
    app = create_app(settings, rules)
    state = app.extensions["bot"]
    with state.db.write() as session:
        member = make_member(session, openid="demo-openid-0001", tier="C", birthday=date(1990, 6, 1), name="陈静")
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    root = mount_fake_wechat(app, "127.0.0.1", server.server_port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert root == f"http://127.0.0.1:{server.server_port}/_fake_wechat"
        assert state.settings.wechat_api_base == root + "/cgi-bin/"
        with caplog.at_level(logging.INFO, logger="scheduler.delivery"):
            _, _, stats = jobs.run_job(state, "birthday", DAY)
        assert stats.sent == 1
        [message] = requests.get(root + "/_sent", timeout=5).json()
        assert message["touser"] == member.openid and words(message).startswith("陈静\n")
        [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("push birthday")]
        assert f"push birthday to {member.card_no}" in line and "陈静，祝您生日快乐" in line
        # WeChat's reports, posted by the stand-in to the bot's own webhook with the bot's token.
        answer = requests.post(root + "/_finish_events", timeout=10).json()
        assert answer == {"posted": 1, "answers": {"200 success": 1}}
        with state.db.read() as session:
            assert session.scalar(select(OutboxMessage.status)) == "delivered"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        state.executor.shutdown(wait=True)
        state.db.dispose()
