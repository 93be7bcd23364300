"""Issue 8, the webhook: hostile input and faults — never a 5xx, never a traceback, never a broken reply.

Every case posts a body (signed or not, plain or AES) to /wechat through the Flask test client
and checks the same things:

- the status is the one due (a set of statuses where either answer is correct, e.g. a field
  carrying markup may be read as text or refused);
- a 200 carries ``success`` or a well-formed reply XML (decrypted and checked in AES mode) that
  is never the "busy" answer of the error boundary;
- no answer is Flask's HTML error page or contains a traceback;
- nothing a sender can cause writes an ERROR log record with a traceback (``exc_info``).

The requests are built here from the protocol itself (SHA-1 signatures, AES-256-CBC with
WeChat's framing) so that malformed variants can be crafted; only the ``wechat`` and ``clock``
fixtures and the test constants of conftest are used.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable, Mapping
from xml.sax.saxutils import escape

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.conftest import AES_KEY, APPID, TOKEN

NONCE = "1357924680"
OPENID = "o-hostile"
BUSY = "系统繁忙"  # the error boundary's answer: a sender must never be able to provoke it
LIMIT = 64 * 1024  # webhook.max_body_bytes
REPLY_TAGS = {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Content"}


# --------------------------------------------------------------------------- the protocol, by hand


def sign(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the sorted, concatenated parts (token, timestamp, nonce[, Encrypt])."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


KEY = base64.b64decode(AES_KEY + "=")
IV = KEY[:16]


def cbc_encrypt(plaintext: bytes) -> str:
    """AES-256-CBC with WeChat's key and IV, base64; ``plaintext`` must already be a multiple of 16 bytes."""
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor()
    return base64.b64encode(encryptor.update(plaintext) + encryptor.finalize()).decode("ascii")


def cbc_decrypt(encrypt: str) -> bytes:
    decryptor = Cipher(algorithms.AES(KEY), modes.CBC(IV)).decryptor()
    return decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()


def pkcs7(data: bytes, block: int = 32) -> bytes:
    n = block - len(data) % block
    return data + bytes([n]) * n


RANDOM16 = b"0123456789abcdef"  # WeChat's 16 random bytes, fixed so that every run crafts the same bodies


def framed(xml: bytes, appid: str = APPID, length: int | None = None) -> bytes:
    """WeChat's plaintext before padding: 16 random bytes, 4-byte big-endian length, the XML, the AppID."""
    return RANDOM16 + struct.pack(">I", len(xml) if length is None else length) + xml + appid.encode()


def envelope(encrypt: str) -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_demo_account]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").encode("utf-8")


def msg(content: str | None = "<![CDATA[帮助]]>", *, msg_type: str | None = "<![CDATA[text]]>",
        sender: str | None = f"<![CDATA[{OPENID}]]>", create_time: str | None = "1700000000",
        msg_id: str | None = "424242", extra: str = "") -> str:
    """A text message whose fields are raw XML fragments (None leaves the element out)."""
    fields = [("ToUserName", "<![CDATA[gh_demo_account]]>"), ("FromUserName", sender),
              ("CreateTime", create_time), ("MsgType", msg_type), ("Content", content), ("MsgId", msg_id)]
    return "<xml>" + "".join(f"<{tag}>{value}</{tag}>" for tag, value in fields if value is not None) + extra + "</xml>"


def text_msg(text: str, openid: str = OPENID) -> str:
    """A member's text as WeChat escapes it (character data, not CDATA)."""
    return msg(escape(text), sender=escape(openid))


# --------------------------------------------------------------------------- one hostile request


Query = Mapping[str, "str | None | Callable[[int], str]"]


