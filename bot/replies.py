"""Reply XML: the one place a reply is rendered, so that no text a member sent can change its structure.

WeChat's reply format wraps every value in CDATA. A ``]]>`` inside a value would end the
section early (malformed XML, or an element of the sender's choosing), so it is split across
two sections; characters XML 1.0 forbids are dropped.
"""
from __future__ import annotations

import re
import time

# Everything XML 1.0 allows: tab, newline, carriage return, and the ranges below.
_FORBIDDEN = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids."""
    return _FORBIDDEN.sub("", text)


def cdata(text: str) -> str:
    """A CDATA section holding exactly ``text`` (``]]>`` split across two sections)."""
    return "<![CDATA[" + xml_safe(text).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_user: str, from_user: str, content: str, create_time: int | None = None) -> str:
    """A passive text reply: ``to_user`` is the sender of the message being answered."""
    return (
        f"<xml><ToUserName>{cdata(to_user)}</ToUserName>"
        f"<FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time if create_time is not None else time.time())}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{cdata(content)}</Content></xml>"
    )
