"""A plain Flask + wechatpy bot, the reference for bench/webhook.py: what a careful hand-written bot does.

Verifies the signature and the replay window, de-duplicates through Redis (the reply is cached
for WeChat's retries), reads the member's balance with one SQLAlchemy query, and answers.
"""
from __future__ import annotations

import os
import time

import redis
from flask import Flask, Response, abort, request
from sqlalchemy import create_engine, text
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import create_reply
from wechatpy.utils import check_signature

TOKEN = os.environ["WECHAT_TOKEN"]
crypto = WeChatCrypto(TOKEN, os.environ["WECHAT_AES_KEY"], os.environ["WECHAT_APPID"])
engine = create_engine(os.environ["DATABASE_URL"])
cache = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
BALANCE = text("SELECT name, points_balance FROM members WHERE openid = :openid")
app = Flask(__name__)


@app.post("/wechat")
def wechat() -> Response:
    args = request.args
    check_signature(TOKEN, args["signature"], args["timestamp"], args["nonce"])
    if abs(time.time() - int(args["timestamp"])) > 300:
        abort(403)
    body = request.get_data()
    aes = args.get("encrypt_type") == "aes"
    if aes:
        body = crypto.decrypt_message(body, args["msg_signature"], args["timestamp"], args["nonce"])
    message = parse_message(body)
    key = f"plain:reply:{message.id}"
    xml = cache.get(key)
    if xml is None:
        with engine.connect() as connection:
            member = connection.execute(BALANCE, {"openid": message.source}).first()
        answer = f"{member.name}，您好！当前积分：{member.points_balance:,}" if member else "请先绑定会员卡"
        xml = create_reply(answer, message).render()
        cache.set(key, xml, ex=300)
    if aes:
        xml = crypto.encrypt_message(xml, args["nonce"], args["timestamp"])
    return Response(xml, mimetype="application/xml")
