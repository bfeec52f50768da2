"""Signing in and out (Hexie's own users; a host application brings its own sign-in).

Passwords are checked with Argon2 (:mod:`hexie.workflows.auth`), after the throttle that every
process shares (:mod:`hexie.workflows.throttle`: after five failures within fifteen minutes a
username is refused from that address for a minute; wider limits per username and per
address). Messages never tell whether a username exists. Each sign-in is a session row
(:mod:`hexie.workflows.tokens`): signing out revokes it, so a replayed cookie signs nobody in.
"""
from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode, urlsplit

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select
from wtforms import Form, HiddenField, PasswordField, StringField
from wtforms.validators import InputRequired, Length

from hexie.models import User
from hexie.workflows.auth import hash_password, needs_rehash, verify_password
from hexie.workflows.throttle import LoginThrottle
from hexie.workflows.tokens import new_credential, revoke, revoke_all

from .orgmap import org_map
from .state import LoginUser, current_actor, hexie_state, password_stamp
from .i18n import t

bp = Blueprint("hexie_auth", __name__)

def throttle() -> LoginThrottle:
    """The application's throttle (one per app, counting in the database every process shares)."""
    state = hexie_state()
    if "throttle" not in state.extra:
        state.extra["throttle"] = LoginThrottle()
    return state.extra["throttle"].bind(state.engine)


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


def login_url(next_path: str | None = None) -> str | None:
    """Where a person signs in: ``HEXIE_LOGIN_VIEW`` (an endpoint such as ``"auth.login"`` or a
    path), else Hexie's own ``/login`` in its own app, else the host's Flask-Login
    ``login_view``; with ``next`` when given. None: nowhere known (a 401 then)."""
    config = current_app.config
    view = config.get("HEXIE_LOGIN_VIEW") or config.get("HEXIE_LOGIN_URL")
    if not view and hexie_state().own_login:
        view = "hexie_auth.login"
    if not view:
        view = getattr(getattr(current_app, "login_manager", None), "login_view", None)
    if not view:
        return None
    base = view if "/" in view else url_for(view)
    if not next_path:
        return base
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'next': next_path})}"


def unauthenticated():
    """What a request without a signed-in person gets: a page request goes to the sign-in
    view (with ``next``), anything else is a 401."""
    target = login_url(request.full_path.rstrip("?")) if request.method in ("GET", "HEAD") else None
    if target is None:
        abort(401)
    if hexie_state().own_login:
        flash(t("login.required"), "info")
    return redirect(target)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form."""
    if current_actor() is not None:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm(request.form if request.method == "POST" else None,
                     next=request.args.get("next", ""))
    error = None
    status = 200
    headers: dict[str, str] = {}
    if request.method == "POST" and form.validate():
        username = form.username.data.strip()
        address = request.remote_addr or "-"
        verdict = throttle().check(username, address)
        if not verdict:
            error, status = t("login.throttled"), 429
            headers["Retry-After"] = str(verdict.retry_after)
        else:
            user = _check_password(username, form.password.data)
            if user is None:
                throttle().failed(username, address)
                error, status = t("login.failed"), 401
            else:
                throttle().succeeded(username, address)
                engine = hexie_state().engine
                actor = engine.actor(user.username)
                with engine.transaction() as s:
                    sid = new_credential(s, user.id, "session", "login", engine.clock())
                lang = session.get("lang")
                session.clear()  # a fresh session on sign-in (no fixation)
                if lang:
                    session["lang"] = lang
                login_user(LoginUser(actor, password_stamp(user.password_hash), sid))
                org_map(engine)   # the org tree her pages read (web/orgmap.py): read now, not on her first page
                flash(t("login.welcome", name=actor.name or actor.username), "success")
                return redirect(safe_next(form.next.data))
    elif request.method == "POST":
        error, status = t("login.failed"), 400
    return render_template("login.html", form=form, error=error), status, headers


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
            s.refresh(user)
        return user


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    """POST signs out (a link alone must not); GET asks first.

    Signing out revokes this session's row, so the cookie is worth nothing afterwards, even
    replayed; ``everywhere=1`` revokes every session and API token of the person.
    """
    if request.method == "GET":
        if current_actor() is None:
            return redirect(url_for("hexie_auth.login"))
        return render_template("logout.html")
    user = current_user if current_user and current_user.is_authenticated else None
    if user is not None:
        engine = hexie_state().engine
        with engine.transaction() as s:
            if request.form.get("everywhere") == "1" and user.actor.user_id is not None:
                revoke_all(s, user.actor.user_id, engine.clock())
            elif getattr(user, "sid", None):
                revoke(s, user.sid, engine.clock())
    lang = session.get("lang")
    logout_user()
    session.clear()
    if lang:
        session["lang"] = lang
    flash(t("logout.done"), "info")
    return redirect(url_for("hexie_auth.login"))
