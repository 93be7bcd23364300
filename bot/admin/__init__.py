"""The dashboard at /admin (issue 14): sign-in, panels with charts and tables, CSV downloads.

Every URL under /admin needs a sign-in except the sign-in page itself; without one it redirects
there. Supervisors and admins see every member; an account manager sees their own key accounts
only (members whose ``manager_id`` is theirs) and gets 403 asking for another manager's.
"""
from __future__ import annotations

import csv
import io
import logging
from datetime import date
from decimal import Decimal
from urllib.parse import urlsplit

from flask import (Blueprint, Response, abort, current_app, g, redirect, render_template, request,
                   stream_with_context, url_for)

from bot.admin.panels import PANELS, Request, Table
from bot.services import BotState
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
        abort(403)
    return None


def _same_origin() -> bool:
    """A form posted from another site is refused (the cookie is SameSite=Lax as well)."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


def _secure() -> bool:
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _safe_next(target: str | None) -> str:
    """Only a path inside the dashboard: never another site."""
    if target and target.startswith(COOKIE_PATH) and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("admin.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    state = _state()
    if request.method == "GET":
        if g.staff is not None:
            return redirect(_safe_next(request.args.get("next")))
        return render_template("admin/login.html", next=request.args.get("next", ""), error=None)
    if not _same_origin():
        abort(403)
    staff_id = (request.form.get("staff_id") or "").strip()[:32]
    password = request.form.get("password") or ""
    now = state.now()
    with state.db.write() as session:
        outcome = logins.check_login(session, staff_id, password, now, state.rules.dashboard)
        token = logins.open_session(session, outcome.staff.id, now, state.rules.dashboard) if outcome.staff else None
    if token is None:
        if outcome.locked_until is not None:
            minutes = max(1, int((outcome.locked_until - now).total_seconds() + 59) // 60)
            error = f"密码错误次数过多，该账号已锁定，请 {minutes} 分钟后再试。"
            log.warning("dashboard sign-in refused: staff %s is locked until %s", staff_id, outcome.locked_until)
        else:
            error = "员工编号或密码不正确。"
            if outcome.tries_left is not None:
                error += f"再错 {outcome.tries_left} 次将锁定 {state.rules.dashboard.lockout_minutes} 分钟。"
            log.info("dashboard sign-in refused for staff id %s", staff_id)
        return render_template("admin/login.html", next=request.form.get("next", ""), error=error), 401
    log.info("dashboard sign-in: staff %s", staff_id)
    response = redirect(_safe_next(request.form.get("next")))
    response.set_cookie(COOKIE, token, max_age=state.rules.dashboard.session_hours * 3600, path=COOKIE_PATH,
                        httponly=True, samesite="Lax", secure=_secure())
    return response


@bp.route("/logout", methods=["POST"])
def logout():
    with _state().db.write() as session:
        logins.close_session(session, request.cookies.get(COOKIE, ""))
    response = redirect(url_for("admin.login"))
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="Lax", secure=_secure())
    return response


# --------------------------------------------------------------------------- panels


def _scope(staff: Staff) -> Scope:
    """Whose members this request may see: a manager only their own key accounts."""
    asked = request.args.get("manager") or None
    if staff.role in SEE_EVERYONE:
        return Scope(asked)
    if asked is not None and asked != staff.id:
        abort(403)
    return Scope(staff.id)


def _range(state: BotState) -> tuple[date, date]:
    """The date range asked for (``from``/``to`` as YYYY-MM-DD), or the last ``default_months`` months."""
    today = state.today()
    settings = state.rules.dashboard
    try:
        first = (date.fromisoformat(request.args["from"]) if request.args.get("from")
                 else last_months_start(today, settings.default_months))
        last = date.fromisoformat(request.args["to"]) if request.args.get("to") else today
    except ValueError:
        abort(400)
    if last < first or (last - first).days > settings.max_months * 31:
        abort(400)
    return first, last


def _build(name: str):
    if name not in PANELS:
        abort(404)
    state = _state()
    first, last = _range(state)
    scope = _scope(g.staff)
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
        abort(404)
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
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def last_months_start(today: date, months: int) -> date:
    """The first day of the month ``months - 1`` months before ``today``'s (the range of the last N months)."""
    index = today.year * 12 + today.month - 1 - (months - 1)
    return date(index // 12, index % 12 + 1, 1)

