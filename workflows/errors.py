"""Typed engine errors, translated once at the edge (page, HTTP status, exit code).

Every message is bilingual: Chinese first, English second.
"""
from __future__ import annotations

from typing import Any


class HexieError(Exception):
    """Base of every refusal the engine gives. Nothing has been written when raised."""

    code = "error"
    status = 400

    def __init__(self, zh: str, en: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{zh} / {en}")
        self.zh = zh
        self.en = en
        self.details = details or {}

    @property
    def message(self) -> str:
        return f"{self.zh} / {self.en}"

    def text(self, locale: str = "zh") -> str:
        return self.en if locale.startswith("en") else self.zh


class BadRequest(HexieError):
    """The request itself is malformed (wrong JSON shape, unknown parameter)."""

    code = "bad_request"
    status = 400


class NotFound(HexieError):
    """It does not exist, or the person may not see it (never says which)."""

    code = "not_found"
    status = 404


def not_found() -> NotFound:
    """The one refusal for whatever does not exist *or* may not be seen (a case, a task, an
    attachment): the same words and no details either way, so that nobody can tell a
    confidential case from a number never used, nor map tasks and files to cases."""
    return NotFound("没有找到", "not found")


class Forbidden(HexieError):
    """The person may see it but not do this."""

    code = "forbidden"
    status = 403


class Conflict(HexieError):
    """Someone got there first: stale lock_version, task taken, case moved on."""

    code = "conflict"
    status = 409


class Invalid(HexieError):
    """The action is not allowed now: guard failed, comment missing, form invalid."""

    code = "invalid"
    status = 422


class WorkflowLocked(Conflict):
    """A host record under review: its mapped fields may not change in this state (host.md)."""

    code = "workflow_locked"
    status = 409
