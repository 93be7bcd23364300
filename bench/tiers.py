"""Benchmark: the set-based points and tier operations on a large SQLite database.

Builds (once, cached under bench/data/) a database of 1,000,000 members, 5,000,000 ledger
entries and about 1,500,000 purchases with INSERT ... SELECT, then in a fresh process times
``evaluate_all``, ``tier_changes``, ``check_balances``, ``expire_due_lots`` and
``reset_points_bulk`` (100,000 members) on a copy of it, printing seconds and the process's
peak memory after each step.

    .venv/bin/python bench/tiers.py [--members 1000000] [--reset 100000] [--rebuild]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATA  # noqa: E402

LOTS_PER_MEMBER = 4  # plus one redemption: 5 ledger entries per member


def build_database(path: Path, members: int) -> None:
    """Members, earn lots (some past due), one redemption each, purchases: all generated in SQL."""
    from storage.db import Database
    from storage.migrate import upgrade

    if path.exists():
        path.unlink()
    started = time.monotonic()
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"""
        PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
        BEGIN;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {members})
        INSERT INTO members (id, card_no, name, phone, tier, openid, subscribed, opted_out, unreachable,
                             points_balance, created_at, updated_at)
        SELECT i, printf('T%08d', i), '会员' || i, printf('139%08d', i),
               CASE WHEN i % 100 < 80 THEN 'D' WHEN i % 100 < 92 THEN 'C' WHEN i % 100 < 98 THEN 'B' ELSE 'A' END,
               CASE WHEN i % 3 = 0 THEN 'tiers-openid-' || i END, 1, 0, 0, 0,
               datetime('now'), datetime('now')
        FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {members * LOTS_PER_MEMBER})
        INSERT INTO ledger (id, member_id, kind, amount, remaining, expires_on, occurred_at, reference)
        SELECT i, (i - 1) / {LOTS_PER_MEMBER} + 1, 'earn', 50 + (i * 7919) % 3000,
               50 + (i * 7919) % 3000 - CASE WHEN (i - 1) % {LOTS_PER_MEMBER} = 0 THEN 10 ELSE 0 END,
               date('now', ((i * 31) % 800 - 60) || ' days'),
               datetime('now', '-' || ((i * 13) % 700) || ' days'), 'bench'
        FROM n;
        INSERT INTO ledger (member_id, kind, amount, remaining, occurred_at, reference)
        SELECT id, 'redeem', -10, 0, datetime('now', '-1 days'), 'bench' FROM members;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {members * 3 // 2})
        INSERT INTO purchases (id, receipt_no, member_id, amount, purchased_at, store, points_earned, created_at)
        SELECT i, 'B' || i, (i * 7) % {members} + 1, 100 + (i * 104729) % 60000,
               datetime('now', '-' || ((i * 17) % 900) || ' days'), 'S1', 0, datetime('now')
        FROM n;
        UPDATE members SET points_balance = (SELECT sum(amount) FROM ledger WHERE ledger.member_id = members.id);
        COMMIT;
        ANALYZE;
    """)
    conn.close()
    entries = members * (LOTS_PER_MEMBER + 1)
    print(f"built {path}: {members:,} members, {entries:,} ledger entries in {time.monotonic() - started:.0f} s",
          flush=True)


def measure(path: Path, reset_members: int) -> None:
    """Run the operations on ``path`` in this (fresh) process; print time and peak memory."""
    from sqlalchemy import select

    from rules import DEFAULT_RULES_PATH, load_rules
    from storage import ledger, tiers
    from storage.db import Database
    from storage.models import Member

    rules = load_rules(DEFAULT_RULES_PATH)
    db = Database(f"sqlite:///{path}")
    now = datetime.now(timezone.utc)
    today = rules.today(now)

    def step(label: str, run) -> None:
        started = time.monotonic()
        result = run()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{label:34} {time.monotonic() - started:7.1f} s   peak RSS {peak:5.0f} MB   {result}", flush=True)

    def evaluate():
        with db.write() as s:
            stats = tiers.evaluate_all(s, rules, today, now=now)
        return f"segments {stats.segments}, activity {stats.activities}"

    def changes():
        with db.read() as s:
            return f"{sum(1 for _ in tiers.tier_changes(s, rules, today)):,} tier changes"

    def check():
        with db.read() as s:
            return f"{len(ledger.check_balances(s))} mismatches"

    def expire():
        with db.write() as s:
            return f"{ledger.expire_due_lots(s, now, today):,} points expired"

    def reset():
        chosen = select(Member.id).where(Member.id <= reset_members)
        with db.write() as s:
            return f"{ledger.reset_points_bulk(s, chosen, reason='bench', key_prefix='bench-reset:', now=now):,} members reset"

    print(f"peak RSS after imports: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    step("evaluate_all", evaluate)
    step("tier_changes (streamed, counted)", changes)
    step("check_balances", check)
    step("expire_due_lots", expire)
    step(f"reset_points_bulk ({reset_members:,})", reset)
    step("check_balances again", check)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--reset", type=int, default=100_000, help="members reset by reset_points_bulk")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.reset)
        return
    DATA.mkdir(parents=True, exist_ok=True)
    pristine = DATA / f"tiers-{args.members}.sqlite3"
    if args.rebuild or not pristine.exists():
        build_database(pristine, args.members)
    work = DATA / f"tiers-{args.members}-run.sqlite3"
    shutil.copyfile(pristine, work)  # the operations write: every run starts from the same data
    try:
        # A fresh process, so the peak memory is the operations', not the build's.
        subprocess.run([sys.executable, __file__, "--measure", str(work), "--reset", str(args.reset)], check=True)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
