"""Alerts to staff leave at once, from the process that made them: the bot under gunicorn alone (no
`scheduler run`, so no drain ever runs) alerts the assignee of a new complaint, and a staff reply reaches
the member; nothing goes twice. Real HTTP to gunicorn, the WeChat API stand-in, SQLite and PostgreSQL."""
from __future__ import annotations

import itertools
import time

import pytest
import requests
from sqlalchemy import select

from storage.db import Database
from storage.models import OutboxMessage
from tests.conftest import AES_KEY, APPID, TOKEN, gunicorn_serving
from tests.factories import WeChatServer, make_member, make_staff, text_xml, words

_msg_ids = itertools.count(int(time.time() * 1000))


@pytest.fixture
def gunicorn_alone(db_url, redis_url, redis_client, fake_wechat):
    """The bot as production runs it without a scheduler: gunicorn, two workers, sending to the stand-in."""
    with gunicorn_serving(db_url, redis_url, WECHAT_API_BASE=fake_wechat.api_base) as url:
        yield url


def _say(url: str, openid: str, content: str) -> str:
    server = WeChatServer(TOKEN, APPID, AES_KEY)
    request = server.sign(text_xml(openid, content, msg_id=next(_msg_ids)))
    response = requests.post(url + "/wechat", params=request.params, data=request.body, timeout=10)
    assert response.status_code == 200
    return server.read_reply(response.content, request)["Content"]


def _wait_for(fake_wechat, openid: str, seconds: float = 20) -> list[dict]:
    """The messages to ``openid``, waiting up to ``seconds`` for the first (an effect, not a speed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [m for m in fake_wechat.sent() if m["touser"] == openid]
        if found:
            return found
        time.sleep(0.1)
    return []


def test_with_gunicorn_alone_the_assignee_is_alerted_and_the_reply_reaches_the_member(
        gunicorn_alone, db_url, fake_wechat):
    db = Database(db_url)
    with db.write() as session:
        make_staff(session, "S1", role="service", openid="o-desk", name="客服甲")
        make_member(session, name="张小敏", tier="D", openid="o-member")
    _say(gunicorn_alone, "o-member", "投诉 产品质量 项链的搭扣断了")
    opened = _say(gunicorn_alone, "o-member", "确认")
    number = opened.split("单号 ")[1].split("。")[0]
    [alert] = _wait_for(fake_wechat, "o-desk")  # no scheduler, no drain: sent by the worker that opened it
    assert alert["template_id"] == "TPL_STAFF_ALERT" and alert["data"]["keyword1"]["value"] == number
    assert alert["data"]["keyword4"]["value"] == "项链的搭扣断了"

    assert _say(gunicorn_alone, "o-desk", f"回复 {number} 您好，请带项链到门店") == f"已发送给会员（{number}）。"
    [answer] = _wait_for(fake_wechat, "o-member")
    assert words(answer) == f"您的投诉 {number} 有新回复：您好，请带项链到门店"
    with db.read() as session:
        statuses = session.execute(select(OutboxMessage.job, OutboxMessage.status).order_by(OutboxMessage.id)).all()
    assert [tuple(s) for s in statuses] == [("ticket_assigned", "sent"), ("ticket_reply", "sent")]
    assert len(fake_wechat.sent()) == 2  # each once
    db.dispose()
