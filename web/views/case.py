"""The case page (``/cases/<id>``) and everything done from it.

The page shows the case's data (sensitive fields masked when the queries say so), its
open tasks with take / give back / done buttons, one form per action the person may
take now, the history and the process map. Each POST goes to the service; a refusal
re-renders the page with the person's input kept and each message next to its field.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select
from werkzeug.datastructures import CombinedMultiDict

from hexie.models import OrgUnit, RoleAssignment, User, Vote
from hexie.workflows.errors import Conflict, Forbidden, Invalid, NotFound, not_found
from hexie.workflows.ledger import LedgerQueries, fund_field
from hexie.workflows.org import ancestor_paths
from hexie.workflows.spec import FormField, ProcessSpec

from ..auth import safe_next
from ..diagram import render_svg
from ..state import current_actor, hexie_state
from ..forms import (Choices, DynamicForm, action_form, apply_engine_errors, build_form, comment_of,
                     comment_rule, engine_data, error_summary, task_form, uploads_of)
from ..i18n import error_text, get_locale, label, t
from .blueprint import bp
from .common import (case_spec, decision_figures, display_names, money, request_key_of, format_value, is_voting, kind_label, role_label, state_label,
                     task_label, trigger_label, unit_path)
from .files import case_attachments, discard, save_files
from .consent import page_read, protection_context, protection_names
from .workday import people_around
from hexie.workflows.access import manages_case


# ----------------------------------------------------------------------- page

def _field_roles(spec: ProcessSpec, name: str) -> list[str]:
    """The roles whose holders a ``user`` field may name: its ``role:``, else the roles of the
    tasks it assigns (``assign: {user: FIELD}``), else every role the process names."""
    fs = spec.fields[name]
    if fs.role:
        return [fs.role]
    assigned = sorted({task.role for st in spec.states for task in st.tasks if task.assign_user == name})
    return assigned or sorted(spec.roles_named())


def _choices(spec: ProcessSpec, entries: tuple[FormField, ...], path: str | None) -> Choices:
    """Options for ``user`` and ``org_unit`` fields: people (by name, of the role the field is
    for) and units around the case's unit."""
    kinds = {spec.fields[e.name].type for e in entries if e.name in spec.fields}
    if not kinds & {"user", "org_unit"} or path is None:
        return Choices()
    units: list[tuple[str, str]] = []
    county = ancestor_paths(path)[0]
    by_field: dict[str, list[tuple[str, str]]] = {}
    for entry in entries:
        if entry.name in spec.fields and spec.fields[entry.name].type == "user":
            by_field[entry.name] = people_around(spec, path, _field_roles(spec, entry.name))
    if "org_unit" in kinds:
        with hexie_state().engine.session_factory() as s:
            rows = s.execute(select(OrgUnit.code, OrgUnit.name, OrgUnit.path)
                             .where(OrgUnit.path.startswith(county, autoescape=True))
                             .order_by(OrgUnit.path).limit(2000)).all()
        units = [(c, "\u3000" * max(p.count("/") - 2, 0) + n) for c, n, p in rows]
    return Choices(units=units, users_by_field=by_field)


def _formdata():
    return CombinedMultiDict([request.files, request.form])


def _not_host_owned(entries, view: Mapping[str, Any]):
    """A host record's mapped fields are never inputs of Hexie's forms (host.md): the case page
    shows them read-only with the rest of the data, and the engine refuses them if sent anyway."""
    owned = set(view.get("host_fields") or ())
    return tuple(entry for entry in entries if entry.name not in owned) if owned else entries


def _action_form(spec: ProcessSpec, view: Mapping[str, Any], trigger: str, path: str | None,
                 formdata: Any = None, files_present=()) -> DynamicForm:
    entries = _not_host_owned(action_form(spec, view["state"], trigger), view)
    return build_form(spec, entries, formdata=formdata, current=view["data"], masked=view["masked"],
                      comment=comment_rule(spec, view["state"], trigger), prefix=f"a-{trigger}",
                      choices=_choices(spec, entries, path), files_present=files_present)


