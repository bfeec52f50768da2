"""``hexie serve``'s request log without a survivor's name.

``GET /api/v1/cases?lookup=…`` (the blind-index search, protection.md) carries the survivor's
full name or ID number in its query string, as interfaces.md asks. The search itself is never
kept (its audit event records who and which cases, never the value), so the server's own log
must not keep it either: the value of every ``lookup`` parameter is written as ``[redacted]``.
Other parameters are logged as they came.
"""
from __future__ import annotations

from urllib.parse import unquote_plus

from werkzeug.serving import WSGIRequestHandler

#: The query parameters whose values never reach the log.
SECRET_PARAMETERS = frozenset({"lookup"})
REDACTED = "[redacted]"


def redact_path(path: str) -> str:
    """``path`` (with its query string) with each secret parameter's value replaced."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    fragment = ""
    if "#" in query:
        query, fragment = query.split("#", 1)
        fragment = "#" + fragment
    pairs = []
    for pair in query.split("&"):
        key = pair.split("=", 1)[0]
        try:
            name = unquote_plus(key).strip().lower()
        except Exception:   # a key that does not decode is kept as it is
            name = key
        pairs.append(f"{key}={REDACTED}" if name in SECRET_PARAMETERS else pair)
    return f"{base}?{'&'.join(pairs)}{fragment}"


class RedactingRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler whose access-log line has the secret parameters redacted."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = getattr(self, "path", None)
        if path is None:
            return super().log_request(code, size)
        self.path = redact_path(path)
        try:
            super().log_request(code, size)
        finally:
            self.path = path
