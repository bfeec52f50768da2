"""Hexie's web application: the app factory.

``create_app()`` builds a stand-alone Flask app around an engine; a host application
mounts Hexie instead with :class:`hexie.web.extension.Hexie` and its own ``actor_loader``.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Mapping

from flask import Flask
from flask_babel import Babel

from .extension import Hexie, current_actor, hexie_state
from .i18n import TRANSLATIONS, babel_locale

__all__ = ["create_app", "Hexie", "current_actor", "hexie_state"]

MAX_UPLOAD = 10 * 1024 * 1024  # 10 MiB per request


def create_app(engine: Any = None, config: Mapping[str, Any] | None = None) -> Flask:
    """A Flask app serving Hexie on ``engine`` (default: the environment's, see interfaces.md)."""
    from hexie.workflows.config import environment_settings, secret_key

    if engine is None:
        from hexie.workflows.engine import create_engine
        engine = create_engine()
    # Static files are served by Hexie's own blueprint (the same under a host app).
    app = Flask(__name__, static_folder=None)
    app.config.update(
        # the instance key is made (and kept) only when the caller brings none
        SECRET_KEY=(config or {}).get("SECRET_KEY") or secret_key(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("HEXIE_SECURE_COOKIES") == "1",
        SESSION_COOKIE_NAME="hexie_session",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=os.environ.get("HEXIE_SECURE_COOKIES") == "1",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=MAX_UPLOAD,
        WTF_CSRF_TIME_LIMIT=None,  # a form left open over lunch still submits (token bound to the session)
        JSON_AS_ASCII=False,
    )
    # HEXIE_SITE_NAME, HEXIE_DEFAULT_LOCALE, HEXIE_TIMEZONE, HEXIE_LOGIN_VIEW from the environment
    # (a host sets the same names in its app.config)
    app.config.update(environment_settings())
    if config:
        app.config.update(config)
    # Hexie's own app: Flask-Babel picks the locale Hexie chose, so that the Babel formatters
    # and any gettext call follow the person (a host keeps its own Babel, if it has one).
    Babel(app, locale_selector=babel_locale, default_translation_directories=str(TRANSLATIONS))
    Hexie(app, engine)
    return app
