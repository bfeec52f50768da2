"""The ``hexie`` and ``hexie_assets`` blueprints: sign-in required on every page, and the language switch."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, redirect, render_template, request, session, url_for

from ..auth import unauthenticated
from ..state import current_actor, hexie_state
from ..i18n import LOCALES
from .common import same_site_path

_WEB = Path(__file__).resolve().parent.parent

bp = Blueprint("hexie", __name__, template_folder=str(_WEB / "templates"))
assets = Blueprint("hexie_assets", __name__, static_folder=str(_WEB / "static"),
                   static_url_path="/static")

OPEN_ENDPOINTS = {"hexie.set_language"}


@bp.before_request
def _require_login():
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if current_actor() is None:
        return unauthenticated()
    # Databases refuse NUL characters: turn them away here, with a clear status.
    if request.method == "POST" and any("\x00" in v for v in request.form.values()):
        abort(400)
    return None


@bp.route("/lang/<code>", methods=["GET", "POST"])
def set_language(code: str):
    """Switch the interface language (kept in the session and, when signed in, on the user).

    Only a POST (with the CSRF token) changes anything; a GET (an old link, another site's
    image) shows a button that does.
    """
    if code not in LOCALES:
        abort(404)
    if request.method != "POST":
        return render_template("lang.html", code=code)
    session["lang"] = code
    actor = current_actor()
    state = hexie_state()
    if actor is not None and state.own_login and actor.user_id is not None:
        from hexie.models import User
        with state.engine.session_factory() as s:
            user = s.get(User, actor.user_id)
            if user is not None and (user.locale != code or not user.locale_chosen):
                user.locale, user.locale_chosen = code, True
                s.commit()
    return redirect(same_site_path(request.referrer) or url_for("hexie.inbox"))
