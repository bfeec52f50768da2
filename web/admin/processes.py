"""Administrators' process definitions: list, read, edit with a server-side check and live diagram, publish."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hexie.models import Case, ProcessVersion
from hexie.workflows.errors import HexieError
from hexie.workflows.loader import load_process_text
from hexie.workflows.spec import Diagnostic, ProcessSpec

from .. import i18n
from ..state import current_actor
from ..i18n import label, t
from .common import MAX_SOURCE, _engine, _record, admin_required, bp
from .source import _diagnostic_dicts, _notes, numbered_source

# ===================================================================== processes

def _version_rows(s: Session, key: str) -> list[dict[str, Any]]:
    counts = dict(s.execute(select(Case.process_version_id, func.count()).where(Case.process_key == key)
                            .group_by(Case.process_version_id)).all())
    open_counts = dict(s.execute(select(Case.process_version_id, func.count())
                                 .where(Case.process_key == key, Case.closed_at.is_(None))
                                 .group_by(Case.process_version_id)).all())
    rows = s.execute(select(ProcessVersion.id, ProcessVersion.version, ProcessVersion.created_at,
                            ProcessVersion.content_hash).where(ProcessVersion.key == key)
                     .order_by(ProcessVersion.version.desc())).all()
    return [{"id": i, "version": v, "created_at": at, "hash": h[:12], "cases": counts.get(i, 0),
             "open": open_counts.get(i, 0)} for i, v, at, h in rows]


def _writable(path: str) -> bool:
    return bool(path) and os.path.isfile(path) and os.access(path, os.W_OK)


@bp.route("/processes")
@admin_required
def processes():
    """Every process definition with its current version and the cases on each."""
    engine = _engine()
    rows = []
    with engine.session_factory() as s:
        versions = dict(s.execute(select(ProcessVersion.key, func.count()).group_by(ProcessVersion.key)).all())
        open_cases = dict(s.execute(select(Case.process_key, func.count()).where(Case.closed_at.is_(None))
                                    .group_by(Case.process_key)).all())
    for key, spec in sorted(engine.processes.items()):
        try:
            _, _, version = engine.current(key)
        except HexieError:
            version = None
        rows.append({"key": key, "title": label(spec.title), "version": version,
                     "versions": versions.get(key, 0), "open": open_cases.get(key, 0),
                     "file": os.path.basename(spec.path or ""), "writable": _writable(spec.path)})
    return render_template("admin/processes.html", rows=rows)


def _spec_or_404(key: str) -> ProcessSpec:
    spec = _engine().processes.get(key)
    if spec is None:
        abort(404)
    return spec


@bp.route("/processes/<key>")
@admin_required
def process(key: str):
    """A definition's source with line numbers, its map and its versions (``?version=N``)."""
    engine = _engine()
    spec = _spec_or_404(key)
    _, _, current_version = engine.current(key)
    shown_version = request.args.get("version", type=int) or current_version
    source, shown = spec.source_text, spec
    with engine.session_factory() as s:
        versions = _version_rows(s, key)
        if shown_version != current_version:
            row = next((v for v in versions if v["version"] == shown_version), None)
            if row is None:
                abort(404)
            shown = engine.spec_of(s, row["id"])
            source = shown.source_text
    from ..diagram import render_svg
    highlight = {request.args.get("line", type=int)} - {None}
    return render_template("admin/process.html", key=key, spec=spec, title=label(spec.title),
                           lines=numbered_source(source, highlight=highlight),
                           diagram=render_svg(shown, None, i18n.get_locale()),
                           versions=versions, current_version=current_version, shown_version=shown_version,
                           path=spec.path, writable=_writable(spec.path))


def check_source(key: str, source: str) -> tuple[ProcessSpec | None, list[Diagnostic]]:
    """Load an edited definition the way the engine will (same file name, same roles)."""
    engine = _engine()
    current = engine.processes.get(key)
    filename = current.path if current is not None and current.path else f"{key}.yaml"
    spec, diagnostics = load_process_text(source, filename, engine.registry.roles)
    if spec is not None and spec.key != key:
        diagnostics = list(diagnostics) + [Diagnostic(filename, 1, 1, "error", t("admin.edit.key_changed", process=key),
                                                      "process")]
        spec = None
    return spec, diagnostics


