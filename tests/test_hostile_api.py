"""Issue 8, the store API: hostile bodies never get a 5xx or an HTML page, and store nothing.

Every case sends one request to /api/* through the Flask test client and checks:

- the status is the one due (401 without the key, 413 above 1 MiB, 422 naming the bad field,
  404 for what does not exist, 405 for the wrong method);
- the answer is JSON (never Flask's HTML error page, never a traceback);
- a 422 names the field it refuses (``field``, or each item's ``field`` for a list);
- nothing was stored: no purchase row, no ledger entry (a 201 stores exactly one purchase);
- nothing the caller sent wrote an ERROR log record with a traceback.

The whole module runs on SQLite and on PostgreSQL (the ``db_url`` fixture): some inputs (NUL
characters, out-of-range dates) only break one of them.
"""
from __future__ import annotations

import json
import logging
import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import pytest
from sqlalchemy import func, select

from storage.models import LedgerEntry, Purchase
from tests.conftest import API_KEY
from tests.factories import make_member

CARD = "A0000009"
PURCHASE = {"receipt_no": "R100", "card_no": CARD, "amount": "1000.00",
            "purchased_at": "2026-11-01T10:00:00+08:00", "store": "S1"}
MIB = 1024 * 1024


@pytest.fixture
def database_url(db_url: str) -> str:
    """Run every case on both engines."""
    return db_url


@pytest.fixture
def client(app, state):
    with state.db.write() as session:
        make_member(session, card_no=CARD, tier="A")
    return app.test_client()


# --------------------------------------------------------------------------- building bodies


def obj(*pairs: tuple[str, str], **raw: str) -> str:
    """A purchase as JSON text; ``raw`` replaces fields with literal JSON (``amount="1e308"``), and
    ``pairs`` are appended as they are (to repeat a key)."""
    fields = {name: json.dumps(value, ensure_ascii=False) for name, value in PURCHASE.items()}
    fields.update(raw)
    members = [f"{json.dumps(name)}: {value}" for name, value in fields.items()] + \
              [f"{json.dumps(name)}: {value}" for name, value in pairs]
    return "{" + ", ".join(members) + "}"


