"""Issue 8, the rules file: whatever config.yaml holds, reading it ends in the rules or in a ConfigError.

A bad file is never a traceback (``rules check``) and never a 500 (a reload happens inside the
request that first sees the change): wrong encodings, forbidden characters, things that are not
files, alias bombs, values PyYAML cannot construct. A running bot refuses a bad file once, with
one log line, and keeps the last good rules.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from rules import DEFAULT_RULES_PATH, ConfigError, RulesHolder, load_rules, parse_rules
from rules.loading import MAX_FILE_BYTES

GOOD = DEFAULT_RULES_PATH.read_text(encoding="utf-8")


def _line_of(text: str, needle: str) -> int:
    return text.count("\n", 0, text.index(needle)) + 1


def _bomb(levels: int = 7, width: int = 10) -> str:
    """A "billion laughs": ``levels`` lists of ``width`` aliases of the list before (width**levels values)."""
    lines = ["  lol0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"  lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "laughs:\n" + "\n".join(lines) + "\n"


def _merge_bomb(levels: int = 7, width: int = 10) -> str:
    """The same with merge keys (``<<: [*m, *m, …]``), which PyYAML flattens by copying."""
    lines = ["  m0: &m0 {" + ", ".join(f"k{j}: v" for j in range(width)) + "}"]
    lines += [f"  m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * width) + "]}" for i in range(1, levels + 1)]
    return "merges:\n" + "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- files that are not rules


@dataclass(frozen=True)
class BadFile:
    """How to make the file (bytes, or a function of the path) and what the one-line error must say."""

    make: bytes | Callable[[Path], None]
    says: tuple[str, ...]
    line: int | None = None  # the line the error names


def _invalid_utf8() -> bytes:
    data = GOOD.encode("utf-8")
    at = data.index(b"min_spend: 20000")
    return data[:at] + b"\xff\xfe" + data[at:]


def case(name: str, make: bytes | str | Callable[[Path], None], *says: str, line: int | None = None):
    data = make.encode("utf-8") if isinstance(make, str) else make
    return pytest.param(BadFile(data, says, line), id=name)


def _in_good(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


SPEND, ZONE = "min_spend: 20000", "timezone: Asia/Shanghai"
SPEND_LINE, ZONE_LINE, END_LINE = _line_of(GOOD, SPEND), _line_of(GOOD, ZONE), GOOD.count("\n") + 1
SAVE_AS_UTF8 = ("not UTF-8", "save the file as UTF-8")
TOO_MANY = ("too many aliases/nodes", "alias expansion", "refused")

BAD_FILES = [
    # not UTF-8 text
    case("gbk", GOOD.encode("gbk"), *SAVE_AS_UTF8, line=_line_of(GOOD, "name: 缤纷卡")),
    case("utf-16", GOOD.encode("utf-16"), *SAVE_AS_UTF8, line=1),
    case("invalid-utf-8", _invalid_utf8(), *SAVE_AS_UTF8, "byte 0xff", line=SPEND_LINE),
    # characters YAML forbids
    case("nul-byte", _in_good(SPEND, "min_spend: 20\x00000"), "not valid YAML", "#x0000 is not allowed",
         line=SPEND_LINE),
    case("bell-character", _in_good("name: 钻石卡", "name: 钻石\x07卡"), "#x0007 is not allowed",
         line=_line_of(GOOD, "name: 钻石卡")),
    # not a file one can read
    case("directory", lambda path: path.mkdir(), "cannot read", "directory"),
    case("missing", lambda path: None, "cannot read", "No such file"),
    case("fifo", lambda path: os.mkfifo(path), "cannot read", "not a regular file"),
    case("symlink-loop", lambda path: path.symlink_to(path), "cannot read"),
    case("over-the-size-limit", GOOD + "#" * MAX_FILE_BYTES, "too large"),
    # YAML, but not a mapping of sections
    case("empty", b"", "top level must be a mapping"),
    case("a-list", "- just\n- a list\n", "top level must be a mapping"),
    case("two-documents", GOOD + "---\ntimezone: UTC\n", "not valid YAML"),
    # values PyYAML cannot construct (it raised ValueError / AttributeError for some)
    case("int-tag-on-text", _in_good(SPEND, "min_spend: !!int lots"), "cannot read this value", line=SPEND_LINE),
    case("timestamp-tag-on-text", _in_good(ZONE, "timezone: !!timestamp soon"), "cannot read this value",
         line=ZONE_LINE),
    case("5000-digit-number", _in_good(SPEND, "min_spend: " + "9" * 5000), "cannot read this value", line=SPEND_LINE),
    case("python-tag", _in_good(ZONE, "timezone: !!python/object/apply:os.system [id]"), "constructor",
         line=ZONE_LINE),
    # ZoneInfo raises OSError (file name too long) for this, not the ValueError the check expects
    case("timezone-10000-chars", _in_good(ZONE, "timezone: " + "Asia/" * 2000)),
    # documents that are small as written and huge as values
    case("nested-5000-deep", GOOD + "deep: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    case("alias-bomb", GOOD + _bomb(), *TOO_MANY),
    case("alias-bomb-30-levels", GOOD + _bomb(levels=30, width=2), *TOO_MANY),
    case("merge-key-bomb", GOOD + _merge_bomb(), *TOO_MANY),
    case("long-text-aliased", GOOD + "text: &t " + "x" * 100_000 + "\ncopies: [" + ", ".join(["*t"] * 100) + "]\n",
         *TOO_MANY),
    case("recursive-alias", GOOD + "loop: &loop [1, *loop]\n", "refers to its own anchor", line=END_LINE),
    case("recursive-mapping", GOOD + "loop: &loop {again: *loop}\n", "refers to its own anchor", line=END_LINE),
]


@pytest.mark.parametrize("bad", BAD_FILES)
def test_a_bad_file_is_one_config_error_naming_it(bad: BadFile, tmp_path):
    path = tmp_path / "config.yaml"
    if isinstance(bad.make, bytes):
        path.write_bytes(bad.make)
    else:
        bad.make(path)
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message and "Traceback" not in message
    for words in bad.says:
        assert words in message
    if bad.line is not None:
        assert message.startswith(f"{path}, line {bad.line}: "), message
    assert elapsed < 5, f"refused after {elapsed:.1f} s"  # a bomb is refused before anything expands it


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_a_config_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(GOOD, encoding="utf-8")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot read: Permission denied"):
        load_rules(path)


# --------------------------------------------------------------------------- what still works


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode("utf-8"))  # Notepad's "UTF-8"
    assert load_rules(path).tier("A").name == "尊荣钻石卡"


def test_modest_anchors_and_aliases_still_work():
    d_benefits = "[消费积分（每消费 1 元积 1 分）, 生日与节日祝福]"
    text = GOOD.replace(f"benefits: {d_benefits}", f"benefits: &basic {d_benefits}", 1)
    c_tier = text[text.index("  - id: C"):text.index("  - id: B")]
    c_benefits = next(line for line in c_tier.splitlines() if "benefits:" in line)
    text = text.replace(c_benefits, "    benefits: *basic", 1)
    rules = parse_rules(text)
    assert list(rules.tier("C").benefits) == list(rules.tier("D").benefits)
    assert list(rules.tier("C").benefits) == ["消费积分（每消费 1 元积 1 分）", "生日与节日祝福"]


def test_an_error_under_an_alias_names_the_line_where_it_is_used():
    text = GOOD.replace("points_valid_days: 730", "points_valid_days: &valid -5", 1)
    c_days = text.index("points_valid_days: 730", text.index("  - id: C"))
    text = text[:c_days] + "points_valid_days: *valid" + text[c_days + len("points_valid_days: 730"):]
    message = str(pytest.raises(ConfigError, parse_rules, text).value)
    assert f"line {_line_of(text, 'points_valid_days: &valid')}: tiers[0].points_valid_days" in message
    assert f"line {_line_of(text, 'points_valid_days: *valid')}: tiers[1].points_valid_days" in message


def test_the_shipped_rules_are_far_below_the_ceilings():
    from rules.loading import MAX_NODES, _LineLoader

    loader = _LineLoader(GOOD)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    count, stack = 0, [node]
    while stack:
        current = stack.pop()
        count += 1
        if isinstance(current.value, list):
            stack.extend(child for item in current.value for child in (item if isinstance(item, tuple) else (item,)))
    assert count * 10 < MAX_NODES
    assert len(GOOD.encode("utf-8")) * 10 < MAX_FILE_BYTES


# --------------------------------------------------------------------------- a running bot


def _bump(path: Path, seconds: int) -> None:
    """Give the file a new mtime (some file systems keep whole seconds)."""
    os.utime(path, ns=(time.time_ns(), time.time_ns() + seconds * 10**9))


def _refusals(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "rules reload" in r.getMessage() and r.levelno >= logging.ERROR]


@pytest.mark.parametrize("content", [
    pytest.param(GOOD.replace("max_failures: 5", "max_failures: 7").encode("gbk"), id="gbk"),
    pytest.param((GOOD + _bomb()).encode(), id="alias-bomb"),
    pytest.param(GOOD.replace("max_failures: 5", "max_failures: !!int x").encode(), id="int-tag"),
])
def test_a_bad_file_is_refused_once_and_the_last_good_rules_stay(content: bytes, tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text(GOOD, encoding="utf-8")
    holder = RulesHolder(path, check_every=0)
    good = holder.current
    path.write_bytes(content)
    _bump(path, 1)
    for _ in range(20):  # what 20 requests a second apart would do
        assert holder.current is good
    assert len(_refusals(caplog)) == 1, [r.getMessage() for r in _refusals(caplog)]
    assert "the last good rules stay in force" in _refusals(caplog)[0].getMessage()

    path.write_text(GOOD.replace("max_failures: 5", "max_failures: 8"), encoding="utf-8")
    _bump(path, 2)
    assert holder.current.binding.max_failures == 8


def test_sixteen_requests_at_once_see_the_old_rules_and_one_log_line(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text(GOOD, encoding="utf-8")
    holder = RulesHolder(path, check_every=0)
    good = holder.current
    path.write_bytes(GOOD.encode("gbk"))
    _bump(path, 1)
    seen, errors = [], []
    start = threading.Barrier(16)

    def request() -> None:
        start.wait()
        try:
            seen.append(holder.current)
        except Exception as exc:  # a 500 in the bot
            errors.append(exc)

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == [] and len(seen) == 16 and all(rules is good for rules in seen)
    assert len(_refusals(caplog)) == 1


def test_an_unexpected_error_in_a_reload_keeps_the_rules_and_is_logged_once(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text(GOOD, encoding="utf-8")
    calls = []

    def validate(rules) -> None:
        calls.append(rules)
        raise RuntimeError("a bug in a check")

    holder = RulesHolder(path, check_every=0, validate=validate)
    good = holder.current
    path.write_text(GOOD.replace("max_failures: 5", "max_failures: 6"), encoding="utf-8")
    _bump(path, 1)
    for _ in range(5):
        assert holder.current is good
    assert len(calls) == 1
    refused = _refusals(caplog)
    assert len(refused) == 1 and refused[0].exc_info is not None  # the traceback goes to the log


def test_a_failing_listener_does_not_undo_the_reload(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text(GOOD, encoding="utf-8")
    holder = RulesHolder(path, check_every=0)
    holder.on_reload(lambda rules: 1 / 0)
    path.write_text(GOOD.replace("max_failures: 5", "max_failures: 6"), encoding="utf-8")
    _bump(path, 1)
    assert holder.current.binding.max_failures == 6
    assert any("ZeroDivisionError" in (r.exc_text or "") or r.exc_info for r in caplog.records
               if "after the rules were reloaded" in r.getMessage())


def test_a_reload_asked_for_during_a_reload_does_not_wait_and_is_not_lost(tmp_path):
    """SIGHUP runs its handler in the main thread, possibly in the middle of a reload there."""
    path = tmp_path / "config.yaml"
    path.write_text(GOOD, encoding="utf-8")
    reads = []
    holder: RulesHolder | None = None

    def validate(rules) -> None:
        reads.append(rules.binding.max_failures)
        if len(reads) == 1:
            path.write_text(GOOD.replace("max_failures: 5", "max_failures: 9"), encoding="utf-8")
            assert holder.reload() is False  # as the signal handler would: returns at once
    holder = RulesHolder(path, check_every=3600, validate=validate)
    path.write_text(GOOD.replace("max_failures: 5", "max_failures: 6"), encoding="utf-8")
    assert holder.reload() is True
    assert reads == [6, 9] and holder.current.binding.max_failures == 9


def test_the_webhook_keeps_answering_while_a_gbk_file_is_in_place(settings, redis_client, clock, tmp_path, caplog):
    """The issue's scene: the admin saves config.yaml as GBK under a running bot (4 of 16 replies were 500)."""
    from bot.app import create_app
    from bot.settings import Settings
    from tests.conftest import WeChat

    path = tmp_path / "config.yaml"
    path.write_text(GOOD, encoding="utf-8")
    app = create_app(Settings(**{**settings.__dict__, "rules_path": path}), redis_client=redis_client, clock=clock)
    state = app.extensions["bot"]
    state.rules_holder._check_every = 0  # look at the file on every message
    try:
        wechat = WeChat(app.test_client(), clock)
        path.write_bytes(GOOD.encode("gbk"))
        _bump(path, 1)
        replies = [wechat.text(f"o-reader-{n}", "帮助") for n in range(16)]  # each asserts a 200
        assert all("可用指令" in reply for reply in replies)
        assert len(_refusals(caplog)) == 1
    finally:
        state.executor.shutdown(wait=True)
        state.db.dispose()
