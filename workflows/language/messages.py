"""Bilingual messages (zh first), "did you mean" hints, and dotted paths for diagnostics."""
from __future__ import annotations

import datetime as dt
import difflib
from typing import Any, Iterable

from hexie.workflows.language.constants import PathKey


# --------------------------------------------------------------------------- messages

def _msg(zh: str, en: str) -> str:
    """A bilingual message: Chinese first, English second."""
    return f"{zh} / {en}"


def _nearest(word: Any, candidates: Iterable[Any]) -> str | None:
    """The known name closest to a typo, if any is close enough (case-insensitive)."""
    if not isinstance(word, str):
        return None
    by_lower: dict[str, str] = {}
    for c in candidates:
        if isinstance(c, str):
            by_lower.setdefault(c.lower(), c)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def _hinted(zh: str, en: str, word: Any, candidates: Iterable[Any], *, listing: bool = False) -> str:
    """A bilingual message with "did you mean …?" for a typo, optionally listing what is allowed."""
    candidates = [c for c in candidates if isinstance(c, str)]
    near = _nearest(word, candidates)
    if near is not None:
        zh, en = f"{zh}，是否应为 '{near}'？", f"{en}; did you mean '{near}'?"
    if listing and candidates:
        allowed = ", ".join(candidates)
        zh, en = f"{zh}（可选：{allowed}）", f"{en} (expected one of: {allowed})"
    return _msg(zh, en)


def _unknown(what_zh: str, what_en: str, word: Any, candidates: Iterable[Any],
             *, listing: bool = False) -> str:
    """The message for a name nobody declared, e.g. ``unknown role 'x'; did you mean 'y'?``."""
    return _hinted(f"未知的{what_zh} '{word}'", f"unknown {what_en} '{word}'", word, candidates, listing=listing)


_KINDS = (  # (python type, zh, en); bool before int, datetime before date
    (bool, "布尔值", "a boolean"), (int, "整数", "an integer"), (float, "小数", "a number"),
    (str, "文本", "text"), (dict, "映射", "a mapping"), (list, "列表", "a list"),
    (dt.datetime, "日期时间", "a datetime"), (dt.date, "日期", "a date"), (bytes, "二进制数据", "binary data"),
)


def _kinds(value: Any) -> dict[str, str]:
    """Format arguments naming what a value is, for "expected X, got Y" messages."""
    if value is None:
        return {"kz": "空值", "ke": "nothing"}
    for kind, zh, en in _KINDS:
        if isinstance(value, kind):
            return {"kz": zh, "ke": en}
    return {"kz": type(value).__name__, "ke": type(value).__name__}


def _expected(zh: str, en: str) -> str:
    """A marshmallow error template: "expected X, got {ke}"."""
    return _msg(f"应为{zh}，实际为{{kz}}", f"expected {en}, got {{ke}}")


class _Message(str):
    """An error text that also says where to point: at the key, or into the value."""

    at_key: bool = False
    offset: int | None = None

    @classmethod
    def make(cls, text: str, *, at_key: bool = False, offset: int | None = None) -> "_Message":
        message = cls(text)
        message.at_key, message.offset = at_key, offset
        return message


# Sentinels replaced by :func:`_report_messages`, which knows the key's name.
_REQUIRED = "\x00required"
_NULL = "\x00null"


def _dotted(path: PathKey) -> str:
    """('states', 1, 'task', 'role') -> 'states[1].task.role'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