def deep(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def many(n: int) -> str:
    return "[" + ", ".join(obj(receipt_no=json.dumps(f"B{i}")) for i in range(n)) + "]"


@dataclass(frozen=True)
class Call:
    """One request. ``body`` is JSON text (or bytes as they are); ``field`` the field a 422 must name."""

    expect: int | tuple[int, ...]
    body: str | bytes = ""
    field: str | tuple[str, ...] | None = None  # one of these names
    path: str = "/api/purchases"
    method: str = "POST"
    key: str | None = API_KEY
    content_type: str = "application/json"
    environ: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def send(client, call: Call):
    headers = {} if call.key is None else {"X-API-Key": call.key}
    data = call.body.encode("utf-8") if isinstance(call.body, str) else call.body
    return client.open(call.path, method=call.method, data=data, headers=headers,
                       content_type=call.content_type, environ_overrides=dict(call.environ))


# --------------------------------------------------------------------------- the cases

AUTH = [
    pytest.param(Call(401, obj(), key=None), id="no-key"),
    pytest.param(Call(401, obj(), key="wrong"), id="wrong-key"),
    pytest.param(Call(401, obj(), key=""), id="empty-key"),
    pytest.param(Call(401, obj(), key=API_KEY + " "), id="key-with-trailing-space"),
    pytest.param(Call(401, obj(), key="clé-" + API_KEY), id="non-ascii-key"),
    pytest.param(Call(401, "", key=None), id="no-key-empty-body"),
    pytest.param(Call(401, key=None, path="/api/purchases/R100/refund"), id="refund-no-key"),
]

BODY = [
    pytest.param(Call(422, "", field="body"), id="empty-body"),
    pytest.param(Call(422, "null", field="body"), id="null"),
    pytest.param(Call(422, "[]", field="body"), id="empty-list"),
    pytest.param(Call(422, '"text"', field=("body", "purchase")), id="json-string"),
    pytest.param(Call(422, "42", field=("body", "purchase")), id="json-number"),
    pytest.param(Call(422, obj()[:-1], field="body"), id="truncated-json"),
    pytest.param(Call(422, obj(), field="body", content_type="text/plain"), id="wrong-content-type"),
    pytest.param(Call(422, obj(), field="body", content_type="application/x-www-form-urlencoded"),
                 id="form-content-type"),
    pytest.param(Call(422, b'{"receipt_no": "R\xff\xfe", "card_no": "A0000009"}', field="body"), id="not-utf8"),
    pytest.param(Call(422, deep(100_000), field="body"), id="list-nested-100000-deep"),
    pytest.param(Call(422, '{"a": ' * 5000 + "1" + "}" * 5000, field="body"), id="object-nested-5000-deep"),
    pytest.param(Call(422, many(1001), field="body"), id="1001-items"),
    pytest.param(Call(422, "[null]", field="purchase"), id="list-of-null"),
    pytest.param(Call(422, "[" + obj() + ", " + obj(receipt_no='"R101"', amount='"lots"') + "]", field="amount"),
                 id="list-with-one-bad-item"),
    pytest.param(Call(422, "[" + obj() + ", " + obj(receipt_no='"R101"', amount='"1e30"') + "]", field="amount"),
                 id="list-with-one-1e30-item"),
    pytest.param(Call(413, obj(store=json.dumps("s" * (MIB + 1)))), id="over-1-mib"),
    pytest.param(Call(413, obj(store=json.dumps("s" * (2 * MIB))),
                      environ={"CONTENT_LENGTH": "", "wsgi.input_terminated": True}), id="over-1-mib-without-length"),
]

FIELDS = [
    # amount: every number a JSON or Decimal parser can be made to produce
    pytest.param(Call(422, obj(amount='"1e30"'), field="amount"), id="amount-1e30"),
    pytest.param(Call(422, obj(amount='"1E999999"'), field="amount"), id="amount-1E999999"),
    pytest.param(Call(422, obj(amount='"' + "9" * 29 + '"'), field="amount"), id="amount-29-nines-text"),
    pytest.param(Call(422, obj(amount="9" * 29), field="amount"), id="amount-29-nines-number"),
    pytest.param(Call(422, obj(amount="1e308"), field="amount"), id="amount-1e308"),
    pytest.param(Call(422, obj(amount="1e400"), field="amount"), id="amount-1e400-overflows-float"),
    pytest.param(Call(422, obj(amount="NaN"), field="amount"), id="amount-NaN"),
    pytest.param(Call(422, obj(amount="Infinity"), field="amount"), id="amount-Infinity"),
    pytest.param(Call(422, obj(amount="-Infinity"), field="amount"), id="amount-minus-Infinity"),
    pytest.param(Call(422, obj(amount='"sNaN"'), field="amount"), id="amount-sNaN-text"),
    pytest.param(Call(422, obj(amount="-0.001"), field="amount"), id="amount-minus-0.001"),
    pytest.param(Call(422, obj(amount='"-0.001"'), field="amount"), id="amount-minus-0.001-text"),
    pytest.param(Call(422, obj(amount='"0x10"'), field="amount"), id="amount-hex"),
    pytest.param(Call(422, obj(amount="true"), field="amount"), id="amount-true"),
    pytest.param(Call(422, obj(amount="[1]"), field="amount"), id="amount-list"),
    pytest.param(Call(422, obj(amount='{"value": 1}'), field="amount"), id="amount-object"),
    pytest.param(Call(422, obj(amount="null"), field="amount"), id="amount-null"),
    pytest.param(Call(422, obj(amount=deep(500)), field="amount"), id="amount-nested-500-deep"),
    # purchased_at: the ends of the calendar
    pytest.param(Call(422, obj(purchased_at='"0001-01-01T00:00:00"'), field="purchased_at"), id="purchased-at-year-1"),
    pytest.param(Call(422, obj(purchased_at='"0001-01-01T00:00:00+14:00"'), field="purchased_at"),
                 id="purchased-at-year-1-plus-14"),
    pytest.param(Call(422, obj(purchased_at='"9999-12-31T23:59:59-12:00"'), field="purchased_at"),
                 id="purchased-at-year-9999-minus-12"),
    pytest.param(Call(422, obj(purchased_at='"9999-12-31T23:59:59"'), field="purchased_at"),
                 id="purchased-at-year-9999"),
    pytest.param(Call(422, obj(purchased_at="1700000000"), field="purchased_at"), id="purchased-at-number"),
    pytest.param(Call(422, obj(purchased_at="[]"), field="purchased_at"), id="purchased-at-list"),
    # text fields: wrong types, sizes and characters
    pytest.param(Call(422, obj(receipt_no='["R1"]'), field="receipt_no"), id="receipt-list"),
    pytest.param(Call(422, obj(receipt_no="false"), field="receipt_no"), id="receipt-false"),
    pytest.param(Call(422, obj(card_no='{"no": "A0000009"}'), field="card_no"), id="card-object"),
    pytest.param(Call(422, obj(store="true"), field="store"), id="store-true"),
    pytest.param(Call(422, obj(store="null"), field="store"), id="store-null"),
    pytest.param(Call(422, obj(receipt_no=json.dumps("R" * 100_000)), field="receipt_no"), id="receipt-100k-chars"),
    pytest.param(Call(422, obj(store=json.dumps("店" * 300_000, ensure_ascii=False)), field="store"),
                 id="store-900k-bytes"),
    pytest.param(Call(422, obj(receipt_no='"R\\u0000100"'), field="receipt_no"), id="receipt-with-nul"),
    pytest.param(Call(422, obj(card_no='"A0000009\\u0000"')), id="card-with-nul"),  # refused, or a bad card_no
    pytest.param(Call(422, obj(receipt_no='"\\ud800"'), field="receipt_no"), id="receipt-lone-surrogate"),
    # unknown and repeated fields
    pytest.param(Call(422, obj(points="999999"), field="points"), id="unknown-field"),
    pytest.param(Call(422, obj(__proto__='{"admin": true}'), field="__proto__"), id="proto-field"),
    pytest.param(Call(422, obj(("amount", '"1e30"')), field="amount"), id="repeated-key-hostile-last"),
]

OTHER = [
    # a well-formed purchase the store cannot make: refused, not stored
    pytest.param(Call(422, obj(card_no='"NOBODY"')), id="unknown-card"),
    # refunds of receipts that cannot exist
    pytest.param(Call(404, path="/api/purchases/收据-🧾/refund"), id="refund-unicode"),
    pytest.param(Call(404, path="/api/purchases/" + "R" * 10_000 + "/refund"), id="refund-10000-chars"),
    pytest.param(Call(404, path="/api/purchases/R%00100/refund"), id="refund-nul"),
    pytest.param(Call(404, path="/api/purchases/%FF%FE/refund"), id="refund-not-utf8"),
    pytest.param(Call(404, path="/api/purchases/a%2Fb/refund"), id="refund-encoded-slash"),
    pytest.param(Call(404, path="/api/purchases/..%2F..%2Fetc%2Fpasswd/refund"), id="refund-path-traversal"),
    pytest.param(Call(404, path="/api/purchases/R100' OR '1'='1/refund"), id="refund-sql-quote"),
    # routes and methods that do not exist
    pytest.param(Call(405, method="GET"), id="get-purchases"),
    pytest.param(Call(405, method="DELETE"), id="delete-purchases"),
    pytest.param(Call(404, obj(), path="/api/nothing-here"), id="unknown-route"),
]


# --------------------------------------------------------------------------- the checks


def stored(state) -> tuple[int, int]:
    with state.db.read() as session:
        return (session.scalar(select(func.count()).select_from(Purchase)),
                session.scalar(select(func.count()).select_from(LedgerEntry)))


def named_fields(payload: dict) -> set[str]:
    """The fields a 422 names: its own ``field`` and each list item's."""
    return {payload.get("field")} | {e.get("field") for e in payload.get("errors", []) if isinstance(e, dict)}


def tracebacks(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()} ({r.exc_info[0].__name__}: {r.exc_info[1]})"
            for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]