@bp.route("/processes/<key>/edit", methods=["GET", "POST"])
@admin_required
def edit_process(key: str):
    """Edit a definition's YAML; check it; publish it as a new version when it has no errors."""
    engine = _engine()
    spec = _spec_or_404(key)
    _, _, current_version = engine.current(key)
    source = spec.source_text
    base_version = current_version
    diagnostics: list[Diagnostic] | None = None
    preview = spec
    status = 200
    if request.method == "POST":
        source = (request.form.get("source") or "").replace("\r\n", "\n")
        base_version = request.form.get("base_version", type=int) or current_version
        if len(source) > MAX_SOURCE:
            abort(413)
        checked, diagnostics = check_source(key, source)
        preview = checked or spec
        errors = [d for d in diagnostics if d.severity == "error"]
        if errors:
            status = 422
        elif request.form.get("action") == "publish":
            if base_version != current_version:
                flash(t("admin.edit.stale", version=current_version), "error")
                status = 409
            else:
                return _publish(key, checked, current_version)
    from ..diagram import render_svg
    error_lines = {d.line for d in diagnostics or () if d.severity == "error"}
    return render_template(
        "admin/edit.html", key=key, title=label(spec.title), source=source, base_version=base_version,
        current_version=current_version, diagnostics=_diagnostic_dicts(diagnostics) if diagnostics is not None else None,
        error_count=sum(1 for d in diagnostics or () if d.severity == "error"),
        warning_count=sum(1 for d in diagnostics or () if d.severity == "warning"),
        lines=numbered_source(source, highlight=error_lines, notes=_notes(diagnostics or ())),
        line_count=max(1, source.count("\n") + 1), error_lines=error_lines,
        diagram=render_svg(preview, None, i18n.get_locale()), path=spec.path, writable=_writable(spec.path),
    ), status


def _publish(key: str, spec: ProcessSpec, current_version: int):
    """Make the checked spec current (a new version), write the file back, and go to its page."""
    engine = _engine()
    actor = current_actor()
    old_path = engine.processes[key].path
    spec_title = label(spec.title)
    version = engine.publish(spec)
    if version == current_version:
        flash(t("admin.edit.unchanged", version=version), "info")
        return redirect(url_for("admin.process", key=key))
    with engine.transaction() as s:
        _record(s, actor, "process_published", {"process": [key, key], "version": [current_version, version]})
    flash(t("admin.edit.published", title=spec_title, version=version), "success")
    if _writable(old_path):
        # Written after publishing: the database holds the version either way, and the next
        # start reads the file (an older file would come back as yet another version).
        Path(old_path).write_text(spec.source_text, encoding="utf-8")
        flash(t("admin.edit.written", path=os.path.basename(old_path)), "info")
    else:
        flash(t("admin.process.readonly_file", path=old_path or f"{key}.yaml"), "warning")
    return redirect(url_for("admin.process", key=key))


@bp.route("/processes/<key>/check", methods=["POST"])
@admin_required
def check_process(key: str):
    """JSON for the editor's live preview: ``{ok, errors, warnings, diagnostics, svg}``.

    The request body is JSON ``{"source": "..."}``, with the CSRF token in the
    ``X-CSRFToken`` header. ``svg`` is the map of the checked text, or null with errors.
    """
    _spec_or_404(key)
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("source"), str):
        return jsonify({"error": {"code": "bad_request", "message": t("error.400")}}), 400
    source = payload["source"].replace("\r\n", "\n")
    if len(source) > MAX_SOURCE:
        return jsonify({"error": {"code": "too_large", "message": t("admin.edit.too_long")}}), 413
    spec, diagnostics = check_source(key, source)
    from ..diagram import render_svg
    errors = sum(1 for d in diagnostics if d.severity == "error")
    return jsonify({
        "ok": errors == 0, "errors": errors, "warnings": len(diagnostics) - errors,
        "summary": t("admin.edit.ok") if not errors else t("admin.edit.errors", n=errors),
        "diagnostics": [dict(d, where=t("admin.edit.line", line=d["line"], column=d["column"]),
                             severity_text=t(f"admin.severity.{d['severity']}"))
                        for d in _diagnostic_dicts(diagnostics)],
        "svg": str(render_svg(spec, None, i18n.get_locale())) if spec is not None else None,
    })
