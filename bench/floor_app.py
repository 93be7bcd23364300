"""The floor for bench/webhook.py: verify, parse and answer a fixed text with wechatpy, nothing else."""
from __future__ import annotations

import os

from flask import Flask, Response, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import create_reply
from wechatpy.utils import check_signature

TOKEN = os.environ["WECHAT_TOKEN"]
crypto = WeChatCrypto(TOKEN, os.environ["WECHAT_AES_KEY"], os.environ["WECHAT_APPID"])
app = Flask(__name__)


@app.post("/wechat")
def wechat() -> Response:
    args = request.args
    check_signature(TOKEN, args["signature"], args["timestamp"], args["nonce"])
    body = request.get_data()
    aes = args.get("encrypt_type") == "aes"
    if aes:
        body = crypto.decrypt_message(body, args["msg_signature"], args["timestamp"], args["nonce"])
    message = parse_message(body)
    xml = create_reply("您好，当前积分：1,000", message).render()
    if aes:
        xml = crypto.encrypt_message(xml, args["nonce"], args["timestamp"])
    return Response(xml, mimetype="application/xml")
