"""Fixtures: real Redis and PostgreSQL (started by scripts/test), SQLite per test, signed webhook calls."""
from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from bot.app import create_app
from bot.settings import Settings
from rules import DEFAULT_RULES_PATH, Rules, load_rules
from tests.factories import WeChatServer, event_xml, text_xml
from storage.db import Database
from storage.migrate import upgrade
from storage.models import Base

TOKEN = "test-token"
APPID = "wx-test-appid"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
API_KEY = "test-api-key"
ROOT = Path(__file__).resolve().parent.parent


def _need(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        message = f"{variable} is not set: run the suite with scripts/test, which starts Redis and PostgreSQL"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return value


@pytest.fixture(scope="session")
def base_rules() -> Rules:
    return load_rules(DEFAULT_RULES_PATH)


@pytest.fixture
def rules(base_rules: Rules) -> Rules:
    return base_rules


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _need("TEST_REDIS_URL")


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_db() -> Database:
    """One migrated PostgreSQL database for the session; tests empty its tables."""
    db = Database(_need("TEST_DATABASE_URL"))
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(db)
    yield db
    db.dispose()


def _empty_postgres(db: Database) -> None:
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
        db = Database(url)
        upgrade(db)
        db.dispose()
        return url
    pg = request.getfixturevalue("postgres_db")
    _empty_postgres(pg)
    return pg.engine.url.render_as_string(hide_password=False)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    db = Database(url)
    upgrade(db)
    db.dispose()
    return url


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The database for webhook tests; storage tests use ``db_url`` to cover both engines."""
    return sqlite_url


class Clock:
    """A settable clock (seconds since the epoch) for replay windows and dates."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def fake_wechat_server() -> str:
    """The WeChat API stand-in in its own process, reached over real HTTP; yields its base URL."""
    import subprocess
    import sys

    import requests

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", f"from bot.dev.fake_wechat import serve_fake; serve_fake('127.0.0.1', {port})"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url + "/_stats", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.05)
    yield url
    # SIGTERM: gunicorn stops its worker too (after --graceful-timeout 1 s); SIGKILL would orphan it.
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def gunicorn_serving(db_url: str, redis_url: str, **env: str):
    """The bot under gunicorn with two worker processes, on the test database and Redis (``env`` adds to the
    environment, e.g. ``WECHAT_API_BASE``); yields its base URL."""
    with gunicorn_served(db_url, redis_url, 2, **env) as (url, _master):
        yield url


@contextlib.contextmanager
def gunicorn_served(db_url: str, redis_url: str, workers: int, **env: str):
    """``gunicorn_serving`` with ``workers`` worker processes; yields its base URL and the master process."""
    import signal
    import subprocess
    import sys

    import requests

    port = free_port()
    environment = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, "REDIS_PREFIX": "test",
                   "WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_SECRET": "test-secret",
                   "WECHAT_AES_KEY": AES_KEY, "LOG_LEVEL": "WARNING", **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the workers go down with the master
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=5).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or workers still booting
            time.sleep(0.1)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("gunicorn did not start: " + process.stderr.read().decode()[-2000:])
    try:
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # any worker left behind


class FakeWeChat:
    """Talks to the stand-in's control endpoints."""

    def __init__(self, url: str):
        import requests

        self.url, self.http = url, requests.Session()
        self.api_base = url + "/cgi-bin/"

    def sent(self) -> list[dict]:
        return self.http.get(self.url + "/_sent").json()

    def fail(self, **behaviour) -> None:
        self.http.post(self.url + "/_fail", json=behaviour)

    def block(self, openid: str, errcode: int = 43004) -> None:
        self.http.post(self.url + "/_block", json={"openid": openid, "errcode": errcode})

    def expire_token(self) -> None:
        self.http.post(self.url + "/_expire_token")

    def stats(self) -> dict:
        return self.http.get(self.url + "/_stats").json()


@pytest.fixture
def fake_wechat(fake_wechat_server) -> FakeWeChat:
    fake = FakeWeChat(fake_wechat_server)
    fake.http.post(fake_wechat_server + "/_reset")
    return fake


@pytest.fixture
def settings(database_url: str, redis_url: str, fake_wechat_server: str, tmp_path) -> Settings:
    return Settings(
        wechat_token=TOKEN,
        wechat_appid=APPID,
        wechat_secret="test-secret",
        wechat_aes_key=AES_KEY,
        database_url=database_url,
        redis_url=redis_url,
        wechat_api_base=fake_wechat_server + "/cgi-bin/",
        api_key=API_KEY,
        redis_prefix="test",
        rules_path=DEFAULT_RULES_PATH,
    )


