"""Benchmark: how soon a new complaint's assignee is alerted, with gunicorn alone (no scheduler, no drain).

A private redis-server, the WeChat API stand-in in its own process, a fresh SQLite database and gunicorn
with 2 sync workers running this bot. ``--complaints`` members (200) each file one complaint through the
real webhook (``投诉 产品质量 …`` then ``确认``, signed like WeChat), ``--clients`` (4) at a time; for each,
the time from sending ``确认`` to the stand-in recording the alert to the service desk. Before alerts left
at once they waited for the scheduler's next drain (``pushes.drain_every_seconds``, 60 s) — and, with
gunicorn alone, for ever.

    .venv/bin/python bench/alerts.py [--complaints 200] [--clients 4]
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench.common import ROOT, free_port, redis_server, wait_for_http  # noqa: E402
from bot.dev.wire import WeChatServer, text_xml  # noqa: E402

TOKEN, APPID, AES_KEY = "bench-token", "wx-bench", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def seed(url: str, members: int) -> None:
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.models import Member, Staff

    db = Database(url)
    upgrade(db)
    now = datetime.now(timezone.utc)
    with db.write() as session:
        session.add_all(Staff(id=f"S{n}", name=f"客服{n}", role="service", openid=f"bench-desk-{n}", created_at=now)
                        for n in range(2))
        session.add_all(Member(card_no=f"K{n:07d}", name=f"会员{n}", phone=f"136{n:08d}", tier="D",
                               openid=f"bench-member-{n}", points_balance=0, created_at=now, updated_at=now)
                        for n in range(members))
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--complaints", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, redis_server() as redis_url:
        database = f"sqlite:///{folder}/bench.sqlite3"
        seed(database, args.complaints)
        fake_port, bot_port = free_port(), free_port()
        fake = subprocess.Popen([sys.executable, "-c", f"from bot.dev.fake_wechat import serve_fake; "
                                 f"serve_fake('127.0.0.1', {fake_port})"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        env = {**os.environ, "DATABASE_URL": database, "REDIS_URL": redis_url, "WECHAT_TOKEN": TOKEN,
               "WECHAT_APPID": APPID, "WECHAT_SECRET": "bench", "WECHAT_AES_KEY": AES_KEY, "LOG_LEVEL": "WARNING",
               "WECHAT_API_BASE": f"http://127.0.0.1:{fake_port}/cgi-bin/"}
        bot = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{bot_port}", "wsgi:app"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_http(f"http://127.0.0.1:{fake_port}/_stats")
            wait_for_http(f"http://127.0.0.1:{bot_port}/healthz")
            print(f"{args.complaints} complaints, {args.clients} at a time, gunicorn -w 2 alone (no scheduler)",
                  flush=True)
            delays = measure(bot_port, fake_port, args.complaints, args.clients)
        finally:
            for process in (bot, fake):
                process.terminate()
                process.wait(timeout=10)
    quantiles = statistics.quantiles(delays, n=100)
    print(f"确认 sent → assignee's alert at the stand-in: p50 {quantiles[49] * 1000:.0f} ms, "
          f"p99 {quantiles[98] * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms ({len(delays)} alerts)")


def measure(bot_port: int, fake_port: int, complaints: int, clients: int) -> list[float]:
    server, msg_ids = WeChatServer(TOKEN, APPID, AES_KEY), itertools.count(int(time.time() * 1000) * 1000)
    lock, sent_at = threading.Lock(), {}

    def say(http: requests.Session, openid: str, text: str) -> str:
        request = server.sign(text_xml(openid, text, msg_id=next(msg_ids)))
        answer = http.post(f"http://127.0.0.1:{bot_port}/wechat", params=request.params, data=request.body, timeout=30)
        return server.read_reply(answer.content, request)["Content"]

    def complain(n: int) -> None:
        with requests.Session() as http:
            say(http, f"bench-member-{n}", "投诉 产品质量 项链的搭扣断了")
            started = time.time()
            number = say(http, f"bench-member-{n}", "确认").split("单号 ")[1].split("。")[0]
            with lock:
                sent_at[number] = started

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(complain, range(complaints)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alerts = {m["data"]["keyword1"]["value"]: m["at"] for m in
                  requests.get(f"http://127.0.0.1:{fake_port}/_sent", timeout=30).json()
                  if m["touser"].startswith("bench-desk-")}
        if len(alerts) >= complaints:
            break
        time.sleep(0.2)
    missing = sorted(set(sent_at) - set(alerts))
    if missing:
        raise SystemExit(f"{len(missing)} alerts never arrived, e.g. {missing[:3]}")
    return [alerts[number] - started for number, started in sent_at.items()]


if __name__ == "__main__":
    main()
