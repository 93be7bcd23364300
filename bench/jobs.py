"""Benchmark: the scheduled jobs' heavy steps on SQLite with 1,000,000 members.

Builds (once, cached under bench/data/) 1,000,000 members with realistic tiers and
birthdays and 5,000,000 ledger entries, then measures, each in its own process so its peak
memory is its own:

  - choosing a day's birthday audience (planning it into the outbox)   aim < 1 s
  - evaluating the retention segment for everyone (evaluate_all)       aim < 30 s
  - resetting points for 100,000 members (reset_points_bulk)           aim < 30 s
  - push throughput to the WeChat API stand-in, rate limit off         aim ≥ 1,000 messages/s

Database changes made by a measurement are rolled back (the push measurement works on a copy).

    .venv/bin/python bench/jobs.py [--members 1000000] [--pushes 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATA, ROOT, free_port, redis_server, reuse_or_create, wait_for_http  # noqa: E402

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 2, tzinfo=timezone.utc)  # 10:00 on TODAY in Shanghai
TIERS = [("D", 0.80), ("C", 0.13), ("B", 0.05), ("A", 0.02)]


def build(path: Path, members: int, per_member: int) -> None:
    """Bulk-insert members, ledger lots and redemptions, and purchases."""
    started = time.monotonic()
    if reuse_or_create(path, members):
        return
    rng = random.Random(3)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    entry_id = purchase_id = 0
    batch_members, batch_ledger, batch_purchases = [], [], []
    for member_id in range(1, members + 1):
        tier = rng.choices([t for t, _ in TIERS], [w for _, w in TIERS])[0]
        birthday = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
        lots = []
        for _ in range(per_member - 1):
            entry_id += 1
            amount = rng.randrange(10, 5000)
            expires = (TODAY + timedelta(days=rng.randrange(-30, 700))).isoformat()
            when = (datetime(2026, 11, 1) - timedelta(days=rng.randrange(900))).isoformat(sep=" ")
            lots.append([entry_id, member_id, "earn", amount, amount, expires, when])
        balance = sum(lot[3] for lot in lots)
        entry_id += 1
        spent = rng.randrange(1, balance)
        balance -= spent
        for lot in sorted(lots, key=lambda lot: lot[5]):  # the bot spends the soonest-expiring first
            used = min(lot[4], spent)
            lot[4] -= used
            spent -= used
        batch_ledger.extend(tuple(lot) for lot in lots)
        batch_ledger.append((entry_id, member_id, "redeem", -(sum(l[3] for l in lots) - balance), 0, None, now))
        bound = rng.random() < 0.7
        batch_members.append((member_id, f"M{member_id:09d}", f"会员{member_id}", f"1{member_id:010d}",
                              birthday.isoformat(), birthday.month * 100 + birthday.day, tier,
                              f"bench-{member_id}" if bound else None, 1, int(rng.random() < 0.03), 0, balance,
                              now, now))
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            purchase_id += 1
            batch_purchases.append((purchase_id, f"P{purchase_id}", member_id, rng.randrange(100, 30000),
                                    (datetime(2026, 11, 1) - timedelta(days=rng.randrange(1000))).isoformat(sep=" "),
                                    "S", now))
        if len(batch_ledger) >= 200_000 or member_id == members:
            conn.executemany("INSERT INTO members (id, card_no, name, phone, birthday, birthday_md, tier, openid,"
                             " subscribed, opted_out, unreachable, points_balance, created_at, updated_at)"
                             " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch_members)
            conn.executemany("INSERT INTO ledger (id, member_id, kind, amount, remaining, expires_on, occurred_at)"
                             " VALUES (?,?,?,?,?,?,?)", batch_ledger)
            conn.executemany("INSERT INTO purchases (id, receipt_no, member_id, amount, purchased_at, store,"
                             " points_earned, created_at) VALUES (?,?,?,?,?,?,0,?)", batch_purchases)
            conn.commit()
            batch_members, batch_ledger, batch_purchases = [], [], []
            print(f"  {member_id:,} members", end="\r", flush=True)
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    print(f"built {path}: {members:,} members, {entry_id:,} ledger entries, {purchase_id:,} purchases "
          f"in {time.monotonic() - started:.0f} s", flush=True)


# --------------------------------------------------------------------------- measurements (child processes)


def _rules():
    from rules import DEFAULT_RULES_PATH, Rules, load_rules

    rules = load_rules(DEFAULT_RULES_PATH)
    data = rules.model_dump(mode="json")
    data["pushes"].update(rate_limit_per_minute=0, quiet_hours=None, backoff_seconds=0, customer_service_window_hours=0)
    return Rules.model_validate(data)


def measure_birthday(path: str) -> dict:
    from scheduler.jobs.birthday import plan as plan_birthday
    from storage import outbox
    from storage.db import Database

    db, rules = Database(f"sqlite:///{path}"), _rules()
    with db._writer() as session:
        session.begin()
        started = time.perf_counter()
        plan = plan_birthday(session, rules, NOW)
        planned = sum(outbox.insert_audience(session, a, NOW) for a in plan.audiences)
        elapsed = time.perf_counter() - started
        session.rollback()
    return {"seconds": elapsed, "what": f"{planned:,} pushes planned for {TODAY}"}


def measure_evaluation(path: str) -> dict:
    from storage import tiers
    from storage.db import Database

    db, rules = Database(f"sqlite:///{path}"), _rules()
    with db._writer() as session:
        session.begin()
        started = time.perf_counter()
        stats = tiers.evaluate_all(session, rules, TODAY, now=NOW)
        elapsed = time.perf_counter() - started
        session.rollback()
    return {"seconds": elapsed, "what": f"{stats.members:,} members; retention {stats.segments.get('retention', 0):,}"}


def measure_reset(path: str, count: int) -> dict:
    from sqlalchemy import select

    from storage import ledger
    from storage.db import Database
    from storage.models import Member

    db = Database(f"sqlite:///{path}")
    with db._writer() as session:
        session.begin()
        chosen = select(Member.id).where(Member.points_balance > 0, Member.id % 10 == 3).limit(count)
        started = time.perf_counter()
        reset = ledger.reset_points_bulk(session, chosen, reason="bench", key_prefix="bench:", now=NOW)
        elapsed = time.perf_counter() - started
        session.rollback()
    return {"seconds": elapsed, "what": f"{reset:,} members reset"}


def measure_pushes(path: str, pushes: int, redis_url: str, api_base: str) -> dict:
    from sqlalchemy import select

    from bot.app import create_app
    from bot.settings import Settings
    from scheduler.delivery import drain
    from storage import outbox
    from storage.models import Member

    settings = Settings(wechat_token="t", wechat_appid="wx-bench", wechat_secret="s", database_url=f"sqlite:///{path}",
                        redis_url=redis_url, wechat_api_base=api_base, redis_prefix="bench")
    state = create_app(settings, _rules()).extensions["bot"]
    with state.db.write() as session:
        first = select(Member.id).where(Member.openid.is_not(None), Member.opted_out.is_(False)) \
            .order_by(Member.id).limit(pushes).subquery()
        audience = outbox.member_audience("bench", "throughput", Member.id.in_(select(first.c.id)),
                                          "birthday_greeting")
        planned = outbox.insert_audience(session, audience, state.now())
    started = time.perf_counter()
    stats = drain(state)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "what": f"{stats.sent:,} of {planned:,} sent, {stats.failed} failed",
            "rate": stats.sent / elapsed}


def child(kind: str, args: list[str]) -> None:
    result = {"birthday": lambda: measure_birthday(args[0]),
              "evaluation": lambda: measure_evaluation(args[0]),
              "reset": lambda: measure_reset(args[0], int(args[1])),
              "pushes": lambda: measure_pushes(args[0], int(args[1]), args[2], args[3])}[kind]()
    result["peak_mb"] = peak_mb()
    print(json.dumps(result))


def peak_mb() -> float:
    """This process's own peak resident memory in MB.

    Linux carries the parent's peak into ru_maxrss across fork+exec (the builder's peak would
    show up in every child), so read the address space's own high-water mark when there is one.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "LOG_LEVEL": "WARNING"})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--ledger-per-member", type=int, default=5)
    parser.add_argument("--reset", type=int, default=100_000)
    parser.add_argument("--pushes", type=int, default=20_000)
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"jobs-{args.members}.sqlite3"
    build(path, args.members, args.ledger_per_member)

    rows = [("birthday audience for a day", "< 1 s", run_child("birthday", str(path))),
            ("retention segment for everyone", "< 30 s", run_child("evaluation", str(path))),
            (f"reset points of {args.reset:,} members", "< 30 s", run_child("reset", str(path), str(args.reset)))]
    copy = DATA / "jobs-push-copy.sqlite3"
    shutil.copyfile(path, copy)
    port = free_port()
    fake = subprocess.Popen([sys.executable, "-c", f"from bot.dev.fake_wechat import serve_fake; serve_fake('127.0.0.1', {port})"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_stats")
        with redis_server() as redis_url:
            pushes = run_child("pushes", str(copy), str(args.pushes), redis_url, f"http://127.0.0.1:{port}/cgi-bin/")
        rows.append(("push throughput, rate limit off", "≥ 1,000/s", pushes))
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        copy.unlink(missing_ok=True)

    print(f"\n{args.members:,} members, {args.members * args.ledger_per_member:,} ledger entries, SQLite, "
          f"{os.cpu_count()} cores\n")
    print(f"{'measurement':36} {'aim':>10} {'result':>14} {'peak MB':>8}  detail")
    for name, aim, r in rows:
        figure = f"{r['rate']:,.0f} msg/s" if "rate" in r else f"{r['seconds']:.2f} s"
        print(f"{name:36} {aim:>10} {figure:>14} {r['peak_mb']:8.0f}  {r['what']}")


if __name__ == "__main__":
    main()
