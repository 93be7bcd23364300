"""Delivery details: the shared access_token (one fetcher, owner-only lock release); in-doubt pushes."""
from __future__ import annotations

import threading
import time

import pytest
import redis
from sqlalchemy import select

from bot.wechat import TokenStore
from storage.models import OutboxMessage
from tests.factories import utc_now


def test_concurrent_stores_fetch_the_token_once(redis_client: redis.Redis) -> None:
    fetches: list[int] = []

    def fetch() -> dict:
        fetches.append(1)
        time.sleep(0.2)  # slow enough that every other store finds the lock taken
        return {"access_token": "T1", "expires_in": 7200}

    stores = [TokenStore(redis_client, "t:token", "t:lock", fetch) for _ in range(5)]
    got: list[str] = []
    threads = [threading.Thread(target=lambda s=s: got.append(s.current())) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == ["T1"] * 5 and len(fetches) == 1
    assert redis_client.get("t:lock") is None


def test_a_fetcher_past_its_lock_expiry_leaves_the_new_holders_lock(redis_client: redis.Redis) -> None:
    def fetch() -> dict:
        # Our lock lapsed while we fetched and another process took it: it must survive our release.
        redis_client.set("t:lock", "someone-else", ex=15)
        return {"access_token": "T2", "expires_in": 7200}

    assert TokenStore(redis_client, "t:token", "t:lock", fetch).current() == "T2"
    assert redis_client.get("t:lock") == "someone-else"


def test_without_redis_a_store_keeps_going_with_a_token_of_its_own(own_redis) -> None:
    from storage.redis import connect

    tokens = iter(["T1", "T2", "T3"])
    fetch = lambda: {"access_token": next(tokens), "expires_in": 7200}  # noqa: E731
    store = TokenStore(connect(own_redis.url), "t:token", "t:lock", fetch)  # connected as production is
    assert store.current() == "T1"
    own_redis.stop()
    # WeChat called T1 invalid while Redis is down: it cannot be dropped there, and a fresh one is fetched.
    assert store.drop_if_same("T1") is False
    assert store.current(fresh=True) == "T2"
    assert store.current() == "T2"
    assert TokenStore(connect(own_redis.url), "t:token", "t:lock", fetch).current() == "T3"  # none yet: its own


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # on SQLite and on PostgreSQL


def test_pushes_in_doubt_are_resent_only_when_an_operator_says_so(app, db) -> None:
    with db.write() as session:
        session.add_all([
            OutboxMessage(job="birthday", occasion="2026-06-01", recipient="member:1", message="birthday_greeting",
                          status="unknown", reason="the sender stopped during the call", created_at=utc_now()),
            OutboxMessage(job="birthday", occasion="2026-06-01", recipient="member:2", message="birthday_greeting",
                          status="sent", created_at=utc_now()),
        ])
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["push", "requeue-unknown", "birthday"], input="n\n")
    assert refused.exit_code == 1
    result = runner.invoke(args=["push", "requeue-unknown", "birthday", "--occasion", "2026-06-01", "--yes"])
    assert result.exit_code == 0 and "1 pushes back to pending" in result.output
    with db.read() as session:
        statuses = dict(session.execute(select(OutboxMessage.recipient, OutboxMessage.status)).all())
    assert statuses == {"member:1": "pending", "member:2": "sent"}
