"""Printing: the case file (``/cases/<id>/print.pdf``) and the definition's documents
(``/cases/<id>/documents/<name>.pdf``), as the reader may see the case.

A case she may not see and one that does not exist are the same 404, and so is a document
the case's definition does not declare. The data comes from the case page's own queries and
formatting (:mod:`hexie.web.views.case`), in Chinese, with English beside each heading.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from flask import Response, g, request

from hexie.workflows.errors import not_found
from hexie.workflows.protection import case_code, deidentify

from flask import current_app

from ..state import current_actor, hexie_state
from ..i18n import get_locale, label, t
from ..printing import CaseFile, case_file_pdf, document_pdf, fill, pdf_response_headers
from .blueprint import bp
from .consent import page_read
from .case import _data_rows, _history
from .common import case_spec, display_names, fmt_date, fmt_dt, format_value, places, process_title, state_label
from .files import case_attachments
from hexie.models import OrgUnit

#: events that record a decision: what the approval table lists
DECISIONS = ("fired", "vote", "vote_withdrawn", "task_done")


def _decisions(spec, history: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """The approval table's rows (step, action, by, when, comment). A vote is not an approval:
    it reads "批准（第 1/2 票，待他人）" until the vote that carries the quorum ("第 2/2 票，通过");
    a withdrawn vote is listed as such, and leaving the state discards the votes (definitions.md)."""
    rows, votes = [], {}
    for e in history:
        if e["kind"] not in DECISIONS:
            continue
        action = e["trigger_label"] or e["task_label"] or e["kind_label"]
        key = (e.get("from_state"), e.get("trigger"))
        quorum = max((tr.quorum for tr in spec.transitions_from(e.get("from_state") or "", e.get("trigger"))
                      if e.get("trigger")), default=1) if e.get("from_state") else 1
        if e["kind"] == "vote":
            votes[key] = votes.get(key, 0) + 1
            action = t("print.vote", action=action, k=votes[key], n=quorum)
        elif e["kind"] == "vote_withdrawn":
            votes[key] = max(votes.get(key, 0) - 1, 0)
            action = t("print.vote_withdrawn", action=action, k=votes[key], n=quorum)
        elif e["kind"] == "fired" and votes.get(key):
            action = t("print.vote_carried", action=action, n=votes[key] + 1)
        if e["kind"] == "fired" and e.get("from_state") != e.get("to_state"):
            votes = {k: v for k, v in votes.items() if k[0] != e.get("from_state")}
        rows.append((e["from_label"], action, e["actor_name"], fmt_dt(e["at"]), e.get("comment") or ""))
    return rows


def site_name() -> str:
    """``HEXIE_SITE_NAME`` (a text or ``{zh, en}``) in the current language, else the app's tagline
    (the page header's rule)."""
    name = current_app.config.get("HEXIE_SITE_NAME")
    if isinstance(name, dict):
        return str(name.get(get_locale()) or name.get("zh") or next(iter(name.values()), ""))
    return str(name) if name else t("app.tagline")


@contextmanager
def in_locale(locale: str) -> Iterator[None]:
    """Format in ``locale`` for a while (the page's helpers read the request's locale)."""
    before = g.get("hexie_locale")
    g.hexie_locale = locale
    try:
        yield
    finally:
        g.hexie_locale = before


def _read(case_id: int, what: str = "case file") -> tuple[dict[str, Any], list[dict[str, Any]], Any, dict[str, str]]:
    """The case as the reader may see it, for a print-out (``what``: which one, for the access log)."""
    actor = current_actor()
    state = hexie_state()
    # 404 for hidden and missing alike; a confidential case's print-out is logged (protection.md)
    view = state.queries.case(actor, case_id, read=page_read("print", what))
    history = state.queries.history(actor, case_id)
    spec = case_spec(view)
    if (request.args.get("deidentified") or "").lower() in ("1", "true", "yes", "on"):
        view, history = _deidentified(spec, view, history)
    names = display_names([e["actor"] for e in history] + [view.get("created_by")]
                          + [v for n, v in view["data"].items()
                             if n in spec.fields and spec.fields[n].type == "user" and isinstance(v, str)])
    return view, history, spec, names


def _deidentified(spec, view: dict[str, Any], history: list[dict[str, Any]]):
    """``deidentified=1`` (protection.md): every sensitive value, in the data and in the history's
    changes, becomes the case's stable code, and the history's comments are left out."""
    code = case_code(view["id"])
    sensitive = {name for name, field in spec.fields.items() if field.sensitive}
    events = []
    for e in history:
        changes = {k: ([code if v not in (None, "", []) else v for v in pair]
                       if k in sensitive and isinstance(pair, list) else pair)
                   for k, pair in (e.get("changes") or {}).items()}
        events.append({**e, "changes": changes, "comment": None})
    return {**view, "data": deidentify(spec, view["id"], view["data"])}, events


def _place(code: str) -> str:
    return places(OrgUnit.code, OrgUnit.code == code).get(code, code)


@bp.route("/cases/<int:case_id>/print.pdf")
def case_pdf(case_id: int):
    """The case file: data (masked as for her), approvals with names and times, history,
    signature and seal lines."""
    view, events, spec, names = _read(case_id)
    actor = current_actor()
    with in_locale("zh"):
        rows = _data_rows(spec, view, case_attachments(case_id), names)
        history = _history(spec, events, names)
        data = []
        for row in rows:
            fs = spec.fields[row["name"]]
            if row["type"] == "file":
                value = "●●●●" if row["hidden"] else "、".join(a.filename for a in row["files"])
            else:
                value = row["value"]
            data.append((fs.label.zh, fs.label.en, value))
        approvals = _decisions(spec, history)
        trail = []
        for e in history:
            what = e["kind_label"] + (f"：{e['trigger_label']}" if e.get("trigger_label") else "")
            moves = f"{e['from_label']} → {e['to_label']}" if e.get("from_label") and e.get("to_label") \
                and e["from_label"] != e["to_label"] else ""
            changes = "；".join(f"{name}：{new}" if not old else f"{name}：{old} → {new}"
                               for name, old, new in e["changes_list"][:8] if not name.startswith("$"))
            detail = "\n".join(x for x in (moves, changes, e.get("comment") or "") if x)
            trail.append((fmt_dt(e["at"]), e["actor_name"], what, detail))
        state = spec.state(view["state"]).label
        case = CaseFile(
            site=site_name(), title=(spec.title.zh, spec.title.en), case_id=view["id"],
            business_key=view.get("business_key"), place=_place(view["org_unit"]),
            state=(state.zh, state.en), opened=fmt_dt(view["created_at"]), closed=fmt_dt(view["closed_at"]),
            printed_by=actor.username or "", printed_at=fmt_dt(hexie_state().engine.clock()),
            masked=bool(view["masked"]), rows=data, approvals=approvals, history=trail)
    pdf = case_file_pdf(case)
    return Response(pdf, mimetype="application/pdf", headers=pdf_response_headers(f"case-{case_id}"))


def document_values(spec, view: dict[str, Any], names: dict[str, str]):
    """``{placeholder}`` -> text in the current locale: a field's value as she may see it (a line to
    fill in by hand when empty), or one of the case's facts."""
    def value(name: str) -> str:
        if name == "case_id":
            return f"#{view['id']}"
        if name == "business_key":
            return view.get("business_key") or "________"
        if name == "process":
            return process_title(view["process"])
        if name == "unit":
            return _place(view["org_unit"])
        if name == "today":
            return fmt_date(hexie_state().engine.clock())
        raw = view["data"].get(name)
        if raw in (None, "", []):
            return "________"
        return format_value(spec, name, raw, names)
    return value


@bp.route("/cases/<int:case_id>/documents/<name>.pdf")
def case_document_pdf(case_id: int, name: str):
    """A document the definition declares (``documents:``), filled from the case."""
    view, _events, spec, names = _read(case_id, f"document {name}")
    doc = spec.documents.get(name)
    if doc is None:
        raise not_found()
    bodies = []
    for locale, title, body in (("zh", doc.title.zh, doc.body.zh), ("en", doc.title.en, doc.body.en)):
        with in_locale(locale):
            bodies.append(fill(body, document_values(spec, view, names)))
    footer = f"{site_name()}  {spec.title.zh} #{view['id']}  {doc.title.zh}"
    pdf = document_pdf(site_name(), (doc.title.zh, doc.title.en), (bodies[0], bodies[1]), footer)
    return Response(pdf, mimetype="application/pdf", headers=pdf_response_headers(f"case-{case_id}-{name}"))


def document_links(spec) -> list[tuple[str, str]]:
    """(name, title) of the documents the case page offers to print."""
    return [(name, label(doc.title)) for name, doc in spec.documents.items()]