@dataclass(frozen=True)
class Hostile:
    """A request to /wechat. ``sign``: none | plain | aes (encrypt ``body``) | encrypt (``body`` is the
    Encrypt text) | cipher (``body`` is the plaintext to CBC-encrypt as is) | envelope (``body`` is the
    whole envelope, ``signed`` the Encrypt text the msg_signature covers)."""

    body: bytes | str
    expect: int | tuple[int, ...]
    sign: str = "plain"
    query: Query = field(default_factory=dict)  # timestamp/nonce are signed; other keys override; None drops
    signed: str = ""
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    environ: Mapping[str, object] = field(default_factory=dict)

    @property
    def aes(self) -> bool:
        return self.sign in {"aes", "encrypt", "cipher", "envelope"}

    def build(self, now: int) -> tuple[dict[str, str], bytes]:
        query = {k: (v(now) if callable(v) else v) for k, v in self.query.items()}
        body = self.body.encode("utf-8") if isinstance(self.body, str) else self.body
        if self.sign == "none":
            return {k: v for k, v in query.items() if v is not None}, body
        timestamp, nonce = query.pop("timestamp", str(now)), query.pop("nonce", NONCE)
        params = {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        if self.aes:
            encrypt = {
                "aes": lambda: cbc_encrypt(pkcs7(framed(body))),
                "encrypt": lambda: body.decode("utf-8"),
                "cipher": lambda: cbc_encrypt(body),
                "envelope": lambda: self.signed,
            }[self.sign]()
            if self.sign != "envelope":
                body = envelope(encrypt)
            params.update(encrypt_type="aes", msg_signature=sign(TOKEN, timestamp, nonce, encrypt))
        params.update(query)
        return {k: v for k, v in params.items() if v is not None}, body


def send(wechat, case: Hostile):
    params, body = case.build(int(wechat.clock()))
    return wechat.client.open("/wechat", method=case.method, query_string=params, data=body,
                              headers=dict(case.headers), environ_overrides=dict(case.environ))


# --------------------------------------------------------------------------- what every answer must be


def tracebacks(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()} ({r.exc_info[0].__name__}: {r.exc_info[1]})"
            for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]


def assert_no_error_page(response) -> None:
    head = response.data[:300].lower()
    assert b"<!doctype html" not in head and b"<html" not in head, response.data[:300]
    assert b"Traceback" not in response.data


def open_reply(data: bytes) -> dict[str, str] | None:
    """The reply's fields after strict parsing (decrypted and verified in AES mode); None for ``success``."""
    if data.strip() == b"success":
        return None
    root = ET.fromstring(data)  # expat: fails on any malformed XML or character XML 1.0 forbids
    if root.find("Encrypt") is not None:
        encrypt = root.findtext("Encrypt")
        assert root.findtext("MsgSignature") == sign(TOKEN, root.findtext("TimeStamp"), root.findtext("Nonce"), encrypt)
        plain = cbc_decrypt(encrypt)
        pad = plain[-1]
        assert 1 <= pad <= 32 and plain[-pad:] == bytes([pad]) * pad, "reply has bad PKCS#7 padding"
        plain = plain[16:-pad]
        (length,) = struct.unpack(">I", plain[:4])
        assert plain[4 + length:] == APPID.encode(), "reply is framed with the wrong length or AppID"
        root = ET.fromstring(plain[4:4 + length])
    assert root.tag == "xml"
    tags = [child.tag for child in root]
    assert all(len(child) == 0 for child in root), f"reply has nested elements: {tags}"
    assert len(tags) == len(set(tags)) and set(tags) <= REPLY_TAGS, f"reply has injected elements: {tags}"
    return {child.tag: child.text or "" for child in root}


def assert_sane(response, expect, caplog) -> dict[str, str] | None:
    """The checks of every case; returns the reply's fields for a 200 that carries XML."""
    expected = expect if isinstance(expect, tuple) else (expect,)
    assert response.status_code in expected, (response.status_code, response.data[:300])
    assert_no_error_page(response)
    assert not tracebacks(caplog)
    if response.status_code != 200:
        return None
    reply = open_reply(response.data)
    if reply is not None:
        assert reply.get("ToUserName"), f"a reply addressed to no one: {reply}"
        assert BUSY not in reply.get("Content", ""), reply
        assert "root:" not in reply.get("Content", "")  # nothing from /etc/passwd
    return reply


# --------------------------------------------------------------------------- 1. text echoed into the reply

