"""The webhook through a short database outage: a PostgreSQL server of this module's own, really stopped
and started again under a message. PostgreSQL only (an SQLite file has no server to stop).

An error answer (系统繁忙) is not kept for the MsgId: WeChat's retry once the database is back gets the real
answer. A message that committed a change before failing is not run again by its retry.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.dialogs import DialogState
from storage.db import Database
from storage.migrate import upgrade
from storage.models import MemberChange, TicketEvent
from tests.conftest import _empty_postgres, free_port
from tests.factories import make_member, make_staff, text_xml

class Postgres:
    """A PostgreSQL server in a scratch folder, which tests stop and start."""

    def __init__(self, bin_dir: Path, folder: Path):
        self.bin_dir, self.folder, self.port = bin_dir, folder, free_port()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"), "-w", "-o",
                 f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                 "-c synchronous_commit=off -c full_page_writes=off", "start")
        self.running = True

    def stop(self) -> None:
        """A fast shutdown: sessions are ended and the server stops accepting connections."""
        self.run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        self.running = False


@pytest.fixture(scope="module")
def postgres():
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries:
        pytest.skip("PostgreSQL is not installed (scripts/test installs it)")
    folder = Path(tempfile.mkdtemp(prefix="mbot-outage."))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    server = Postgres(binaries[-1].parent, folder)
    server.run("initdb", "-D", str(folder / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    server.start()
    db = Database(server.url)
    upgrade(db)
    db.dispose()
    yield server
    if server.running:
        server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database_url(postgres) -> str:
    """The app of each test on this module's server, running and with empty tables."""
    if not postgres.running:
        postgres.start()
    db = Database(postgres.url)
    _empty_postgres(db)
    db.dispose()
    return postgres.url


def _binds(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(MemberChange).where(MemberChange.action == "bind"))


def test_a_busy_answer_while_postgresql_is_down_is_not_kept_for_the_retry(wechat, db, postgres, clock):
    with db.write() as session:
        make_member(session, card_no="P0000001", phone="13900000031")
    xml = text_xml("o-outage", "绑定 P0000001 13900000031", msg_id=616161, create_time=int(clock()))
    postgres.stop()
    try:
        first = wechat.send(xml)
    finally:
        postgres.start()
    assert first["Content"] == "系统繁忙，请稍后再试。"
    retry = wechat.send(xml)  # WeChat's retry of the same MsgId, the database back
    assert "绑定成功" in retry["Content"], retry
    assert wechat.send(xml) == retry  # the real answer is kept
    assert _binds(db) == 1


def test_the_retry_finds_the_dialog_as_the_failed_copy_found_it(wechat, db, postgres, clock, monkeypatch):
    with db.write() as session:
        make_member(session, card_no="P0000002", phone="13900000032")
    assert "会员卡号" in wechat.text("o-dialog", "绑定")
    assert "手机号" in wechat.text("o-dialog", "P0000002")
    end = DialogState.end

    def end_then_lose_the_database(dialog: DialogState) -> bool:
        closed = end(dialog)  # the answers are complete: the dialog closes, then the bind is written
        postgres.stop()
        return closed

    xml = text_xml("o-dialog", "13900000032", msg_id=626262, create_time=int(clock()))
    monkeypatch.setattr(DialogState, "end", end_then_lose_the_database)
    try:
        assert wechat.send(xml)["Content"] == "系统繁忙，请稍后再试。"
    finally:
        monkeypatch.setattr(DialogState, "end", end)
        postgres.start()
    retry = wechat.send(xml)  # the phone number is still the answer to the open question
    assert "绑定成功" in retry["Content"], retry
    assert _binds(db) == 1


def test_a_message_that_committed_its_change_before_failing_is_not_run_again(wechat, db, state, postgres,
                                                                          fake_wechat, monkeypatch, clock):
    with db.write() as session:
        make_staff(session, "S1", role="service", openid="o-s1", name="客服甲")
        make_member(session, name="张小敏", openid="o-d")
    wechat.text("o-d", "投诉 产品质量 项链断了")  # the member writes: their customer-service window is open
    ticket_no = wechat.text("o-d", "确认").split("单号 ")[1].split("。")[0]
    state.at_once.wait()  # the assignment alert, sent at once after the commit
    fake_wechat.http.post(fake_wechat.url + "/_reset")
    client = state.wechat
    send = client.send_text

    def send_then_lose_the_database(*args, **kwargs):
        sent = send(*args, **kwargs)  # the reply is recorded (committed) and sent; its delivery note fails
        postgres.stop()
        return sent

    xml = text_xml("o-s1", f"回复 {ticket_no} 请带项链到门店检测", msg_id=636363, create_time=int(clock()))
    monkeypatch.setattr(client, "send_text", send_then_lose_the_database)
    try:
        first = wechat.send(xml)["Content"]
    finally:
        monkeypatch.setattr(client, "send_text", send)
        postgres.start()
    # not 系统繁忙, which would have the staff send it again
    assert first == "您的操作已办理，但结果暂时无法显示，请勿重复操作，稍后再查询。"
    assert wechat.send(xml)["Content"] == first  # the retry does not run it again
    with db.read() as session:
        assert session.scalars(select(TicketEvent.body).where(TicketEvent.kind == "replied")).all() == \
            ["请带项链到门店检测"]
    [sent] = [m for m in fake_wechat.sent() if m["touser"] == "o-d"]  # once
    assert "请带项链到门店检测" in sent["text"]["content"]
