"""The WeChat callback: verify, decrypt, parse, dispatch, build the reply, encrypt. Nothing else."""
from __future__ import annotations

import binascii
import functools
import logging
import re
import struct
import time

from xml.etree import ElementTree
from flask import Blueprint, Response, abort, current_app, jsonify, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES, BaseMessage, UnknownMessage
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

from bot.dispatch import SUCCESS, answer_once
from bot.services import BotState
from rules import BotError

log = logging.getLogger(__name__)

bp = Blueprint("wechat", __name__)


def bot_state() -> BotState:
    return current_app.extensions["bot"]


class BadMessage(BotError):
    """The body is not a WeChat message we can read (reported as 400)."""


# Fields the bot reads as plain values: markup inside one, or one given twice, is not a message
# WeChat sends (menu events such as SendPicsInfo legitimately nest, and are left alone).
SCALAR_FIELDS = frozenset({
    "ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "MsgID", "Content", "Event", "EventKey",
    "Status", "MediaId", "PicUrl", "Format", "Recognition", "ThumbMediaId", "Title", "Description", "Url",
    "Location_X", "Location_Y", "Scale", "Label", "Ticket", "Latitude", "Longitude", "Precision", "Encrypt",
})
NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What a body that is not a WeChat AES envelope makes wechatpy's decryption raise.
UNDECRYPTABLE = (binascii.Error, IndexError, struct.error, UnicodeDecodeError, ValueError, TypeError)


@bp.get("/wechat")
def verify_server():
    """WeChat's server check: echo ``echostr`` back only for a correct signature."""
    _check_signature(bot_state())
    return Response(request.args.get("echostr", ""), mimetype="text/plain")


@bp.post("/wechat")
def receive_message():
    arrived = time.monotonic()  # WeChat's 5 s run from here, whatever Redis does
    state = bot_state()
    limit = state.rules.webhook.max_body_bytes
    if (request.content_length or 0) > limit:
        abort(413)
    body = request.get_data(cache=False)
    if len(body) > limit:  # no or wrong Content-Length: measure what came
        abort(413)
    timestamp, nonce = _check_signature(state)
    encrypted = request.args.get("encrypt_type", "raw").lower() == "aes"
    try:
        message = _read_message(*(_decrypt(state, body, timestamp, nonce) if encrypted else _checked_xml(body)))
        if not (message.source and message.target):
            raise BadMessage("no FromUserName or ToUserName")
    except InvalidSignatureException:
        log.warning("rejected message: bad msg_signature")
        abort(403)
    except (BadMessage, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("rejected message: unreadable XML (%s: %s)", type(exc).__name__, str(exc)[:120])
        return Response("bad request: body is not a readable WeChat XML message\n", 400, mimetype="text/plain")
    if message is None:
        return Response("bad request: empty body\n", 400, mimetype="text/plain")

    reply_xml = answer_once(state, message, arrived)
    if reply_xml is None:
        return Response(SUCCESS, mimetype="text/plain")
    if encrypted:
        reply_xml = _crypto(state).encrypt_message(reply_xml, nonce, timestamp)
    return Response(reply_xml, mimetype="application/xml")


@bp.get("/healthz")
def health():
    """Database and Redis status as JSON; 503 when either is down."""
    state = bot_state()
    status = {"database": "ok", "redis": "ok"}
    try:
        state.db.ping()
    except Exception as exc:  # any driver error means "down"
        status["database"] = f"error: {type(exc).__name__}"
    try:
        state.redis.ping()
    except Exception as exc:
        status["redis"] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in status.values())
    return jsonify(status=("ok" if healthy else "degraded"), **status), (200 if healthy else 503)


def _check_signature(state: BotState) -> tuple[str, str]:
    """403 unless the query is signed with our token and its timestamp is recent."""
    args = request.args
    signature, timestamp, nonce = args.get("signature", ""), args.get("timestamp", ""), args.get("nonce", "")
    try:
        check_signature(state.settings.wechat_token, signature, timestamp, nonce)
    except InvalidSignatureException:
        log.warning("rejected request: bad signature")
        abort(403)
    if not NONCE.fullmatch(nonce):  # echoed into encrypted replies: digits and letters only, as WeChat sends
        log.warning("rejected request: malformed nonce")
        abort(403)
    # A replayed request is refused; WeChat's own retries reuse the first timestamp within seconds.
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(state.clock() - int(timestamp)) > state.rules.webhook.timestamp_tolerance_seconds:
        log.warning("rejected request: timestamp %r outside the allowed window", timestamp[:20])
        abort(403)
    return timestamp, nonce


