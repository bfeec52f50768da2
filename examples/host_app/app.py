"""An ordinary Flask host (a small ERP) with Hexie mounted in it as a plugin.

The host has everything of its own: a top-level ``models.py`` (imported as ``models``, next to
Hexie's ``hexie.models``), its ``users`` table and its own login (a session cookie), its own
Alembic history (``migrations/``, version table ``alembic_version``), and its own pages. Hexie's
``hexie_*`` tables live in the same database; its screens are under ``/hexie`` and its API
under ``/hexie/api/v1``.

A purchase request (``models.PurchaseRequest``, a :class:`hexie.WorkflowMixin`) is approved by
the department head, and by finance too above 5000 yuan; either may return it for revision or
reject it with a comment (``definitions/purchase_request.yaml``, ``starters: [system]``: only
this host starts such cases). The request's page is the host's own form with
``{{ hexie_review(pr) }}`` under it.

Run it (demo people: alice/bob/carol/dave, password ``<name>-pass-1``)::

    python examples/host_app/app.py        # http://127.0.0.1:5050/  (HOST_DATABASE_URL to choose the database)
"""
from __future__ import annotations

import os
import sys
from decimal import Decimal, InvalidOperation
from functools import wraps
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:            # the host's own modules are top-level: models, ...
    sys.path.insert(0, str(HERE))

from flask import Flask, abort, flash, g, redirect, render_template, request, session, url_for  # noqa: E402
from flask_wtf.csrf import CSRFProtect  # noqa: E402
from sqlalchemy import create_engine as sa_create_engine, select  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402
from werkzeug.security import check_password_hash, generate_password_hash  # noqa: E402

import hexie  # noqa: E402
from hexie import Actor, Hexie, HexieError, NotFound, WorkflowLocked  # noqa: E402
from models import FINANCE_THRESHOLD, PurchaseRequest, User  # noqa: E402

DEFINITIONS = HERE / "definitions"
MIGRATIONS = HERE / "migrations"

#: The host's org as Hexie is told it: a company and its departments.
UNITS = [
    {"code": "acme", "name": "示例公司 Acme", "level": "company"},
    {"code": "it", "name": "信息部 IT", "level": "department", "parent": "acme"},
    {"code": "ops", "name": "运营部 Operations", "level": "department", "parent": "acme"},
]
#: Demo people (username, name, department, Hexie roles). Passwords: "<username>-pass-1".
DEMO_PEOPLE = [
    ("alice", "Alice 李", "it", "requester@it"),
    ("bob", "Bob 王", "it", "dept_head@it"),
    ("carol", "Carol 陈", "acme", "finance@acme"),
    ("dave", "Dave 赵", "acme", "it_admin@acme"),
    ("erin", "Erin 周", "ops", "requester@ops"),
]


