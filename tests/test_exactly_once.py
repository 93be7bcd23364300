"""WeChat retries: the same message has its effects once and every copy gets the first answer."""
from __future__ import annotations

import threading
import time

import pytest
import requests
from sqlalchemy import func, select

from tests.factories import WeChatServer, text_xml
from handlers import HANDLERS
from storage.db import Database
from storage.models import Member, MemberChange
from tests.conftest import AES_KEY, APPID, TOKEN, gunicorn_serving
from tests.factories import make_member


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


@pytest.fixture
def slow_handler(app, rules_with, state):
    """A route whose handler takes a while and counts its calls."""
    calls = []

    def slow(ctx):
        calls.append(ctx.openid)
        time.sleep(0.3)
        return f"done {len(calls)}"

    HANDLERS["slow_for_test"] = slow
    routes = [r.model_dump() for r in state.rules.routes] + [{"handler": "slow_for_test", "exact": ["慢"]}]
    state.rules_holder._rules = rules_with(routes=routes)
    yield calls
    del HANDLERS["slow_for_test"]


def test_concurrent_copies_wait_for_the_first_answer(app, slow_handler, clock):
    server = WeChatServer(TOKEN, APPID, AES_KEY)
    request = server.sign(text_xml("o-slow", "慢", msg_id=5151), timestamp=int(clock()))
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
