"""The store systems' HTTP API (JSON, authenticated by the X-API-Key header)."""
from __future__ import annotations

import functools
import hmac

from flask import Blueprint, current_app, jsonify, request

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_BATCH = 1000  # purchases per request


def api_key_required(view):
    """401 unless X-API-Key equals the API_KEY environment variable (compared in constant time)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        expected = current_app.extensions["bot"].settings.api_key
        given = request.headers.get("X-API-Key", "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            return jsonify(error="missing or wrong X-API-Key"), 401
        return view(*args, **kwargs)

    return wrapper


def _state():
    return current_app.extensions["bot"]


@bp.post("/purchases")
@api_key_required
def post_purchases():
    """Record one purchase (a JSON object) or many (a list); idempotent by receipt_no.

    Every item is validated before anything is written: a bad field anywhere gets 422 naming
    it and nothing is stored. Otherwise each receipt gets its own result: created, duplicate,
    or refused with the reason (e.g. an unknown card).
    """
    from storage.purchases import FieldError, parse_purchase, record_purchase

    body = request.get_json(silent=True)
    if body is None:
        return jsonify(error="body: must be JSON (Content-Type: application/json)", field="body"), 422
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > MAX_BATCH:
        return jsonify(error=f"body: send 1 to {MAX_BATCH} purchases", field="body"), 422
    state = _state()
    rules, now = state.rules, state.now()
    purchases, errors = [], []
    for index, item in enumerate(items):
        try:
            purchases.append(parse_purchase(item, rules, now))
        except FieldError as exc:
            error = {"error": str(exc), "field": exc.field}
            errors.append({"index": index, **error} if isinstance(body, list) else error)
    if errors:
        if isinstance(body, list):
            return jsonify(error="some purchases have bad fields; nothing was stored", errors=errors), 422
        return jsonify(errors[0]), 422
    with state.db.write() as session:
        results = [record_purchase(session, purchase, rules, actor="api") for purchase in purchases]
    payload = [r.as_dict() for r in results]
    if isinstance(body, list):
        # 200: every receipt is in (created now or before); 207: some were refused, see each result.
        refused = any(r.status == "refused" for r in results)
        return jsonify(results=payload), (207 if refused else 200)
    status = {"created": 201, "duplicate": 200, "refused": 422}[results[0].status]
    return jsonify(payload[0]), status


@bp.post("/purchases/<receipt_no>/refund")
@api_key_required
def refund(receipt_no: str):
    """Refund a purchase: its points are reversed (what is left of them)."""
    from storage.purchases import refund_purchase

    with _state().db.write() as session:
        result = refund_purchase(session, receipt_no, actor="api")
    status = {"refunded": 200, "already_refunded": 200, "not_found": 404}[result.status]
    return jsonify(result.as_dict()), status