# The unknown-text handler echoes up to 20 characters of what it did not understand; these are
# all shorter, so each must come back whole inside Content and nowhere else.
ECHOED = [
    pytest.param("你好 ]]> 再见", id="cdata-end-in-the-middle"),
    pytest.param("]]><A>1</A><![CDATA[", id="element-injection"),
    pytest.param("]]>", id="cdata-end-alone"),
    pytest.param("a]]]]>>b", id="cdata-end-twice"),
    pytest.param("<![CDATA[x]]>y", id="whole-cdata-section"),
    pytest.param("]]><!--", id="comment-opener"),
]

DELIVERY = {
    # as character data, escaped
    "escaped": lambda text: text_msg(text),
    # as CDATA, split around each ]]> the way XML writers must
    "cdata": lambda text: msg("<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"),
}


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
@pytest.mark.parametrize("delivery", sorted(DELIVERY))
@pytest.mark.parametrize("text", ECHOED)
def test_echoed_text_cannot_change_the_reply_structure(wechat, caplog, text, delivery, aes):
    case = Hostile(DELIVERY[delivery](text), 200, sign="aes" if aes else "plain")
    reply = assert_sane(send(wechat, case), case.expect, caplog)
    assert reply is not None and set(reply) == REPLY_TAGS
    assert reply["MsgType"] == "text" and reply["ToUserName"] == OPENID
    assert text in reply["Content"]


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
def test_an_openid_with_cdata_end_cannot_change_the_reply_structure(wechat, caplog, aes):
    openid = "o]]><A>1</A><![CDATA[x"
    case = Hostile(text_msg("帮助", openid=openid), (200, 400), sign="aes" if aes else "plain")
    reply = assert_sane(send(wechat, case), case.expect, caplog)
    if reply is not None:
        assert reply["ToUserName"] == openid


# Characters XML 1.0 forbids: refusing the message (400) is fine, a reply that no parser can read is not.
FORBIDDEN = [
    pytest.param("\x01", id="x01"),
    pytest.param("\x0b", id="x0b"),
    pytest.param("\x1f", id="x1f"),
    pytest.param("\ufffe", id="ufffe"),
    pytest.param("\uffff", id="uffff"),
]


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
@pytest.mark.parametrize("form", ["raw", "char-ref"])
@pytest.mark.parametrize("char", FORBIDDEN)
def test_characters_xml_forbids_never_make_a_malformed_reply(wechat, caplog, char, form, aes):
    written = char if form == "raw" else f"&#{ord(char)};"
    case = Hostile(msg(f"你好{written}再见"), (200, 400), sign="aes" if aes else "plain")
    reply = assert_sane(send(wechat, case), case.expect, caplog)  # open_reply parses strictly
    if reply is not None:
        assert char not in "".join(reply.values())


# --------------------------------------------------------------------------- 2. signed, malformed AES

FULL = msg().encode()
LONG = msg("<![CDATA[" + "长" * 200 + "]]>").encode()  # plaintext longer than 255 bytes

