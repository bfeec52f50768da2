"""A case file to hand to another agency (protection.md, "Reports and exports").

:func:`case_file_parts` turns a case, as the reader may see it, into the files of its case
file: ``case.json`` (the case and its history) and ``case.csv`` (one row per field, then the
history), and whatever other makers are registered with :func:`register_part` (the printed
case file in PDF joins there). :func:`encrypted_zip` packs them into a zip whose entries are
AES-256 encrypted (WinZip AE-2, opened by 7-Zip, WinZip, macOS Archive Utility...) with a
password that the exporter passes on separately.

``deidentified``: every sensitive value, the subject and the case id are replaced by the case's
stable code (:func:`hexie.workflows.protection.case_code`); the history keeps its steps and
times but no sensitive value and no comment.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .audit import canonical_json
from .protection import case_code, deidentify

#: The shortest password an encrypted case file accepts.
MIN_PASSWORD = 10


@dataclass
class CaseFile:
    """What a case file is made of: the case as the reader may see it (:meth:`CaseQueries.case`),
    its history (:meth:`CaseQueries.history`), its process and whether to de-identify."""

    view: dict[str, Any]
    history: list[dict[str, Any]]
    spec: Any
    deidentified: bool = False
    #: anything a part maker needs beyond the above (the locale, names of people and units ...)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return case_code(self.view["id"])

    def data(self) -> dict[str, Any]:
        data = dict(self.view["data"])
        return deidentify(self.spec, self.view["id"], data) if self.deidentified else data

    def events(self) -> list[dict[str, Any]]:
        out = []
        for e in self.history:
            changes = dict(e.get("changes") or {})
            if self.deidentified:
                changes = {k: ([self.code if v not in (None, "") else v for v in pair]
                               if k in self.spec.fields and self.spec.fields[k].sensitive and isinstance(pair, list)
                               else pair) for k, pair in changes.items()}
            out.append({"at": e["at"], "actor": None if self.deidentified else e["actor"], "kind": e["kind"],
                        "trigger": e["trigger"], "from_state": e["from_state"], "to_state": e["to_state"],
                        "comment": None if self.deidentified else e["comment"], "changes": changes or None})
        return out

    def header(self) -> dict[str, Any]:
        v = self.view
        confidential = bool(getattr(self.spec, "confidential", False))
        return {"id": None if self.deidentified else v["id"], "code": self.code, "process": v["process"],
                "version": v["version"], "state": v["state"], "org_unit": v["org_unit"],
                "subject": self.code if (self.deidentified or confidential) else v["subject"],
                "created_at": v["created_at"], "closed_at": v["closed_at"], "masked": v["masked"],
                "deidentified": self.deidentified}


Part = tuple[str, bytes]
_MAKERS: list[Callable[[CaseFile], list[Part]]] = []


def register_part(maker: Callable[[CaseFile], list[Part]]) -> Callable[[CaseFile], list[Part]]:
    """Add a maker of more files to every case file (say, the printed case file as a PDF)."""
    if maker not in _MAKERS:
        _MAKERS.append(maker)
    return maker


def _json_part(case: CaseFile) -> list[Part]:
    document = {**case.header(), "data": case.data(), "history": case.events()}
    text = json.dumps(json.loads(canonical_json(document)), ensure_ascii=False, indent=2)
    return [("case.json", text.encode("utf-8"))]


def _csv_part(case: CaseFile) -> list[Part]:
    out = io.StringIO()
    writer = csv.writer(out)
    header = case.header()
    for key in ("code", "id", "process", "version", "state", "org_unit", "subject", "created_at", "closed_at"):
        writer.writerow([key, "", _cell(header[key])])
    writer.writerow([])
    writer.writerow(["field", "label", "value"])
    for name, value in case.data().items():
        fs = case.spec.fields.get(name)
        writer.writerow([name, fs.label.zh + " / " + fs.label.en if fs is not None else name, _cell(value)])
    writer.writerow([])
    writer.writerow(["at", "actor", "kind", "trigger", "from_state", "to_state", "comment", "changes"])
    for e in case.events():
        writer.writerow([_cell(e["at"]), _cell(e["actor"]), e["kind"], _cell(e["trigger"]), _cell(e["from_state"]),
                         _cell(e["to_state"]), _cell(e["comment"]),
                         _cell(canonical_json(e["changes"]) if e["changes"] else "")])
    return [("case.csv", ("\ufeff" + out.getvalue()).encode("utf-8"))]


def _cell(value: Any) -> str:
    """Text for a spreadsheet cell; what would start a formula is quoted."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else (
        canonical_json(value) if isinstance(value, (list, dict)) else str(value))
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


def case_file_parts(case: CaseFile) -> list[Part]:
    """The files of a case file: ``case.json``, ``case.csv``, then each registered maker's."""
    parts = _json_part(case) + _csv_part(case)
    for maker in _MAKERS:
        parts += maker(case)
    return parts


def encrypted_zip(parts: list[Part], password: str) -> bytes:
    """The parts in a zip, each entry AES-256 encrypted with ``password`` (at least 10 characters)."""
    import pyzipper
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValueError(f"password shorter than {MIN_PASSWORD} characters")
    buffer = io.BytesIO()
    with pyzipper.AESZipFile(buffer, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(password.encode("utf-8"))
        archive.setencryption(pyzipper.WZ_AES, nbits=256)
        for name, content in parts:
            archive.writestr(name, content)
    return buffer.getvalue()
