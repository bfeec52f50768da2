"""API tokens and sign-in sessions: signed, time-limited, and revocable.

A token is signed with the application's key (``HEXIE_SECRET_KEY``; in a host
``app.config["HEXIE_SECRET_KEY"]``, else the host's ``SECRET_KEY``) and names its user and a
server-side id, the ``jti`` of a row in ``hexie_api_tokens``. It is honoured only while that
row is not revoked and the user is active: a password change, a deactivation and "sign out
everywhere" revoke every row of the user (:func:`revoke_all`), and reactivating her revives
none. Sign-in sessions of Hexie's own pages are rows of the same table (``kind = session``):
signing out revokes the row, so a copy of the cookie no longer signs anyone in.

``hexie.issue_token(username)`` gives a token to a host's user; ``hexie token USERNAME``
prints an equivalent one when run with the same configuration (the same key and database).
"""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hexie.models import ApiToken, User, utcnow

from .errors import NotFound

if TYPE_CHECKING:  # pragma: no cover
    from .access import Actor
    from .engine import Engine

TOKEN_MAX_AGE = 30 * 24 * 3600  # a month
#: ``last_used_at`` is written at most this often per credential (no write per request).
TOUCH_EVERY = timedelta(minutes=5)
KINDS = ("token", "session")

#: Where :func:`issue_token` finds the engine and the key when not given them: callables taking
#: the engine given (or None) and returning ``(engine, key)`` or None. The web extension adds one
#: for the current Flask app (so that this module needs no Flask).
context_providers: list[Callable[["Engine | None"], "tuple[Engine, str] | None"]] = []


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="hexie-api-token")


def make_token(secret: str, username: str, jti: str | None = None) -> str:
    """The signed text of a token. Without ``jti`` (no row behind it) it is refused everywhere."""
    claims: dict[str, str] = {"u": username}
    if jti is not None:
        claims["j"] = jti
    return _serializer(secret).dumps(claims)


def read_claims(secret: str, token: str, max_age: int = TOKEN_MAX_AGE) -> tuple[str, str | None] | None:
    """(username, jti) of a well-signed, unexpired token; None when forged, garbled or expired."""
    try:
        data = _serializer(secret).loads(token, max_age=max_age)
    except (BadSignature, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str):
        return None
    jti = data.get("j")
    return data["u"], jti if isinstance(jti, str) else None


def read_token(secret: str, token: str, max_age: int = TOKEN_MAX_AGE) -> str | None:
    """The username a token names (its signature only; :func:`token_actor` checks the row)."""
    claims = read_claims(secret, token, max_age)
    return claims[0] if claims else None


# --------------------------------------------------------------------- issuing

