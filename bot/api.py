"""The store systems' HTTP API (JSON, authenticated by the X-API-Key header)."""
from __future__ import annotations

import functools
import hmac
import json
from decimal import Decimal
from typing import Any, BinaryIO

from flask import Blueprint, current_app, jsonify, request

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_BATCH = 1000  # purchases per request
MAX_BODY = 1024 * 1024  # bytes; a larger body gets 413 and is not read past this


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


class BodyError(Exception):
    """A body that cannot be read as purchases: 413 or 422, with the message and the field (``body``)."""

    def __init__(self, status: int, message: str, field: str = "body"):
        super().__init__(f"{field}: {message}")
        self.status, self.field = status, field


class _RepeatedKey:
    """What an object with a key given twice decodes to: refused, naming the key (parsers disagree on
    which copy wins, so neither is taken)."""

    def __init__(self, key: str):
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _RepeatedKey:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                return _RepeatedKey(key)
            seen.add(key)
    return obj


def read_json_body() -> Any:
    """The request's JSON, reading at most MAX_BODY bytes; BodyError for a body that is not.

    Numbers come as Decimal (exact, and no size limit before the field checks); NaN and Infinity
    come as floats, which the field checks refuse; nesting too deep is invalid JSON, not a crash.
    """
    if (request.content_length or 0) > MAX_BODY:
        raise BodyError(413, f"larger than {MAX_BODY} bytes")
    if not request.is_json:
        raise BodyError(422, "must be JSON (Content-Type: application/json)")
    data = _read_at_most(request.stream, MAX_BODY)
    if len(data) > MAX_BODY:  # no Content-Length, or a wrong one: what came counts
        raise BodyError(413, f"larger than {MAX_BODY} bytes")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise BodyError(422, f"not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_float=Decimal, parse_int=Decimal, object_pairs_hook=_object)
    except RecursionError:
        raise BodyError(422, "not valid JSON (nested too deep)") from None
    except ValueError as exc:  # JSONDecodeError
        raise BodyError(422, f"not valid JSON ({exc})") from None


def _read_at_most(stream: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` + 1 bytes: enough to tell a body over the limit, never all of it."""
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(64 * 1024, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


@bp.post("/purchases")
@api_key_required
def post_purchases():
    """Record one purchase (a JSON object) or many (a list); idempotent by receipt_no.

    Every item is validated before anything is written: a bad field anywhere gets 422 naming
    it and nothing is stored. Otherwise each receipt gets its own result: created, duplicate,
    or refused with the reason (e.g. an unknown card). A body over 1 MiB gets 413.
    """
    from storage.purchases import FieldError, parse_purchase, record_purchase

    try:
        body = read_json_body()
    except BodyError as exc:
        return jsonify(error=str(exc), field=exc.field), exc.status
    if body is None:
        return jsonify(error="body: must be a purchase (a JSON object) or a list of them", field="body"), 422
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > MAX_BATCH:
        return jsonify(error=f"body: send 1 to {MAX_BATCH} purchases", field="body"), 422
    state = _state()
    rules, now = state.rules, state.now()
    purchases, errors = [], []
    for index, item in enumerate(items):
        try:
            if isinstance(item, _RepeatedKey):
                raise FieldError(item.key[:64], "is given more than once")
            purchases.append(parse_purchase(item, rules, now))
        except FieldError as exc:
            error = {"error": str(exc), "field": exc.field}
            errors.append({"index": index, **error} if isinstance(body, list) else error)
    if errors:
        if isinstance(body, list):
            return jsonify(error="some purchases have bad fields; nothing was stored", errors=errors), 422
        return jsonify(errors[0]), 422
    with state.db.write() as session:
        results = [record_purchase(session, purchase, rules, actor="api", now=now) for purchase in purchases]
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
    """Refund a purchase in full (no body) or in part (``{"amount": "100.00", "refund_no": "RF1"}``),
    once per refund number; the points of that share are reversed (what is left of them). A receipt
    number no purchase can have (too long, control characters) is 404, like any other unknown one."""
    from storage.purchases import FieldError, parse_refund, refund_purchase

    try:
        body = read_json_body() if request.content_length or request.headers.get("Transfer-Encoding") else None
        if isinstance(body, _RepeatedKey):
            raise FieldError(body.key[:64], "is given more than once")
        wanted = parse_refund(body)
    except BodyError as exc:
        return jsonify(error=str(exc), field=exc.field), exc.status
    except FieldError as exc:
        return jsonify(error=str(exc), field=exc.field), 422
    with _state().db.write() as session:
        result = refund_purchase(session, receipt_no, wanted, actor="api", rules=_state().rules, now=_state().now())
    status = {"refunded": 200, "already_refunded": 200, "not_found": 404, "refused": 422}[result.status]
    return jsonify(result.as_dict()), status


@bp.get("/reports/complaints")
@api_key_required
def complaints_report():
    """The complaints report of a month (``?month=YYYY-MM``, default this month in the rules' zone):
    opened, resolved, share within the SLA, median first response and resolution hours, average rating,
    overall, by priority and by category (as `flask --app wsgi complaints report --json`)."""
    import re

    from storage.complaints import TicketError, report

    state = _state()
    month = request.args.get("month") or f"{state.today():%Y-%m}"
    if not re.fullmatch(r"\d{4}-\d{2}", month) or not 1 <= int(month[5:]) <= 12:
        return jsonify(error="month: must be YYYY-MM", field="month"), 422
    try:
        with state.db.read() as session:
            data = report(session, state.rules, month)
    except TicketError:
        return jsonify(error="month: must be YYYY-MM", field="month"), 422
    return jsonify(data)


@bp.post("/redemptions/<code>/handover")
@api_key_required
def handover(code: str):
    """Mark a gift's code collected in store (or a mailed gift sent), once. Optional body:
    ``{"staff": "M001", "note": "SF1234567890"}`` (who hands it over; a mailed gift's tracking note).
    A second call answers 409 ``already_closed`` saying when and by whom."""
    from sqlalchemy import select

    from storage import gifts
    from storage.models import Member, Staff

    try:
        body = read_json_body() if request.content_length or request.headers.get("Transfer-Encoding") else {}
    except BodyError as exc:
        return jsonify(error=str(exc), field=exc.field), exc.status
    if isinstance(body, _RepeatedKey):
        return jsonify(error=f"{body.key[:64]}: is given more than once", field=body.key[:64]), 422
    if not isinstance(body, dict):
        return jsonify(error="body: must be a JSON object", field="body"), 422
    for name in body:
        if name not in ("staff", "note"):
            return jsonify(error=f"{name[:64]}: unknown field", field=name[:64]), 422
    fields = {}
    for name, limit in (("staff", 32), ("note", 200)):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > limit
                                  or any(ord(c) < 32 for c in value)):
            return jsonify(error=f"{name}: text of 1 to {limit} characters", field=name), 422
        fields[name] = value.strip() if value else None
    state = _state()
    with state.db.write() as session:
        if fields["staff"] and session.get(Staff, fields["staff"]) is None:
            return jsonify(error=f"staff: no staff {fields['staff']}", field="staff"), 422
        actor = f"staff:{fields['staff']}" if fields["staff"] else "api"
        closing = gifts.hand_over(session, code[:64], actor, state.now(), note=fields["note"])
        redemption = closing.redemption
        card = session.scalar(select(Member.card_no).where(Member.id == redemption.member_id)) if redemption else None
    if closing.outcome == "not_found":
        return jsonify(status="not_found", code=gifts.normalise_code(code)[:64]), 404
    answer = {"code": redemption.code, "gift_id": redemption.gift_id, "gift_name": redemption.gift_name,
              "card_no": card, "by": redemption.closed_by,
              "at": redemption.closed_at.isoformat() if redemption.closed_at else None}
    if closing.outcome == "not_open":
        return jsonify(status="already_closed", redemption_status=redemption.status, **answer), 409
    return jsonify(status=redemption.status, **answer), 200


@bp.post("/events/<event_id>/checkin")
@api_key_required
def event_checkin(event_id: str):
    """Mark a booking attended at the door, once: ``{"code": "K7M2QX"}`` or ``{"card_no": "C0000001"}``.

    200 ``checked_in``; 200 ``already_checked_in`` with the first check-in's time; 404 for an unknown
    event or no sign-up with that code or card; 409 ``not_booked`` for a waitlist place or an ended sign-up,
    409 ``not_open`` / ``closed`` (with ``opens_at``, ``closes_at``) outside the session's check-in hours.
    """
    from storage.events import EventRefused, check_in

    state = _state()
    rules = state.rules
    try:
        body = read_json_body()
    except BodyError as exc:
        return jsonify(error=str(exc), field=exc.field), exc.status
    if isinstance(body, _RepeatedKey):
        return jsonify(error=f"{body.key[:64]}: is given more than once", field=body.key[:64]), 422
    if not isinstance(body, dict):
        return jsonify(error='body: must be an object: {"code": ...} or {"card_no": ...}', field="body"), 422
    unknown = sorted(set(body) - {"code", "card_no"})
    if unknown:
        return jsonify(error=f"{unknown[0][:64]}: unknown field", field=unknown[0][:64]), 422
    if len(body) != 1:
        return jsonify(error='body: give exactly one of "code" or "card_no"', field="body"), 422
    field, value = next(iter(body.items()))
    if not isinstance(value, str) or not value.strip() or len(value) > 32 or not value.isprintable():
        return jsonify(error=f"{field}: must be text of 1 to 32 printable characters", field=field), 422
    event = rules.events.event(event_id) if len(event_id) <= 24 else None
    if event is None:
        return jsonify(status="not_found", error=f"no event {event_id[:24]!r}"), 404
    try:
        with state.db.write() as session:
            done = check_in(session, rules, event, value, "api", state.now())
    except EventRefused as refused:  # not on the session's day
        values = refused.values
        return jsonify(status=refused.message.removeprefix("checkin_"), opens_at=values["opens"],
                       closes_at=values["closes"], error=rules.messages.render(refused.message, **values),
                       event_id=event.id, card_no=values["card_no"], code=values["code"]), 409
    if done.status == "not_found":
        return jsonify(status="not_found", error=f"no sign-up for {event.id} with {field} {value}"), 404
    signup, member = done.signup, done.member
    result = {"event_id": event.id, "session": done.row.session_key, "card_no": member.card_no, "name": member.name,
              "code": signup.code, "party": signup.party}
    if done.status == "not_booked":
        return jsonify(status="not_booked", sign_up=signup.status, **result), 409
    at = rules.local_time(signup.checked_in_at)
    if done.status == "already":
        return jsonify(status="already_checked_in", checked_in_at=at, **result), 200
    return jsonify(status="checked_in", checked_in_at=at, **result), 200
