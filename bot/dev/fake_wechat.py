"""A stand-in for the WeChat HTTP API, since the real one cannot be reached from here.

Serves the endpoints the bot uses with WeChat's JSON and error codes, records every message
(GET /_sent), and fails on request so delivery is tested over real HTTP:

    POST /_fail   {"errcode": 45009, "times": 3}          the next 3 sends answer errcode 45009
                  {"http_status": 500, "times": 2}         ... answer HTTP 500
                  {"slow_seconds": 2, "times": 5}          ... are recorded, then answered 2 s late
    POST /_block  {"openid": "o1", "errcode": 43004}       sends to o1 answer 43004 (unfollowed)
    POST /_expire_token                                    the current access_token stops working
    POST /_reset_failures                                  forget queued failures
    POST /_reset                                           forget messages, failures and tokens
    GET  /_stats                                           token fetches and counters
    POST /_finish_events {"webhook": "http://127.0.0.1:5000/wechat", "token": "demo-token",
                          "status": "success", "statuses": {"o1": "failed:user block"}, "again": false}
                  for each template message recorded (and not reported yet, unless "again"), post
                  WeChat's TEMPLATESENDJOBFINISH event with its msgid to the webhook, signed with the
                  token like WeChat (plain mode); answers what was posted and how the webhook replied.
                  Inside the bot (embedded default) webhook and token default to the bot's own.

Template and customer-service sends answer {"errcode": 0, "errmsg": "ok", "msgid": N}.
"""
from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import requests
from flask import Flask, jsonify, request

ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    42001: "access_token expired",
    43004: "require subscribe",
    43019: "require remove blacklist",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit",
}


@dataclass
class FakeState:
    sent: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # queued behaviours, consumed in order
    blocked: dict[str, int] = field(default_factory=dict)
    valid_tokens: set[str] = field(default_factory=set)
    token_fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Any = field(default_factory=lambda: itertools.count(1000))
    reported: set[int] = field(default_factory=set)  # msgids whose finish event was posted


def finish_event_xml(openid: str, msgid: int, status: str, create_time: int, account: str = "gh_fake_account") -> str:
    """WeChat's TEMPLATESENDJOBFINISH event for one template message, as the webhook receives it."""
    return (f"<xml><ToUserName><![CDATA[{account}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{create_time}</CreateTime>"
            f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
            f"<MsgID>{msgid}</MsgID><Status><![CDATA[{escape(status)}]]></Status></xml>")


