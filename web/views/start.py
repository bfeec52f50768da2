"""Starting a case: choose the programme, the unit, and fill the first form."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import CombinedMultiDict

from hexie.workflows.errors import Forbidden, Invalid
from hexie.workflows.forms import defaults
from hexie.workflows.spec import ProcessSpec

from ..state import current_actor, hexie_state
from ..forms import apply_engine_errors, build_form, comment_of, engine_data, error_summary, start_form, uploads_of
from ..i18n import error_text, label, t
from .blueprint import bp
from .common import indent, units_in_area
from .files import discard, save_files


def startable(actor) -> list[ProcessSpec]:
    """Programmes she may start somewhere (a starter role held at some unit)."""
    out = []
    for spec in sorted(hexie_state().engine.processes.values(), key=lambda p: p.key):
        if any(a.role == role and (at is None or a.level == at)
               for a in actor.assignments for role, at in spec.starter_roles):
            out.append(spec)
    return out


def _units(actor, spec: ProcessSpec) -> list[tuple[str, str]]:
    """Units in her area, at the programme's level or below, where she may start it."""
    levels = hexie_state().engine.registry.roles.levels
    rank = levels.index(spec.org_level) if spec.org_level in levels else None
    return [(u.code, indent(u)) for u in units_in_area(actor, spec.starter_roles, rank)]


@bp.route("/start")
def start_choose():
    """The programmes she may start."""
    return render_template("start.html", processes=startable(current_actor()))


@bp.route("/start/<process>", methods=["GET", "POST"])
def start(process: str):
    """The first form of a new case."""
    actor = current_actor()
    state = hexie_state()
    spec = state.engine.processes.get(process)
    if spec is None or spec not in startable(actor):
        abort(404)
    units = _units(actor, spec)
    posted = request.method == "POST"
    form = build_form(spec, start_form(spec), current=defaults(spec), comment="optional", prefix="f",
                      formdata=CombinedMultiDict([request.files, request.form]) if posted else None)
    form.comment.label.text = t("start.comment")
    unit = request.form.get("org_unit", "") if posted else (units[0][0] if len(units) == 1 else "")
    unit_error = None
    error = None
    status = 200
    if posted:
        valid = form.validate()
        if unit not in {code for code, _ in units}:
            unit_error, valid = t("form.error.required"), False
        if valid:
            # the files are recorded with the start, in its transaction: a refused start keeps none
            files = save_files([(fs.name, f) for _, fs, field in form.definition_fields()
                                if fs.type == "file" for f in uploads_of(field)])
            try:
                case_id = state.service.start_case(actor, process, unit, engine_data(form), comment_of(form),
                                                   uploads=files)
            except BaseException as err:
                discard(files)
                if not isinstance(err, (Invalid, Forbidden)):
                    raise
                details = dict(err.details or {})
                if details.pop("org_unit", None) is not None or isinstance(err, Forbidden):
                    unit_error = error_text(err)
                apply_engine_errors(form, details)
                error, status = error_text(err), err.status
            else:
                flash({"text": t("start.done", id=case_id), "case_id": case_id}, "success")
                return redirect(url_for("hexie.case", case_id=case_id))
        else:
            error, status = t("case.fix_errors"), 422
    summary = ([{"id": "org_unit", "label": t("start.unit"), "message": unit_error}] if unit_error else []) \
        + (error_summary(form) if error else [])
    return render_template("start_form.html", spec=spec, form=form, units=units, unit=unit,
                           unit_error=unit_error, error=error, error_fields=summary,
                           title=label(spec.title)), status