@pytest.fixture
def app(settings: Settings, rules: Rules, redis_client, clock):
    app = create_app(settings, rules, redis_client=redis_client, clock=clock)
    yield app
    state = app.extensions["bot"]
    state.executor.shutdown(wait=True)
    state.at_once.shutdown()  # the alerts and replies still on their way
    state.db.dispose()


@pytest.fixture
def state(app):
    return app.extensions["bot"]


@pytest.fixture
def db(state) -> Database:
    return state.db


class WeChat:
    """Plays the WeChat server against the app through Flask's test client."""

    def __init__(self, client, clock: Clock):
        self.client = client
        self.clock = clock
        self.server = WeChatServer(TOKEN, APPID, AES_KEY)
        self._msg_ids = itertools.count(int(clock() * 1000))

    def post(self, xml: str, aes: bool = False, **query):
        request = self.server.sign(xml, aes=aes, timestamp=int(self.clock()))
        params = {**request.params, **query}
        response = self.client.post("/wechat", query_string=params, data=request.body)
        return response, request

    def send(self, xml: str, aes: bool = False):
        """Post a message; return the reply fields (dict) or the plain text 'success'."""
        response, request = self.post(xml, aes=aes)
        assert response.status_code == 200, response.data
        return self.server.read_reply(response.data, request)

    def text(self, openid: str, content: str, aes: bool = False) -> str:
        """Send a text message; return the reply's text ('success' when there is none)."""
        reply = self.send(text_xml(openid, content, msg_id=next(self._msg_ids), create_time=int(self.clock())), aes=aes)
        return reply if isinstance(reply, str) else reply["Content"]

    def event(self, openid: str, event: str, key: str | None = None, aes: bool = False):
        reply = self.send(event_xml(openid, event, key, create_time=int(self.clock()) + next(self._msg_ids) % 1000), aes=aes)
        return reply if isinstance(reply, str) else reply.get("Content", reply)


@pytest.fixture
def points_stay_consistent(state):
    """`points check` passes after the test: every balance equals its ledger (use with usefixtures)."""
    yield
    from storage import ledger

    with state.db.read() as session:
        assert ledger.check_balances(session) == []


@pytest.fixture
def wechat(app, clock) -> WeChat:
    return WeChat(app.test_client(), clock)


_double_tap_ids = itertools.count(9_000_000_000)


@pytest.fixture
def double_tap(monkeypatch):
    """``double_tap(wechat, openid, content)``: the member sends ``content`` twice at the same moment — two
    messages, each with its own MsgId, posted from two threads through ``wechat``'s webhook — and both copies
    read the member's open dialog before either closes it. Returns the two reply texts ('success': none)."""
    from concurrent.futures import ThreadPoolExecutor

    from bot.dialogs import DialogState

    def send(wechat: WeChat, openid: str, content: str) -> list[str]:
        app, clock = wechat.client.application, wechat.clock
        together = threading.Barrier(2, timeout=5)
        end = DialogState.end

        def end_together(dialog: DialogState) -> bool:
            together.wait()  # the other copy has read the dialog too
            return end(dialog)

        def post(_: int) -> str:
            reply = WeChat(app.test_client(), clock).send(
                text_xml(openid, content, msg_id=next(_double_tap_ids), create_time=int(clock())))
            return reply if isinstance(reply, str) else reply["Content"]

        monkeypatch.setattr(DialogState, "end", end_together)
        try:
            with ThreadPoolExecutor(2) as pool:
                return list(pool.map(post, range(2)))
        finally:
            monkeypatch.setattr(DialogState, "end", end)

    return send


@pytest.fixture
def rules_with(base_rules: Rules):
    """Build rules that differ from config.yaml: ``rules_with(binding={"max_failures": 2})``."""

    def build(**sections) -> Rules:
        data = base_rules.model_dump(mode="json")
        for section, values in sections.items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **values}
            else:
                data[section] = values
        return Rules.model_validate(data)

    return build



class OwnRedis:
    """A redis-server of a test's own, without persistence, which the test may stop, restart (its data
    gone, on the same port) or pause with SIGSTOP (it accepts connections and answers nothing)."""

    def __init__(self, binary: str, folder: Path):
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(250):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        import signal

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self, down_seconds: float = 0.5) -> None:
        """Kill it and start an empty one on the same port after ``down_seconds``."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def pause(self) -> None:
        import signal

        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        import signal

        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def own_redis(tmp_path) -> OwnRedis:
    """A redis-server of this test's own (``OwnRedis``)."""
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/test installs it)")
    server = OwnRedis(binary, tmp_path)
    server.start()
    yield server
    server.stop()
