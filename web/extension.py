"""The Flask extension: Hexie mounted in an app of its own or in a host application.

Usage (``create_app`` does exactly this)::

    hexie = Hexie(app, engine)                  # or: hexie = Hexie(); hexie.init_app(app, engine)

A host application (an ERP with its own sign-in) passes ``actor_loader``: a callable
returning the current :class:`hexie.workflows.access.Actor` (or None when nobody is signed
in). That is the whole plugin protocol: *who is the current user, and which roles does
she hold where*. Without it, Hexie signs people in itself with Flask-Login against the
``users`` table.

Per application the extension keeps a :class:`HexieState` in ``app.extensions["hexie"]``
(``.engine``, ``.service``, ``.queries``, ``.ledger``; also readable as ``state["engine"]``). Views
get the current person with :func:`current_actor` (loaded once per request).
"""
from __future__ import annotations

import hmac
import logging
import weakref
from typing import Any

from flask import Flask, current_app, g, has_app_context, jsonify, render_template, request, url_for
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from werkzeug.exceptions import HTTPException

from hexie.workflows import tokens
from hexie.workflows.access import Actor, is_manager
from hexie.workflows.engine import Engine, set_default_engine
from hexie.workflows.errors import HexieError
from hexie.workflows.ledger import LedgerQueries
from hexie.workflows.queries import CaseQueries
from hexie.workflows.service import WorkflowService

from . import i18n
from .state import (  # noqa: F401  (re-exported: the names were first defined here)
    ActorLoader, HexieState, LoginUser, current_actor, hexie_state, nav_counts, password_stamp, signing_key,
)

log = logging.getLogger(__name__)

#: Statuses whose error page we render (others pass through untouched).
ERROR_PAGES = (400, 401, 403, 404, 405, 409, 413, 422, 500)



#: The apps Hexie is mounted on in this process (for issue_token outside any app context).
_APPS: "weakref.WeakSet[Flask]" = weakref.WeakSet()


def _token_context(engine: Engine | None = None) -> tuple[Engine, str] | None:
    """The engine and key for :func:`hexie.issue_token`: the current app's inside a request or an
    app context; outside one, those of the app Hexie is mounted on (on ``engine`` when given),
    when there is one, or all of them agree."""
    if has_app_context() and "hexie" in current_app.extensions \
            and (engine is None or hexie_state().engine is engine):
        return hexie_state().engine, signing_key()
    found = {}
    for app in list(_APPS):
        state = app.extensions.get("hexie")
        if state is not None and (engine is None or state.engine is engine):
            found[(id(state.engine), signing_key(app))] = (state.engine, signing_key(app))
    return next(iter(found.values())) if len(found) == 1 else None


tokens.context_providers.append(_token_context)


