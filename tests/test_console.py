"""The chat console plays the WeChat server against a running webhook over HTTP."""
from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from tests.factories import make_member


@pytest.fixture
def running_bot(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/wechat"
    server.shutdown()


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
def test_console_conversation(app, running_bot, state, aes):
    with state.db.write() as session:
        card = make_member(session, name="周美玲", phone="13800000031", tier="A").card_no
    args = ["chat", "--url", running_bot, "--openid", "o-console"] + (["--aes"] if aes else [])
    script = f"/subscribe\n绑定 {card} 13800000031\n/click MENU_HELP\n/nonsense\n/quit\n"
    result = app.test_cli_runner().invoke(args=args, input=script)
    assert result.exit_code == 0, result.output
    assert "欢迎关注" in result.output
    assert f"周美玲，您好！会员卡 {card}（尊荣钻石卡）已绑定成功。" in result.output
    assert "可用指令" in result.output
    assert "unknown command" in result.output


def test_console_says_when_the_bot_is_not_running(app):
    result = app.test_cli_runner().invoke(args=["chat", "--url", "http://127.0.0.1:9/wechat"], input="帮助\n")
    assert "is the bot running?" in result.output