# ------------------------------------------------------------------ the host's database
def upgrade_host(url: str) -> None:
    """Run the host's own Alembic history (its ``alembic_version``, not Hexie's)."""
    from alembic import command
    from alembic.config import Config

    engine = sa_create_engine(url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def seed_people(db: Session) -> None:
    if db.scalar(select(User.id).limit(1)) is None:
        for username, name, department, roles in DEMO_PEOPLE:
            db.add(User(username=username, name=name, department=department, roles=roles,
                        password_hash=generate_password_hash(f"{username}-pass-1")))
        db.commit()


def sync_people(engine: Any, db: Session) -> None:
    """Tell Hexie who the host's people are and which roles they hold where (no passwords:
    they sign in to the host; Hexie only learns their names and roles)."""
    from hexie.workflows.org import load_org

    people = [{"username": u.username, "name": u.name, "roles": u.roles.split()}
              for u in db.scalars(select(User).order_by(User.id))]
    roles = engine.registry.roles
    with engine.transaction() as s:
        load_org(s, {"units": UNITS, "users": people}, roles=list(roles.roles), levels=list(roles.levels))


# ------------------------------------------------------------------ the factory
def create_app(database_url: str | None = None, config: dict[str, Any] | None = None,
               definitions: str | Path = DEFINITIONS) -> Flask:
    url = database_url or os.environ.get("HOST_DATABASE_URL") or f"sqlite:///{HERE / 'host_app.db'}"
    upgrade_host(url)                                              # the host's tables
    engine = hexie.create_engine(url, definitions=definitions)    # Hexie's hexie_* tables, same database
    db_engine = sa_create_engine(url, **({"connect_args": {"check_same_thread": False}}
                                         if url.startswith("sqlite") else {}))
    Sessions = sessionmaker(bind=db_engine, expire_on_commit=False)
    with Sessions() as db:
        seed_people(db)
        sync_people(engine, db)
    PurchaseRequest.bind_workflow(engine)

    app = Flask(__name__, template_folder=str(HERE / "templates"))
    app.config.update(SECRET_KEY=os.environ.get("HOST_SECRET_KEY", "host-demo-secret-change-me"),
                      HEXIE_URL_PREFIX="/hexie", HEXIE_LOGIN_VIEW="login")
    app.config.update(config or {})
    CSRFProtect(app)                                               # the host's own CSRF (Hexie uses it too)

    def current_actor() -> Actor | None:
        """Hexie's actor_loader: the host's signed-in user as Hexie knows her (or None)."""
        user = current_user()
        if user is None:
            return None
        try:
            return engine.actor(user.username)
        except NotFound:
            return None

    Hexie(app, engine=engine, actor_loader=current_actor)
    app.extensions["host_sessions"] = Sessions
    app.extensions["host_db_engine"] = db_engine

    def current_user() -> User | None:
        if "host_user" not in g:
            uid = session.get("uid")
            with Sessions() as db:
                g.host_user = db.get(User, uid) if uid else None
        return g.host_user

    def login_required(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if current_user() is None:
                return redirect(url_for("login", next=request.full_path.rstrip("?")))
            return view(*args, **kwargs)
        return wrapped

    @app.context_processor
    def host_context() -> dict[str, Any]:
        return {"me": current_user(), "threshold": FINANCE_THRESHOLD}

    # -- sign-in (the host's own) ---------------------------------------------------
    @app.route("/login", methods=["GET", "POST"])
    def login():
        error = None
        if request.method == "POST":
            with Sessions() as db:
                user = db.scalar(select(User).where(User.username == request.form.get("username", "")))
            if user is not None and check_password_hash(user.password_hash, request.form.get("password", "")):
                session.clear()
                session["uid"] = user.id
                target = request.args.get("next") or ""
                return redirect(target if target.startswith("/") and not target.startswith("//") else url_for("index"))
            error = "用户名或密码错误 / Wrong username or password"
        return render_template("login.html", error=error), 401 if error else 200

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("login"))

    # -- the host's pages -----------------------------------------------------------
    @app.get("/")
    @login_required
    def index():
        with Sessions() as db:
            rows = db.scalars(select(PurchaseRequest).order_by(PurchaseRequest.id.desc())).all()
        actor = current_actor()
        items = []
        for pr in rows:
            try:
                state = pr.workflow_state(actor)
            except NotFound:            # a request whose case she may not see
                continue
            items.append((pr, state))
        return render_template("index.html", items=items)

    @app.route("/requests/new", methods=["GET", "POST"])
    @login_required
    def new_request():
        if request.method == "GET":
            return render_template("request.html", pr=None, editable=True, error=None, values={})
        values, error = _read_form()
        if error:
            return render_template("request.html", pr=None, editable=True, error=error, values=values), 422
        user, actor = current_user(), current_actor()
        with Sessions() as db:
            pr = PurchaseRequest(title=values["title"], amount=values["amount"], department=user.department,
                                 requester_id=user.id)
            db.add(pr)
            try:
                # one transaction: the host's record and Hexie's case, committed together
                pr.start_workflow(actor, user.department, session=db)
                if request.form.get("submit"):
                    pr.fire_workflow(actor, "submit", session=db)
                db.commit()
            except HexieError as err:
                db.rollback()           # neither the record nor the case
                return render_template("request.html", pr=None, editable=True, error=err.message,
                                       values=values), err.status
            return redirect(url_for("show_request", pr_id=pr.id))

    @app.get("/requests/<int:pr_id>")
    @login_required
    def show_request(pr_id: int):
        with Sessions() as db:
            pr = _get(db, pr_id)
            return render_template("request.html", pr=pr, editable=_editable(pr), error=None,
                                   values={"title": pr.title, "amount": pr.amount})

    @app.post("/requests/<int:pr_id>")
    @login_required
    def save_request(pr_id: int):
        values, error = _read_form()
        actor = current_actor()
        with Sessions() as db:
            pr = _get(db, pr_id)
            if pr.requester_id != current_user().id:
                abort(403)
            if error:
                return render_template("request.html", pr=pr, editable=_editable(pr), error=error, values=values), 422
            pr.title, pr.amount = values["title"], values["amount"]
            try:
                db.flush()              # WorkflowLocked while the request is under review
                pr.sync_workflow(actor, session=db)      # the case holds the new amount too
                if request.form.get("submit"):
                    pr.fire_workflow(actor, "submit", session=db)
                db.commit()
            except HexieError as err:
                db.rollback()
                pr = _get(db, pr_id)
                status = 409 if isinstance(err, WorkflowLocked) else err.status
                return render_template("request.html", pr=pr, editable=_editable(pr), error=err.message,
                                       values=values), status
            flash("已保存 / Saved")
            return redirect(url_for("show_request", pr_id=pr_id))

    def _get(db: Session, pr_id: int) -> PurchaseRequest:
        pr = db.get(PurchaseRequest, pr_id)
        if pr is None:
            abort(404)
        try:
            pr.workflow_case(current_actor())     # 404 for a request she may not see
        except NotFound:
            abort(404)
        return pr

    def _editable(pr: PurchaseRequest) -> bool:
        case = pr.workflow_case(current_actor())
        if case is None or pr.requester_id != current_user().id:
            return case is None
        return engine.current(case["process"])[0].state(case["state"]).host_editable

    return app


def _read_form() -> tuple[dict[str, Any], str | None]:
    title = (request.form.get("title") or "").strip()
    raw = (request.form.get("amount") or "").strip()
    values: dict[str, Any] = {"title": title, "amount": raw}
    try:
        amount = Decimal(raw).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return values, "金额无效 / Invalid amount"
    if not title:
        return values, "请填写采购事项 / The item is required"
    if amount <= 0:
        return values, "金额须大于 0 / The amount must be above 0"
    values["amount"] = amount
    return values, None


if __name__ == "__main__":  # pragma: no cover - manual demo
    create_app().run(port=5050, debug=True)
