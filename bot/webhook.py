"""The WeChat callback: verify, decrypt, parse, dispatch, build the reply, encrypt. Nothing else."""
from __future__ import annotations

import logging

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml_safely
from flask import Blueprint, Response, abort, current_app, jsonify, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

from bot.dispatch import SUCCESS, answer_once
from bot.services import BotState

log = logging.getLogger(__name__)

bp = Blueprint("wechat", __name__)


def bot_state() -> BotState:
    return current_app.extensions["bot"]


class BadMessage(Exception):
    """The body is not a WeChat message we can read (reported as 400)."""


@bp.get("/wechat")
def verify_server():
    """WeChat's server check: echo ``echostr`` back only for a correct signature."""
    _check_signature(bot_state())
    return Response(request.args.get("echostr", ""), mimetype="text/plain")


@bp.post("/wechat")
def receive_message():
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
        xml = _decrypt(state, body, timestamp, nonce) if encrypted else _checked_xml(body)
        message = parse_message(xml)
    except (InvalidSignatureException, InvalidAppIdException):
        log.warning("rejected message: bad msg_signature or AppID")
        abort(403)
    except (BadMessage, DefusedXmlException, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("rejected message: unreadable XML (%s)", type(exc).__name__)
        return Response("bad request: body is not a readable WeChat XML message\n", 400, mimetype="text/plain")
    if message is None:
        return Response("bad request: empty body\n", 400, mimetype="text/plain")

    reply_xml = answer_once(state, message)
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
    # A replayed request is refused; WeChat's own retries reuse the first timestamp within seconds.
    if not timestamp.isdigit() or abs(state.clock() - int(timestamp)) > state.rules.webhook.timestamp_tolerance_seconds:
        log.warning("rejected request: timestamp %r outside the allowed window", timestamp[:20])
        abort(403)
    return timestamp, nonce


def _checked_xml(body: bytes) -> bytes:
    """Refuse DTDs, entities and malformed XML before any other parser sees the body."""
    if not body.strip():
        raise BadMessage("empty body")
    try:
        root = parse_xml_safely(body, forbid_dtd=True)
    except DefusedXmlException:
        raise
    except Exception as exc:  # ParseError and friends
        raise BadMessage(str(exc)) from exc
    if root.tag != "xml":
        raise BadMessage(f"root element is <{root.tag}>, not <xml>")
    return body


def _crypto(state: BotState) -> WeChatCrypto:
    settings = state.settings
    if not settings.wechat_aes_key:
        raise BadMessage("an encrypted message arrived but WECHAT_AES_KEY is not set")
    return WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid)


def _decrypt(state: BotState, body: bytes, timestamp: str, nonce: str) -> bytes:
    envelope = _checked_xml(body)
    msg_signature = request.args.get("msg_signature", "")
    plain = _crypto(state).decrypt_message(envelope, msg_signature, timestamp, nonce)
    return _checked_xml(plain.encode("utf-8") if isinstance(plain, str) else plain)
