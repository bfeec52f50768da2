"""Bearer tokens for the API: issued by ``POST /token``, checked on every other call.

Tokens are signed with the app's secret key (:mod:`hexie.workflows.tokens`); the same key
signs the tokens printed by ``hexie token``, so ``create_app`` must use
:func:`hexie.workflows.config.secret_key` as its ``SECRET_KEY`` unless told otherwise.
"""
from __future__ import annotations

from typing import Any

from flask import current_app, request
from sqlalchemy import select

from hexie.models import User
from hexie.workflows.access import Actor
from hexie.workflows.auth import hash_password, verify_password
from hexie.workflows.config import secret_key
from hexie.workflows.errors import HexieError, NotFound
from hexie.workflows.tokens import TOKEN_MAX_AGE, make_token, read_token

from .routing import Unauthorized, hexie

_dummy_hash: str | None = None


def signing_key() -> str:
    """The app's ``SECRET_KEY``, else the instance key (the one ``hexie token`` uses)."""
    return current_app.config.get("SECRET_KEY") or secret_key()


class TooManyAttempts(HexieError):
    """Too many wrong passwords for this username from this address: wait a minute."""

    code = "too_many_attempts"
    status = 429


def _throttle() -> Any:
    """The sign-in throttle shared with the web sign-in form (so alternating does not help)."""
    try:
        from hexie.web.auth import LoginThrottle, throttle
    except ImportError:  # the web core is not there: the API alone
        return None
    try:
        return throttle()
    except (AttributeError, KeyError, TypeError):  # mounted without web.extension: one of our own
        return current_app.extensions.setdefault("hexie_api_throttle", LoginThrottle())


def issue_token(username: str, password: str) -> dict:
    """``{"token", ...}`` for a right username and password; 401 otherwise (never says which was wrong).

    Repeated failures for one username from one address are refused for a while (429),
    with the same throttle as the sign-in form.
    """
    throttle, address = _throttle(), request.remote_addr or ""
    if throttle is not None and throttle.blocked(username, address):
        raise TooManyAttempts("尝试次数过多，请稍后再试", "too many failed attempts; try again in a minute")
    try:
        token = _check_password(username, password)
    except Unauthorized:
        if throttle is not None:
            throttle.failed(username, address)
        raise
    if throttle is not None:
        throttle.succeeded(username, address)
    return token


def _check_password(username: str, password: str) -> dict:
    global _dummy_hash
    with hexie()["engine"].session_factory() as s:
        user = s.scalars(select(User).where(User.username == username)).first()
        password_hash = user.password_hash if user is not None and user.active else None
    if password_hash is None:
        # Spend the same time as for a real user, so that timing does not tell who exists.
        _dummy_hash = _dummy_hash or hash_password("not-a-password")
        verify_password(_dummy_hash, password)
        raise _refused()
    if not verify_password(password_hash, password):
        raise _refused()
    return {"token": make_token(signing_key(), username), "token_type": "Bearer",
            "expires_in": TOKEN_MAX_AGE}


def _refused() -> Unauthorized:
    return Unauthorized("用户名或密码错误", "wrong username or password")


def authenticate_request() -> Actor:
    """The Actor named by the request's ``Authorization: Bearer`` token; 401 otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("需要登录令牌", "a Bearer token is required (POST /token)")
    username = read_token(signing_key(), token.strip())
    if username is None:
        raise Unauthorized("令牌无效或已过期", "the token is invalid or has expired")
    try:
        return hexie()["engine"].actor(username)
    except NotFound:
        raise Unauthorized("令牌对应的用户不存在或已停用", "the token's user no longer exists or is inactive") from None