class _NoDoctype(ElementTree.TreeBuilder):
    """The C tree builder, refusing any document type declaration the moment the parser meets one.

    Entities can only be declared inside one, so this refuses entity bombs and external entities
    too (ElementTree resolves no external entity in any case). defusedxml's forbid_dtd does the
    same, but on ElementTree's pure-Python parser, which took a tenth of every message's time.
    """

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise BadMessage("a DTD (document type declaration) is not allowed")


def _parse_without_dtd(body: bytes) -> ElementTree.Element:
    parser = ElementTree.XMLParser(target=_NoDoctype())
    parser.feed(body)
    return parser.close()


def _checked_xml(body: bytes) -> tuple[ElementTree.Element, bytes]:
    """Refuse DTDs, entities and malformed XML before any other parser sees the body."""
    if not body.strip():
        raise BadMessage("empty body")
    try:
        root = _parse_without_dtd(body)
    except BadMessage:
        raise
    except Exception as exc:  # ParseError and friends
        raise BadMessage(str(exc)) from exc
    if root.tag != "xml":
        raise BadMessage(f"root element is <{root.tag}>, not <xml>")
    seen: set[str] = set()
    for field in root:
        if field.tag in seen and field.tag in SCALAR_FIELDS:
            raise BadMessage(f"<{field.tag}> appears twice")
        seen.add(field.tag)
        if field.tag in SCALAR_FIELDS and len(field):
            raise BadMessage(f"<{field.tag}> holds markup, not a value")
    return root, body


def _read_message(root: ElementTree.Element, body: bytes) -> BaseMessage:
    """The typed wechatpy message, from the tree already parsed (wechatpy's parse_message parses again)."""
    if any(len(field) for field in root):
        return parse_message(body)  # menu events with nested lists (SendPicsInfo…): wechatpy's own parser
    # As xmltodict gives them to wechatpy: text stripped, empty as None.
    fields = {field.tag: (field.text or "").strip() or None for field in root}
    message_type = (fields.get("MsgType") or "").lower()
    if not message_type:
        raise BadMessage("no MsgType")
    if message_type != "event":
        return MESSAGE_TYPES.get(message_type, UnknownMessage)(fields)
    event = (fields.get("Event") or "").lower()
    key = fields.get("EventKey") or ""
    if event == "subscribe" and key.startswith("qrscene_"):  # followed by scanning a QR code with a scene
        event, fields["Event"], fields["EventKey"] = "subscribe_scan", "subscribe_scan", key[len("qrscene_"):]
    elif event == "subscribe" and key.startswith(("scanbarcode|", "scanimage|")):
        event = fields["Event"] = "subscribe_scan_product"
    return EVENT_TYPES.get(event, UnknownMessage)(fields)


def _crypto(state: BotState) -> WeChatCrypto:
    settings = state.settings
    if not settings.wechat_aes_key:
        raise BadMessage("an encrypted message arrived but WECHAT_AES_KEY is not set")
    return _cipher(settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid)


@functools.lru_cache(maxsize=4)
def _cipher(token: str, aes_key: str, appid: str) -> WeChatCrypto:
    return WeChatCrypto(token, aes_key, appid)


def _decrypt(state: BotState, body: bytes, timestamp: str, nonce: str) -> tuple[ElementTree.Element, bytes]:
    envelope, _ = _checked_xml(body)
    encrypt = envelope.find("Encrypt")
    if encrypt is None:
        raise BadMessage("an encrypted message without <Encrypt>")
    msg_signature = request.args.get("msg_signature", "")
    try:
        plain = _crypto(state).decrypt_message({"Encrypt": (encrypt.text or "").strip()}, msg_signature, timestamp, nonce)
    except UNDECRYPTABLE as exc:  # signed, but not ciphertext of a message (bad base64, padding, length)
        raise BadMessage(f"the encrypted body does not decrypt ({type(exc).__name__})") from None
    except InvalidAppIdException:  # signed, but the plaintext's length or AppID is not ours
        raise BadMessage("the decrypted message is not for this AppID") from None
    return _checked_xml(plain.encode("utf-8") if isinstance(plain, str) else plain)
