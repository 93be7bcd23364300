"""WeChat retries: the same message has its effects once and every copy gets the first answer,
also when the copy answering it is slow or is killed (its claim is a lease renewed while it runs)."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, update

from tests.factories import WeChatServer, text_xml
from handlers import HANDLERS
from storage.db import Database
from storage.models import Member, MemberChange, Staff, Ticket, TicketEvent
from tests.conftest import AES_KEY, APPID, TOKEN, gunicorn_served, gunicorn_serving
from tests.factories import make_member, make_staff


def test_a_retried_bind_binds_once_and_repeats_the_first_answer(wechat, db):
    with db.write() as session:
        make_member(session, card_no="R0000001", phone="13900000001")
    xml = text_xml("o-retry", "绑定 R0000001 13900000001", msg_id=4242)
    replies = [wechat.send(xml)["Content"] for _ in range(3)]
    assert replies[0] == replies[1] == replies[2]
    assert "绑定成功" in replies[0]
    with db.read() as session:
        binds = session.scalar(select(func.count()).select_from(MemberChange).where(MemberChange.action == "bind"))
    assert binds == 1


def test_events_are_deduplicated_by_sender_time_and_event(wechat, db):
    from tests.factories import event_xml

    xml = event_xml("o-evt", "subscribe", create_time=1700000123)
    assert wechat.send(xml) == wechat.send(xml)
    other_time = event_xml("o-evt", "subscribe", create_time=1700000124)
    assert "绑定" in wechat.send(other_time)["Content"]


class SlowCalls(list):
    """The openids a slow handler was called for; ``seconds``: how long each call takes."""

    seconds = 0.3


@pytest.fixture
def slow_handler(app, rules_with, state):
    """A route (`慢`) whose handler takes ``seconds`` and counts its calls; ``webhook`` overrides rules' webhook."""
    calls = SlowCalls()

    def slow(ctx):
        calls.append(ctx.openid)
        time.sleep(calls.seconds)
        return f"done {len(calls)}"

    HANDLERS["slow_for_test"] = slow
    routes = [r.model_dump() for r in state.rules.routes] + [{"handler": "slow_for_test", "exact": ["慢"]}]
    state.rules_holder._rules = rules_with(routes=routes)
    calls.webhook = lambda **values: setattr(state.rules_holder, "_rules", rules_with(routes=routes, webhook=values))
    yield calls
    del HANDLERS["slow_for_test"]


def _three_copies_at_once(app, clock, msg_id: int) -> tuple[list[bytes], object, WeChatServer]:
    server = WeChatServer(TOKEN, APPID, AES_KEY)
    request = server.sign(text_xml("o-slow", "慢", msg_id=msg_id), timestamp=int(clock()))
    barrier = threading.Barrier(3)
    answers: list[bytes] = []

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(client.post("/wechat", query_string=request.params, data=request.body).data)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers, request, server


def test_concurrent_copies_wait_for_the_first_answer(app, slow_handler, clock):
    answers, request, server = _three_copies_at_once(app, clock, 5151)
    assert len(slow_handler) == 1
    assert len(set(answers)) == 1
    assert server.read_reply(answers[0], request)["Content"] == "done 1"


def test_a_live_copy_slower_than_its_lease_keeps_its_claim(app, slow_handler, clock):
    # the handler runs four leases long: its copy renews the lease, so the others wait for its answer
    slow_handler.seconds = 1.6
    slow_handler.webhook(claim_lease_seconds=0.4)
    answers, request, server = _three_copies_at_once(app, clock, 5252)
    assert len(slow_handler) == 1
    assert len(set(answers)) == 1
    assert server.read_reply(answers[0], request)["Content"] == "done 1"


# --------------------------------------------------------------------------- two worker processes


@pytest.fixture
def gunicorn_bot(db_url, redis_url, redis_client):
    """The bot under gunicorn with two worker processes, on the test database and Redis."""
    with gunicorn_serving(db_url, redis_url) as url:
        yield url


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
def test_three_copies_through_two_workers_have_one_effect(gunicorn_bot, db_url, aes):
    db = Database(db_url)
    with db.write() as session:
        make_member(session, card_no="G0000001", phone="13900000009")
    server = WeChatServer(TOKEN, APPID, AES_KEY)
    request = server.sign(text_xml("o-gunicorn", "绑定 G0000001 13900000009", msg_id=919191), aes=aes)
    barrier = threading.Barrier(3)
    responses: list[requests.Response] = []

    def post() -> None:
        with requests.Session() as http:
            barrier.wait()
            responses.append(http.post(gunicorn_bot + "/wechat", params=request.params, data=request.body, timeout=10))

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in responses] == [200, 200, 200]
    contents = {server.read_reply(r.content, request)["Content"] for r in responses}
    assert len(contents) == 1 and "绑定成功" in contents.pop()
    with db.read() as session:
        member = session.scalar(select(Member).where(Member.card_no == "G0000001"))
        binds = session.scalar(select(func.count()).select_from(MemberChange).where(MemberChange.action == "bind"))
    assert member.openid == "o-gunicorn"
    assert binds == 1
    db.dispose()


