"""The app's Hexie objects as the API reads them, and the 401 error: below routing and auth."""
from __future__ import annotations

from typing import Any, Mapping

from flask import current_app

from hexie.workflows.errors import HexieError


def hexie() -> Mapping[str, Any]:
    """The app's Hexie objects: ``engine``, ``service``, ``queries`` (see hexie.web.extension)."""
    return current_app.extensions["hexie"]


class Unauthorized(HexieError):
    """No token, or one that is forged, expired or names nobody active."""

    code = "unauthorized"
    status = 401
