"""Bearer tokens for the API: issued by ``POST /token``, checked on every other call.

Tokens are signed with :func:`hexie.web.extension.signing_key` (``HEXIE_SECRET_KEY`` of the
app's config, else its ``SECRET_KEY``, else the key ``hexie token`` uses) and name a row of
``hexie_api_tokens`` (:mod:`hexie.workflows.tokens`): a revoked row, or an inactive user,
makes the token worthless.
"""
from __future__ import annotations

from flask import g, request
from sqlalchemy import select

from hexie.models import User
from hexie.workflows.access import Actor
from hexie.workflows.auth import hash_password, verify_password
from hexie.workflows.errors import HexieError
from hexie.workflows.tokens import TOKEN_MAX_AGE, make_token, new_credential, revoke, revoke_all, token_actor, token_jti

from ..state import signing_key
from .context import Unauthorized, hexie

_dummy_hash: str | None = None

__all__ = ["signing_key", "issue_token", "authenticate_request", "revoke_request_token", "TooManyAttempts"]


class TooManyAttempts(HexieError):
    """Too many attempts for this username or from this address: wait a while (429)."""

    code = "too_many_attempts"
    status = 429

    def __init__(self, zh: str, en: str, retry_after: int = 60) -> None:
        super().__init__(zh, en, {"retry_after": retry_after})
        self.retry_after = retry_after


def _throttle():
    """The sign-in throttle shared with the web sign-in form (so alternating does not help)."""
    from hexie.web.auth import throttle
    return throttle()


def issue_token(username: str, password: str) -> dict:
    """``{"token", ...}`` for a right username and password; 401 otherwise (never says which was wrong).

    The throttle is asked first, before Argon2 spends its time: too many attempts for the
    username or from the address are a 429 with ``Retry-After``.
    """
    throttle, address = _throttle(), request.remote_addr or ""
    verdict = throttle.check(username, address)
    if not verdict:
        raise TooManyAttempts("尝试次数过多，请稍后再试", "too many attempts; try again later", verdict.retry_after)
    try:
        token = _check_password(username, password)
    except Unauthorized:
        throttle.failed(username, address)
        raise
    throttle.succeeded(username, address)
    return token


def _check_password(username: str, password: str) -> dict:
    global _dummy_hash
    engine = hexie()["engine"]
    with engine.session_factory() as s:
        user = s.scalars(select(User).where(User.username == username)).first()
        password_hash = user.password_hash if user is not None and user.active else None
        user_id = user.id if user is not None else None
    if password_hash is None:
        # Spend the same time as for a real user, so that timing does not tell who exists.
        _dummy_hash = _dummy_hash or hash_password("not-a-password")
        verify_password(_dummy_hash, password)
        raise _refused()
    if not verify_password(password_hash, password):
        raise _refused()
    with engine.transaction() as s:
        jti = new_credential(s, user_id, "token", "password", engine.clock())
    return {"token": make_token(signing_key(), username, jti), "token_type": "Bearer",
            "expires_in": TOKEN_MAX_AGE}


def _refused() -> Unauthorized:
    return Unauthorized("用户名或密码错误", "wrong username or password")


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("需要登录令牌", "a Bearer token is required (POST /token)")
    return token.strip()


def authenticate_request() -> Actor:
    """The Actor named by the request's ``Authorization: Bearer`` token; 401 otherwise."""
    actor = token_actor(hexie()["engine"], signing_key(), _bearer())
    if actor is None:
        raise Unauthorized("令牌无效、已过期或已作废", "the token is invalid, expired or revoked")
    return actor


def revoke_request_token(everything: bool = False) -> int:
    """Revoke the presented token (``everything``: every token and session of its user); how many."""
    engine = hexie()["engine"]
    actor = g.actor if "actor" in g else authenticate_request()
    jti = token_jti(signing_key(), _bearer())
    with engine.transaction() as s:
        if everything and actor.user_id is not None:
            return revoke_all(s, actor.user_id, engine.clock())
        return int(revoke(s, jti, engine.clock())) if jti else 0
