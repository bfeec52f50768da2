"""A minimal ERP-like host application that puts its own records under Hexie workflows.

The host has its own database (its own SQLAlchemy engine and ``Base``), its own users
and its own sign-in. It mounts Hexie with :class:`hexie.web.extension.Hexie`, telling it
who the current person is through an ``actor_loader`` -- the whole plugin protocol:
a username and the roles she holds where (see docs/api.md). Its ``LoanApplication``
model uses :class:`hexie.workflows.mixin.WorkflowMixin` with ``__workflow__ = "microloan"``,
so each loan record is linked to a Hexie case and moves only through Hexie's rules.

Run it::

    python -m examples.host_app.app            # http://127.0.0.1:5050/  (Hexie under /hexie)

Routes of the host (JSON, signed in with the host's own session)::

    POST /login {username, password}     GET /csrf          POST /logout
    GET  /loans                          POST /loans {applicant_name, amount, org_unit, data}
    GET  /loans/<id>                     POST /loans/<id>/actions/<trigger> {data, comment}

Hexie's own screens are at ``/hexie/`` and its API at ``/hexie/api/v1``.
"""
from __future__ import annotations

import hmac
import os
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Flask, jsonify, request, session
from flask_wtf.csrf import generate_csrf
from sqlalchemy import DateTime, Numeric, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from hexie.workflows.access import Actor
from hexie.workflows.engine import Engine
from hexie.workflows.errors import HexieError, NotFound
from hexie.workflows.mixin import WorkflowMixin

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent

#: The host's own users (an ERP would have a table; a dict keeps the example short).
#: ``hexie`` names the Hexie user each maps to. Demo passwords only.
HOST_USERS: dict[str, dict[str, str]] = {
    "lifang": {"password": "host-lifang", "hexie": "lifang", "name": "李芳"},
    "wangmin": {"password": "host-wangmin", "hexie": "wangmin", "name": "王敏"},
    "chenjing": {"password": "host-chenjing", "hexie": "chenjing", "name": "陈静"},
    "zhengli": {"password": "host-zhengli", "hexie": "zhengli", "name": "郑丽"},
    "liuhong": {"password": "host-liuhong", "hexie": "liuhong", "name": "刘红"},
    "qianhui": {"password": "host-qianhui", "hexie": "qianhui", "name": "钱慧"},
}


# ---------------------------------------------------------------- the host's own model
class HostBase(DeclarativeBase):
    """The host's declarative base: its tables live in its own database."""


class LoanApplication(HostBase, WorkflowMixin):
    """The host's loan record; its approval runs as a Hexie ``microloan`` case."""

    __tablename__ = "loan_applications"
    __workflow__ = "microloan"

    id: Mapped[int] = mapped_column(primary_key=True)
    applicant_name: Mapped[str] = mapped_column(String(50))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(), default=lambda: datetime.now(timezone.utc).replace(tzinfo=None))

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "applicant_name": self.applicant_name, "amount": str(self.amount),
                "created_by": self.created_by, "hexie_case_id": self.hexie_case_id}


# ---------------------------------------------------------------- who is acting
class SignInRequired(HexieError):
    """The host's own refusal: nobody is signed in."""

    code = "unauthorized"
    status = 401


def host_user() -> str | None:
    """The host's signed-in user (its own session), or None."""
    return session.get("host_user")


def make_actor_loader(hexie_engine: Engine):
    """Hexie's ``actor_loader``: the current host user as a Hexie Actor (or None)."""

    def current_actor() -> Actor | None:
        user = HOST_USERS.get(host_user() or "")
        if user is None:
            return None
        try:
            return hexie_engine.actor(user["hexie"])
        except NotFound:  # known to the host, not (or no longer) to Hexie
            return None

    return current_actor


