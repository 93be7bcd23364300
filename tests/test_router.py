"""Routing is data: exact words, prefixes with arguments, regexes and menu clicks from config.yaml."""
from __future__ import annotations

import pytest

from bot.router import Match, Router


@pytest.fixture
def router(rules_with, base_rules) -> Router:
    routes = [r.model_dump() for r in base_rules.routes] + [
        {"handler": "help", "prefix": ["查询"], "regex": [r"^#(\d{4})$"]},
        {"handler": "unbind", "prefix": ["查询明细"]},
    ]
    return Router(rules_with(routes=routes))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("绑定", Match("bind")),
        ("  BIND  ", Match("bind")),
        ("绑定 D0000001 13800000001", Match("bind", "D0000001 13800000001")),
        ("绑定D0000001 13800000001", Match("bind", "D0000001 13800000001")),  # no space after Chinese
        ("bind D0000001 138", Match("bind", "D0000001 138")),
        ("binder", None),  # an English prefix needs the space
        ("查询明细 3", Match("unbind", "3")),  # the longest prefix wins
        ("查询 3", Match("help", "3")),
        ("#2026", Match("help", "2026")),
        ("#20266", None),
        ("帮助", Match("help")),
        ("？", Match("help")),
        ("随便说说", None),
    ],
)
def test_text_routing(router, text, expected):
    assert router.match_text(text) == expected


def test_menu_clicks(router):
    assert router.match_click("MENU_BIND") == Match("bind")
    assert router.match_click("UNKNOWN") is None


def test_cancel_words(router):
    assert router.is_cancel(" 取消 ") and router.is_cancel("CANCEL") and not router.is_cancel("取消绑定")