def signed_query(token: str, timestamp: int | None = None) -> dict[str, str]:
    """signature, timestamp and nonce as WeChat puts them on a plain-mode callback."""
    stamp, nonce = str(int(time.time()) if timestamp is None else timestamp), secrets.token_hex(8)
    signature = hashlib.sha1("".join(sorted([token, stamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": stamp, "nonce": nonce}


def create_fake_app(webhook: str | None = None, token: str | None = None) -> Flask:
    """The stand-in. ``webhook`` and ``token``: where /_finish_events posts when its request names none."""
    app = Flask("fake_wechat")
    app.json.ensure_ascii = False  # /_sent shows the texts as written
    state = FakeState()
    app.extensions["fake_wechat"] = state
    default_webhook, default_token = webhook, token  # (a view below is named token)

    def error(code: int):
        return jsonify(errcode=code, errmsg=ERRMSG.get(code, "error"))

    @app.get("/cgi-bin/token")
    def token():
        if request.args.get("grant_type") != "client_credential" or not request.args.get("appid"):
            return error(40013)
        with state.lock:
            state.token_fetches += 1
            value = f"FAKE-TOKEN-{state.token_fetches}"
            state.valid_tokens.add(value)
        return jsonify(access_token=value, expires_in=7200)

    def send(kind: str):
        with state.lock:
            if request.args.get("access_token") not in state.valid_tokens:
                return error(40001)
            behaviour = state.failures.pop(0) if state.failures else {}
            if behaviour.get("times", 1) > 1:
                state.failures.insert(0, {**behaviour, "times": behaviour["times"] - 1})
        if "http_status" in behaviour:
            return "upstream trouble", behaviour["http_status"]
        if "errcode" in behaviour:
            return error(behaviour["errcode"])
        body = request.get_json(force=True, silent=True) or {}
        openid = body.get("touser")
        if openid in state.blocked:
            return error(state.blocked[openid])
        with state.lock:
            msgid = next(state.ids)
            state.sent.append({"kind": kind, "msgid": msgid, "at": time.time(), **body})
        if "slow_seconds" in behaviour:
            time.sleep(behaviour["slow_seconds"])  # recorded first: the message has arrived
        return jsonify(errcode=0, errmsg="ok", msgid=msgid)

    app.add_url_rule("/cgi-bin/message/template/send", "template", lambda: send("template"), methods=["POST"])
    app.add_url_rule("/cgi-bin/message/custom/send", "custom", lambda: send("custom"), methods=["POST"])

    @app.get("/_sent")
    def sent():
        with state.lock:
            return jsonify(list(state.sent))

    @app.post("/_fail")
    def fail():
        with state.lock:
            state.failures.append(request.get_json(force=True))
        return jsonify(ok=True)

    @app.post("/_reset_failures")
    def reset_failures():
        with state.lock:
            state.failures.clear()
        return jsonify(ok=True)

    @app.post("/_block")
    def block():
        body = request.get_json(force=True)
        with state.lock:
            state.blocked[body["openid"]] = int(body.get("errcode", 43004))
        return jsonify(ok=True)

    @app.post("/_expire_token")
    def expire_token():
        with state.lock:
            state.valid_tokens.clear()
        return jsonify(ok=True)

    @app.post("/_reset")
    def reset():
        with state.lock:
            state.sent.clear()
            state.failures.clear()
            state.blocked.clear()
            state.valid_tokens.clear()
            state.token_fetches = 0
            state.reported.clear()
        return jsonify(ok=True)

    @app.post("/_finish_events")
    def finish_events():
        body = request.get_json(force=True, silent=True) or {}
        target, secret = body.get("webhook") or default_webhook, body.get("token") or default_token
        if not target or not secret:
            return jsonify(error="give webhook and token"), 400
        default, statuses = str(body.get("status") or "success"), body.get("statuses") or {}
        with state.lock:
            due = [m for m in state.sent if m["kind"] == "template"
                   and (body.get("again") or m["msgid"] not in state.reported)]
            state.reported.update(m["msgid"] for m in due)
        answers: dict[str, int] = {}
        http = requests.Session()
        for message in due:
            status = str(statuses.get(message.get("touser"), default))
            # WeChat reports after delivering: the event's CreateTime follows the send.
            xml = finish_event_xml(message.get("touser") or "", message["msgid"], status, int(message["at"]) + 1)
            try:
                reply = http.post(target, params=signed_query(secret), data=xml.encode("utf-8"), timeout=10,
                                  headers={"Content-Type": "text/xml"})
                answer = f"{reply.status_code} {reply.text.strip()[:40]}"
            except requests.RequestException as exc:
                answer = type(exc).__name__
            answers[answer] = answers.get(answer, 0) + 1
        return jsonify(posted=len(due), answers=answers)

    @app.get("/_stats")
    def stats():
        with state.lock:
            return jsonify(token_fetches=state.token_fetches, sent=len(state.sent))

    return app


def serve_fake(host: str, port: int) -> None:
    """Run the stand-in under gunicorn: one process (the record lives in memory), many threads."""
    import os
    import sys

    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread",
                              "--threads", "32", "--bind", f"{host}:{port}", "--log-level", "warning",
                              "--graceful-timeout", "1",
                              "bot.dev.fake_wechat:create_fake_app()"])
