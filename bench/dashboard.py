"""Benchmark: every dashboard panel over 1,000,000 members and 5,000,000 ledger entries (SQLite).

Takes the database bench/jobs.py builds (built here if missing: 1,000,000 members, 5,000,000
ledger entries, about 1,200,000 purchases), copies it to bench/data/dashboard-<members>.sqlite3,
migrates it to this branch's schema (the dashboard's indexes) and adds what the jobs benchmark
does not hold: join dates spread over five years, tier changes in the audit trail (10 % of the
members), segments and activity (evaluate_all), and a year of pushes in the outbox (about 600,000).
Then, in a fresh process, it builds each panel as the dashboard does (every query, the tables and
the SVG charts) for the default range — the last 12 months — for everyone and for one account
manager, and prints the seconds each took. The aim is under 2 s per panel.

    .venv/bin/python bench/dashboard.py [--members 1000000] [--rebuild]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATA, ROOT  # noqa: E402

TODAY = date(2026, 11, 23)


def prepare(members: int, rebuild: bool) -> Path:
    """The dashboard's benchmark database: the jobs benchmark's data, migrated and enriched."""
    from bench import jobs
    from storage.db import Database
    from storage.migrate import upgrade

    path = DATA / f"dashboard-{members}.sqlite3"
    if path.exists() and not rebuild:
        print(f"using {path}", flush=True)
        db = Database(f"sqlite:///{path}")
        upgrade(db)  # a build by an older checkout gets the newer migrations ...
        db.dispose()
        add_gifts_and_tickets(path, members)  # ... and the data of the capabilities since
        add_event_signups(path, members)
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    source = DATA / f"jobs-{members}.sqlite3"
    jobs.build(source, members, 5)
    started = time.monotonic()
    shutil.copyfile(source, path)
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    # Join dates over five years; tier changes for one member in ten over the last two years.
    conn.execute("UPDATE members SET created_at = datetime('2021-11-01', '+' || (id * 7919 % 1800) || ' days'),"
                 " manager_id = CASE WHEN tier = 'A' THEN 'M' || (id % 40) END")
    conn.executemany("INSERT OR IGNORE INTO staff (id, name, role, created_at) VALUES (?, ?, 'manager', ?)",
                     [(f"M{i}", f"经理{i}", "2024-01-01 00:00:00") for i in range(40)])
    conn.execute("""
        INSERT INTO member_changes (member_id, action, detail, actor, at)
        SELECT id, 'tier',
               CASE WHEN id % 3 = 0 THEN 'D → ' || tier ELSE tier || ' → D' END || ' (bench)', 'job:tier_recalc',
               datetime('2024-11-23', '+' || (id * 31 % 730) || ' days', '+2 hours')
        FROM members WHERE id % 10 = 0 AND tier != 'D'""")
    statuses = ["delivered"] * 14 + ["sent", "failed", "unreachable", "unknown", "skipped", "skipped"]
    reasons = {"failed": "errcode 45009", "skipped": "opted out", "unreachable": None}
    jobs_named = ["birthday", "holidays", "monthly_bulletin", "points_reset", "tier_recalc"]
    rows = []
    for n in range(600_000):
        status = statuses[n % len(statuses)]
        job = jobs_named[n % len(jobs_named)]
        planned = datetime(2025, 11, 24) + timedelta(minutes=n * 525_600 // 600_000)
        member_id = n * 7 % members + 1
        rows.append((job, planned.strftime("%Y-%m-%d"), f"member:{member_id}", member_id, "birthday_greeting",
                     status, reasons.get(status), planned.isoformat(sep=" "),
                     planned.isoformat(sep=" ") if status not in ("skipped", "unknown") else None))
    conn.executemany("INSERT OR IGNORE INTO push_outbox (job, occasion, recipient, member_id, message, marketing, status,"
                     " reason, attempts, created_at, sent_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, 1, ?, ?)", rows)
    conn.commit()
    conn.close()
    from bot.services import BotState  # noqa: F401  (the same imports as the app; evaluate_all needs rules)
    from rules import DEFAULT_RULES_PATH, load_rules
    from storage.tiers import evaluate_all

    db = Database(f"sqlite:///{path}")
    with db.write() as session:
        evaluate_all(session, load_rules(DEFAULT_RULES_PATH), TODAY, now=datetime.combine(TODAY, datetime.min.time(), timezone.utc))
    db.engine.dispose()
    add_gifts_and_tickets(path, members)
    add_event_signups(path, members)
    print(f"prepared {path} in {time.monotonic() - started:.0f} s", flush=True)
    return path


def add_gifts_and_tickets(path: Path, members: int) -> None:
    """A year of gift redemptions (300,000 codes, their stock) and complaints (40,000 tickets), once."""
    from rules import DEFAULT_RULES_PATH, load_rules

    conn = sqlite3.connect(path)
    if conn.execute("SELECT count(*) FROM gift_redemptions").fetchone()[0]:
        conn.close()
        return
    started = time.monotonic()
    conn.execute("PRAGMA synchronous=OFF")
    rules = load_rules(DEFAULT_RULES_PATH)
    gifts = rules.gifts.catalogue
    statuses = ["collected"] * 12 + ["mailed", "open", "open", "open", "cancelled", "cancelled", "expired", "expired"]
    rows, open_codes = [], {}
    for n in range(300_000):
        gift = gifts[n * 7 % len(gifts)]
        status = statuses[n % len(statuses)]
        made = datetime(2025, 11, 1) + timedelta(minutes=n * 560_000 // 300_000)
        valid = (made + timedelta(days=30)).date()
        if status == "open":
            open_codes[gift.id] = open_codes.get(gift.id, 0) + 1
        rows.append((f"B{n:08d}", n * 13 % members + 1, gift.id, gift.name, gift.kind, gift.fulfilment,
                     gift.points or 0, f"{made:%Y-%m}", status, valid.isoformat(), made.isoformat(sep=" "),
                     made.isoformat(sep=" ") if status != "open" else None))
    conn.executemany("INSERT INTO gift_redemptions (code, member_id, gift_id, gift_name, kind, fulfilment, points,"
                     " month, status, valid_until, created_at, closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     rows)
    conn.executemany("INSERT OR IGNORE INTO gift_stock (gift_id, stock, reserved, handed_over, updated_at)"
                     " VALUES (?, ?, ?, 0, '2026-11-01 00:00:00')",
                     [(g.id, open_codes.get(g.id, 0) + 500, open_codes.get(g.id, 0)) for g in gifts])
    categories = rules.complaints.categories
    tickets = []
    for n in range(40_000):
        opened = datetime(2025, 11, 24) + timedelta(minutes=n * 525_000 // 40_000)
        resolved = opened + timedelta(hours=n * 37 % 60) if n % 10 else None
        due = opened + timedelta(hours=24)
        tickets.append((f"T{n:08d}", n * 17 % members + 1, "human" if n % 9 == 0 else "complaint",
                        categories[n % len(categories)], "high" if n % 4 == 0 else "normal",
                        "resolved" if resolved else "open", "bench", opened.isoformat(sep=" "),
                        (opened + timedelta(hours=n % 9)).isoformat(sep=" "),
                        resolved.isoformat(sep=" ") if resolved else None, due.isoformat(sep=" "),
                        int(n % 23 == 0), (n % 5) + 1 if resolved and n % 3 == 0 else None))
    conn.executemany("INSERT INTO tickets (number, member_id, kind, category, priority, status, description, opened_at,"
                     " first_response_at, resolved_at, resolution_due_at, period, breached, repeated, rating)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?)", tickets)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    print(f"added 300,000 gift redemptions and 40,000 tickets in {time.monotonic() - started:.0f} s", flush=True)


def add_event_signups(path: Path, members: int) -> None:
    """A year of past events (600 sessions, 120,000 sign-ups, most checked in) and sign-ups for config.yaml's
    events open on TODAY, once."""
    from rules import DEFAULT_RULES_PATH, load_rules

    conn = sqlite3.connect(path)
    if conn.execute("SELECT count(*) FROM event_signups").fetchone()[0]:
        conn.close()
        return
    started = time.monotonic()
    conn.execute("PRAGMA synchronous=OFF")
    rules = load_rules(DEFAULT_RULES_PATH)
    sessions = [(f"past{n // 2}", str(n % 2 + 1), datetime(2025, 11, 25, 6) + timedelta(hours=n * 14), 200)
                for n in range(600)]
    sessions += [(e.id, es.id, rules.local_instant(es.starts).replace(tzinfo=None), es.capacity)
                 for e in rules.events.catalogue for es in e.sessions
                 if rules.local_instant(e.signup_opens).date() <= TODAY]
    signups, code = [], 0
    for row_id, (event_id, key, starts, capacity) in enumerate(sessions, start=1):
        past = starts.date() < TODAY
        for seat in range(min(capacity, 200)):
            code += 1
            booked = seat < capacity * 0.9
            status = ("booked" if booked else "expired") if past else ("booked" if booked else "waitlisted")
            member_id = (row_id * 7919 + seat * 104_729) % members + 1
            signups.append((row_id, event_id, member_id, status, event_id if status in ("booked", "waitlisted") else
                            None, f"B{code:09d}", (starts - timedelta(days=7)).isoformat(sep=" "),
                            starts.isoformat(sep=" ") if past and booked and seat % 10 < 7 else None))
    conn.executemany("INSERT INTO event_sessions (id, event_id, session_key, title, starts_at, ends_at, place, capacity,"
                     " seats_taken, created_at) VALUES (?, ?, ?, ?, ?, ?, '-', ?, ?, ?)",
                     [(i, e, k, e, s.isoformat(sep=" "), (s + timedelta(hours=2)).isoformat(sep=" "), c,
                       int(min(c, 200) * 0.9) if c <= 200 else 180, "2025-11-01 00:00:00")
                      for i, (e, k, s, c) in enumerate(sessions, start=1)])
    conn.executemany("INSERT OR IGNORE INTO event_signups (session_id, event_id, member_id, guests, party, status,"
                     " live_event, priority, code, created_at, checked_in_at) VALUES (?, ?, ?, 0, 1, ?, ?, 0, ?, ?, ?)",
                     signups)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    print(f"added {len(sessions)} event sessions and {len(signups):,} sign-ups in {time.monotonic() - started:.0f} s",
          flush=True)


def measure(path: str) -> dict:
    """Each panel, as the dashboard builds it, for everyone and for one manager (run in a fresh process)."""
    from bot.admin import last_months_start
    from bot.admin.panels import PANELS, Request
    from rules import DEFAULT_RULES_PATH, load_rules
    from storage.db import Database
    from storage.reports import Scope

    rules = load_rules(DEFAULT_RULES_PATH)
    db = Database(f"sqlite:///{path}")
    first = last_months_start(TODAY, rules.dashboard.default_months)
    now = rules.local_midnight(TODAY) + timedelta(hours=12)
    results = {}
    for who, scope in (("everyone", Scope()), ("manager M1", Scope("M1"))):
        for name, panel in PANELS.items():
            with db.read() as session:
                started = time.perf_counter()
                panel(Request(session, rules, first, TODAY, TODAY, scope, now))
                results[f"{name} ({who})"] = time.perf_counter() - started
    return results


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    path = prepare(args.members, args.rebuild)
    out = subprocess.run([sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "LOG_LEVEL": "WARNING"})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    results = json.loads(out.stdout.strip().splitlines()[-1])
    with sqlite3.connect(path) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("members", "ledger", "purchases", "member_changes", "push_outbox",
                            "gift_redemptions", "tickets", "event_signups")}
    print(f"\n{', '.join(f'{n:,} {t}' for t, n in counts.items())}; SQLite, {os.cpu_count()} cores, "
          f"the last 12 months to {TODAY} (measured {datetime.now(timezone.utc):%Y-%m-%d})\n")
    print(f"{'panel':32} {'seconds':>8}  aim < 2 s")
    for name, seconds in results.items():
        print(f"{name:32} {seconds:8.2f}  {'ok' if seconds < 2 else 'SLOW'}")


if __name__ == "__main__":
    main()