# --------------------------------------------------------------------------- a worker killed mid-message


@pytest.fixture
def one_worker_bot(db_url, redis_url, redis_client, fake_wechat):
    """The bot under gunicorn with one worker, which a test kills (gunicorn then starts another); yields
    the URL and a function that SIGKILLs the worker."""

    def kill_worker() -> None:
        pid = master.pid
        [worker] = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        os.kill(int(worker), signal.SIGKILL)

    with gunicorn_served(db_url, redis_url, 1, WECHAT_API_BASE=fake_wechat.api_base) as (url, master):
        yield url, kill_worker


class _Copy(threading.Thread):
    """One copy of a signed message posted to the bot, as WeChat does (it gives up after 5 s)."""

    def __init__(self, url: str, request):
        super().__init__()
        self.url, self.request, self.response = url, request, None

    def run(self) -> None:
        with contextlib.suppress(requests.RequestException):  # a killed worker drops the connection
            self.response = requests.post(self.url + "/wechat", params=self.request.params, data=self.request.body,
                                          timeout=5)


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.02)


def _answer(url: str, request) -> str:
    """Post a copy and return its reply text ('success' when there is none)."""
    response = requests.post(url + "/wechat", params=request.params, data=request.body, timeout=10)
    assert response.status_code == 200, response.text
    reply = WeChatServer(TOKEN, APPID, AES_KEY).read_reply(response.content, request)
    return reply if isinstance(reply, str) else reply["Content"]


def test_a_retry_takes_over_from_a_worker_killed_while_holding_the_claim(one_worker_bot, db_url, redis_client):
    url, kill_worker = one_worker_bot
    db = Database(db_url)
    with db.write() as session:
        make_staff(session, "S1", role="service", openid="o-s1")
        make_member(session, openid="o-killed")
    server = WeChatServer(TOKEN, APPID, AES_KEY)
    assert "确认" in _answer(url, server.sign(text_xml("o-killed", "投诉 产品质量 项链断了", msg_id=727271)))
    request = server.sign(text_xml("o-killed", "确认", msg_id=727272))
    first = _Copy(url, request)  # closes the dialog, then waits to open the ticket
    with db.write() as session:  # holds the service desk's row (SQLite: the write lock): the ticket waits for it
        session.execute(update(Staff).where(Staff.id == "S1").values(name=Staff.name))
        first.start()
        _wait_until(lambda: redis_client.exists("test:reply:msg:727272") and not redis_client.exists(
            "test:dialog:o-killed"), "the first copy claiming the message and closing the dialog")
        kill_worker()
        first.join()
    assert first.response is None  # WeChat got no answer, and retries
    reply = _answer(url, request)
    # computed by the retry (not "success"), from the dialog as the message found it
    assert reply.startswith("您的投诉已受理，单号 "), reply
    assert _answer(url, request) == reply  # and kept for the next retry
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 1
    db.dispose()


def test_a_change_committed_by_a_killed_worker_is_not_made_again_by_the_retry(one_worker_bot, db_url, fake_wechat):
    url, kill_worker = one_worker_bot
    db = Database(db_url)
    with db.write() as session:
        make_staff(session, "S1", role="service", openid="o-s1", name="客服甲")
        make_member(session, name="张小敏", openid="o-d")
    server = WeChatServer(TOKEN, APPID, AES_KEY)
    ids = iter(range(838380, 838390))

    def message(openid: str, text: str):
        return server.sign(text_xml(openid, text, msg_id=next(ids)))

    _answer(url, message("o-d", "投诉 产品质量 项链断了"))
    ticket_no = _answer(url, message("o-d", "确认")).split("单号 ")[1].split("。")[0]
    _wait_until(lambda: fake_wechat.sent(), "the assignment alert reaching S1")  # sent at once, after the commit
    fake_wechat.http.post(fake_wechat.url + "/_reset")
    fake_wechat.fail(slow_seconds=4)  # the member's customer-service message arrives; WeChat answers late
    request = message("o-s1", f"回复 {ticket_no} 请带项链到门店检测")
    first = _Copy(url, request)
    first.start()
    _wait_until(lambda: [m for m in fake_wechat.sent() if m["touser"] == "o-d"],
                "the reply reaching the member")  # recorded (committed), then sent
    kill_worker()
    first.join()
    assert first.response is None
    assert _answer(url, request) == "您的操作已办理，但结果暂时无法显示，请勿重复操作，稍后再查询。"
    with db.read() as session:
        replies = session.scalars(select(TicketEvent.body).where(TicketEvent.kind == "replied")).all()
    assert replies == ["请带项链到门店检测"]  # once
    [sent] = fake_wechat.sent()  # the member got the reply once
    assert sent["touser"] == "o-d" and "请带项链到门店检测" in sent["text"]["content"]
    db.dispose()