def _task_form(spec: ProcessSpec, view: Mapping[str, Any], task: Mapping[str, Any], path: str | None,
               formdata: Any = None, files_present=()) -> DynamicForm:
    entries = _not_host_owned(task_form(spec, view["state"], task["name"]), view)
    return build_form(spec, entries, formdata=formdata, current=view["data"], masked=view["masked"],
                      prefix=f"t{task['id']}", choices=_choices(spec, entries, path), files_present=files_present)


def render_case(case_id: int, bound: Mapping[str, DynamicForm] | None = None, status: int = 200,
                error: str | None = None):
    """The case page; ``bound`` keeps submitted forms (key ``a:TRIGGER`` or ``t:TASK_ID``)."""
    actor = current_actor()
    state = hexie_state()
    bound = dict(bound or {})
    view = state.queries.case(actor, case_id, read=page_read())   # a confidential case's read is logged
    history = state.queries.history(actor, case_id)
    spec = case_spec(view)
    key = view["process"]
    path = unit_path(view["org_unit"])
    st = spec.state(view["state"])
    attachments = case_attachments(case_id)
    files_present = set(attachments)

    names = display_names([e["actor"] for e in history] + [t_["assignee"] for t_ in view["tasks"]]
                          + [view.get("created_by")] + protection_names(view)
                          + [n for e in history for key in ("owner", "consulted", "mentions", "assignee")
                             for n in _change_people((e.get("changes") or {}).get(key))]
                          + [v for n, v in view["data"].items()
                             if n in spec.fields and spec.fields[n].type == "user" and isinstance(v, str)])

    voting = is_voting(key, view["state"], spec)
    roles = state.engine.registry.roles
    manager = bool(path) and manages_case(actor, roles, path, bool(view.get("confidential")))
    owner = view.get("owner")
    may_manage = not st.final and (manager or (owner is not None and owner == actor.username))
    names.update(display_names([owner, (view.get("suspended") or {}).get("by")]))
    tasks = []
    for task in view["tasks"]:
        tspec = st.task(task["name"])
        consult = task.get("kind") == "consult"
        offered = not consult and bool(tspec and path and (
            (actor.holds(task["role"], path, tspec.at) and set(tspec.requires) <= actor.capabilities)
            or (task["escalated"] and tspec.escalate and actor.holds(tspec.escalate.to, path))))
        mine = task["assignee"] == actor.username
        # order: any_one_at_a_time: while another of the state's tasks is in hand, this one waits
        waits = st.interleaved and any(o["status"] == "allocated" and o["id"] != task["id"] for o in view["tasks"])
        work_label = task_label(key, task["state"], task["name"], spec)
        row = dict(task, label=t("workday.consult_of", task=work_label) if consult else work_label,
                   role_label="" if consult else role_label(task["role"]), mine=mine,
                   assignee_name=names.get(task["assignee"], task["assignee"]),
                   can_claim=task["status"] == "offered" and offered and not voting and not waits,
                   can_release=mine and task["status"] == "allocated" and not consult,
                   can_done=st.parallel and offered and task["assignee"] in (None, actor.username)
                   and not view.get("suspended") and not waits,
                   can_hold=not consult and (mine or manager), can_answer=consult and mine,
                   can_consult=not consult and (mine or (task["assignee"] is None and offered
                                                         and not view.get("confidential"))))
        if task.get("acceptance") and not task.get("accepted"):   # a referral: accept or decline it first
            row.update(can_accept=offered and task["assignee"] in (None, actor.username),
                       can_claim=False, can_done=False)
        if row["can_done"]:
            row["form"] = bound.get(f"t:{task['id']}") or _task_form(spec, view, task, path,
                                                                     files_present=files_present)
        tasks.append(row)

    my_votes, vote_counts = _votes(case_id, view["state"], actor.user_id)
    # an action she already voted for is no longer hers to fire: shown with her vote and the count
    voted = [b["trigger"] for b in view.get("blocked_actions", ()) if b["trigger"] in my_votes]
    actions = []
    for trigger in [*view["actions"], *voted]:
        transitions = spec.transitions_from(view["state"], trigger)
        quorum = view["action_quorums"].get(trigger, max((t_.quorum for t_ in transitions), default=1))
        dests = {t_.dest for t_ in transitions}
        form = bound.get(f"a:{trigger}") or _action_form(spec, view, trigger, path, files_present=files_present)
        actions.append({
            "trigger": trigger, "label": trigger_label(key, trigger, view["state"], spec), "form": form,
            "quorum": quorum, "votes": vote_counts.get(trigger, 0), "voted": trigger in my_votes,
            "final": all(spec.state(d).final for d in dests),
            "interrupt": any(t_.interrupt for t_ in transitions),
            "holder": any(t_.roles is None for t_ in transitions),
            "asks_comment": comment_rule(spec, view["state"], trigger) == "required",
            "dest_labels": [state_label(key, d, spec) for d in sorted(dests)],
            "open": f"a:{trigger}" in bound,
        })
    blocked = [{"label": trigger_label(key, b["trigger"], view["state"], spec),
                "reason": b["reason_en"] if get_locale() == "en" else b["reason_zh"]}
               for b in view.get("blocked_actions", ()) if b["trigger"] not in voted]
    # A refused form whose action is no longer offered (the guard now fails, the case moved
    # on): its messages go under the banner, so nothing the engine said is lost.
    shown = {f"a:{a['trigger']}" for a in actions} | {f"t:{x['id']}" for x in tasks if x.get("form")}
    extra_errors = [msg for key, form in bound.items() if key not in shown
                    for msg in form.general_errors + [e for f in form for e in (f.errors or [])]]
    own_task_form = next((x for x in tasks if x.get("form") and x["mine"]), None) \
        or next((x for x in tasks if x.get("form") and x["assignee"] is None), None)
    answering = any(x["can_answer"] for x in tasks)
    forward = [a for a in actions if not (a["final"] and a["asks_comment"])]
    if own_task_form is not None and not bound:
        own_task_form["open"] = True         # her own parallel work first (the police desk's report)
    elif forward and not answering and not any(a["open"] for a in actions) and not any(a["voted"] for a in actions):
        # Open the step's usual action: the task holder's own, the one that moves the work
        # forward (not an interruption, not a return or a refusal: those ask for a comment);
        # the definition's order breaks ties. After her vote, nothing opens by itself; nor
        # does a withdrawal or a refusal when it is all she may do, nor anything while she has
        # a colleague's question to answer (its form is open instead).
        min(forward, key=lambda a: (a["interrupt"], not a["holder"], a["asks_comment"]))["open"] = True
    wanted = request.values.get("next")
    return_to = safe_next(wanted) if wanted else None   # e.g. back to her approvals after a vote

    colleagues = people_around(spec, path)
    names.update(dict(colleagues))
    return render_template(
        "case.html", case=view, spec=spec, tasks=tasks, actions=actions, blocked=blocked, error=error, extra_errors=extra_errors,
        error_fields=[e for key, form in bound.items() if key in shown for e in error_summary(form)] if error else [],
        owner_name=names.get(owner, owner) if owner else None, may_manage=may_manage,
        suspended=dict(view["suspended"], by_name=names.get(view["suspended"]["by"], view["suspended"]["by"]))
        if view.get("suspended") else None,
        colleagues=[(u, n) for u, n in colleagues if u != actor.username],
        rows=_data_rows(spec, view, attachments, names, _decided(spec, history)), history=_history(spec, history, names),
        figures=(decision_figures(spec, view["state"], view["data"]) + _fund_balances(spec, view["state"], actor))
        if actions or blocked else [],
        diagram=render_svg(spec, view["state"], get_locale()),
        state_final=st.final, next_url=request.full_path.rstrip("?"), return_to=return_to,
        protection=protection_context(case_id, view, spec, names),
    ), status