class Hexie:
    """Flask extension wiring the workflow engine into an application."""

    def __init__(self, app: Flask | None = None, engine: Engine | None = None,
                 actor_loader: ActorLoader | None = None) -> None:
        self.engine = engine
        self.actor_loader = actor_loader
        if app is not None:
            self.init_app(app, engine, actor_loader)

    def init_app(self, app: Flask, engine: Engine | None = None,
                 actor_loader: ActorLoader | None = None) -> HexieState:
        """Install Hexie on ``app``: engine, sign-in, CSRF, blueprints, error pages, helpers."""
        engine = engine or self.engine
        if engine is None:
            from hexie.workflows.engine import create_engine
            engine = create_engine()
        actor_loader = actor_loader or self.actor_loader
        prefix = (app.config.get("HEXIE_URL_PREFIX") or "").rstrip("/")
        from hexie.workflows.config import SETTINGS
        for name, default in SETTINGS.items():
            if default is not None:
                app.config.setdefault(name, default)
        app.config.setdefault("HEXIE_PER_PAGE", 25)
        engine.set_timezone(app.config["HEXIE_TIMEZONE"])   # "today" in guards, local dates of timers

        own_login = actor_loader is None
        csrf = app.extensions.get("csrf")
        scoped_csrf = csrf is None and not own_login
        if csrf is None:
            csrf = CSRFProtect()
            if scoped_csrf:  # a host without CSRF protection: guard Hexie's own forms only
                _protect_blueprints(app, csrf)
            else:
                csrf.init_app(app)
        if own_login:
            self._setup_login(app, engine)
            actor_loader = _flask_login_actor
        state = HexieState(engine=engine, service=WorkflowService(engine), queries=CaseQueries(engine),
                           ledger=LedgerQueries(engine), actor_loader=actor_loader, own_login=own_login, csrf=csrf, url_prefix=prefix)
        app.extensions["hexie"] = state
        set_default_engine(engine)    # host models' WorkflowMixin falls back to it
        _APPS.add(app)

        from .auth import bp as auth_bp
        from .views import assets, bp as views_bp
        app.register_blueprint(assets, url_prefix=prefix or None)
        if own_login:
            app.register_blueprint(auth_bp, url_prefix=prefix or None)
        app.register_blueprint(views_bp, url_prefix=prefix or None)
        self._register_optional(app, csrf, prefix)
        from .review import bp as review_bp, hexie_review
        app.register_blueprint(review_bp, url_prefix=prefix or None)
        app.jinja_env.globals["hexie_review"] = hexie_review     # {{ hexie_review(record) }} in host templates
        app.jinja_env.globals.setdefault("hexie_csrf_token", generate_csrf)

        app.register_error_handler(HexieError, _hexie_error)
        from sqlalchemy.exc import DBAPIError, DisconnectionError, TimeoutError as PoolTimeout
        for kind in (DBAPIError, DisconnectionError, PoolTimeout):
            app.register_error_handler(kind, _database_error)
        # A host keeps its own error pages and headers unless it asks for Hexie's.
        if app.config.get("HEXIE_ERROR_PAGES", own_login):
            for status in ERROR_PAGES:
                app.register_error_handler(status, _http_error)
        if own_login or scoped_csrf:
            app.register_error_handler(CSRFError, _csrf_error)
        app.context_processor(_template_context)
        app.after_request(_security_headers)
        return state

    # -- sign-in -------------------------------------------------------------------
    @staticmethod
    def _setup_login(app: Flask, engine: Engine) -> None:
        manager = getattr(app, "login_manager", None) or LoginManager(app)
        manager.login_view = "hexie_auth.login"
        manager.session_protection = "basic"

        @manager.user_loader
        def load_user(user_id: str) -> LoginUser | None:
            parts = user_id.rsplit(":", 2)
            if len(parts) != 3:
                return None     # a cookie from before sessions had rows: sign in again
            username, stamp, sid = parts
            with engine.read_session() as s:   # one read (and now and then the sign-in's last use)
                found = tokens.credential_actor(s, username, sid, "session", engine.clock())
            if found is None:
                return None
            actor, password_hash = found
            expected = password_stamp(password_hash)
            if not hmac.compare_digest(expected, stamp):
                return None
            return LoginUser(actor, expected, sid)

    # -- blueprints of the other parts, when present ---------------------------------
    @staticmethod
    def _register_optional(app: Flask, csrf: CSRFProtect, prefix: str) -> None:
        try:
            from .admin import bp as admin_bp
        except ModuleNotFoundError as err:
            if err.name not in ("hexie.web.admin", f"{__package__}.admin"):
                raise
        else:
            app.register_blueprint(admin_bp, url_prefix=f"{prefix}/admin")
        try:
            from .api import bp as api_bp
        except ModuleNotFoundError as err:
            if err.name not in ("hexie.web.api", f"{__package__}.api"):
                raise
        else:
            csrf.exempt(api_bp)  # bearer tokens, no cookies: CSRF does not apply
            app.register_blueprint(api_bp, url_prefix=f"{prefix}/api/v1")


#: Blueprints whose pages are Hexie's (CSRF and headers apply to them in a host app).
HEXIE_BLUEPRINTS = ("hexie", "hexie_auth", "hexie_assets", "admin", "hexie_review")


def _protect_blueprints(app: Flask, csrf: CSRFProtect) -> None:
    """CSRF checks for Hexie's blueprints only, with Flask-WTF's settings and ``csrf_token()``."""
    app.config.setdefault("WTF_CSRF_ENABLED", True)
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", True)
    app.config["WTF_CSRF_METHODS"] = set(app.config.get("WTF_CSRF_METHODS", ["POST", "PUT", "PATCH", "DELETE"]))
    app.config.setdefault("WTF_CSRF_FIELD_NAME", "csrf_token")
    app.config.setdefault("WTF_CSRF_HEADERS", ["X-CSRFToken", "X-CSRF-Token"])
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 3600)
    app.config.setdefault("WTF_CSRF_SSL_STRICT", True)
    app.jinja_env.globals.setdefault("csrf_token", generate_csrf)

    @app.before_request
    def hexie_csrf_protect():
        if request.blueprint in HEXIE_BLUEPRINTS and app.config["WTF_CSRF_ENABLED"]:
            csrf.protect()