MALFORMED_AES = [
    pytest.param(Hostile("====", 400, sign="encrypt"), id="encrypt-only-padding"),
    pytest.param(Hostile("!!!!@@@@####$$$$", 400, sign="encrypt"), id="encrypt-not-base64"),
    pytest.param(Hostile("", 400, sign="encrypt"), id="encrypt-empty"),
    pytest.param(Hostile(base64.b64encode(b"x" * 15).decode(), 400, sign="encrypt"), id="cipher-not-block-sized"),
    pytest.param(Hostile(base64.b64encode(RANDOM16).decode(), 400, sign="encrypt"), id="cipher-one-block"),
    pytest.param(Hostile(framed(FULL) + b"\x00" * (32 - len(framed(FULL)) % 32), 400, sign="cipher"),
                 id="padded-with-00"),
    pytest.param(Hostile(framed(b"<xml/>")[:20] + b"\xff" * 12, 400, sign="cipher"), id="short-ending-in-ff"),
    pytest.param(Hostile(framed(LONG) + b"\xff" * (32 - len(framed(LONG)) % 32), 400, sign="cipher"),
                 id="long-ending-in-ff"),
    pytest.param(Hostile(pkcs7(framed(FULL))[:-1] + b"\x21", 400, sign="cipher"), id="pad-byte-above-32"),
    pytest.param(Hostile(pkcs7(RANDOM16), 400, sign="cipher"), id="no-room-for-length"),
    pytest.param(Hostile(pkcs7(framed(FULL, length=0xFFFFFFFF)), 400, sign="cipher"), id="length-ffffffff"),
    pytest.param(Hostile(pkcs7(framed(FULL, length=0)), 400, sign="cipher"), id="length-zero"),
    pytest.param(Hostile(pkcs7(framed(FULL, length=len(FULL) - 1)), 400, sign="cipher"), id="length-one-short"),
    pytest.param(Hostile(pkcs7(framed(FULL, length=len(FULL) + 100)), 400, sign="cipher"), id="length-past-end"),
    pytest.param(Hostile(b"<xml><Content>\xff\xfe</Content></xml>", 400, sign="aes"), id="plaintext-not-utf8"),
    pytest.param(Hostile(b"hello", 400, sign="aes"), id="plaintext-not-xml"),
    pytest.param(Hostile(b"", 400, sign="aes"), id="plaintext-empty"),
    # Signed with our token, so not a forgery: a message for another AppID is malformed for us.
    pytest.param(Hostile(pkcs7(framed(FULL, appid="wx-someone-else")), 400, sign="cipher"), id="other-appid"),
    pytest.param(Hostile(envelope("QUJD")[:-6] + b"<Encrypt>QUJD</Encrypt></xml>", (400, 403), sign="envelope",
                         signed="QUJD"), id="encrypt-twice"),
    pytest.param(Hostile(b"<xml><Encrypt><x>QUJD</x></Encrypt></xml>", (400, 403), sign="envelope", signed="QUJD"),
                 id="encrypt-with-element"),
    pytest.param(Hostile(FULL, 400, sign="envelope", signed=""), id="aes-without-encrypt-element"),
]


@pytest.mark.parametrize("case", MALFORMED_AES)
def test_signed_but_malformed_aes_bodies_get_400(wechat, caplog, case):
    assert_sane(send(wechat, case), case.expect, caplog)


# --------------------------------------------------------------------------- 3. fields that carry structure

SENDERS = {OPENID, "o-other", "o-1"}
STRUCTURED = [
    pytest.param(msg("<b>粗</b>"), id="markup-in-content"),
    pytest.param(msg('<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd"/>'),
                 id="xinclude-in-content"),
    pytest.param(msg(extra="<Content><![CDATA[积分]]></Content>"), id="content-twice"),
    pytest.param(msg(extra="<FromUserName><![CDATA[o-other]]></FromUserName>"), id="sender-twice"),
    pytest.param(msg(sender="<a>o-1</a>"), id="markup-in-sender"),
    pytest.param(msg(extra="<MsgId>424243</MsgId>"), id="msgid-twice"),
    pytest.param(msg(msg_id="<n>1</n>"), id="markup-in-msgid"),
    pytest.param(msg(extra="<MsgType><![CDATA[event]]></MsgType>"), id="msgtype-twice"),
    pytest.param(msg('<span lang="zh">帮助</span>x'), id="mixed-content"),
    pytest.param(msg("<![CDATA[帮]]><!-- x -->助"), id="comment-in-content"),
    pytest.param(msg("帮<?php echo 1; ?>助"), id="processing-instruction-in-content"),
    pytest.param(msg("<a>" * 3000 + "x" + "</a>" * 3000), id="content-3000-deep"),
]


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
@pytest.mark.parametrize("body", STRUCTURED)
def test_fields_carrying_structure_are_read_as_text_or_refused(wechat, caplog, body, aes):
    case = Hostile(body, (200, 400), sign="aes" if aes else "plain")
    response = send(wechat, case)
    reply = assert_sane(response, case.expect, caplog)
    assert b"root:" not in response.data
    if reply is not None:  # read as text: the answer goes to a sender the message names, not to a Python repr
        assert reply["ToUserName"] in SENDERS, reply["ToUserName"]


