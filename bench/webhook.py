"""Benchmark: the `积分` answer against a floor app and a plain hand-written bot, in one run.

Builds (once, cached under bench/data/) a SQLite database of bound members with ledger entries
(default 1,000 members, 10 entries each), starts a private redis-server, then for plain and AES
mode drives gunicorn (2 workers) running three apps with wrk at 32 connections:
the floor (bench/floor_app.py: verifies, parses, answers a fixed text), a plain Flask + wechatpy
bot (bench/plain_bot.py: replay window, Redis de-duplication with a cached reply, one balance
query) and this bot. Every request is a distinct signed message (its own MsgId). Prints
requests per second, p50 and p99 for each, and the bot / floor, plain / floor and bot / plain ratios.

    .venv/bin/python bench/webhook.py [--duration 15] [--connections 32] [--members 1000]
"""
from __future__ import annotations

import argparse
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench.common import (  # noqa: E402
    DATA, ROOT, ensure_debian_package, free_port, redis_server, reuse_or_create, wait_for_http,
)
from bot.dev.wire import WeChatServer, text_xml  # noqa: E402

TOKEN, APPID, AES_KEY = "bench-token", "wx-bench", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
TIERS = [("D", 0.80), ("C", 0.12), ("B", 0.06), ("A", 0.02)]
LUA = r"""
local count = 0
function setup(thread)
  thread:set("id", count)
  count = count + 1
end
function init(args)
  local threads = tonumber(args[2])
  reqs, n, i = {}, 0, 0
  for line in io.lines(args[1]) do
    if n % threads == id then
      local tab = line:find("\t", 1, true)
      reqs[#reqs + 1] = wrk.format("POST", line:sub(1, tab - 1), {["Content-Type"] = "text/xml"}, line:sub(tab + 1))
    end
    n = n + 1
  end
end
function request()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end
"""


