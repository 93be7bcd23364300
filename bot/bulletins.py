"""``GET /bulletins/<YYYY-MM>``: the month's bulletin as a page, where its template message links to."""
from __future__ import annotations

from flask import Blueprint, Response, current_app

from scheduler.bulletins import MONTH, bulletin_path, page_html

bp = Blueprint("bulletins", __name__)


@bp.get("/bulletins/<month>")
def bulletin(month: str) -> Response:
    """The bulletin the members of its tiers got that month (public, like the template that links here)."""
    rules = current_app.extensions["bot"].rules
    path = bulletin_path(rules, month) if MONTH.fullmatch(month) else None
    if path is None or not path.is_file():
        return Response(f"no bulletin for {month[:16]!r}: months are YYYY-MM, with a file in bulletins/\n", 404,
                        mimetype="text/plain")
    page = Response(page_html(month, path.read_text(encoding="utf-8")), mimetype="text/html")
    page.cache_control.public, page.cache_control.max_age = True, 300
    return page