# --------------------------------------------------------------------------- 4. everything else a sender can send

XXE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       + msg("&xxe;"))
BOMB = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>' + msg("&d;"))
EXTERNAL_DTD = '<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://127.0.0.1:1/evil.dtd">' + msg()
PARAMETER_ENTITY = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:1/p.dtd"> %p;]>'
                    + msg())
PLAIN_DOCTYPE = "<!DOCTYPE xml>" + msg()
OVERSIZE = msg("<![CDATA[" + "x" * (LIMIT + 1024) + "]]>")


def stale(seconds: int) -> Callable[[int], str]:
    return lambda now: str(now + seconds)


HOSTILE = [
    # -- not a readable message (signed, plain)
    pytest.param(Hostile(b"", 400), id="empty"),
    pytest.param(Hostile(b"  \r\n\t ", 400), id="whitespace"),
    pytest.param(Hostile("not xml at all", 400), id="not-xml"),
    pytest.param(Hostile('{"MsgType": "text", "Content": "帮助"}', 400), id="json"),
    pytest.param(Hostile(msg()[:-9], 400), id="truncated"),
    pytest.param(Hostile(msg().replace("<xml>", "<other>").replace("</xml>", "</other>"), 400), id="wrong-root"),
    pytest.param(Hostile("<xml/>", 400), id="empty-root"),
    pytest.param(Hostile(msg() + msg(), 400), id="two-roots"),
    pytest.param(Hostile(b"<xml>\x00</xml>", 400), id="nul-byte"),
    pytest.param(Hostile(msg("caf\xe9").encode("latin-1"), 400), id="latin1-bytes-as-utf8"),
    pytest.param(Hostile('<?xml version="1.0" encoding="klingon"?>' + msg(), 400), id="unknown-encoding"),
    pytest.param(Hostile(('<?xml version="1.0" encoding="ISO-8859-1"?>' + msg("caf\xe9")).encode("latin-1"),
                         (200, 400)), id="latin1-declared"),
    pytest.param(Hostile(('<?xml version="1.0" encoding="UTF-16"?>' + msg()).encode("utf-16"), (200, 400)),
                 id="utf16"),
    pytest.param(Hostile(b"\xef\xbb\xbf" + msg().encode(), (200, 400)), id="utf8-bom"),
    pytest.param(Hostile('<?xml version="1.1"?>' + msg(), (200, 400)), id="xml-1.1"),
    # -- DTDs and entities (plain and AES)
    pytest.param(Hostile(XXE, 400), id="xxe"),
    pytest.param(Hostile(XXE, 400, sign="aes"), id="xxe-aes"),
    pytest.param(Hostile(BOMB, 400), id="entity-bomb"),
    pytest.param(Hostile(BOMB, 400, sign="aes"), id="entity-bomb-aes"),
    pytest.param(Hostile(EXTERNAL_DTD, 400), id="external-dtd"),
    pytest.param(Hostile(PARAMETER_ENTITY, 400), id="parameter-entity"),
    pytest.param(Hostile(PLAIN_DOCTYPE, 400), id="doctype-without-entities"),
    # -- well-formed, odd fields
    pytest.param(Hostile(msg(create_time="9" * 40), (200, 400)), id="huge-createtime"),
    pytest.param(Hostile(msg(create_time="-1"), (200, 400)), id="negative-createtime"),
    pytest.param(Hostile(msg(create_time="soon"), (200, 400)), id="text-createtime"),
    pytest.param(Hostile(msg(msg_type=None), 400), id="no-msgtype"),
    pytest.param(Hostile(msg(msg_type=""), 400), id="empty-msgtype"),
    pytest.param(Hostile(msg(msg_type="<![CDATA[hologram]]>"), 200), id="unknown-msgtype"),
    pytest.param(Hostile(msg(msg_type="<![CDATA[event]]>"), (200, 400)), id="event-without-event"),
    pytest.param(Hostile(msg(msg_type="<![CDATA[event]]>", extra="<Event><e/></Event>"), (200, 400)),
                 id="markup-in-event"),
    pytest.param(Hostile(msg(msg_id="abc"), (200, 400)), id="text-msgid"),
    pytest.param(Hostile(msg(msg_id="9" * 100), (200, 400)), id="100-digit-msgid"),
    pytest.param(Hostile(msg(msg_id=None), (200, 400)), id="no-msgid"),
    pytest.param(Hostile(msg(sender=None), (200, 400)), id="no-sender"),
    pytest.param(Hostile(msg(content=None), (200, 400)), id="text-without-content"),
    pytest.param(Hostile(msg(content=""), 200), id="empty-content"),
    pytest.param(Hostile(msg(), (200, 400), headers={"Content-Type": "application/x-www-form-urlencoded"}),
                 id="form-content-type"),
    pytest.param(Hostile(msg(), (200, 400), headers={"Content-Type": "multipart/form-data; boundary=x"}),
                 id="multipart-content-type"),
    # -- too big: 413 before anything else reads it
    pytest.param(Hostile(OVERSIZE, 413), id="oversize"),
    pytest.param(Hostile(OVERSIZE, 413, sign="aes"), id="oversize-aes"),
    pytest.param(Hostile(OVERSIZE, 413, sign="none"), id="oversize-unsigned"),
    pytest.param(Hostile(OVERSIZE, 413, environ={"CONTENT_LENGTH": "", "wsgi.input_terminated": True}),
                 id="oversize-without-content-length"),
    # -- signature and replay window
    pytest.param(Hostile(msg(), 403, sign="none"), id="unsigned"),
    pytest.param(Hostile(msg(), 403, sign="none", query={"timestamp": stale(0), "nonce": NONCE}),
                 id="no-signature-param"),
    pytest.param(Hostile(msg(), 403, query={"signature": "0" * 40}), id="bad-signature"),
    pytest.param(Hostile(msg(), 403, query={"signature": lambda now: sign("other-token", str(now), NONCE)}),
                 id="other-token"),
    pytest.param(Hostile(msg(), 403, query={"timestamp": stale(-301)}), id="stale-timestamp"),
    pytest.param(Hostile(msg(), 403, query={"timestamp": stale(+301)}), id="future-timestamp"),
    pytest.param(Hostile(msg(), 403, query={"timestamp": "abc"}), id="text-timestamp"),
    pytest.param(Hostile(msg(), 403, query={"timestamp": "¹²³"}), id="superscript-timestamp"),
    pytest.param(Hostile(msg(), 403, query={"timestamp": "9" * 40}), id="40-digit-timestamp"),
    pytest.param(Hostile(msg(), 403, query={"timestamp": ""}), id="empty-timestamp"),
    pytest.param(Hostile(msg(), 403, sign="aes", query={"msg_signature": None}), id="aes-without-msg-signature"),
    pytest.param(Hostile(msg(), 403, sign="aes", query={"msg_signature": "0" * 40}), id="aes-bad-msg-signature"),
    # -- encrypt_type
    pytest.param(Hostile(msg(), (200, 400), sign="aes", query={"encrypt_type": "AES"}), id="encrypt-type-upper"),
    pytest.param(Hostile(msg(), 400, sign="aes", query={"encrypt_type": "des"}), id="encrypt-type-des"),
    pytest.param(Hostile(msg(), 400, sign="aes", query={"encrypt_type": "raw"}), id="envelope-as-raw"),
    pytest.param(Hostile(msg(), 400, query={"encrypt_type": "aes", "msg_signature": "0" * 40}),
                 id="plain-body-as-aes"),
    # -- other methods
    pytest.param(Hostile(msg(), 405, method="PUT"), id="put"),
    pytest.param(Hostile(msg(), 405, method="DELETE", sign="none"), id="delete-unsigned"),
]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_webhook_bodies(wechat, caplog, case):
    response = send(wechat, case)
    assert_sane(response, case.expect, caplog)
    assert b"root:" not in response.data
