"""The dashboard without a browser: sign-in and lockout, who sees what, every figure against the rows (both databases)."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.admin import COOKIE, last_months_start
from bot.admin.panels import PANELS, Request
from storage.logins import check_login
from storage.models import AdminSession, Staff
from storage.reports import Scope, month_spans, quarter_spans
from tests.dashboard_seed import FIRST, NOW, PASSWORD, TODAY, expected, seed, with_past_events


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


def login(client, staff_id="S1", password=PASSWORD, **headers):
    return client.post("/admin/login", data={"staff_id": staff_id, "password": password}, headers=headers)


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


def test_staff_password_is_stored_hashed_and_refused_for_service_staff(seeded, state):
    runner = seeded.test_cli_runner()
    result = runner.invoke(args=["staff", "password", "M1"], input="another secret\nanother secret\n")
    assert result.exit_code == 0, result.output
    assert "another secret" not in result.output
    with state.db.read() as session:
        stored = session.get(Staff, "M1").password_hash
    assert stored and "another secret" not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    refused = runner.invoke(args=["staff", "password", "V1", "--password", "long enough"])
    assert refused.exit_code == 1 and "role service" in refused.output
    short = runner.invoke(args=["staff", "password", "M1", "--password", "short"])
    assert short.exit_code == 1 and "at least 8" in short.output
    assert login(seeded.test_client(), "M1", "another secret").status_code == 302


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


def test_five_wrong_passwords_lock_the_id_for_fifteen_minutes(seeded, state, clock):
    client = seeded.test_client()
    for tries_left in (4, 3, 2, 1):
        answer = login(client, password="wrong password")
        assert answer.status_code == 401 and f"再错 {tries_left} 次".encode() in answer.data
    locked = login(client, password="wrong password")
    assert "已锁定".encode() in locked.data and "15 分钟".encode() in locked.data
    assert "已锁定".encode() in login(client).data  # the right password is refused while locked
    clock.now += 14 * 60
    assert login(client).status_code == 401
    clock.now += 61
    assert login(client).status_code == 302
    with state.db.read() as session:
        assert session.get(Staff, "S1").failed_logins == 0


def test_unknown_ids_and_staff_without_a_dashboard_cannot_sign_in(seeded, state):
    with state.db.write() as session:
        rules = state.rules.dashboard
        assert check_login(session, "nobody", PASSWORD, NOW, rules).staff is None
        assert check_login(session, "V1", PASSWORD, NOW, rules).staff is None
        assert check_login(session, "M1", PASSWORD, NOW, rules).staff.id == "M1"


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