def _flask_login_actor() -> Actor | None:
    if current_user and current_user.is_authenticated:
        return current_user.actor
    return None


# -- error pages ---------------------------------------------------------------------

def _wants_json() -> bool:
    prefix = hexie_state().url_prefix if "hexie" in current_app.extensions else ""
    return request.path.startswith(f"{prefix}/api/") or request.blueprint == "api"


def _error_response(status: int, code: str, message: str, details: dict | None = None):
    """The error page (or JSON body), in the reader's language only."""
    if _wants_json():
        body = {"error": {"code": code, "message": message, "details": details or {}}}
        return jsonify(body), status
    return render_template("error.html", status=status, message=message, details=details or {}), status


def _hexie_error(err: HexieError):
    if err.status == 404 and not _wants_json():
        # one page for every "not found" (the engine's and the router's), whatever was asked
        return _error_response(404, "not_found", i18n.t("error.404"))
    return _error_response(err.status, err.code, i18n.error_text(err), err.details)


def _http_error(err: HTTPException):
    status = getattr(err, "code", 500) or 500
    key = f"error.{status}"
    code = "not_found" if status == 404 else (err.name or "error").lower().replace(" ", "_")
    return _error_response(status, code, i18n.t(key) if key in i18n.CATALOG else i18n.t("error.500"))


def _database_error(err: Exception):
    """A database blip on one of Hexie's pages: 503 with Retry-After (the person retries), not a 500."""
    from hexie.models.db import database_unavailable
    if not database_unavailable(err) or not (request.blueprint in HEXIE_BLUEPRINTS or _wants_json()):
        raise err
    g.hexie_nav = {"mine": 0, "available": 0, "overdue": 0, "escalated": 0}   # no counts without the database
    try:
        response = current_app.make_response(_error_response(503, "unavailable", i18n.t("error.503")))
    except Exception as again:   # the page itself needs the database (the signed-in person): plain text
        if not database_unavailable(again):
            raise
        response = current_app.make_response((i18n.t("error.503"), 503, {"Content-Type": "text/plain; charset=utf-8"}))
    response.headers["Retry-After"] = "5"
    return response


def _csrf_error(err: CSRFError):
    return _error_response(400, "csrf", i18n.t("error.400.csrf"))


# -- templates and headers -------------------------------------------------------------

def admin_url() -> tuple[str, str] | None:
    """(address, catalog key) of the admin part for this person, when that part is installed.

    Managers and administrators get its home page; everyone else its "away" page, where
    she names a delegate for while she is out.
    """
    actor = current_actor()
    if actor is None or "admin" not in current_app.blueprints:
        return None
    manager = is_manager(actor, hexie_state().engine.registry.roles)
    wanted = f"{hexie_state().url_prefix}/admin" + ("" if manager else "/away")
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint.startswith("admin.") and rule.rule.rstrip("/") == wanted \
                and "GET" in (rule.methods or ()) and not rule.arguments:
            return url_for(rule.endpoint), "nav.admin" if manager else "nav.away"
    return None


def site_name() -> str:
    """``HEXIE_SITE_NAME`` (a text, or ``{"zh": …, "en": …}``) in the current language, else
    县妇联业务办理系统 / County Women's Federation casework."""
    name = current_app.config.get("HEXIE_SITE_NAME")
    if isinstance(name, dict):
        return str(name.get(i18n.get_locale()) or name.get("zh") or next(iter(name.values()), ""))
    return str(name) if name else i18n.t("app.tagline")


def _template_context() -> dict[str, Any]:
    from . import views
    return {
        "t": i18n.t, "label": i18n.label, "locale": i18n.get_locale(), "site_name": site_name,
        "detail_text": i18n.detail_text,
        "current_actor": current_actor, "nav_counts": nav_counts, "admin_url": admin_url,
        "hexie_own_login": hexie_state().own_login if "hexie" in current_app.extensions else False,
        "has_admin": "admin" in current_app.blueprints,
        **views.template_helpers(),
    }


#: No outside hosts anywhere: every asset comes from the app itself (offline intranets).
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


def _security_headers(response):
    if not (current_app.config.get("HEXIE_SECURITY_HEADERS", hexie_state().own_login)
            or request.blueprint in HEXIE_BLUEPRINTS):
        return response
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")  # case data stays off shared caches
    return response