def _fund_balances(spec: ProcessSpec, state: str, actor) -> list[dict[str, str]]:
    """Where a step pays out of a fund (``ledger:``), what each of the programme's funds
    holds now (received − paid + refunded, as the funds page), so the finance officer sees
    the balance beside the amount she enters."""
    if not any(t_.ledger is not None for t_ in spec.transitions_from(state)):
        return []
    field = fund_field(spec)
    fs = spec.fields.get(field) if field else None
    if fs is None or not fs.choices:
        return []
    books = LedgerQueries(hexie_state().engine).balances(actor, process=spec.key, period="year")
    held = {f["fund"]: f["balance"] for f in books["funds"]}
    return [{"name": f"$balance:{key}", "label": t("case.fund_balance", fund=label(text, key)),
             "value": money(held.get(key, 0))} for key, text in dict(fs.choices).items()]


def _change_people(pair: Any) -> list[str]:
    """The usernames an audit change names ([old, new], either a name or a list of names)."""
    out: list[str] = []
    for value in (pair if isinstance(pair, list) else []):
        out += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    return out


def _votes(case_id: int, state: str, user_id: int | None) -> tuple[set[str], dict[str, int]]:
    """Triggers I already voted for in this state, and the vote counts per trigger."""
    with hexie_state().engine.session_factory() as s:
        mine = func.count().filter(Vote.user_id == user_id) if user_id is not None else func.count() * 0
        rows = s.execute(select(Vote.trigger, func.count(), mine)
                         .where(Vote.case_id == case_id, Vote.state == state).group_by(Vote.trigger)).all()
    return {trig for trig, _, mine in rows if mine}, {trig: n for trig, n, _ in rows}