@pytest.mark.parametrize("call", AUTH + BODY + FIELDS + OTHER)
def test_hostile_api_calls(client, state, caplog, call):
    response = send(client, call)
    expected = call.expect if isinstance(call.expect, tuple) else (call.expect,)
    assert response.status_code in expected, (response.status_code, response.data[:300])
    head = response.data[:300].lower()
    assert b"<!doctype html" not in head and b"<html" not in head and b"Traceback" not in response.data
    assert response.is_json, response.content_type
    payload = response.get_json()
    assert isinstance(payload, dict)
    if call.field is not None:
        names = call.field if isinstance(call.field, tuple) else (call.field,)
        assert named_fields(payload) & set(names), payload
    assert stored(state) == (0, 0)
    assert not tracebacks(caplog)


def test_a_repeated_key_is_one_purchase_or_refused(client, state, caplog):
    """Parsers disagree on which copy of a repeated key wins; whatever is answered is what is stored."""
    body = obj(("receipt_no", '"R200"'))  # receipt_no R100, then R200
    response = send(client, Call((201, 422), body))
    assert response.status_code in (201, 422), response.data[:300]
    assert response.is_json
    if response.status_code == 201:
        with state.db.read() as session:
            receipts = session.scalars(select(Purchase.receipt_no)).all()
        assert receipts == [response.get_json()["receipt_no"]]
    else:
        assert stored(state) == (0, 0)
    assert not tracebacks(caplog)
