"""The dashboard at /admin (issue 14): sign-in, panels with charts and tables, CSV downloads.

Every URL under /admin needs a sign-in except the sign-in page itself; without one it redirects
there. Supervisors and admins see every member; an account manager sees their own key accounts
only (members whose ``manager_id`` is theirs) and gets 403 asking for another manager's.

Every response under /admin carries a Content-Security-Policy without script (the page has none:
the charts are SVG, pygal's script taken out) and with a per-response nonce for the inline styles,
``frame-ancestors 'none'``, ``nosniff``, ``Referrer-Policy: same-origin`` (so that a form's Origin
still names this site) and ``Cache-Control: no-store``. A refusal (a bad range, another manager's
accounts, a form from another site, an unknown page) is a Chinese page saying what was wrong, with a
link back (``dashboard.texts``).
"""
from __future__ import annotations

import csv
import io
import logging
import math
import secrets
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import NoReturn
from urllib.parse import urlsplit

from flask import (Blueprint, Response, current_app, g, make_response, redirect, render_template, request,
                   stream_with_context, url_for)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from bot.admin.panels import PANELS, Request, Table
from bot.services import BotState
from rules import echoed
from rules.dashboard import DashboardTexts
from storage import logins
from storage.models import Staff
from storage.reports import Scope

log = logging.getLogger(__name__)

COOKIE = "mbot_admin"
COOKIE_PATH = "/admin"
SEE_EVERYONE = ("supervisor", "admin")

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")


def _state() -> BotState:
    return current_app.extensions["bot"]


def _texts() -> DashboardTexts:
    return _state().rules.dashboard.texts


# --------------------------------------------------------------------------- headers and refusals


def _under_admin() -> bool:
    return request.path == COOKIE_PATH or request.path.startswith(COOKIE_PATH + "/")


@bp.after_app_request
def _guard_headers(response: Response) -> Response:
    """Every response under /admin (redirects, CSVs, error answers included): no script, no framing, not cached."""
    if _under_admin():
        nonce = g.get("csp_nonce")
        styles = f"'self' 'nonce-{nonce}'" if nonce else "'self'"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'none'; style-src {styles}; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
    return response


def _nonce() -> str:
    """This response's nonce for its inline <style> elements (the page's and the charts')."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


@bp.context_processor
def _template_values() -> dict:
    return {"csp_nonce": _nonce}


@bp.app_template_filter("nonced")
def _nonced(chart: Markup) -> Markup:
    """A chart whose <style> carries the response's nonce (pygal escapes every text, so only its own tags match)."""
    return Markup(str(chart).replace("<style", f'<style nonce="{_nonce()}"'))


class Refused(HTTPException):
    """A refusal the dashboard explains on a page: what was wrong, and where to go back to."""

    def __init__(self, code: int, message: str, back: str):
        super().__init__(description=message)
        self.code, self.back = code, back


def refuse(code: int, text: str, back: str, **values: object) -> NoReturn:
    """Stop the request with the page of ``dashboard.texts.<text>`` (rendered with ``values``) and a link to ``back``."""
    raise Refused(code, _texts().render(text, **values), back)


@bp.errorhandler(HTTPException)
def _refusal_page(exc: HTTPException):
    texts = _texts()
    code = exc.code or 400
    if isinstance(exc, Refused):
        message, back = exc.description, exc.back
    else:
        message = texts.not_found if code == 404 else texts.render("refused_other", code=code)
        back = url_for("admin.index")
    title = {403: texts.title_forbidden, 404: texts.title_not_found}.get(code, texts.title_bad_request)
    signed_in = g.get("staff") is not None
    back_text = texts.back_to_panel if signed_in else texts.back_to_login
    page = render_template("admin/refused.html", title=title, message=message,
                           back=back if signed_in else url_for("admin.login"), back_text=back_text)
    return make_response(page, code)


# --------------------------------------------------------------------------- sign-in


