"""Issue 8, what operators and callers see when something is wrong: one line, never a traceback or an HTML page.

- every command, run against a database that was never migrated (or is out of reach) or a Redis
  that cannot be reached, says so in one line naming the URL (password hidden), and what to run
  where that fixes it, and exits 1 (``bot.cli.common.reported``, applied to all commands);
- ``rules check`` of a file that is not valid rules says why in one line and exits 1;
- the app's error answers are JSON under /api/ and a short text elsewhere.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.app import create_app
from bot.settings import Settings
from rules import DEFAULT_RULES_PATH
from tests.conftest import ROOT

GOOD = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
UPGRADE = "flask --app wsgi db upgrade"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.fixture
def make_app(settings, rules, redis_client):
    """Build an app whose settings differ: ``make_app(database_url=…)``; the test Redis unless ``redis_url`` given."""
    apps = []

    def build(**changes):
        own_redis = "redis_url" in changes
        app = create_app(Settings(**{**settings.__dict__, **changes}), rules,
                         redis_client=None if own_redis else redis_client)
        apps.append(app)
        return app

    yield build
    for app in apps:
        state = app.extensions["bot"]
        state.executor.shutdown(wait=True)
        state.db.dispose()


def _one_line_error(result) -> str:
    """The command failed with exit 1 and said why in exactly one line on stderr, without a traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --------------------------------------------------------------------------- a database never migrated


def _commands(tmp_path: Path) -> list[list[str]]:
    purchases = tmp_path / "purchases.csv"
    purchases.write_text("receipt_no,card_no,amount,purchased_at,store\nR1,A0000001,100,2026-11-01T10:00:00,S1\n",
                         encoding="utf-8")
    return [
        ["members", "show", "A0000001"],
        ["members", "import", str(ROOT / "demo" / "members.csv")],
        ["staff", "add", "M001", "王经理"],
        ["purchases", "import", str(purchases)],
        ["points", "check"],
        ["push", "status"],
        ["push", "preview", "birthday", "--date", "2027-02-28"],
        ["push", "run", "birthday", "--date", "2027-02-28"],
        ["push", "requeue-unknown", "birthday", "--yes"],
    ]


COMMAND_IDS = ["members-show", "members-import", "staff-add", "purchases-import", "points-check", "push-status",
               "push-preview", "push-run", "push-requeue-unknown"]


@pytest.mark.parametrize("index", range(len(COMMAND_IDS)), ids=COMMAND_IDS)
def test_every_command_on_an_unmigrated_sqlite_file_says_run_db_upgrade(make_app, tmp_path, index):
    url = f"sqlite:///{tmp_path / 'never-migrated.sqlite3'}"
    app = make_app(database_url=url)
    line = _one_line_error(app.test_cli_runner().invoke(args=_commands(tmp_path)[index]))
    assert line.startswith(f"database {url} has no tables") and f"run `{UPGRADE}`" in line
    assert "no such table" in line


@pytest.fixture
def unmigrated_postgres_url(postgres_db):
    """A schema of its own on the test PostgreSQL server, with nothing in it (search_path set in the URL)."""
    with postgres_db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS never_migrated CASCADE; CREATE SCHEMA never_migrated"))
    base = postgres_db.engine.url.render_as_string(hide_password=False)
    yield base + ("&" if "?" in base else "?") + "options=-csearch_path%3Dnever_migrated"
    with postgres_db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA never_migrated CASCADE"))


@pytest.mark.parametrize("args", [["members", "show", "A0000001"], ["push", "status"]],
                         ids=["members-show", "push-status"])
def test_a_command_on_an_unmigrated_postgresql_database_says_run_db_upgrade(make_app, unmigrated_postgres_url, args):
    app = make_app(database_url=unmigrated_postgres_url)
    line = _one_line_error(app.test_cli_runner().invoke(args=args))
    assert "has no tables or an older schema" in line and "does not exist" in line and f"run `{UPGRADE}`" in line