def new_credential(session: Session, user_id: int, kind: str = "token", origin: str = "password",
                   at: datetime | None = None) -> str:
    """Record a new token or session of the user ``user_id`` (in the caller's transaction); its jti."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    jti = secrets.token_urlsafe(24)
    at = at or utcnow()
    session.add(ApiToken(jti=jti, user_id=user_id, kind=kind, origin=origin, created_at=at, last_used_at=at))
    return jti


def _context(engine: "Engine | None", secret: str | None) -> tuple["Engine", str]:
    if engine is None or secret is None:
        for provider in context_providers:
            found = provider(engine)
            if found is not None and (engine is None or found[0] is engine):
                engine, secret = engine or found[0], secret or found[1]
                break
    if secret is None:
        from .config import secret_key
        secret = secret_key()
    if engine is None:
        from hexie.models import database_url
        url = database_url()
        if url not in _env_engines:
            from .engine import create_engine
            _env_engines[url] = create_engine(url)
        engine = _env_engines[url]
    return engine, secret


#: engines made from the environment by :func:`issue_token`, one per database URL
_env_engines: dict[str, "Engine"] = {}


def issue_token(username: str, *, engine: "Engine | None" = None, secret: str | None = None,
                origin: str = "host") -> str:
    """A new API token for the active user ``username`` (``Authorization: Bearer TOKEN``).

    Inside a Flask app with Hexie mounted, the app's engine and key are used (``HEXIE_SECRET_KEY``
    of its config, else its ``SECRET_KEY``); elsewhere ``engine`` and ``secret`` default to the
    environment's (``HEXIE_DATABASE_URL``, ``HEXIE_SECRET_KEY`` or the instance key), as for
    ``hexie token``. Raises :class:`~hexie.workflows.errors.NotFound` for an unknown or
    inactive user.
    """
    engine, secret = _context(engine, secret)
    with engine.transaction() as s:
        user = s.scalars(select(User).where(User.username == username)).first()
        if user is None or not user.active:
            raise NotFound("没有这个用户", f"no active user {username!r}")
        jti = new_credential(s, user.id, "token", origin, engine.clock())
    return make_token(secret, username, jti)


# -------------------------------------------------------------------- checking

def credential_user(session: Session, username: str, jti: str | None, kind: str,
                    now: datetime | None = None) -> User | None:
    """The active user a live (unrevoked) credential names, or None; notes its use now and then."""
    if not jti or len(jti) > 64:
        return None
    row = session.execute(
        select(ApiToken.id, ApiToken.last_used_at, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.jti == jti, ApiToken.kind == kind, ApiToken.revoked_at.is_(None),
               User.active.is_(True))).first()
    if row is None or row.User.username != username:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY:
        session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
        session.commit()
    return row.User


def credential_actor(session: Session, username: str, jti: str | None, kind: str,
                     now: datetime | None = None) -> "tuple[Actor, str | None] | None":
    """(the Actor, her password hash) of the active user a live credential names, or None: what
    :func:`credential_user` and :meth:`Engine.actor_for` read, in one statement (the credential,
    the user and the roles she holds where, a row per role) instead of two; notes the use now and then."""
    from hexie.models import OrgUnit, RoleAssignment
    from .access import Actor, Assignment
    if not jti or len(jti) > 64:
        return None
    rows = session.execute(
        select(ApiToken.id, ApiToken.last_used_at, User.id.label("user_id"), User.username, User.name,
               User.locale, User.locale_chosen, User.capabilities, User.password_hash,
               RoleAssignment.role, OrgUnit.code, OrgUnit.path, OrgUnit.level)
        .join(User, User.id == ApiToken.user_id)
        .outerjoin(RoleAssignment, RoleAssignment.user_id == User.id)
        .outerjoin(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
        .where(ApiToken.jti == jti, ApiToken.kind == kind, ApiToken.revoked_at.is_(None),
               User.active.is_(True))
        .order_by(RoleAssignment.id)).all()
    if not rows or rows[0].username != username:
        return None
    first = rows[0]
    now = now or utcnow()
    if first.last_used_at is None or now - first.last_used_at > TOUCH_EVERY:
        session.execute(update(ApiToken).where(ApiToken.id == first.id).values(last_used_at=now))
        session.commit()
    actor = Actor(username=first.username, user_id=first.user_id, name=first.name,
                  locale=first.locale if first.locale_chosen else None,
                  assignments=tuple(Assignment(r.role, r.code, r.path, r.level) for r in rows if r.role is not None),
                  capabilities=frozenset(first.capabilities or ()))
    return actor, first.password_hash


def token_actor(engine: "Engine", secret: str, token: str) -> "Actor | None":
    """The Actor a bearer token speaks for, or None (forged, expired, revoked, user inactive)."""
    claims = read_claims(secret, token)
    if claims is None:
        return None
    with engine.read_session() as s:   # one read (and now and then the token's last use)
        found = credential_actor(s, claims[0], claims[1], "token", engine.clock())
        return found[0] if found is not None else None


def token_jti(secret: str, token: str) -> str | None:
    claims = read_claims(secret, token)
    return claims[1] if claims else None


# -------------------------------------------------------------------- revoking

def revoke(session: Session, jti: str, at: datetime | None = None) -> bool:
    """Revoke one credential; True when it was live."""
    result = session.execute(update(ApiToken).where(ApiToken.jti == jti, ApiToken.revoked_at.is_(None))
                             .values(revoked_at=at or utcnow()))
    return bool(result.rowcount)


def revoke_all(session: Session, user_id: int, at: datetime | None = None,
               kinds: tuple[str, ...] = KINDS) -> int:
    """Revoke every live token and session of a user (in the caller's transaction); how many."""
    result = session.execute(update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.kind.in_(kinds),
                                                    ApiToken.revoked_at.is_(None))
                             .values(revoked_at=at or utcnow()))
    return int(result.rowcount or 0)


def live_credentials(session: Session, user_id: int) -> list[dict[str, Any]]:
    """A user's live tokens and sessions: ``{kind, origin, created_at, last_used_at}``."""
    rows = session.execute(select(ApiToken.kind, ApiToken.origin, ApiToken.created_at, ApiToken.last_used_at)
                           .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                           .order_by(ApiToken.id)).all()
    return [dict(r._mapping) for r in rows]


def prune(session: Session, now: datetime | None = None) -> int:
    """Delete the rows no credential can use any more (revoked or expired over a month ago)."""
    from sqlalchemy import delete, or_
    now = now or utcnow()
    old = now - timedelta(seconds=2 * TOKEN_MAX_AGE)
    result = session.execute(delete(ApiToken).where(or_(ApiToken.revoked_at < now - timedelta(days=30),
                                                        ApiToken.created_at < old)))
    return int(result.rowcount or 0)
