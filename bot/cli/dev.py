"""Development aids on the command line: the chat console and the WeChat API stand-in."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from bot.cli.common import state


@click.command("chat")
@with_appcontext
@click.option("--openid", default="demo-openid-0001", show_default=True, help="Who is typing.")
@click.option("--aes", is_flag=True, help="Safe mode: encrypt messages and decrypt replies.")
@click.option("--url", default="http://127.0.0.1:5000/wechat", show_default=True, help="The running webhook.")
def chat(openid: str, aes: bool, url: str) -> None:
    """Play the WeChat server against the running webhook: type messages, read replies.

    Lines starting with '/' are events: /subscribe, /unsubscribe, /click KEY, /quit.
    """
    from bot.dev.console import run_console

    run_console(state().settings, url=url, openid=openid, aes=aes)


@click.command("fake-wechat")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@with_appcontext
def fake_wechat(host: str, port: int) -> None:
    """Serve the stand-in for the WeChat HTTP API; point WECHAT_API_BASE at http://HOST:PORT/cgi-bin/."""
    from bot.dev.fake_wechat import serve_fake

    click.echo(f"fake WeChat API on http://{host}:{port}/cgi-bin/ — sent messages at http://{host}:{port}/_sent")
    serve_fake(host, port)


COMMANDS = (chat, fake_wechat)