def _decided(spec: ProcessSpec, history: list[dict[str, Any]]) -> set[str]:
    """The fields someone has filled: the first form's, and those a later event changed (a
    yes/no a later step asks holds only its default until then)."""
    first = {e.name for e in spec.initial_state.form}
    out: set[str] = set()
    for e in history:
        keys = set((e.get("changes") or {}))
        out |= (keys & first) if e["kind"] == "started" else keys
    return out


def _data_rows(spec: ProcessSpec, view: Mapping[str, Any], attachments, names,
               decided: set[str] | None = None) -> list[dict[str, Any]]:
    data = view["data"]
    rows = []
    for name, fs in spec.fields.items():
        value = data.get(name)
        if fs.type == "boolean" and decided is not None and name not in decided:
            # a later step's yes/no: not "no" before anyone decided it
            if name in {e.name for st in spec.states for e in st.form} or any(
                    name in {f.name for f in t.form} for t in spec.transitions):
                rows.append({"name": name, "label": label(fs.label, name), "type": "undecided",
                             "value": t("workday.not_yet_decided"), "hidden": False, "sensitive": fs.sensitive})
            continue
        if fs.type == "file":
            files = attachments.get(name, [])
            if not files:
                continue
            hidden = view["masked"] and fs.sensitive
            rows.append({"name": name, "label": label(fs.label, name), "files": [] if hidden else files,
                         "hidden": hidden, "type": "file", "sensitive": fs.sensitive})
            continue
        if value is None or value == "" or value == []:
            continue
        rows.append({"name": name, "label": label(fs.label, name), "type": fs.type,
                     "value": format_value(spec, name, value, names), "hidden": value == "***",
                     "sensitive": fs.sensitive})
    return rows


