"""The WeChat server's side of the protocol: signed, optionally encrypted, message XML.

Used by the chat console and the benchmarks to play WeChat against the webhook, and by
the tests' factories.
"""
from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass
from xml.sax.saxutils import escape

from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

import xmltodict

_msg_ids = itertools.count(int(time.time() * 1000) * 1000 + random.randrange(1000))


def signature(token: str, timestamp: str, nonce: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    return signer.signature


def text_xml(openid: str, content: str, msg_id: int | None = None, create_time: int | None = None,
             to: str = "gh_demo_account") -> str:
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{escape(content)}</Content>"
        f"<MsgId>{msg_id or next(_msg_ids)}</MsgId></xml>"
    )


def event_xml(openid: str, event: str, key: str | None = None, create_time: int | None = None,
              to: str = "gh_demo_account") -> str:
    key_part = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>{key_part}</xml>"
    )


@dataclass(frozen=True)
class SignedRequest:
    params: dict[str, str]
    body: bytes


@dataclass
class WeChatServer:
    """Signs (and in AES mode encrypts) messages as WeChat does, and reads the replies."""

    token: str
    appid: str = ""
    aes_key: str | None = None

    def sign(self, xml: str, aes: bool = False, timestamp: int | None = None, nonce: str | None = None) -> SignedRequest:
        timestamp_s = str(timestamp or int(time.time()))
        nonce = nonce or str(random.randrange(10**9, 10**10))
        params = {"signature": signature(self.token, timestamp_s, nonce), "timestamp": timestamp_s, "nonce": nonce,
                  "openid": _openid_of(xml)}
        if not aes:
            return SignedRequest(params, xml.encode("utf-8"))
        envelope = self._crypto().encrypt_message(xml, nonce, timestamp_s)
        parsed = xmltodict.parse(envelope)["xml"]
        params.update(encrypt_type="aes", msg_signature=parsed["MsgSignature"])
        # Safe mode sends only the envelope; ToUserName travels beside Encrypt as WeChat does.
        body = f"<xml><ToUserName><![CDATA[gh_demo_account]]></ToUserName><Encrypt><![CDATA[{parsed['Encrypt']}]]></Encrypt></xml>"
        return SignedRequest(params, body.encode("utf-8"))

    def read_reply(self, body: bytes | str, request: SignedRequest) -> dict[str, str] | str:
        """The reply as a dict of its XML fields (decrypted in AES mode), or the plain text ``success``."""
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        if not text.lstrip().startswith("<"):
            return text
        if request.params.get("encrypt_type") == "aes":
            parsed = xmltodict.parse(text)["xml"]
            text = self._crypto().decrypt_message(
                text, parsed["MsgSignature"], parsed["TimeStamp"], parsed["Nonce"]
            )
        return dict(xmltodict.parse(text)["xml"])

    def _crypto(self) -> WeChatCrypto:
        if not self.aes_key:
            raise ValueError("AES mode needs an EncodingAESKey (WECHAT_AES_KEY)")
        return WeChatCrypto(self.token, self.aes_key, self.appid)


def _openid_of(xml: str) -> str:
    start = xml.find("<FromUserName><![CDATA[")
    if start < 0:
        return ""
    start += len("<FromUserName><![CDATA[")
    return xml[start:xml.find("]]>", start)]