@bp.before_request
def _require_login():
    """Everything but the sign-in page needs an open session."""
    token = request.cookies.get(COOKIE)
    staff = None
    if token:
        with _state().db.read() as session:
            staff = logins.session_staff(session, token, _state().now())
    g.staff = staff
    if request.endpoint == "admin.login":
        return None
    if staff is None:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    if request.method == "POST" and not _same_origin():
        refuse(403, "foreign_form", url_for("admin.index"))
    return None


def _same_origin() -> bool:
    """A form posted from another site is refused (the cookie is SameSite=Lax as well)."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


def _secure() -> bool:
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _client_address() -> str:
    """The browser's address: the connection's, or behind ``TRUSTED_PROXIES`` proxies the one the
    outermost of them saw (its entry in X-Forwarded-For; entries before it are the browser's own say)."""
    hops = _state().settings.trusted_proxies
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    if hops and len(forwarded) >= hops:
        return forwarded[-hops][:64]
    return (request.remote_addr or "unknown")[:64]


def _safe_next(target: str | None) -> str:
    """Only a path inside the dashboard: never another site."""
    if target and target.startswith(COOKIE_PATH) and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("admin.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    state = _state()
    if request.method != "POST":  # GET, and HEAD (Flask answers it as GET): never a sign-in attempt
        if g.staff is not None:
            return redirect(_safe_next(request.args.get("next")))
        return render_template("admin/login.html", next=request.args.get("next", ""), error=None)
    if not _same_origin():
        refuse(403, "foreign_form", url_for("admin.login"))
    staff_id = logins.typed_id(request.form.get("staff_id") or "")
    password = request.form.get("password") or ""
    address = _client_address()
    now = state.now()
    settings = state.rules.dashboard
    with state.db.write() as session:
        outcome = logins.check_login(session, staff_id, password, address, now, settings)
        token = logins.open_session(session, outcome.staff.id, now, settings) if outcome.staff else None
    if token is None:
        return _login_refused(outcome, staff_id, address, now)
    log.info("dashboard sign-in: staff %s from %s", staff_id, address)
    response = redirect(_safe_next(request.form.get("next")))
    response.set_cookie(COOKIE, token, max_age=settings.session_hours * 3600, path=COOKIE_PATH,
                        httponly=True, samesite="Lax", secure=_secure())
    return response


def _login_refused(outcome: logins.LoginOutcome, staff_id: str, address: str, now: datetime) -> Response:
    """The same answer for every id (unknown, a member's card, service staff, real): only the pair's count differs."""
    texts = _texts()
    seconds = math.ceil((outcome.wait_until - now).total_seconds()) if outcome.wait_until else 0
    wait = (texts.render("wait_seconds", seconds=seconds) if seconds < 60
            else texts.render("wait_minutes", minutes=math.ceil(seconds / 60)))
    if outcome.waiting:
        error, status = texts.render("login_waiting", wait=wait), 429
    elif outcome.wait_until is not None:
        error, status = texts.render("login_wait", wait=wait), 401
    else:
        error, status = texts.login_failed, 401
    # The typed id only when it is a staff member's: a password typed into the id field stays out of the log.
    log.info("dashboard sign-in refused for %s from %s%s", staff_id if outcome.known else "an unknown id", address,
             f", waiting {seconds} s" if seconds else "")
    response = make_response(render_template("admin/login.html", next=request.form.get("next", ""), error=error),
                             status)
    if outcome.waiting:
        response.headers["Retry-After"] = str(seconds)
    return response


@bp.route("/logout", methods=["POST"])
def logout():
    with _state().db.write() as session:
        logins.close_session(session, request.cookies.get(COOKIE, ""))
    response = redirect(url_for("admin.login"))
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="Lax", secure=_secure())
    return response


# --------------------------------------------------------------------------- panels


def _scope(staff: Staff, back: str) -> Scope:
    """Whose members this request may see: a manager only their own key accounts."""
    asked = request.args.get("manager") or None
    if staff.role in SEE_EVERYONE:
        return Scope(asked)
    if asked is not None and asked != staff.id:
        refuse(403, "other_manager", back, manager=echoed(asked))
    return Scope(staff.id)


def _range(state: BotState, back: str) -> tuple[date, date]:
    """The date range asked for (``from``/``to`` as YYYY-MM-DD), or the last ``default_months`` months.

    Both ends lie between ``earliest_date`` and ``future_months`` months after today: beyond them
    (0001-01-01, 9999-12-31) a month's start in the rules' zone cannot even be computed.
    """
    today, settings, texts = state.today(), state.rules.dashboard, _texts()
    latest = month_start(today, settings.future_months + 1) - timedelta(days=1)
    first = _date_asked("from", texts.field_from, back) or max(
        last_months_start(today, settings.default_months), settings.earliest_date)
    last = _date_asked("to", texts.field_to, back) or today
    for field, day in ((texts.field_from, first), (texts.field_to, last)):
        if not settings.earliest_date <= day <= latest:
            refuse(400, "date_outside", back, field=field, value=day, earliest=settings.earliest_date, latest=latest)
    if last < first:
        refuse(400, "date_order", back, first=first, last=last)
    if (last - first).days > settings.max_months * 31:
        refuse(400, "range_too_long", back, months=settings.max_months)
    return first, last


def _date_asked(key: str, field: str, back: str) -> date | None:
    value = request.args.get(key)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        refuse(400, "bad_date", back, field=field, value=echoed(value))


def _build(name: str):
    if name not in PANELS:
        refuse(404, "not_found", url_for("admin.index"))
    state = _state()
    scope = _scope(g.staff, url_for("admin.panel", name=name))
    kept = {"manager": request.args["manager"]} if request.args.get("manager") else {}
    first, last = _range(state, url_for("admin.panel", name=name, **kept))
    with state.db.read() as session:
        view = PANELS[name](Request(session, state.rules, first, last, state.today(), scope, state.now()))
    return view, first, last, scope


@bp.route("/")
def index():
    return redirect(url_for("admin.panel", name="members", **request.args))


@bp.route("/<name>")
def panel(name: str):
    view, first, last, scope = _build(name)
    labels = _state().rules.dashboard.labels
    return render_template("admin/panel.html", view=view, name=name, first=first, last=last, scope=scope,
                           panels=[(key, labels[f"panel_{key}"]) for key in PANELS], staff=g.staff,
                           query={k: v for k, v in request.args.items() if k in ("from", "to", "manager")})


@bp.route("/<name>/<table>.csv")
def download(name: str, table: str):
    view, first, last, _ = _build(name)
    found = view.table(table)
    if found is None:
        refuse(404, "not_found", url_for("admin.panel", name=name))
    filename = f"{name}-{table}-{first}-{last}.csv"
    return Response(stream_with_context(_csv_lines(found)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.app_template_filter("cell")
def _cell(value: object) -> str:
    """A table cell: thousands separated, amounts with two decimals."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return "" if value is None else str(value)
    return f"{value:,.2f}" if isinstance(value, Decimal) else f"{value:,}"


def _csv_lines(table: Table):
    """The table as CSV, with a BOM so that Excel reads the Chinese headers as UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    yield "\ufeff"
    for row in [table.headers, *table.rows, *([table.total] if table.total else [])]:
        writer.writerow([spreadsheet_safe(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


# A text cell starting with one of these is a formula to a spreadsheet (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: object) -> object:
    """A CSV cell a spreadsheet shows instead of running: text starting like a formula gets a leading
    single quote (OWASP's advice; the value stays readable after it). Numbers stay numbers, negative ones too."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def month_start(day: date, months: int) -> date:
    """The first day of the month ``months`` months after ``day``'s (before it when negative)."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def last_months_start(today: date, months: int) -> date:
    """The first day of the month ``months - 1`` months before ``today``'s (the range of the last N months)."""
    return month_start(today, -(months - 1))