def _history(spec: ProcessSpec, events: list[dict[str, Any]], names: Mapping[str, str]) -> list[dict[str, Any]]:
    key = spec.key
    out = []
    for e in events:
        changes = []
        task_name = None
        for field, pair in (e.get("changes") or {}).items():
            old, new = (pair + [None, None])[:2] if isinstance(pair, list) else (None, pair)
            if field == "task":
                task_name = old or new
            elif field in spec.fields:
                fs = spec.fields[field]
                if fs.type == "file":
                    if isinstance(new, str):  # "attached": the file's name
                        changes.append((label(fs.label, field), "", new))
                    else:
                        count = len(new) if isinstance(new, list) else (1 if new else 0)
                        changes.append((label(fs.label, field), "", t("history.files", n=count)))
                else:
                    changes.append((label(fs.label, field), format_value(spec, field, old, names) if old not in (None, "") else "",
                                    format_value(spec, field, new, names)))
            elif field == "assignee":
                changes.append((t("col.assignee"), names.get(old, old) or "", names.get(new, new) or t("none")))
            elif field == "escalate_to":
                changes.append((t("col.role"), "", role_label(new)))
            elif field == "version":
                changes.append((t("case.version"), str(old), str(new)))
            elif field == "agency":   # consent statements (protection.md)
                changes.append((t("consent.agency"), "", label(spec.agency_label(new), new) if new else ""))
            elif field == "scope":
                changes.append((t("consent.scope"), "", t(f"consent.scope.{new}") if new in ("services", "statistics")
                                else str(new or "")))
            elif field in ("child_case", "parent_case"):   # call: the case started, ended, or the caller
                other = old if isinstance(old, int) else new
                changes.append((t("runtime.child" if field == "child_case" else "runtime.parent"), "", f"#{other}"))
            elif field == "cancelled":   # complete: any | N cut the other instances short
                changes.append((t("runtime.cancelled_tasks"), "", "、".join(
                    task_label(key, e.get("from_state") or "", n, spec) for n in (new or ()))))
            elif field in ("owner", "consulted"):
                changes.append((t(f"workday.change.{field}"), names.get(old, old) or "", names.get(new, new) or ""))
            elif field == "mentions":
                changes.append((t("workday.change.mentions"), "",
                                "、".join(names.get(n, n) for n in (new or []))))
            elif field in ("until", "held"):
                changes.append((t(f"workday.change.{field}"), "", str(new or "")))
            else:
                changes.append((field, str(old or ""), str(new or "")))
        actor = e.get("actor")
        out.append({
            **e,
            "actor_name": t("history.system") if actor in (None, "system") else names.get(actor, actor),
            "kind_label": kind_label(e["kind"]),
            "trigger_label": trigger_label(key, e.get("trigger"), e.get("from_state"), spec),
            "from_label": state_label(key, e.get("from_state"), spec),
            "to_label": state_label(key, e.get("to_state"), spec),
            "task_label": task_label(key, e.get("from_state") or "", task_name, spec) if task_name else "",
            "changes_list": changes,
        })
    return out


@bp.route("/cases/<int:case_id>")
def case(case_id: int):
    return render_case(case_id)


# -------------------------------------------------------------------- actions

def _lock_version() -> int | None:
    try:
        return int(request.form.get("lock_version", ""))
    except ValueError:
        return None


def _submit(case_id: int, form: DynamicForm, bound_key: str, spec: ProcessSpec, view: Mapping[str, Any],
            call: Callable[[dict[str, Any], int], Any]):
    """Store the uploaded files, call the service with them, and turn a refusal into the page
    with messages.

    ``call(data, files)`` gets the engine data and the stored files, which the service
    records in the action's own transaction: a refused action keeps none of them (and the
    files are removed). File fields carry every attachment of the field kept from before,
    so that a required file attached earlier still counts; the new ones join them.
    """
    actor = current_actor()
    data = engine_data(form, view["masked"])
    uploads = [(fs.name, f) for _, fs, field in form.definition_fields() if fs.type == "file"
               for f in uploads_of(field)]
    files = save_files(uploads)
    try:
        everything = case_attachments(case_id)
        for _, fs, _field in form.definition_fields():
            ids = [a.id for a in reversed(everything.get(fs.name, []))]  # oldest first
            if fs.type == "file" and ids and not (view["masked"] and fs.sensitive):
                data[fs.name] = ids if fs.multiple else ids[-1]
        return call(data, files), None
    except BaseException as err:
        discard(files)
        if not isinstance(err, (Invalid, Conflict, Forbidden)):
            raise
        apply_engine_errors(form, err.details if isinstance(err, Invalid) else {})
        _choose_files_again(form)
        if isinstance(err, Conflict) and "lock_version" in err.details:
            message = t("case.stale")
        else:
            message = error_text(err)
        return None, render_case(case_id, bound={bound_key: form}, status=err.status, error=message)


def _choose_files_again(form: DynamicForm) -> None:
    """A refused form comes back without the files chosen in it (a browser keeps none, and the
    stored copies were removed with the refusal): say so at each such field."""
    for _, fs, field in form.definition_fields():
        if fs.type == "file" and uploads_of(field):
            field.errors = [*(field.errors or ()), t("workday.file_again")]


