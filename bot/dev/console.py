"""An interactive console that plays the WeChat server against a running webhook."""
from __future__ import annotations

import requests

from bot.dev.wire import WeChatServer, event_xml, text_xml
from bot.settings import Settings

EVENTS = {"/subscribe": "subscribe", "/unsubscribe": "unsubscribe"}


def run_console(settings: Settings, url: str, openid: str, aes: bool) -> None:
    server = WeChatServer(settings.wechat_token, settings.wechat_appid, settings.wechat_aes_key)
    mode = "safe mode (AES)" if aes else "plain mode"
    print(f"Talking to {url} as {openid}, {mode}. Events: /subscribe /unsubscribe /click KEY; /quit to leave.")
    while True:
        try:
            line = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return
        xml = _xml_for(line, openid)
        if xml is None:
            print("  unknown command; try /subscribe, /unsubscribe, /click KEY or plain text")
            continue
        print(send(server, url, xml, aes))


def _xml_for(line: str, openid: str) -> str | None:
    if line in EVENTS:
        return event_xml(openid, EVENTS[line])
    if line.startswith("/click "):
        return event_xml(openid, "CLICK", line.split(maxsplit=1)[1])
    if line.startswith("/"):
        return None
    return text_xml(openid, line)


def send(server: WeChatServer, url: str, xml: str, aes: bool) -> str:
    """Send one message; return the reply as the member would see it."""
    request = server.sign(xml, aes=aes)
    try:
        response = requests.post(url, params=request.params, data=request.body, timeout=10)
    except requests.RequestException as exc:
        return f"  [cannot reach {url}: {exc.__class__.__name__}; is the bot running?]"
    if response.status_code != 200:
        return f"  [HTTP {response.status_code}: {response.text.strip()[:200]}]"
    reply = server.read_reply(response.content, request)
    if isinstance(reply, str):
        return "  (no reply)" if reply == "success" else f"  {reply}"
    content = reply.get("Content") or f"[{reply.get('MsgType')} reply]"
    return "\n".join("  " + part for part in content.splitlines())
