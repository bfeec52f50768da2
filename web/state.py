"""What every part of the web layer reads about the current request: the app's
:class:`HexieState`, the person making the request, the signed-in user of Flask-Login, the
API signing key and the navigation counts.

Below the extension, the pages, the API and the admin: it imports none of them (the arrows
of ``web/`` point down to here; :mod:`hexie.web.extension` re-exports these names).
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import Flask, current_app, g
from flask_wtf.csrf import CSRFProtect

from hexie.workflows.access import Actor
from hexie.workflows.engine import Engine
from hexie.workflows.ledger import LedgerQueries
from hexie.workflows.queries import CaseQueries
from hexie.workflows.service import WorkflowService

ActorLoader = Callable[[], "Actor | None"]


@dataclass
class HexieState:
    """What one application knows about Hexie."""

    engine: Engine
    service: WorkflowService
    queries: CaseQueries
    ledger: LedgerQueries
    actor_loader: ActorLoader
    own_login: bool                      # True: Hexie's own sign-in (Flask-Login)
    csrf: CSRFProtect
    url_prefix: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:  # state["engine"] reads like a dict too
        return getattr(self, key)


def hexie_state(app: Flask | None = None) -> HexieState:
    """The :class:`HexieState` of ``app`` (default: the current app)."""
    return (app or current_app).extensions["hexie"]


def current_actor() -> Actor | None:
    """The person making this request, or None; loaded once per request and kept on ``g``."""
    if "hexie_actor" not in g:
        actor = hexie_state().actor_loader()
        if actor is not None and actor.user_id is None and not actor.is_system:
            from hexie.workflows.people import known_actor
            # a host's loader built the Actor itself: Hexie makes (or updates) her row
            g.hexie_actor = None            # the error page of a refusal shows nobody signed in
            actor = known_actor(hexie_state().engine, actor)
        g.hexie_actor = actor
    return g.hexie_actor


class LoginUser:
    """The Flask-Login user: a signed-in person and the roles she holds (her Actor)."""

    def __init__(self, actor: Actor, stamp: str, sid: str = "") -> None:
        self.actor = actor
        self.username = actor.username
        self.name = actor.name or actor.username
        self.locale = actor.locale
        self._stamp = stamp
        self.sid = sid          # the jti of this sign-in's row in hexie_api_tokens (kind session)

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        # The stamp changes with the password: changing it signs out every other session.
        # The session id names a row that signing out revokes (a replayed cookie is refused).
        return f"{self.username}:{self._stamp}:{self.sid}"


def signing_key(app: Flask | None = None) -> str:
    """The key API tokens are signed with: ``HEXIE_SECRET_KEY`` of the app's config, else its
    ``SECRET_KEY``, else ``$HEXIE_SECRET_KEY`` or the instance key (what ``hexie token`` uses)."""
    from hexie.workflows.config import secret_key
    config = (app or current_app).config
    return config.get("HEXIE_SECRET_KEY") or config.get("SECRET_KEY") or secret_key()


def password_stamp(password_hash: str | None) -> str:
    """A short keyed digest of the password hash, kept in the session cookie."""
    key = str(current_app.secret_key or "").encode()
    return hmac.new(key, (password_hash or "").encode(), hashlib.sha256).hexdigest()[:16]


def nav_counts() -> dict[str, int]:
    """Open task totals for the navigation bar (mine, available, overdue, escalated).

    One query with filtered counts, computed at most once per request and only when a
    page shows the bar.
    """
    if "hexie_nav" in g:
        return g.hexie_nav
    actor = current_actor()
    counts = {"mine": 0, "available": 0, "overdue": 0, "escalated": 0}
    if actor is not None:
        counts = hexie_state().queries.task_counts(actor, tuple(counts))
    g.hexie_nav = counts
    return counts
