"""The admin blueprint, its access checks (signed in; manager or admin roles from roles.yaml), and shared helpers."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import wraps
from pathlib import Path
from typing import Any, Iterable, Mapping

from flask import Blueprint, abort, flash, request, send_from_directory, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from hexie.models import User
from hexie.workflows.access import Actor, admin_roles, manager_roles
from hexie.workflows.errors import HexieError
from hexie.workflows.people import record_admin_change

from .. import i18n
from ..auth import unauthenticated
from ..state import current_actor, hexie_state
from ..i18n import error_text, t

_WEB = Path(__file__).resolve().parent.parent
ASSETS = _WEB / "templates" / "admin"

bp = Blueprint("admin", __name__, template_folder=str(_WEB / "templates"))

OPEN = ("offered", "allocated")
MIN_PASSWORD = 8
MAX_SOURCE = 200_000          # characters of YAML accepted by the editor
PER_PAGE = 25

# --------------------------------------------------------------------------- texts



# -------------------------------------------------------------------- access

ASSET_ENDPOINTS = {"admin.asset"}


@bp.before_request
def _signed_in():
    """Every admin page needs a signed-in person; the role checks are per page."""
    if request.endpoint in ASSET_ENDPOINTS:
        return None
    if current_actor() is None:
        return unauthenticated()
    if request.method == "POST" and any("\x00" in v for v in request.form.values()):
        abort(400)  # databases refuse NUL characters
    return None


def _require(roles: Iterable[str], message_key: str) -> Actor:
    actor = current_actor()
    if actor is None or not actor.all_roles & set(roles):
        abort(403, description=t(message_key))
    return actor


def admin_required(view):
    """Only holders of a role marked ``admin: true`` in roles.yaml (403 for everyone else)."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        _require(admin_roles(_engine().registry.roles), "admin.forbidden")
        return view(*args, **kwargs)
    return wrapped


def manager_required(view):
    """Only holders of a role marked ``manager: true`` in roles.yaml (403 for everyone else)."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        _require(manager_roles(_engine().registry.roles), "admin.forbidden.manager")
        return view(*args, **kwargs)
    return wrapped


@bp.route("/assets/<any('admin.js', 'admin.css'):name>")
def asset(name: str):
    """The editor's script and the admin pages' styles (same origin: the CSP allows them)."""
    mimetype = "text/javascript" if name.endswith(".js") else "text/css"
    response = send_from_directory(ASSETS, name, mimetype=mimetype, max_age=3600)
    return response


@bp.context_processor
def _admin_context() -> dict[str, Any]:
    actor = current_actor()
    roles = actor.all_roles if actor is not None else frozenset()
    flags = _engine().registry.roles
    return {"is_admin": bool(roles & admin_roles(flags)), "is_manager": bool(roles & manager_roles(flags)),
            "admin_asset": lambda name: url_for("admin.asset", name=name)}


# -------------------------------------------------------------------- helpers

def _engine():
    return hexie_state().engine


def _flash_error(err: HexieError) -> None:
    flash(error_text(err) + _details_text(err.details), "error")


def _details_text(details: Mapping[str, Any] | None) -> str:
    if not details:
        return ""
    parts = [f"{k}: {i18n.detail_text(v)}" for k, v in details.items() if not isinstance(v, (list, dict))]
    return ("（" + "；".join(parts) + "）") if parts else ""


def _record(s: Session, actor: Actor, kind: str, changes: Mapping[str, Any] | None = None,
            comment: str | None = None) -> None:
    """An administrative change, in the audit trail's case-less chain (same transaction)."""
    record_admin_change(s, actor, kind, changes, comment, at=_engine().clock())


def local_midnight_after(day: date) -> datetime:
    """The end of ``day`` in the office's time zone, as naive UTC (how times are stored)."""
    from ..views.common import local_zone
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=local_zone())
    return end.astimezone(timezone.utc).replace(tzinfo=None)


def local_day(moment: datetime | None) -> str:
    """The (inclusive) last day of an ``away_until`` stored as the midnight after it."""
    if moment is None:
        return ""
    from ..views.common import to_local
    return (to_local(moment) - timedelta(seconds=1)).date().isoformat()


def _names(s: Session, ids: Iterable[int | None]) -> dict[int, tuple[str, str]]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    return {i: (u, n) for i, u, n in s.execute(select(User.id, User.username, User.name)
                                              .where(User.id.in_(wanted)))}