@bp.route("/cases/<int:case_id>/actions/<trigger>", methods=["POST"])
def fire(case_id: int, trigger: str):
    """One action on the case (approve, reject, submit...)."""
    actor = current_actor()
    state = hexie_state()
    view = state.queries.case(actor, case_id)
    spec = case_spec(view)
    if not any(t_.trigger == trigger for t_ in spec.transitions):
        raise NotFound("没有这个操作", f"{spec.key} has no action {trigger!r}")
    if trigger not in spec.triggers_from(view["state"]):
        flash(error_text(Conflict("案件已进入其他环节，此操作不再可用", "the case has moved on; this action is gone")),
              "error")
        return redirect(url_for("hexie.case", case_id=case_id))
    form = _action_form(spec, view, trigger, unit_path(view["org_unit"]), formdata=_formdata(),
                        files_present=case_attachments(case_id))
    if not form.validate():
        _choose_files_again(form)
        return render_case(case_id, bound={f"a:{trigger}": form}, status=422, error=t("case.fix_errors"))
    lock = _lock_version()   # a stale page is the service's Conflict (or her own action, sent again)
    result, refused = _submit(case_id, form, f"a:{trigger}", spec, view, lambda data, files: state.service.fire(
        actor, case_id, trigger, data, comment_of(form), lock, uploads=files,
        request_key=request_key_of(request.form.get("request_key"))))
    if refused is not None:
        return refused
    if result.get("outcome") == "voted":
        flash({"text": t("case.voted", votes=result["votes"], quorum=result["quorum"]), "case_id": case_id},
              "success")
    else:
        flash({"text": t("case.moved", id=case_id, state=state_label(spec.key, result.get("state"), spec)),
               "case_id": case_id}, "success")
    return redirect(safe_next(request.form.get("next"), url_for("hexie.inbox")))


@bp.route("/cases/<int:case_id>/actions/<trigger>/withdraw-vote", methods=["POST"])
def withdraw_vote(case_id: int, trigger: str):
    """Take back my vote while the others have not all voted."""
    actor = current_actor()
    try:
        result = hexie_state().service.withdraw_vote(actor, case_id, trigger)
    except (Conflict, Invalid) as err:
        flash(error_text(err), "error")
    else:
        flash({"text": t("case.vote_withdrawn", votes=result["votes"]), "case_id": case_id}, "success")
    return redirect(url_for("hexie.case", case_id=case_id, next=request.form.get("next") or None))


@bp.route("/tasks/<int:task_id>/claim", methods=["POST"])
def claim(task_id: int):
    """Take an offered task."""
    return _task_call(task_id, "claim", t("task.claimed"))


@bp.route("/tasks/<int:task_id>/release", methods=["POST"])
def release(task_id: int):
    """Give my task back to the pool."""
    return _task_call(task_id, "release", t("task.released"))


def _task_call(task_id: int, method: str, done_message: str):
    actor = current_actor()
    service = hexie_state().service
    try:
        getattr(service, method)(actor, task_id)
    except (Conflict, Forbidden, Invalid) as err:
        flash(error_text(err), "error")
    else:
        flash(done_message, "success")
    return redirect(safe_next(request.form.get("next"), url_for("hexie.inbox")))


@bp.route("/tasks/<int:task_id>/done", methods=["POST"])
def done(task_id: int):
    """Mark one parallel task done, saving its form."""
    actor = current_actor()
    state = hexie_state()
    try:
        case_id = int(request.form.get("case_id", ""))
    except ValueError:
        raise not_found() from None
    view = state.queries.case(actor, case_id)
    task = next((x for x in view["tasks"] if x["id"] == task_id), None)
    if task is None:
        flash(error_text(Conflict("任务已关闭", "the task is already closed")), "error")
        return redirect(url_for("hexie.case", case_id=case_id))
    spec = case_spec(view)
    form = _task_form(spec, view, task, unit_path(view["org_unit"]), formdata=_formdata(),
                      files_present=case_attachments(case_id))
    if not form.validate():
        _choose_files_again(form)
        return render_case(case_id, bound={f"t:{task_id}": form}, status=422, error=t("case.fix_errors"))
    _, refused = _submit(case_id, form, f"t:{task_id}", spec, view,
                         lambda data, files: state.service.done(actor, task_id, data, uploads=files))
    if refused is not None:
        return refused
    flash({"text": t("task.done_ok"), "case_id": case_id}, "success")
    return redirect(url_for("hexie.case", case_id=case_id))
