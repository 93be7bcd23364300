"""config.yaml: typed once, bad files named by file, line and path, reloaded while running."""
from __future__ import annotations

import os
import signal
import time

import pytest

from bot.settings import Settings
from rules import DEFAULT_RULES_PATH, ConfigError, RulesHolder, load_rules, parse_rules

GOOD = DEFAULT_RULES_PATH.read_text(encoding="utf-8")


def _line_of(text: str, needle: str, occurrence: int = 1) -> int:
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    return text.count("\n", 0, index) + 1


def test_the_shipped_rules_parse(base_rules):
    assert [t.id for t in base_rules.tiers] == ["D", "C", "B", "A"]
    assert base_rules.tier("A").name == "尊荣钻石卡"
    assert base_rules.messages.render("bind_already", card_no="X1") .startswith("您已绑定会员卡 X1")


def test_a_bad_value_names_file_line_and_path():
    bad = GOOD.replace("min_spend: 20000", "min_spend: -5", 1)
    with pytest.raises(ConfigError) as caught:
        parse_rules(bad, source="config.yaml")
    line = _line_of(bad, "min_spend: -5")
    assert f"config.yaml, line {line}: tiers[2].min_spend:" in str(caught.value)
    assert "greater than or equal to 0" in str(caught.value)


def test_a_missing_section_names_the_top_level():
    bad = GOOD.replace("binding:\n", "bindings:\n", 1)
    message = str(pytest.raises(ConfigError, parse_rules, bad).value)
    assert "binding: Field required" in message
    assert "bindings: Extra inputs are not permitted" in message


def test_broken_yaml_names_the_line():
    bad = GOOD.replace("timezone: Asia/Shanghai", "timezone: [Asia/Shanghai", 1)
    message = str(pytest.raises(ConfigError, parse_rules, bad, "x.yaml").value)
    assert message.startswith("x.yaml, line ") and "not valid YAML" in message


@pytest.mark.parametrize(
    "change,expected",
    [
        (("timezone: Asia/Shanghai", "timezone: Mars/Olympus"), "timezone: unknown time zone 'Mars/Olympus'"),
        (("min_spend: 5000", "min_spend: 60000"), "tiers: min_spend must rise from tier C to tier B"),
        (("    exact: [帮助", "    regex: ['(unclosed']\n    exact: [帮助"), "regex '(unclosed' does not compile"),
        (("  bind_success: \"{name}", "  bind_success: \"{name"), "messages.bind_success: bad placeholder"),
    ],
    ids=["timezone", "tier-order", "regex", "placeholder"],
)
def test_rule_errors_are_explained(change, expected):
    bad = GOOD.replace(*change, 1)
    assert expected in str(pytest.raises(ConfigError, parse_rules, bad).value)


def test_rules_check_cli(app, tmp_path):
    runner = app.test_cli_runner()
    good = runner.invoke(args=["rules", "check", str(DEFAULT_RULES_PATH)])
    assert good.exit_code == 0 and "OK" in good.output
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(GOOD.replace("max_failures: 5", "max_failures: 0"), encoding="utf-8")
    bad = runner.invoke(args=["rules", "check", str(bad_file)])
    assert bad.exit_code == 1
    assert f"{bad_file}, line {_line_of(bad_file.read_text(), 'max_failures: 0')}: binding.max_failures" in bad.output


def test_rules_check_refuses_unknown_handlers(app, tmp_path):
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(GOOD.replace("  - handler: unbind", "  - handler: unbindd"), encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["rules", "check", str(bad_file)])
    assert result.exit_code == 1 and "unknown handler(s): unbindd" in result.output


def test_a_changed_file_is_reloaded_and_a_bad_one_refused(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text(GOOD, encoding="utf-8")
    holder = RulesHolder(path, check_every=0)
    assert holder.current.binding.max_failures == 5

    path.write_text(GOOD.replace("max_failures: 5", "max_failures: 7"), encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert holder.current.binding.max_failures == 7

    path.write_text(GOOD.replace("max_failures: 5", "max_failures: nope"), encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert holder.current.binding.max_failures == 7  # the last good rules stay
    assert any("rules reload refused" in r.getMessage() and "binding.max_failures" in r.getMessage()
               for r in caplog.records)


def test_sighup_reloads_the_rules(settings, rules, redis_client, tmp_path):
    from bot.app import create_app

    path = tmp_path / "config.yaml"
    path.write_text(GOOD, encoding="utf-8")
    app = create_app(Settings(**{**settings.__dict__, "rules_path": path}), redis_client=redis_client)
    holder = app.extensions["bot"].rules_holder
    holder._check_every = 3600  # only the signal may trigger the reload here
    path.write_text(GOOD.replace("max_failures: 5", "max_failures: 9"), encoding="utf-8")
    os.kill(os.getpid(), signal.SIGHUP)
    assert holder.current.binding.max_failures == 9
    app.extensions["bot"].db.dispose()


def test_secrets_never_show_in_repr():
    settings = Settings.from_env({
        "WECHAT_TOKEN": "tok-SECRET", "WECHAT_APPID": "wx1", "WECHAT_SECRET": "sec-SECRET",
        "WECHAT_AES_KEY": "aes-SECRET", "REDIS_URL": "redis://x", "API_KEY": "api-SECRET",
    })
    assert "SECRET" not in repr(settings)


def test_production_needs_the_wechat_secrets():
    with pytest.raises(ConfigError, match="WECHAT_TOKEN, WECHAT_APPID, WECHAT_SECRET must be set"):
        Settings.from_env({"REDIS_URL": "redis://127.0.0.1"})


def test_load_rules_names_an_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


def test_the_cli_reports_a_bad_rules_file_in_force_without_a_traceback(tmp_path):
    import subprocess
    import sys

    bad_file = tmp_path / "config.yaml"
    bad_file.write_text(GOOD.replace("min_spend: 20000", "min_spend: lots"), encoding="utf-8")
    env = {**os.environ, "RULES_PATH": str(bad_file), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    env.pop("REDIS_URL", None)
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "rules", "check"],
                            cwd=DEFAULT_RULES_PATH.parent, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{bad_file}, line {_line_of(bad_file.read_text(), 'min_spend: lots')}: tiers[2].min_spend" in result.stderr
    assert "Traceback" not in result.stderr
