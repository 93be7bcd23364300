"""The dialog engine (ask, validate, confirm; 取消; TTL) and the guards, through the real webhook."""
from __future__ import annotations

from typing import Any

import pytest

from bot.app import create_app
from bot.context import Context
from bot.dialogs import Ask, Flow, Invalid
from bot.guards import member_required, staff_required
from handlers import HANDLERS
from storage.members import add_staff
from tests.conftest import WeChat
from tests.factories import make_member, utc_now

TEXTS = {
    "seats_prompt": "几位？(1-3)",
    "seats_bad": "请回复 1 到 3 之间的数字，您回复的是“{answer}”。",
    "note_prompt": "有什么要备注的？",
    "seats_confirm": "{seats} 位，备注：{note}。回复“确认”提交。",
    "seats_done": "已登记 {seats} 位（{note}）。",
    "staff_hello": "您好，{name}。",
}


def _seats(text: str) -> dict[str, Any]:
    if text.strip() not in {"1", "2", "3"}:
        raise Invalid("seats_bad", answer=text.strip())
    return {"seats": int(text)}


SIGN_UP = Flow("sign_up", (Ask("seats", "seats_prompt", _seats), Ask("note", "note_prompt")),
               finish=lambda ctx, answers: ctx.text("seats_done", **answers), confirm="seats_confirm")


@member_required
def sign_up(ctx: Context) -> str | None:
    seats = ctx.args.split()[0] if ctx.args.split() else None
    return SIGN_UP.handle(ctx, seats=int(seats) if seats in {"1", "2", "3"} else None)


@staff_required("manager")
def staff_hello(ctx: Context) -> str:
    return ctx.text("staff_hello", name=ctx.staff.name)


@pytest.fixture
def wechat(settings, rules_with, redis_client, clock, monkeypatch):
    monkeypatch.setitem(HANDLERS, "sign_up", sign_up)
    monkeypatch.setitem(HANDLERS, "staff_hello", staff_hello)
    base = rules_with()
    routes = [  # first: the first match wins, and config.yaml routes 报名 to events' join
        {"handler": "sign_up", "exact": ["报名"], "prefix": ["报名"]},
        {"handler": "staff_hello", "exact": ["工作台"]},
    ] + [r.model_dump() for r in base.routes]
    # The test's texts join the messages as a capability's section would declare them.
    from rules.programme import Messages

    class WithTestTexts(Messages):
        seats_prompt: str
        seats_bad: str
        note_prompt: str
        seats_confirm: str
        seats_done: str
        staff_hello: str

    messages = WithTestTexts(**base.messages.model_dump(), **TEXTS)
    rules = base.model_copy(update={"routes": [type(base.routes[0])(**r) for r in routes], "messages": messages})
    app = create_app(settings, rules, redis_client=redis_client, clock=clock)
    yield WeChat(app.test_client(), clock)
    app.extensions["bot"].executor.shutdown(wait=True)
    app.extensions["bot"].db.dispose()


@pytest.fixture
def member(wechat, settings):
    from storage.db import Database

    db = Database(settings.database_url)
    with db.write() as session:
        m = make_member(session, openid="o-dialog")
        add_staff(session, "M7", "王经理", openid="o-manager", role="manager", now=utc_now())
        add_staff(session, "S7", "客服小李", openid="o-service", role="service", now=utc_now())
    db.dispose()
    return m


def test_asks_each_question_validates_and_confirms(wechat, member):
    assert wechat.text("o-dialog", "报名") == "几位？(1-3)"
    assert wechat.text("o-dialog", "五") == "请回复 1 到 3 之间的数字，您回复的是“五”。"
    assert wechat.text("o-dialog", "2") == "有什么要备注的？"
    assert wechat.text("o-dialog", "靠窗") == "2 位，备注：靠窗。回复“确认”提交。"
    assert wechat.text("o-dialog", "嗯") == "请回复“确认”继续，或回复“取消”退出。"  # still waiting
    assert wechat.text("o-dialog", "确认") == "已登记 2 位（靠窗）。"
    assert wechat.text("o-dialog", "确认") != "已登记 2 位（靠窗）。"  # the dialog is over


def test_answers_given_up_front_skip_their_questions(wechat, member):
    assert wechat.text("o-dialog", "报名 3") == "有什么要备注的？"
    assert wechat.text("o-dialog", "无") == "3 位，备注：无。回复“确认”提交。"
    assert wechat.text("o-dialog", "yes") == "已登记 3 位（无）。"


def test_cancel_and_keywords_leave_the_dialog(wechat, member):
    wechat.text("o-dialog", "报名")
    assert wechat.text("o-dialog", "取消") == "已取消。"
    assert "没有听懂" in wechat.text("o-dialog", "2")  # no dialog: plain text again
    wechat.text("o-dialog", "报名 1")
    assert "可用指令" in wechat.text("o-dialog", "帮助")
    assert "没有听懂" in wechat.text("o-dialog", "靠窗")


def test_guards(wechat, member):
    assert "请先绑定会员卡" in wechat.text("o-stranger", "报名")  # member_required
    assert wechat.text("o-manager", "工作台") == "您好，王经理。"
    assert wechat.text("o-service", "工作台") == "此功能仅限员工使用。"  # a role the handler does not take
    assert wechat.text("o-dialog", "工作台") == "此功能仅限员工使用。"  # a member, not staff


def test_a_confirmation_sent_twice_at_once_goes_on_once_and_both_are_answered(wechat, member, double_tap):
    wechat.text("o-dialog", "报名 2")
    wechat.text("o-dialog", "靠窗")
    replies = double_tap(wechat, "o-dialog", "确认")
    assert sorted(replies) == ["已收到您的确认，正在为您办理，请勿重复发送；办理结果见另一条回复。", "已登记 2 位（靠窗）。"]
