"""Redis down (a real redis-server stopped) and hung (paused with SIGSTOP): members still get real answers in time."""
from __future__ import annotations

import signal
import time

import pytest

from bot.app import create_app
from bot.settings import Settings
from storage.db import Database
from tests.conftest import WeChat
from tests.factories import make_member


@pytest.fixture
def faulty(own_redis, settings, rules, clock):
    """The bot on its own redis-server (no shared client: it connects as production does)."""
    process, url = own_redis.process, own_redis.url
    app = create_app(Settings(**{**settings.__dict__, "redis_url": url}), rules, clock=clock)
    with Database(settings.database_url).write() as session:
        make_member(session, openid="o-faults", name="吴芳", card_no="F0000001", phone="13700000001")
        make_member(session, name="郑强", card_no="F0000002", phone="13700000002")
    yield process, WeChat(app.test_client(), clock)
    app.extensions["bot"].executor.shutdown(wait=False)


EXPECTED = [  # (text, from, a word of the real answer)
    ("帮助", "o-faults", "可用指令"),
    ("积分", "o-faults", "当前积分"),
    ("积分明细", "o-faults", "积分记录"),
    ("你好", "o-faults", "没有听懂"),
    ("退订", "o-faults", "已为您退订"),
    ("绑定 F0000002 13700000002", "o-stranger", "绑定成功"),
    ("绑定", "o-other", "会员卡号"),
]


def _answers(wechat: WeChat) -> list[tuple[str, float]]:
    out = []
    for text, openid, _ in EXPECTED:
        started = time.monotonic()
        out.append((wechat.text(openid, text), time.monotonic() - started))
    return out


def test_with_redis_stopped_every_answer_is_real(faulty):
    process, wechat = faulty
    process.kill()
    process.wait(timeout=10)
    for (reply, _), (text, _, word) in zip(_answers(wechat), EXPECTED):
        assert word in reply, (text, reply)
        assert "系统繁忙" not in reply


def test_with_redis_hung_every_answer_comes_within_wechats_five_seconds(faulty):
    process, wechat = faulty
    process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        for (reply, seconds), (text, _, word) in zip(_answers(wechat), EXPECTED):
            assert seconds < 4.5, (text, seconds)
            assert word in reply, (text, reply)
    finally:
        process.send_signal(signal.SIGCONT)


def test_redis_coming_back_restores_exactly_once(faulty):
    process, wechat = faulty
    process.send_signal(signal.SIGSTOP)
    wechat.text("o-faults", "帮助")
    process.send_signal(signal.SIGCONT)
    from tests.factories import text_xml

    xml = text_xml("o-faults", "退订", msg_id=424242, create_time=int(wechat.clock()))
    first, second = wechat.send(xml), wechat.send(xml)
    assert first == second and "已为您退订" in first["Content"]
