"""The store systems' HTTP API (JSON, authenticated by the X-API-Key header)."""
from __future__ import annotations

import functools
import hmac

from flask import Blueprint, current_app, jsonify, request

bp = Blueprint("api", __name__, url_prefix="/api")


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