def build_database(path: Path, members: int, ledger_rows: int) -> None:
    """Members bound to WeChat, earn lots and redemptions, some purchases: bulk inserts."""
    started = time.monotonic()
    if reuse_or_create(path, members):
        return
    rng = random.Random(1)
    per_member = ledger_rows // members
    today = date.today()
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    member_rows, ledger_batch, purchase_rows = [], [], []
    entry_id = 0
    for member_id in range(1, members + 1):
        tier = rng.choices([t for t, _ in TIERS], [w for _, w in TIERS])[0]
        balance, lots = 0, []
        for k in range(per_member):
            entry_id += 1
            occurred = (datetime.now() - timedelta(days=rng.randrange(700))).isoformat(sep=" ")
            if k % 5 == 4 and balance > 50:
                spend = rng.randrange(1, balance // 2)
                ledger_batch.append((entry_id, member_id, "redeem", -spend, 0, None, occurred))
                balance -= spend
                for lot in sorted(lots, key=lambda lot: lot[5]):  # oldest expiry first, as the bot does
                    used = min(lot[4], spend)
                    lot[4] -= used
                    spend -= used
            else:
                amount = rng.randrange(50, 3000)
                expires = (today + timedelta(days=rng.randrange(1, 730))).isoformat()
                lots.append([entry_id, member_id, "earn", amount, amount, expires, occurred])
                balance += amount
        ledger_batch.extend(tuple(lot) for lot in lots)
        birthday = date(1960 + rng.randrange(45), rng.randrange(1, 13), rng.randrange(1, 29))
        member_rows.append((member_id, f"M{member_id:08d}", f"会员{member_id}", f"139{member_id:08d}",
                            birthday.isoformat(), birthday.month * 100 + birthday.day, tier,
                            f"bench-openid-{member_id}", now, 1, 0, 0, balance, now, now))
        if member_id % 2 == 0:
            purchase_rows.append((member_id, f"RCPT{member_id}", member_id, rng.randrange(100, 60000),
                                  (datetime.now() - timedelta(days=rng.randrange(700))).isoformat(sep=" "),
                                  "S1", 0, now))
        if len(ledger_batch) >= 100_000 or member_id == members:
            conn.executemany(
                "INSERT INTO members (id, card_no, name, phone, birthday, birthday_md, tier, openid, bound_at,"
                " subscribed, opted_out, unreachable, points_balance, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", member_rows)
            conn.executemany(
                "INSERT INTO ledger (id, member_id, kind, amount, remaining, expires_on, occurred_at)"
                " VALUES (?,?,?,?,?,?,?)", ledger_batch)
            conn.executemany(
                "INSERT INTO purchases (id, receipt_no, member_id, amount, purchased_at, store, points_earned,"
                " created_at) VALUES (?,?,?,?,?,?,?,?)", purchase_rows)
            conn.commit()
            member_rows, ledger_batch, purchase_rows = [], [], []
    conn.execute("ANALYZE")
    conn.close()
    print(f"built {path}: {members:,} members, {entry_id:,} ledger entries in {time.monotonic() - started:.0f} s",
          flush=True)


def write_requests(path: Path, count: int, members: int, aes: bool) -> None:
    """One signed (and in AES mode encrypted) 积分 message per line: 'path<TAB>body'."""
    server = WeChatServer(TOKEN, APPID, AES_KEY)
    base_id = int(time.time() * 1000) * 1000
    order = random.Random(2).sample(range(1, members + 1), min(count, members))
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            member = order[n % len(order)]
            signed = server.sign(text_xml(f"bench-openid-{member}", "积分", msg_id=base_id + n), aes=aes)
            out.write(f"/wechat?{urlencode(signed.params)}\t{signed.body.decode()}\n")


def check_answer(url: str, members: int, aes: bool) -> None:
    server = WeChatServer(TOKEN, APPID, AES_KEY)
    signed = server.sign(text_xml(f"bench-openid-{members}", "积分"), aes=aes)
    reply = server.read_reply(requests.post(url + "/wechat", params=signed.params, data=signed.body).content, signed)
    if "当前积分" not in reply["Content"]:
        raise SystemExit(f"unexpected answer from {url}: {reply}")


def wrk(url: str, requests_file: Path, duration: int, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url,
         "--", str(requests_file), "2"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": _millis(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99": _millis(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        "requests": total,
        "errors": int(errors.group(1)) if errors else 0,
    }


def workers_cpu(server: subprocess.Popen) -> float:
    """CPU seconds (user + system) used so far by the gunicorn workers of ``server``."""
    total = 0.0
    for child in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = child.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == server.pid:  # ppid; utime and stime follow at 11 and 12
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _millis(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def gunicorn(app: str, port: int, env: dict[str, str], cwd: Path, worker_class: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-k", worker_class, "-b", f"127.0.0.1:{port}",
         "--backlog", "2048", app],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000)
    parser.add_argument("--ledger", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class for both apps")
    args = parser.parse_args()
    ensure_debian_package("wrk", "wrk")
    DATA.mkdir(parents=True, exist_ok=True)
    database = DATA / f"webhook-{args.members}.sqlite3"
    build_database(database, args.members, args.ledger)
    with database.open("rb") as warm:  # into the page cache: the first run must not pay for disk reads
        while warm.read(1 << 24):
            pass

    results = {}
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure: say so
    with redis_server() as redis_url, tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "requests.lua"
        script.write_text(LUA)
        env = {**os.environ, "WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_SECRET": "bench",
               "WECHAT_AES_KEY": AES_KEY, "DATABASE_URL": f"sqlite:///{database}", "REDIS_URL": redis_url,
               "LOG_LEVEL": "WARNING"}
        ports = {"floor": free_port(), "plain": free_port(), "bot": free_port()}
        servers = [gunicorn("floor_app:app", ports["floor"], env, ROOT / "bench", args.worker_class),
                   gunicorn("plain_bot:app", ports["plain"], env, ROOT / "bench", args.worker_class),
                   gunicorn("wsgi:app", ports["bot"], env, ROOT, args.worker_class)]
        try:
            for port in ports.values():
                wait_for_http(f"http://127.0.0.1:{port}/")
            for mode in ("plain", "aes"):
                aes = mode == "aes"
                requests_file = Path(scratch) / f"{mode}.txt"
                budget = int(args.duration * 4000)  # more distinct messages than either app can take
                write_requests(requests_file, budget, args.members, aes)
                for name, port in ports.items():
                    url = f"http://127.0.0.1:{port}"
                    check_answer(url, args.members, aes)
                    cpu_before = workers_cpu(servers[list(ports).index(name)])
                    results[(mode, name)] = result = wrk(url, requests_file, args.duration, args.connections, script)
                    result["cpu_us"] = (workers_cpu(servers[list(ports).index(name)]) - cpu_before) / result["requests"] * 1e6
                    if name != "floor" and result["requests"] > budget:  # the floor has no dedup: repeats cost the same
                        print(f"note: {name}/{mode} sent {result['requests']} requests, more than the "
                              f"{budget} distinct messages prepared; repeats were answered from the dedup cache")
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)

    print(f"\n{args.members:,} members, {args.ledger:,} ledger entries, gunicorn 2 × {args.worker_class} workers, "
          f"{args.connections} connections, {args.duration} s each, {os.cpu_count()} cores; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (this run adds about 3)\n")
    print(f"{'mode':6} {'app':6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'server CPU µs/msg':>18}")
    for (mode, name), r in results.items():
        print(f"{mode:6} {name:6} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['errors']:7d} {r['cpu_us']:18.0f}")
    for mode in ("plain", "aes"):
        rps = {name: results[(mode, name)]["rps"] for name in ("floor", "plain", "bot")}
        print(f"{mode}: bot / floor {rps['bot'] / rps['floor']:.2f}× (aim ≥ 0.5×), plain / floor "
              f"{rps['plain'] / rps['floor']:.2f}×, bot / plain {rps['bot'] / rps['plain']:.2f}× (aim ≥ 1), "
              f"bot p99 {results[(mode, 'bot')]['p99']:.1f} ms (aim < 40 ms)")


if __name__ == "__main__":
    main()
