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

from flask import current_app, send_file
from sqlalchemy import select

from hexie.models import Attachment
from hexie.workflows.access import Actor
from hexie.workflows.errors import not_found
from hexie.workflows.service import Upload

from ..state import current_actor, hexie_state
from ..forms import ALLOWED_UPLOADS
from .blueprint import bp
from .common import case_spec

INLINE_TYPES = {"application/pdf", "image/png", "image/jpeg"}


def upload_dir() -> Path:
    configured = current_app.config.get("HEXIE_UPLOAD_DIR")
    if configured:
        path = Path(configured)
    else:
        from hexie.workflows.config import instance_dir
        path = instance_dir() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_files(uploads: Iterable[tuple[str, Any]]) -> list[Upload]:
    """Save each (field, FileStorage) under a random name, for the service call that records
    them (``uploads=``) in its own transaction. If that call is refused, :func:`discard` them."""
    folder = upload_dir()
    out: list[Upload] = []
    try:
        for field, storage in uploads:
            name = Path(storage.filename or "file").name[-200:]
            ext = name.rsplit(".", 1)[-1].lower()
            key = f"{secrets.token_hex(16)}.{ext}"
            target = folder / key
            storage.stream.seek(0)
            storage.save(target)
            out.append(Upload(field, name, ALLOWED_UPLOADS[ext][0], target.stat().st_size, key))
    except Exception:
        discard(out)
        raise
    return out


def discard(files: Iterable[Upload]) -> None:
    """Remove stored files that no attachment row names (their call was refused)."""
    folder = upload_dir()
    for upload in files:
        (folder / upload.storage_key).unlink(missing_ok=True)


def store_uploads(actor: Actor, case_id: int, uploads: Iterable[tuple[str, Any]]) -> list[tuple[str, int]]:
    """Save each (field, FileStorage) and record it on the case at once (the API's upload).

    The record goes through :meth:`WorkflowService.add_attachment` (only to a file field of a
    form she may submit now; the history says who attached what). Returns (field, id) pairs.
    """
    service = hexie_state().service
    out: list[tuple[str, int]] = []
    for upload in save_files(uploads):
        try:
            out.append((upload.field, service.add_attachment(actor, case_id, upload.field, upload.filename,
                                                             upload.content_type, upload.size, upload.storage_key)))
        except Exception:
            discard([upload])
            raise
    return out


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
    """One attachment, for those who may see it (otherwise the 404 of one that does not exist)."""
    actor = current_actor()
    state = hexie_state()
    with state.engine.session_factory() as s:
        row = s.get(Attachment, attachment_id)
        if row is None:
            raise not_found()
        case_id, field, filename, content_type, key = (row.case_id, row.field, row.filename,
                                                       row.content_type, row.storage_key)
    view = state.queries.case(actor, case_id)  # NotFound for people who may not see the case
    spec = case_spec(view)
    fs = spec.fields.get(field)
    if view["masked"] and (fs is None or fs.sensitive):
        raise not_found()
    folder = upload_dir().resolve()
    path = (folder / key).resolve()
    if folder not in path.parents or not path.is_file():  # demo records have no scan behind them
        raise not_found()
    response = send_file(path, mimetype=content_type, as_attachment=content_type not in INLINE_TYPES,
                         download_name=filename, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