# ---------------------------------------------------------------- the host's routes
def _host_blueprint(host_sessions: sessionmaker, current_actor) -> Blueprint:
    bp = Blueprint("host", __name__)

    def state() -> Any:
        from flask import current_app
        return current_app.extensions["hexie"]

    def acting() -> Actor:
        actor = current_actor()
        if actor is None:
            raise SignInRequired("请先登录", "sign in first")
        return actor

    @bp.errorhandler(HexieError)
    def _refused(err: HexieError):
        return jsonify({"error": {"code": err.code, "message": err.message, "details": err.details}}), err.status

    @bp.post("/login")
    def login():
        body = request.get_json(silent=True) or {}
        user = HOST_USERS.get(str(body.get("username", "")))
        if user is None or not hmac.compare_digest(user["password"], str(body.get("password", ""))):
            return jsonify({"error": {"code": "unauthorized", "message": "用户名或密码错误 / wrong username or password",
                                      "details": {}}}), 401
        session.clear()
        session["host_user"] = body["username"]
        return jsonify({"user": body["username"], "csrf_token": generate_csrf()})

    @bp.get("/csrf")
    def csrf():
        return jsonify({"csrf_token": generate_csrf()})

    @bp.post("/logout")
    def logout():
        session.clear()
        return jsonify({})

    @bp.get("/loans")
    def loans():
        actor = acting()
        with host_sessions() as s:
            out = []
            for loan in s.scalars(select(LoanApplication).order_by(LoanApplication.id)):
                row = loan.as_dict()
                try:
                    row["state"] = loan.workflow_state(state()["queries"], actor)
                except NotFound:  # a case she may not see: the host shows no state
                    row["state"] = None
                out.append(row)
            return jsonify(out)

    @bp.post("/loans")
    def new_loan():
        actor = acting()
        body = request.get_json(silent=True) or {}
        data = dict(body.get("data") or {})
        data.setdefault("applicant_name", body.get("applicant_name"))
        data.setdefault("loan_amount", str(body.get("amount")))
        with host_sessions() as s:
            loan = LoanApplication(applicant_name=str(body.get("applicant_name") or ""),
                                   amount=Decimal(str(body.get("amount") or 0)), created_by=actor.username)
            s.add(loan)
            s.flush()
            # Hexie's transaction commits first; if it refuses, the host rolls its record back.
            loan.start_workflow(state()["service"], actor, str(body.get("org_unit") or ""), data)
            s.commit()
            return jsonify(_loan_view(loan, actor, state())), 201

    @bp.get("/loans/<int:loan_id>")
    def show_loan(loan_id: int):
        actor = acting()
        with host_sessions() as s:
            return jsonify(_loan_view(_get(s, loan_id), actor, state()))

    @bp.post("/loans/<int:loan_id>/actions/<trigger>")
    def act(loan_id: int, trigger: str):
        actor = acting()
        body = request.get_json(silent=True) or {}
        with host_sessions() as s:
            loan = _get(s, loan_id)
            loan.fire_workflow(state()["service"], actor, trigger, data=body.get("data") or {},
                               comment=body.get("comment"))
            return jsonify(_loan_view(loan, actor, state()))

    return bp


def _get(s: Session, loan_id: int) -> LoanApplication:
    loan = s.get(LoanApplication, loan_id)
    if loan is None:
        raise NotFound("没有这笔贷款", f"no loan {loan_id}")
    return loan


def _loan_view(loan: LoanApplication, actor: Actor, state: Any) -> dict[str, Any]:
    case = loan.workflow_case(state["queries"], actor)
    return {**loan.as_dict(), "state": case and case["state"], "actions": case["actions"] if case else [],
            "case": case and {k: case[k] for k in ("id", "process", "state", "lock_version")}}


# ---------------------------------------------------------------- the factory
def create_host_app(hexie_engine: Engine | None = None, host_database_url: str = "sqlite:///host.db",
                    hexie_database_url: str | None = None, org_file: str | Path | None = HERE / "org.yaml",
                    config: dict[str, Any] | None = None) -> Flask:
    """The host app with Hexie mounted under ``/hexie``.

    ``hexie_engine``: an engine already built (tests); otherwise one is built on
    ``hexie_database_url`` (default ``$HEXIE_DATABASE_URL``) with the project's
    definitions, the schema upgraded. ``org_file`` (Hexie's view of the host's people)
    is loaded idempotently.
    """
    from hexie.web.extension import Hexie

    if hexie_engine is None:
        from hexie.models import database_url, upgrade
        url = hexie_database_url or database_url()
        upgrade(url)
        hexie_engine = Engine.from_config(url, PROJECT / "definitions")
    hexie_engine.sync_definitions()
    if org_file is not None:
        from hexie.workflows.org import load_org
        roles = hexie_engine.registry.roles
        with hexie_engine.transaction() as s:
            load_org(s, yaml.safe_load(Path(org_file).read_text(encoding="utf-8")),
                     roles=list(roles.roles), levels=list(roles.levels))

    # The host's own database and tables.
    host_engine = create_engine(host_database_url)
    HostBase.metadata.create_all(host_engine)
    host_sessions = sessionmaker(bind=host_engine, expire_on_commit=False)

    app = Flask(__name__)
    app.config.update(SECRET_KEY=os.environ.get("HOST_SECRET_KEY", "host-demo-secret-change-me"),
                      HEXIE_URL_PREFIX="/hexie")
    app.config.update(config or {})
    current_actor = make_actor_loader(hexie_engine)
    Hexie(app, engine=hexie_engine, actor_loader=current_actor)  # screens at /hexie, API at /hexie/api/v1
    app.register_blueprint(_host_blueprint(host_sessions, current_actor))
    app.extensions["host_sessions"] = host_sessions
    return app


if __name__ == "__main__":  # pragma: no cover - manual demo
    create_host_app().run(port=5050, debug=True)
