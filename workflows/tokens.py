"""API tokens: signed, time-limited, naming the user (no table to leak)."""
from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer

TOKEN_MAX_AGE = 30 * 24 * 3600  # a month


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="hexie-api-token")


def make_token(secret: str, username: str) -> str:
    return _serializer(secret).dumps({"u": username})


def read_token(secret: str, token: str, max_age: int = TOKEN_MAX_AGE) -> str | None:
    """The username a token names, or None when it is forged, garbled or expired."""
    try:
        data = _serializer(secret).loads(token, max_age=max_age)
    except (BadSignature, ValueError, TypeError):
        return None
    return data.get("u") if isinstance(data, dict) else None
