"""Signing in and out (Hexie's own users; a host application brings its own sign-in).

Passwords are checked with Argon2 (:mod:`hexie.workflows.auth`). Repeated failures for one
username from one address are slowed down: after five within fifteen minutes, that
pair is refused for a minute. Messages never tell whether a username exists.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from functools import wraps
from typing import Callable
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_login import login_user, logout_user
from sqlalchemy import select
from wtforms import Form, HiddenField, PasswordField, StringField
from wtforms.validators import InputRequired, Length

from hexie.models import User
from hexie.workflows.auth import hash_password, needs_rehash, verify_password

from .extension import LoginUser, current_actor, hexie_state, password_stamp
from .i18n import t

bp = Blueprint("hexie_auth", __name__)

MAX_FAILURES = 5
WINDOW = 15 * 60        # seconds in which failures count
LOCKOUT = 60            # seconds refused after too many


class LoginThrottle:
    """Failed sign-ins per (username, address), in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] > WINDOW:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times

    def blocked(self, username: str, address: str) -> bool:
        """True while this pair must wait (five failures in the window, the last under a minute ago)."""
        now = self.clock()
        with self._lock:
            times = self._recent((username.lower(), address), now)
            return len(times) >= MAX_FAILURES and now - times[-1] < LOCKOUT

    def failed(self, username: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > 10_000:  # a flood of made-up names must not eat memory
                for key in list(self._failures):
                    self._recent(key, now)
            times = self._failures.setdefault((username.lower(), address), deque(maxlen=50))
            times.append(now)

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop((username.lower(), address), None)


def throttle() -> LoginThrottle:
    """The application's throttle (one per app)."""
    state = hexie_state()
    if "throttle" not in state.extra:
        state.extra["throttle"] = LoginThrottle()
    return state.extra["throttle"]


# A hash to verify against when the username is unknown, so both cases take as long.
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password("hexie-no-such-user")
    return _DUMMY_HASH


class LoginForm(Form):
    username = StringField(validators=[InputRequired(), Length(max=80)])
    password = PasswordField(validators=[InputRequired(), Length(max=200)])
    next = HiddenField()


def safe_next(target: str | None, default: str | None = None) -> str:
    """``target`` when it is a path on this site, else ``default`` (no open redirects)."""
    default = default or url_for("hexie.inbox")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return default
    return target


def login_required(view):
    """Only for a signed-in person: others go to the sign-in page (or get 401 in a host app)."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        if current_actor() is None:
            return unauthenticated()
        return view(*args, **kwargs)
    return wrapped


def unauthenticated():
    """What a request without a signed-in person gets."""
    state = hexie_state()
    if not state.own_login:
        login_url = current_app.config.get("HEXIE_LOGIN_URL")
        if login_url:
            return redirect(login_url)
        abort(401)
    if request.method == "GET":
        flash(t("login.required"), "info")
        return redirect(url_for("hexie_auth.login", next=request.full_path.rstrip("?")))
    abort(401)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form."""
    if current_actor() is not None:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm(request.form if request.method == "POST" else None,
                     next=request.args.get("next", ""))
    error = None
    status = 200
    if request.method == "POST" and form.validate():
        username = form.username.data.strip()
        address = request.remote_addr or "-"
        if throttle().blocked(username, address):
            error, status = t("login.throttled"), 429
        else:
            user = _check_password(username, form.password.data)
            if user is None:
                throttle().failed(username, address)
                error, status = t("login.failed"), 401
            else:
                throttle().succeeded(username, address)
                actor = hexie_state().engine.actor(user.username)
                lang = session.get("lang")
                session.clear()  # a fresh session on sign-in (no fixation)
                if lang:
                    session["lang"] = lang
                login_user(LoginUser(actor, password_stamp(user.password_hash)))
                flash(t("login.welcome", name=actor.name or actor.username), "success")
                return redirect(safe_next(form.next.data))
    elif request.method == "POST":
        error, status = t("login.failed"), 400
    return render_template("login.html", form=form, error=error), status


def _check_password(username: str, password: str) -> User | None:
    """The active user with this username and password, or None (same cost either way)."""
    engine = hexie_state().engine
    with engine.session_factory() as s:
        user = s.scalars(select(User).where(User.username == username)).first()
        if user is None or not user.active:
            verify_password(_dummy_hash(), password)
            return None
        if not verify_password(user.password_hash, password):
            return None
        if needs_rehash(user.password_hash):  # stronger parameters since: upgrade quietly
            user.password_hash = hash_password(password)
            s.commit()
        return user


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    """POST signs out (a link alone must not); GET asks first."""
    if request.method == "GET":
        if current_actor() is None:
            return redirect(url_for("hexie_auth.login"))
        return render_template("logout.html")
    lang = session.get("lang")
    logout_user()
    session.clear()
    if lang:
        session["lang"] = lang
    flash(t("logout.done"), "info")
    return redirect(url_for("hexie_auth.login"))
