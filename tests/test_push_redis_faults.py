"""Pushes exactly once whatever becomes of Redis: a real redis-server of the test's own is restarted with its
data gone, or paused with SIGSTOP for 10 s, in the middle of a fan-out that `push run` (a process of its own)
and the scheduler's drain send together — every member gets one greeting, every waitlist promotion goes once,
`push run` completes and `push status` counts what WeChat received."""
from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.settings import Settings
from scheduler import jobs
from scheduler.delivery import drain
from storage import events
from storage.models import OutboxMessage
from tests.conftest import ROOT
from tests.factories import event_config, event_rules, make_member
from tests.test_pushes import PUSHES, _env, _write_rules

HOLIDAY = date(2027, 2, 6)  # 春节 in config.yaml's jobs.holidays
MEMBERS, PROMOTED = 300, 26
# The rate limit and the customer-service window on, so that every push asks Redis; short claims, so that
# the scheduler's drain takes a sender whose heartbeat Redis lost for dead while it still sends.
FAULT_PUSHES = {**PUSHES, "rate_limit_per_minute": 100_000, "customer_service_window_hours": 48,
                "batch_size": 50, "claim_timeout_seconds": 1}


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # on SQLite and on PostgreSQL


def _salon(rules, capacity: int, now) -> dict:
    """An event open for sign-up around the clock's today, with one session of ``capacity`` seats."""
    day = rules.today(now)
    at = lambda days, hour: f"{day + timedelta(days=days)}T{hour}:00:00"  # noqa: E731 (local time, config's format)
    return event_config("salon", capacity=capacity, signup_opens=at(-1, 10), signup_closes=at(20, 18),
                        cancel_until=at(19, 18), sessions=1) | {
        "sessions": [{"id": "1", "starts": at(25, 14), "ends": at(25, 16), "place": "三楼", "capacity": capacity}]}


@pytest.fixture
def bot(own_redis, settings, rules_with, base_rules, tmp_path):
    """The bot on its own redis-server (connected as production is: short timeouts), on the real clock
    shared with the `push run` process; 300 members and 26 of them promoted from a waitlist (planned)."""
    now = datetime.fromtimestamp(time.time(), timezone.utc)
    rules = rules_with(pushes=FAULT_PUSHES, events=event_rules(base_rules, _salon(base_rules, 1, now)))
    app = create_app(Settings(**{**settings.__dict__, "redis_url": own_redis.url}), rules, clock=time.time)
    state = app.extensions["bot"]
    with state.db.write() as session:
        people = [make_member(session, openid=f"o-{n}", tier="C", name=f"会员{n}") for n in range(MEMBERS)]
    event = state.rules.events.event("salon")
    for member in people[:PROMOTED + 1]:  # one booked, the others waiting
        with state.db.write() as session:
            events.sign_up(session, state.rules, event, "1", member, 0, state.now())
    state.rules_holder._rules = rules_with(pushes=FAULT_PUSHES,
                                           events=event_rules(base_rules, _salon(base_rules, PROMOTED + 1, now)))
    _, promoted, _ = jobs.run_job(state, "event_changes", state.today(), drain=False)  # seats for all of them
    assert promoted == PROMOTED
    rules_path = tmp_path / "config.yaml"
    _write_rules(state.rules, rules_path)
    yield app, state, people, rules_path
    state.executor.shutdown(wait=True)
    state.db.dispose()


class SchedulerDrain:
    """The scheduler's drain, every 0.2 s in a thread of its own, as `scheduler run` does it (every
    drain_every_seconds); keeps any error a drain raised."""

    def __init__(self, state):
        self.state, self.errors = state, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                drain(self.state)
            except Exception as exc:  # noqa: BLE001 (the test asserts there is none)
                self.errors.append(repr(exc))

    def __enter__(self) -> "SchedulerDrain":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _fan_out_with(bot, db_url, fake_wechat, tmp_path, fault) -> subprocess.CompletedProcess:
    """`push run holidays` in its own process beside the scheduler's drain; ``fault()`` strikes once a
    third of the greetings went out (`push run` plans them: it is sending by then). Returns how `push run`
    ended; then drains what is left."""
    app, state, people, rules_path = bot
    fake_wechat.fail(slow_seconds=0.03, times=100_000)  # a slow API: the fan-out takes a few seconds
    out = (tmp_path / "push-run.log").open("w+")
    with SchedulerDrain(state) as scheduler:
        sender = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "push", "run", "holidays", "--date", HOLIDAY.isoformat()],
            cwd=ROOT, env=_env(db_url, str(state.settings.redis_url), fake_wechat, rules_path),
            stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        greeting = state.rules.pushes.messages["holiday_greeting"].template_id
        while sum(m["template_id"] == greeting for m in fake_wechat.sent()) < MEMBERS // 3 \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        fault()
        returncode = sender.wait(timeout=120)
    assert scheduler.errors == [], scheduler.errors  # no drain failed
    time.sleep(FAULT_PUSHES["claim_timeout_seconds"] + 0.1)
    drain(state)  # whatever a sender left behind is recovered now
    out.seek(0)
    return subprocess.CompletedProcess(sender.args, returncode, out.read())


def _assert_each_once(app, state, people, fake_wechat) -> None:
    received = collections.Counter((m["touser"], m["template_id"]) for m in fake_wechat.sent())
    greeting = state.rules.pushes.messages["holiday_greeting"].template_id
    promotion = state.rules.pushes.messages[state.rules.events.pushes.promoted].template_id
    expected = {(m.openid, greeting): 1 for m in people} | {(m.openid, promotion): 1 for m in people[1:PROMOTED + 1]}
    assert received == expected  # everyone greeted once, every promotion once: no duplicate, no gap
    with state.db.read() as session:
        got = collections.Counter(session.scalars(select(OutboxMessage.status)))
    assert got == {"sent": MEMBERS + PROMOTED}  # nothing left in doubt, pending or being sent
    status = app.test_cli_runner().invoke(args=["push", "status"]).output
    assert f"sent {MEMBERS}, delivered 0, failed 0, in doubt 0" in status, status  # the holidays run


def test_redis_restarted_with_its_data_gone_mid_fan_out_sends_each_push_once(bot, db_url, fake_wechat, own_redis,
                                                                              tmp_path):
    app, state, people, _ = bot
    ran = _fan_out_with(bot, db_url, fake_wechat, tmp_path, own_redis.restart)
    assert ran.returncode == 0, ran.stdout
    assert f"holidays for spring_festival:{HOLIDAY}: {MEMBERS} pushes planned" in ran.stdout
    _assert_each_once(app, state, people, fake_wechat)


def test_redis_stalled_for_ten_seconds_mid_drain_neither_aborts_push_run_nor_sends_twice(bot, db_url, fake_wechat,
                                                                                         own_redis, tmp_path):
    app, state, people, _ = bot

    def stall() -> None:
        own_redis.pause()
        time.sleep(10)
        own_redis.resume()

    ran = _fan_out_with(bot, db_url, fake_wechat, tmp_path, stall)
    assert ran.returncode == 0, ran.stdout
    assert "Traceback" not in ran.stdout
    _assert_each_once(app, state, people, fake_wechat)
