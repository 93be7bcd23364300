"""Where the time of one `积分` answer goes: each stage of the webhook path, timed in one process.

Complements bench/webhook.py (throughput under load, which a busy machine skews): this runs
the bot and the floor app through Flask's test client, one request at a time, on the same
database and a private redis-server, and prints the wall time per request of each stage.

    .venv/bin/python bench/points_breakdown.py [--requests 4000] [--aes]
"""
from __future__ import annotations

import argparse
import collections
import functools
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.common import DATA, redis_server  # noqa: E402
from bench.webhook import AES_KEY, APPID, TOKEN, build_database  # noqa: E402
from bot.dev.wire import WeChatServer, text_xml  # noqa: E402

# (module, function) pairs timed on every call; nested stages are included in their callers.
STAGES = [
    ("bot.webhook", "receive_message"), ("bot.webhook", "_check_signature"), ("bot.webhook", "_checked_xml"),
    ("bot.webhook", "_read_message"), ("bot.webhook", "answer_once"), ("bot.dispatch", "keyword_route"),
    ("bot.dispatch", "dispatch"), ("bot.guards", "refusal"), ("storage.points", "member_with_points"),
    ("handlers.points", "points"), ("bot.dispatch", "_render"),
]


def _timed(totals: collections.Counter, module, name: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - started

    setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--aes", action="store_true")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    database = DATA / f"webhook-{args.members}.sqlite3"
    build_database(database, args.members, args.members * 10)
    with redis_server() as redis_url:
        os.environ.update(WECHAT_TOKEN=TOKEN, WECHAT_APPID=APPID, WECHAT_SECRET="bench", WECHAT_AES_KEY=AES_KEY,
                          DATABASE_URL=f"sqlite:///{database}", REDIS_URL=redis_url, LOG_LEVEL="WARNING")
        import importlib

        import floor_app
        import plain_bot
        import wsgi

        totals: collections.Counter = collections.Counter()
        for module_name, name in STAGES:
            _timed(totals, importlib.import_module(module_name), name)
        # The URL map holds the view function itself: point it at the timed one.
        wsgi.app.view_functions["wechat.receive_message"] = importlib.import_module("bot.webhook").receive_message

        server = WeChatServer(TOKEN, APPID, AES_KEY)
        base = int(time.time() * 1000) * 1000
        rng = random.Random(3)
        warm = args.requests // 10
        signed = [server.sign(text_xml(f"bench-openid-{rng.randrange(1, args.members + 1)}", "积分",
                                       msg_id=base + n), aes=args.aes) for n in range(3 * (args.requests + warm))]
        per_request = {}
        n = args.requests + warm
        for label, app, batch in (("floor", floor_app.app, signed[:n]), ("plain", plain_bot.app, signed[n:2 * n]),
                                  ("bot", wsgi.app, signed[2 * n:])):
            client = app.test_client()
            for message in batch[:warm]:
                client.post("/wechat", query_string=message.params, data=message.body)
            totals.clear()
            started, cpu = time.perf_counter(), time.process_time()
            for message in batch[warm:]:
                client.post("/wechat", query_string=message.params, data=message.body)
            per_request[label] = ((time.perf_counter() - started) / args.requests * 1e6,
                                  (time.process_time() - cpu) / args.requests * 1e6)
        print(f"{args.requests} requests each, {'AES' if args.aes else 'plain'}, load average {os.getloadavg()[0]:.2f}")
        for label, (wall, cpu) in per_request.items():
            print(f"{label:6} {wall:7.0f} µs wall, {cpu:7.0f} µs CPU per request (test client included)")
        print("bot stages (µs per request, wall; nested stages are part of the one above them):")
        for _, name in STAGES:
            print(f"  {name:24} {totals[name] / args.requests * 1e6:7.0f}")


if __name__ == "__main__":
    main()
