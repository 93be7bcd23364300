"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, installed by scripts/test).

One browser and one live server for the module. Screenshots of every panel are saved under
instance/screenshots/dashboard/ (README: Dashboard). The browser's console is read for violations of
the Content-Security-Policy: the pages must run under it without one, charts styled.
"""
from __future__ import annotations

import csv
import os
import shutil
import threading
import time
from decimal import Decimal
from pathlib import Path

import fakeredis
import pytest
from werkzeug.serving import make_server

from bot.admin.panels import PANELS
from bot.app import create_app
from bot.settings import Settings
from rules import DEFAULT_RULES_PATH
from storage.db import Database
from storage.migrate import upgrade
from tests.conftest import ROOT, free_port
from tests.dashboard_seed import NOW, PASSWORD, expected, seed, with_past_events

SCREENSHOTS = ROOT / "instance" / "screenshots" / "dashboard"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _need_browser() -> None:
    if CHROMIUM and DRIVER:
        return
    message = "chromium and chromedriver are not installed: run the suite with scripts/test, which installs them"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory, base_rules):
    """The bot on a seeded SQLite database, served on a free loopback port; yields (base URL, app)."""
    base_rules = with_past_events(base_rules)
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'bot.sqlite3'}"
    db = Database(url)
    upgrade(db)
    db.dispose()
    settings = Settings(wechat_token="t", wechat_appid="wx-test", wechat_secret="s", database_url=url,
                        rules_path=DEFAULT_RULES_PATH)
    app = create_app(settings, base_rules, redis_client=fakeredis.FakeRedis(decode_responses=True),
                     clock=lambda: NOW.timestamp())
    with app.extensions["bot"].db.write() as session:
        seed(session, base_rules)
    port = free_port()
    http = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", app
    http.shutdown()
    app.extensions["bot"].db.dispose()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1800", "--lang=zh-CN"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.downloads = downloads
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def sign_in(driver, base: str, staff_id: str) -> None:
    driver.delete_all_cookies()
    driver.get(base + "/admin/login")
    driver.find_element("id", "staff_id").send_keys(staff_id)
    driver.find_element("id", "password").send_keys(PASSWORD)
    driver.find_element("id", "login").click()
    wait_until(driver, lambda d: not d.current_url.startswith(base + "/admin/login"))


def wait_until(driver, condition) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 15).until(condition)


def table_cells(driver, key: str) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#table-' + arguments[0] + ' tbody tr:not(.total)')]"
        ".map(r => [...r.cells].map(c => c.textContent.trim()))", key)


def shown(value: object) -> str:
    """A figure as the page shows it, without thousands separators."""
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return str(value)


def test_without_a_session_every_dashboard_page_sends_the_browser_to_sign_in(server, browser):
    base, _ = server
    browser.delete_all_cookies()
    for path in ["/admin", "/admin/", *(f"/admin/{name}" for name in PANELS), "/admin/points/by_month.csv"]:
        browser.get(base + path)
        assert browser.current_url.startswith(base + "/admin/login?next="), path
        assert browser.find_element("id", "login").text == "登录"


def test_a_supervisor_sees_every_panel_with_the_databases_figures(server, browser):
    base, app = server
    sign_in(browser, base, "S1")
    assert browser.current_url == base + "/admin/members"
    with app.extensions["bot"].db.read() as session:
        want = expected(session, app.extensions["bot"].rules)
    for name in PANELS:
        browser.get(f"{base}/admin/{name}")
        assert browser.find_element("id", "panel-title").text
        browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        assert browser.execute_script("return document.querySelectorAll('.chart svg').length") >= 1
        for key, rows in want[name].items():
            page = [[cell.replace(",", "") for cell in row] for row in table_cells(browser, key)]
            assert page == [[shown(v) for v in row] for row in rows], (name, key)
    browser.get(f"{base}/admin/points?from=2026-01-01&to=2026-06-30")
    assert [row[0] for row in table_cells(browser, "by_month")] == [f"2026-0{m}" for m in range(1, 7)]


def test_a_csv_download_holds_the_table(server, browser):
    base, app = server
    sign_in(browser, base, "S1")
    browser.get(f"{base}/admin/pushes")
    browser.find_element("id", "csv-by_job").click()
    deadline = time.monotonic() + 20
    files: list[Path] = []
    while time.monotonic() < deadline:
        files = [f for f in browser.downloads.iterdir() if f.suffix == ".csv"]
        if files:
            break
        time.sleep(0.1)
    assert files, "no CSV downloaded"
    with files[0].open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    with app.extensions["bot"].db.read() as session:
        want = expected(session, app.extensions["bot"].rules)["pushes"]["by_job"]
    assert rows[0][:3] == ["推送任务", "月份", "计划"]
    assert rows[1:-1] == [[str(v) for v in row] for row in want]
    assert rows[-1][0] == "合计" and int(rows[-1][2]) == sum(row[2] for row in want)


def test_a_manager_sees_their_key_accounts_and_cannot_open_another_managers(server, browser):
    base, app = server
    sign_in(browser, base, "M1")
    browser.get(f"{base}/admin/members")
    total = browser.find_element("css selector", "#table-by_tier tr.total").text.split()
    assert total[:2] == ["合计", "12"]
    browser.save_screenshot(str(SCREENSHOTS / "manager-members.png"))
    browser.get(f"{base}/admin/members?manager=M2")
    assert browser.find_element("id", "refused-title").text == "无权访问"
    assert "客户经理 M2 的数据仅主管和管理员可以查看" in browser.find_element("id", "refused").text
    browser.find_element("id", "back").click()
    wait_until(browser, lambda d: d.current_url == f"{base}/admin/members")
    assert browser.find_element("css selector", "#table-by_tier tr.total").text.split()[:2] == ["合计", "12"]
    browser.find_element("id", "logout").click()
    wait_until(browser, lambda d: d.current_url.startswith(base + "/admin/login"))
    browser.get(f"{base}/admin/members")
    assert browser.current_url.startswith(base + "/admin/login?next=")


def policy_violations(driver) -> list[str]:
    """What the console said about the Content-Security-Policy since it was last read."""
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


def test_every_page_runs_under_the_policy_with_its_charts_styled(server, browser):
    base, app = server
    policy_violations(browser)
    browser.delete_all_cookies()
    browser.get(base + "/admin/login")
    assert policy_violations(browser) == []
    sign_in(browser, base, "S1")
    tier_a = app.extensions["bot"].rules.dashboard.tier_colours["A"].lstrip("#")
    for name in PANELS:
        browser.get(f"{base}/admin/{name}")
        assert browser.execute_script("return document.querySelectorAll('script').length") == 0, name
        sizes = browser.execute_script("return [...document.querySelectorAll('.chart svg')]"
                                       ".map(s => s.getBoundingClientRect().height)")
        assert sizes and min(sizes) > 100, (name, sizes)
        # The page's own inline style applies (the header's dark band), and so do the charts' (pygal's colours).
        assert browser.execute_script("return getComputedStyle(document.querySelector('header')).backgroundColor") \
            == "rgb(43, 47, 58)", name
        assert policy_violations(browser) == [], name
    browser.get(f"{base}/admin/members")
    fill = browser.execute_script(
        "return getComputedStyle(document.querySelector('.chart svg .series.color-0 rect')).fill")
    assert fill == "rgb({}, {}, {})".format(*(int(tier_a[i:i + 2], 16) for i in (0, 2, 4)))
    browser.get(f"{base}/admin/points?from=0001-01-01&to=0001-12-31")
    assert browser.find_element("id", "refused-title").text == "无法显示：查询条件有误"
    assert "开始日期 0001-01-01 超出可查询的范围" in browser.find_element("id", "refused").text
    assert policy_violations(browser) == []
    browser.find_element("id", "back").click()
    wait_until(browser, lambda d: d.current_url == f"{base}/admin/points")


def test_the_policy_stops_injected_script_and_framing(server, browser):
    base, _ = server
    sign_in(browser, base, "S1")
    browser.get(f"{base}/admin/complaints")
    policy_violations(browser)
    ran = browser.execute_script("const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
                                 "document.body.appendChild(s); return window.ran === 1")
    assert ran is False
    assert any("script-src 'none'" in message for message in policy_violations(browser))
    other_site = base.replace("127.0.0.1", "localhost")  # another origin, framing the dashboard
    browser.get(f"{other_site}/wechat")
    browser.execute_script("const f = document.createElement('iframe'); f.src = arguments[0];"
                           "document.body.appendChild(f)", f"{base}/admin/complaints")
    said: list[str] = []
    wait_until(browser, lambda d: said.extend(policy_violations(d)) or any("frame-ancestors 'none'" in m for m in said))
    frame = browser.find_element("tag name", "iframe")
    browser.switch_to.frame(frame)
    assert "会员计划看板" not in browser.page_source  # the dashboard is not drawn inside another site
    browser.switch_to.default_content()
