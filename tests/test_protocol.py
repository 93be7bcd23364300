"""The WeChat message protocol through the real webhook: signatures, modes, bad bodies, every type."""
from __future__ import annotations

import logging

import pytest
import xmltodict
from wechatpy.crypto import WeChatCrypto

from bot.app import create_app
from bot.settings import Settings
from tests.factories import signature, text_xml

# The documented sample of WeChat's message encryption guide (公众号消息加解密 sample code).
GUIDE_TOKEN = "spamtest"
GUIDE_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
GUIDE_APPID = "wx2c2769f8efd9abc2"
GUIDE_TIMESTAMP = "1409735669"
GUIDE_NONCE = "1320562132"
GUIDE_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
GUIDE_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9"
    "FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3y"
    "t+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6"
    "h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)
GUIDE_BODY = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
    f"<Encrypt><![CDATA[{GUIDE_ENCRYPT}]]></Encrypt></xml>"
)


def test_guide_vector_decrypts_to_the_documented_message():
    crypto = WeChatCrypto(GUIDE_TOKEN, GUIDE_AES_KEY, GUIDE_APPID)
    plain = crypto.decrypt_message(GUIDE_BODY, GUIDE_MSG_SIGNATURE, GUIDE_TIMESTAMP, GUIDE_NONCE)
    message = xmltodict.parse(plain)["xml"]
    assert message["Content"] == "abcdteT"
    assert message["MsgId"] == "6054768590064713728"
    assert message["FromUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"


@pytest.fixture
def guide_app(settings, rules, redis_client):
    """The app configured with the guide's token, key and AppID, its clock at the guide's timestamp."""
    guide = Settings(**{**settings.__dict__, "wechat_token": GUIDE_TOKEN, "wechat_aes_key": GUIDE_AES_KEY,
                        "wechat_appid": GUIDE_APPID})
    app = create_app(guide, rules, redis_client=redis_client, clock=lambda: int(GUIDE_TIMESTAMP) + 1)
    yield app
    app.extensions["bot"].db.dispose()


def test_guide_request_is_answered_encrypted(guide_app):
    query = {
        "signature": signature(GUIDE_TOKEN, GUIDE_TIMESTAMP, GUIDE_NONCE),
        "timestamp": GUIDE_TIMESTAMP,
        "nonce": GUIDE_NONCE,
        "encrypt_type": "aes",
        "msg_signature": GUIDE_MSG_SIGNATURE,
    }
    response = guide_app.test_client().post("/wechat", query_string=query, data=GUIDE_BODY)
    assert response.status_code == 200
    envelope = xmltodict.parse(response.data)["xml"]
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    crypto = WeChatCrypto(GUIDE_TOKEN, GUIDE_AES_KEY, GUIDE_APPID)
    reply = xmltodict.parse(
        crypto.decrypt_message(response.data, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
    )["xml"]
    assert reply["ToUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
    assert reply["MsgType"] == "text"
    assert "abcdteT" in reply["Content"]  # unknown text is echoed in the help hint


def test_guide_request_with_tampered_msg_signature_is_refused(guide_app):
    query = {
        "signature": signature(GUIDE_TOKEN, GUIDE_TIMESTAMP, GUIDE_NONCE),
        "timestamp": GUIDE_TIMESTAMP,
        "nonce": GUIDE_NONCE,
        "encrypt_type": "aes",
        "msg_signature": "0" * 40,
    }
    assert guide_app.test_client().post("/wechat", query_string=query, data=GUIDE_BODY).status_code == 403


# --------------------------------------------------------------------------- server check (GET)


def test_get_echoes_echostr_only_with_a_valid_signature(app, clock):
    client = app.test_client()
    ts, nonce = str(int(clock())), "123456"
    good = {"signature": signature("test-token", ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "hello-42"}
    response = client.get("/wechat", query_string=good)
    assert response.status_code == 200 and response.data == b"hello-42"
    bad = {**good, "signature": "f" * 40}
    response = client.get("/wechat", query_string=bad)
    assert response.status_code == 403 and b"hello-42" not in response.data


# --------------------------------------------------------------------------- refusals


def test_wrong_signature_gets_403(wechat):
    response, _ = wechat.post(text_xml("o-sig", "帮助"), signature="0" * 40)
    assert response.status_code == 403


def test_stale_timestamp_gets_403_but_a_prompt_retry_passes(wechat, clock):
    xml = text_xml("o-replay", "帮助", msg_id=777001)
    request = wechat.server.sign(xml, timestamp=int(clock()))
    first = wechat.client.post("/wechat", query_string=request.params, data=request.body)
    clock.now += 12  # WeChat's own retries come seconds later with the same signature
    retry = wechat.client.post("/wechat", query_string=request.params, data=request.body)
    assert first.status_code == retry.status_code == 200
    assert first.data == retry.data
    clock.now += 400  # a replay long after
    replay = wechat.client.post("/wechat", query_string=request.params, data=request.body)
    assert replay.status_code == 403


def test_body_over_64_kib_gets_413(wechat):
    xml = text_xml("o-big", "x" * (70 * 1024))
    response, _ = wechat.post(xml)
    assert response.status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        "<xml><ToUserName>unclosed",
        "not xml at all",
        "",
        "<xml><ToUserName><![CDATA[x]]></ToUserName></xml>",  # no MsgType
        "<other><MsgType>text</MsgType></other>",
    ],
    ids=["unclosed", "not-xml", "empty", "no-msgtype", "wrong-root"],
)
def test_malformed_xml_gets_400_without_traceback(wechat, body, caplog):
    caplog.set_level(logging.WARNING, logger="bot.webhook")
    response, _ = wechat.post(body)
    assert response.status_code == 400
    assert b"Traceback" not in response.data
    assert len([r for r in caplog.records if r.name == "bot.webhook"]) == 1


XML_BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId></xml>"""


@pytest.mark.parametrize("body", [XML_BOMB, EXTERNAL_ENTITY], ids=["bomb", "external-entity"])
@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
def test_entities_are_refused_with_400(wechat, body, aes):
    response, _ = wechat.post(body, aes=aes)
    assert response.status_code == 400
    assert b"root:" not in response.data and b"Traceback" not in response.data


# --------------------------------------------------------------------------- every message type


def _message(openid: str, msg_type: str, fields: str, msg_id: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>1700000000</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{fields}"
        f"<MsgId>{msg_id}</MsgId></xml>"
    )


MESSAGE_TYPES = {
    "image": "<PicUrl><![CDATA[http://x/p.jpg]]></PicUrl><MediaId><![CDATA[m1]]></MediaId>",
    "voice": "<MediaId><![CDATA[m2]]></MediaId><Format><![CDATA[amr]]></Format>",
    "video": "<MediaId><![CDATA[m3]]></MediaId><ThumbMediaId><![CDATA[t3]]></ThumbMediaId>",
    "shortvideo": "<MediaId><![CDATA[m4]]></MediaId><ThumbMediaId><![CDATA[t4]]></ThumbMediaId>",
    "location": "<Location_X>31.23</Location_X><Location_Y>121.47</Location_Y><Scale>15</Scale>"
                "<Label><![CDATA[上海]]></Label>",
    "link": "<Title><![CDATA[t]]></Title><Description><![CDATA[d]]></Description><Url><![CDATA[http://x]]></Url>",
    "file": "<Title><![CDATA[a.pdf]]></Title><FileKey><![CDATA[k]]></FileKey><FileMd5><![CDATA[m]]></FileMd5>"
            "<FileTotalLen>10</FileTotalLen>",
    "miniprogrampage": "<Title><![CDATA[t]]></Title><AppId><![CDATA[wx1]]></AppId>",
    "brand_new_type": "<Anything>1</Anything>",
}


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
@pytest.mark.parametrize("msg_type", sorted(MESSAGE_TYPES))
def test_every_message_type_gets_a_reply(wechat, msg_type, aes):
    reply = wechat.send(_message("o-types", msg_type, MESSAGE_TYPES[msg_type], 9_000 + len(msg_type)), aes=aes)
    assert reply["MsgType"] == "text"
    assert reply["ToUserName"] == "o-types"
    assert "帮助" in reply["Content"]


EVENTS = [
    ("subscribe", None, "绑定"),
    ("subscribe", "qrscene_store42", "绑定"),
    ("unsubscribe", None, None),
    ("SCAN", "store42", None),
    ("LOCATION", None, None),
    ("CLICK", "MENU_HELP", "可用指令"),
    ("CLICK", "NO_SUCH_KEY", None),
    ("VIEW", "https://example.com", None),
    ("TEMPLATESENDJOBFINISH", None, None),
    ("MASSSENDJOBFINISH", None, None),
    ("brand_new_event", None, None),
]


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "aes"])
@pytest.mark.parametrize("event,key,expected", EVENTS, ids=[f"{e}-{k}" for e, k, _ in EVENTS])
def test_every_event_gets_a_reply_or_success(wechat, event, key, expected, aes):
    reply = wechat.event("o-events", event, key, aes=aes)
    if expected is None:
        assert reply == "success"
    else:
        assert expected in reply


def test_healthz_reports_database_and_redis(app):
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "redis": "ok"}


def test_healthz_says_when_redis_is_down(settings, rules):
    from storage.redis import connect

    dead = connect("redis://127.0.0.1:1/0")
    app = create_app(settings, rules, redis_client=dead)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["database"] == "ok" and response.json["redis"].startswith("error")


def test_compatible_mode_body_with_both_plain_fields_and_encrypt(wechat, clock):
    """Compatible mode sends the plain fields beside Encrypt; the encrypted copy is the one read."""
    xml = text_xml("o-compat", "帮助", msg_id=313131, create_time=int(clock()))
    request = wechat.server.sign(xml, aes=True, timestamp=int(clock()))
    encrypt = xmltodict.parse(request.body)["xml"]["Encrypt"]
    body = xml.replace("</xml>", f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
    response = wechat.client.post("/wechat", query_string=request.params, data=body)
    assert response.status_code == 200
    assert "可用指令" in wechat.server.read_reply(response.data, request)["Content"]


def test_with_redis_down_members_still_get_an_answer(settings, rules, clock):
    from tests.factories import WeChatServer
    from storage.redis import connect

    dead = connect("redis://127.0.0.1:1/0")
    app = create_app(settings, rules, redis_client=dead, clock=clock)
    server = WeChatServer("test-token", "wx-test-appid")
    request = server.sign(text_xml("o-noredis", "你好", msg_id=606060), timestamp=int(clock()))
    response = app.test_client().post("/wechat", query_string=request.params, data=request.body)
    assert response.status_code == 200
    assert server.read_reply(response.data, request)["MsgType"] == "text"
