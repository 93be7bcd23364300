"""The store systems' API: authenticated, validated, idempotent, per-receipt answers."""
from __future__ import annotations

import pytest

from storage.members import find_by_card
from tests.conftest import API_KEY
from tests.factories import make_member

HEADERS = {"X-API-Key": API_KEY}
PURCHASE = {"receipt_no": "R100", "card_no": "A0000009", "amount": 1000,
            "purchased_at": "2026-11-01T10:00:00+08:00", "store": "S1"}


@pytest.fixture
def client(app, state):
    with state.db.write() as session:
        make_member(session, card_no="A0000009", tier="A")
    return app.test_client()


def _balance(state) -> int:
    with state.db.read() as session:
        return find_by_card(session, "A0000009").points_balance


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}], ids=["missing", "wrong"])
def test_a_missing_or_wrong_key_gets_401(client, state, headers):
    response = client.post("/api/purchases", json=PURCHASE, headers=headers)
    assert response.status_code == 401 and "X-API-Key" in response.json["error"]
    assert _balance(state) == 0


def test_one_purchase_created_then_duplicate(client, state):
    first = client.post("/api/purchases", json=PURCHASE, headers=HEADERS)
    assert first.status_code == 201
    assert first.json == {"receipt_no": "R100", "status": "created", "points": 1500}
    again = client.post("/api/purchases", json=PURCHASE, headers=HEADERS)
    assert again.status_code == 200 and again.json == {"receipt_no": "R100", "status": "duplicate"}
    assert _balance(state) == 1500


def test_a_bad_field_gets_422_naming_it(client, state):
    response = client.post("/api/purchases", json={**PURCHASE, "amount": "lots"}, headers=HEADERS)
    assert response.status_code == 422
    assert response.json == {"error": "amount: 'lots' is not a number", "field": "amount"}


def test_a_list_with_one_bad_item_stores_nothing(client, state):
    batch = [PURCHASE, {**PURCHASE, "receipt_no": "R101", "purchased_at": "soon"}]
    response = client.post("/api/purchases", json=batch, headers=HEADERS)
    assert response.status_code == 422
    assert response.json["errors"] == [{"index": 1, "field": "purchased_at",
                                        "error": "purchased_at: 'soon' is not an ISO 8601 date and time"}]
    assert _balance(state) == 0


def test_a_list_answers_per_receipt(client, state):
    client.post("/api/purchases", json=PURCHASE, headers=HEADERS)
    batch = [PURCHASE, {**PURCHASE, "receipt_no": "R102", "amount": "10.99"},
             {**PURCHASE, "receipt_no": "R103", "card_no": "NOBODY"}]
    response = client.post("/api/purchases", json=batch, headers=HEADERS)
    assert response.status_code == 207  # not all went in
    assert response.json["results"] == [
        {"receipt_no": "R100", "status": "duplicate"},
        {"receipt_no": "R102", "status": "created", "points": 16},
        {"receipt_no": "R103", "status": "refused", "reason": "card_no NOBODY is not a known member"},
    ]
    assert _balance(state) == 1516
    again = client.post("/api/purchases", json=batch[:2], headers=HEADERS)
    assert again.status_code == 200 and [r["status"] for r in again.json["results"]] == ["duplicate", "duplicate"]


def test_not_json_gets_422(client):
    response = client.post("/api/purchases", data="receipt=1", headers=HEADERS)
    assert response.status_code == 422 and response.json["field"] == "body"


def test_refund_reverses_points(client, state):
    client.post("/api/purchases", json=PURCHASE, headers=HEADERS)
    response = client.post("/api/purchases/R100/refund", headers=HEADERS)
    assert response.status_code == 200
    assert response.json == {"receipt_no": "R100", "status": "refunded", "points_reversed": 1500, "shortfall": 0}
    assert _balance(state) == 0
    assert client.post("/api/purchases/R100/refund", headers=HEADERS).json["status"] == "already_refunded"
    assert client.post("/api/purchases/NOPE/refund", headers=HEADERS).status_code == 404
    assert client.post("/api/purchases/R100/refund").status_code == 401


def test_a_refund_of_points_already_spent_reports_the_shortfall(client, state):
    from sqlalchemy import select

    from storage import ledger
    from storage.models import LedgerEntry

    client.post("/api/purchases", json=PURCHASE, headers=HEADERS)  # 1,500 points
    with state.db.write() as session:
        ledger.deduct_points(session, find_by_card(session, "A0000009").id, 1200, reference="gift")
    response = client.post("/api/purchases/R100/refund", headers=HEADERS)
    assert response.json == {"receipt_no": "R100", "status": "refunded", "points_reversed": 300, "shortfall": 1200}
    assert _balance(state) == 0
    with state.db.read() as session:
        note = session.scalar(select(LedgerEntry.note).where(LedgerEntry.kind == "reverse"))
    assert "1200" in note
