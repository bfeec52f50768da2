"""Attachments of ``file`` fields: stored outside the web root under random names.

Files live in ``<instance>/uploads`` (or ``HEXIE_UPLOAD_DIR``), named by a random key;
a row in ``attachments`` remembers the case, the field, the original name and type.
Only people who may see the case download them, and a sensitive field's files only
those working the case.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Iterable

from flask import abort, current_app, send_file
from sqlalchemy import delete, select

from models import Attachment
from workflows.access import Actor

from ..extension import current_actor, hexie_state
from ..forms import ALLOWED_UPLOADS
from . import bp
from .common import case_spec

INLINE_TYPES = {"application/pdf", "image/png", "image/jpeg"}


def upload_dir() -> Path:
    configured = current_app.config.get("HEXIE_UPLOAD_DIR")
    if configured:
        path = Path(configured)
    else:
        from workflows.config import instance_dir
        path = instance_dir() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_uploads(actor: Actor, case_id: int, uploads: Iterable[tuple[str, Any]]) -> list[tuple[str, int]]:
    """Save each (field, FileStorage) and record it; returns (field, attachment id) pairs.

    Written and committed before the action that names them, so that the action's own
    transaction stays the engine's; :func:`discard_uploads` undoes it when the action
    is refused.
    """
    items = list(uploads)
    if not items:
        return []
    folder = upload_dir()
    rows: list[Attachment] = []
    written: list[Path] = []
    try:
        for field, storage in items:
            name = Path(storage.filename or "file").name[-200:]
            ext = name.rsplit(".", 1)[-1].lower()
            key = f"{secrets.token_hex(16)}.{ext}"
            target = folder / key
            storage.stream.seek(0)
            storage.save(target)
            written.append(target)
            rows.append(Attachment(case_id=case_id, field=field, filename=name,
                                   content_type=ALLOWED_UPLOADS[ext][0], size=target.stat().st_size,
                                   storage_key=key, uploaded_by_id=actor.user_id))
        with hexie_state().engine.session_factory() as s:
            s.add_all(rows)
            s.commit()
            return [(r.field, r.id) for r in rows]
    except Exception:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def discard_uploads(ids: Iterable[int]) -> None:
    """Remove attachments stored for an action that was then refused."""
    ids = list(ids)
    if not ids:
        return
    folder = upload_dir()
    with hexie_state().engine.session_factory() as s:
        keys = list(s.scalars(select(Attachment.storage_key).where(Attachment.id.in_(ids))))
        s.execute(delete(Attachment).where(Attachment.id.in_(ids)))
        s.commit()
    for key in keys:
        (folder / key).unlink(missing_ok=True)


def case_attachments(case_id: int) -> dict[str, list[Attachment]]:
    """field -> its attachments, newest first."""
    out: dict[str, list[Attachment]] = {}
    with hexie_state().engine.session_factory() as s:
        for row in s.scalars(select(Attachment).where(Attachment.case_id == case_id)
                             .order_by(Attachment.id.desc())):
            out.setdefault(row.field, []).append(row)
    return out


@bp.route("/attachments/<int:attachment_id>")
def download(attachment_id: int):
    """One attachment, for those who may see it (404 otherwise, like a case)."""
    actor = current_actor()
    state = hexie_state()
    with state.engine.session_factory() as s:
        row = s.get(Attachment, attachment_id)
        if row is None:
            abort(404)
        case_id, field, filename, content_type, key = (row.case_id, row.field, row.filename,
                                                       row.content_type, row.storage_key)
    view = state.queries.case(actor, case_id)  # NotFound for people who may not see the case
    spec = case_spec(view)
    fs = spec.fields.get(field)
    if view["masked"] and (fs is None or fs.sensitive):
        abort(404)
    path = upload_dir() / key
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype=content_type, as_attachment=content_type not in INLINE_TYPES,
                         download_name=filename, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