def test_db_upgrade_then_works_on_a_url_with_percent_escapes(make_app, unmigrated_postgres_url):
    """Alembic reads its URL through ConfigParser, where a bare '%' (here %3D) used to be refused."""
    runner = make_app(database_url=unmigrated_postgres_url).test_cli_runner()
    upgraded = runner.invoke(args=["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    shown = runner.invoke(args=["members", "show", "A0000001"])
    assert shown.exit_code == 1 and shown.stderr.strip() == "no member with card A0000001"


def test_a_database_out_of_reach_is_one_line_without_its_password(make_app):
    app = make_app(database_url="postgresql+psycopg2://bot:s3cret-pw@127.0.0.1:1/bot")
    line = _one_line_error(app.test_cli_runner().invoke(args=["push", "status"]))
    assert line.startswith("database postgresql+psycopg2://bot:***@127.0.0.1:1/bot cannot be used: ")
    assert "s3cret-pw" not in line


# --------------------------------------------------------------------------- Redis out of reach


@pytest.mark.parametrize("url,shown,args", [
    ("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0", ["push", "run", "birthday", "--date", "2027-02-28"]),
    ("redis://:s3cret-pw@127.0.0.1:1/0", "redis://:***@127.0.0.1:1/0", ["push", "run", "birthday"]),
    ("redis://user:s3cret-pw@127.0.0.1:1/2", "redis://user:***@127.0.0.1:1/2", ["push", "run", "birthday"]),
    ("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0", ["members", "unlock", "A0000001"]),
], ids=["push-run", "password", "user-and-password", "members-unlock"])
def test_a_command_needing_an_unreachable_redis_says_so_in_one_line(make_app, url, shown, args):
    app = make_app(redis_url=url)
    line = _one_line_error(app.test_cli_runner().invoke(args=args))
    assert line.startswith(f"Redis at {shown} cannot be reached: ")
    assert "s3cret-pw" not in line


# --------------------------------------------------------------------------- rules check


def _bomb() -> str:
    lines = ['  l0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    return "laughs:\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize("content,says", [
    (GOOD.encode("gbk"), "not UTF-8 text"),
    (GOOD.replace("max_failures: 5", "max_failures: 5\x00").encode(), "#x0000 is not allowed"),
    ((GOOD + _bomb()).encode(), "too many aliases/nodes"),
    (GOOD.replace("max_failures: 5", "max_failures: !!int five").encode(), "cannot read this value"),
    (None, "is a directory"),
], ids=["gbk", "nul-byte", "alias-bomb", "int-tag", "directory"])
def test_rules_check_of_a_hostile_file_is_one_line_and_exit_1(app, tmp_path, content, says):
    path = tmp_path / "config.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    line = _one_line_error(app.test_cli_runner().invoke(args=["rules", "check", str(path)]))
    assert line.startswith(str(path)) and says in line


# --------------------------------------------------------------------------- the real command line


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "RULES_PATH")}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60)


def _said(result: subprocess.CompletedProcess) -> str:
    """Exit 1 and one line on stderr besides log lines, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1, result.stderr
    return lines[0]


SECRETS = {"WECHAT_TOKEN": "t", "WECHAT_APPID": "wx-a", "WECHAT_SECRET": "s"}


def test_flask_members_show_on_an_unmigrated_database(tmp_path, redis_url):
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    line = _said(_run(["members", "show", "A0000001"], DATABASE_URL=url, REDIS_URL=redis_url, **SECRETS))
    assert line == (f"database {url} has no tables or an older schema (no such table: members): run `{UPGRADE}`")


def test_flask_push_run_with_redis_out_of_reach(sqlite_url):
    line = _said(_run(["push", "run", "birthday", "--date", "2027-02-28"], DATABASE_URL=sqlite_url,
                      REDIS_URL="redis://127.0.0.1:1/0", **SECRETS))
    assert line.startswith("Redis at redis://127.0.0.1:1/0 cannot be reached: ")


def test_flask_rules_check_of_a_gbk_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(GOOD.encode("gbk"))
    line = _said(_run(["rules", "check", str(path)], DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}"))
    assert line.startswith(f"{path}, line ") and line.endswith("save the file as UTF-8")


def test_a_database_url_that_is_not_one_is_one_line():
    line = _said(_run(["push", "status"], DATABASE_URL="not a url"))
    assert line == "DATABASE_URL: Could not parse SQLAlchemy URL from given URL string"


# --------------------------------------------------------------------------- error answers of the app


@pytest.mark.parametrize("method,path,status,allow", [
    ("GET", "/api/nothing-here", 404, None),
    ("POST", "/api/nothing-here", 404, None),
    ("GET", "/api", 404, None),
    ("GET", "/api/purchases", 405, "POST"),
    ("DELETE", "/api/purchases", 405, "POST"),
    ("GET", "/api/purchases/R1/refund", 405, "POST"),
    ("GET", "/wechat/more", 404, None),
    ("PUT", "/wechat", 405, "POST"),
    ("DELETE", "/wechat", 405, "POST"),
    ("GET", "/nothing-here", 404, None),
    ("POST", "/healthz", 405, "GET"),
    ("GET", "/wechat", 403, None),  # unsigned
    ("POST", "/wechat", 413, None),  # over 64 KiB
], ids=lambda value: str(value))
def test_error_answers_are_json_under_api_and_short_text_elsewhere(app, method, path, status, allow):
    body = b"x" * (65 * 1024) if status == 413 else None
    response = app.test_client().open(path, method=method, data=body)
    assert response.status_code == status
    assert b"<!doctype html" not in response.data.lower() and b"<html" not in response.data.lower()
    assert len(response.data) < 200
    if path == "/api" or path.startswith("/api/"):
        assert response.is_json and isinstance(response.get_json()["error"], str)
    else:
        assert response.mimetype == "text/plain"
    if allow:
        assert allow in response.headers.get("Allow", "")


@pytest.mark.parametrize("path,json", [("/boom", False), ("/api/boom", True)])
def test_an_unexpected_error_is_a_short_500_and_a_logged_traceback(app, caplog, path, json):
    def boom():
        raise RuntimeError("a bug")

    app.add_url_rule(path, "boom", boom)
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get(path)
    assert response.status_code == 500
    assert b"a bug" not in response.data and b"Traceback" not in response.data and b"<html" not in response.data
    assert response.is_json if json else response.mimetype == "text/plain"
    assert any(record.exc_info and "a bug" in str(record.exc_info[1]) for record in caplog.records)
