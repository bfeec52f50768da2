"""The marshmallow field classes of the language, validators, and the coercion of field values."""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from marshmallow import ValidationError, fields

from hexie.workflows.language.constants import CHOICE_TYPES, DATE_TYPES, PROCESS_KEY
from hexie.workflows.language.durations import parse_duration
from hexie.workflows.language.messages import _Message, _NULL, _REQUIRED, _expected, _kinds, _msg, _nearest, _unknown


# --------------------------------------------------------------------------- marshmallow fields

class _Base(fields.Field):
    """Shared messages; ``required``/``null`` are finished by the error walker."""

    default_error_messages = {"required": _REQUIRED, "null": _NULL,
                              "validator_failed": _msg("无效的值", "invalid value")}


class _Str(_Base, fields.String):
    default_error_messages = {"invalid": _expected("文本", "text")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid", **_kinds(value))
        return value


class _Bool(_Base, fields.Field):
    """Only a real YAML boolean (``true``/``false``)."""

    default_error_messages = {"invalid": _expected(" true 或 false", "true or false")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", **_kinds(value))
        return value


class _Int(_Base, fields.Field):
    """A whole number (a boolean is not one, though Python says so)."""

    default_error_messages = {"invalid": _expected("整数", "a whole number")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid", **_kinds(value))
        return value


class _Raw(_Base, fields.Raw):
    """Any value; its meaning is checked against the field type elsewhere."""


class _List(_Base, fields.List):
    default_error_messages = {"invalid": _expected("列表", "a list")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list:
        if not isinstance(value, list):
            raise self.make_error("invalid", **_kinds(value))
        return super()._deserialize(value, attr, data, **kwargs)


class _Nested(_Base, fields.Nested):
    default_error_messages = {"type": _expected("映射（键: 值）", "a mapping (key: value)")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise self.make_error("type", **_kinds(value))
        return super()._deserialize(value, attr, data, **kwargs)


def _text_errors(value: Any) -> list[str] | dict[str, list[str]] | None:
    """Problems of a display text: a string, or ``{zh: …, en: …}``."""
    if isinstance(value, str):
        return None
    if not isinstance(value, dict):
        return [_msg(f"应为文本或 {{zh, en}}，实际为{_kinds(value)['kz']}",
                     f"expected text or {{zh, en}}, got {_kinds(value)['ke']}")]
    if not value:
        return [_msg("文本不能为空映射，请写 {zh: …, en: …}", "empty text; write {zh: …, en: …}")]
    errors: dict[str, list[str]] = {}
    for lang, text in value.items():
        if lang not in ("zh", "en"):
            errors[lang] = [_Message.make(_unknown("语言", "language", lang, ("zh", "en"), listing=True), at_key=True)]
        elif not isinstance(text, str):
            errors[lang] = [_msg(f"应为文本，实际为{_kinds(text)['kz']}", f"expected text, got {_kinds(text)['ke']}")]
    return errors or None


class _Text(_Base, fields.Field):
    """Display text: ``label: 申请`` or ``label: {zh: 申请, en: Application}``."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        errors = _text_errors(value)
        if errors:
            raise ValidationError(errors)
        return value


class _Duration(_Base, fields.Field):
    """A duration such as ``3d`` or ``P180D``, kept as written."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        try:
            parse_duration(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return value


class _Source(_Base, fields.Field):
    """A transition's ``source``: a state, a list of states, or ``'*'``."""

    default_error_messages = {"invalid": _expected("状态名或状态名列表", "a state name or a list of state names")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise self.make_error("invalid", **_kinds(value))
        if not value:
            raise ValidationError(_msg("来源状态列表不能为空", "the list of source states is empty"))
        errors = {i: [_expected("状态名", "a state name").format(**_kinds(v))]
                  for i, v in enumerate(value) if not isinstance(v, str)}
        if errors:
            raise ValidationError(errors)
        return value


class _Choices(_Base, fields.Field):
    """``choices``: a list of keys, or a mapping key -> display text."""

    default_error_messages = {"invalid": _expected("选项列表或映射", "a list or a mapping of choices")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, (list, dict)):
            raise self.make_error("invalid", **_kinds(value))
        if not value:
            raise ValidationError(_msg("选项不能为空", "no choices given"))
        errors: dict[Any, Any] = {}
        if isinstance(value, list):
            seen: set[str] = set()
            for i, key in enumerate(value):
                if not isinstance(key, str) or not key:
                    errors[i] = [_expected("选项键（文本）", "a choice key (text)").format(**_kinds(key))]
                    continue
                if key in seen:
                    errors[i] = [_msg(f"重复的选项 '{key}'", f"duplicate choice '{key}'")]
                seen.add(key)
        else:
            for key, label in value.items():
                problems = None if label is None else _text_errors(label)
                if problems:
                    errors[key] = problems
        if errors:
            raise ValidationError(errors)
        return value


# --------------------------------------------------------------------------- validators

def _one_of(options: Iterable[str], what_zh: str, what_en: str):
    """A validator accepting only ``options``, suggesting the nearest on a typo."""
    options = tuple(options)

    def check(value: Any) -> None:
        if value not in options:
            raise ValidationError(_unknown(what_zh, what_en, value, options, listing=True))
    return check


def _at_least(minimum: int, what_zh: str, what_en: str):
    """A validator for numbers (or list lengths) that must reach ``minimum``."""
    def check(value: Any) -> None:
        size = len(value) if isinstance(value, (list, dict)) else value
        if size < minimum:
            raise ValidationError(_msg(f"{what_zh}至少为 {minimum}", f"{what_en} must be at least {minimum}"))
    return check


def _process_key(value: str) -> None:
    if not PROCESS_KEY.fullmatch(value):
        raise ValidationError(_msg(
            f"无效的流程键 '{value}'：只能用小写字母、数字和下划线，以字母开头",
            f"invalid process key '{value}': use [a-z][a-z0-9_]* (lower-case letter first)"))


def _regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(_Message.make(
            _msg(f"无效的正则表达式：{exc.msg}", f"invalid regular expression: {exc.msg}"),
            offset=exc.pos)) from None


# --------------------------------------------------------------------------- field values

class _Unfit(ValueError):
    """A value that a field of some type could not hold; the reason in both languages."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(_msg(zh, en))
        self.zh, self.en = zh, en


def _coerce(ftype: str, value: Any, choices: Iterable[str] = ()) -> Any:
    """``value`` as a field of type ``ftype`` holds it; :class:`_Unfit` when it cannot."""
    kinds = _kinds(value)
    if ftype == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Unfit(f"应为整数，实际为{kinds['kz']}", f"expected a whole number, got {kinds['ke']}")
        return value
    if ftype in ("decimal", "money"):
        return _coerce_decimal(ftype, value)
    if ftype in DATE_TYPES:
        return _coerce_date(ftype, value)
    if ftype == "boolean":
        if not isinstance(value, bool):
            raise _Unfit(f"应为 true 或 false，实际为{kinds['kz']}", f"expected true or false, got {kinds['ke']}")
        return value
    if ftype in CHOICE_TYPES:
        return _coerce_choice(ftype, value, tuple(choices))
    if ftype == "file":
        raise _Unfit("文件字段不能有默认值", "a file field cannot have a default")
    if not isinstance(value, str):
        raise _Unfit(f"应为文本，实际为{kinds['kz']}", f"expected text, got {kinds['ke']}")
    return value


def _coerce_decimal(ftype: str, value: Any) -> Decimal:
    """A decimal or money value, never through float arithmetic; money to the fen."""
    number: Decimal | None = None
    if not isinstance(value, bool) and isinstance(value, (int, float, str, Decimal)):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = None
    if number is None or not number.is_finite():
        raise _Unfit(f"应为数字，实际为{_kinds(value)['kz']} '{value}'",
                     f"expected a number, got {_kinds(value)['ke']} '{value}'")
    if ftype == "money" and number != number.quantize(Decimal("0.01")):
        raise _Unfit(f"金额最多两位小数：{value}", f"money has at most two decimals: {value}")
    return number


def _coerce_date(ftype: str, value: Any) -> dt.date:
    """A date (YAML ``2024-01-31``) or datetime, also accepted as ISO text."""
    if ftype == "date":
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        parse: Any = dt.date.fromisoformat
    else:
        if isinstance(value, dt.datetime):
            return value
        parse = dt.datetime.fromisoformat
    if isinstance(value, str):
        try:
            return parse(value.strip())
        except ValueError:
            pass
    what_zh, what_en = ("日期（YYYY-MM-DD）", "a date (YYYY-MM-DD)") if ftype == "date" else (
        "日期时间（ISO 8601）", "a datetime (ISO 8601)")
    raise _Unfit(f"应为{what_zh}，实际为 '{value}'", f"expected {what_en}, got '{value}'")


def _coerce_choice(ftype: str, value: Any, choices: tuple[str, ...]) -> Any:
    """A choice key, or a list of them for ``multichoice``."""
    if ftype == "multichoice" and not isinstance(value, list):
        raise _Unfit("多选字段的值应为列表", "a multichoice value must be a list")
    for item in value if ftype == "multichoice" else [value]:
        if not isinstance(item, str) or (choices and item not in choices):
            near = _nearest(item, choices)
            hint_zh, hint_en = (f"，是否应为 '{near}'？", f"; did you mean '{near}'?") if near else ("", "")
            raise _Unfit(f"'{item}' 不是可选项（{', '.join(choices)}）{hint_zh}",
                         f"'{item}' is not a choice ({', '.join(choices)}){hint_en}")
    return tuple(value) if ftype == "multichoice" else value


def _choice_keys(choices: Any) -> tuple[str, ...]:
    if isinstance(choices, dict):
        return tuple(choices)
    if isinstance(choices, list):
        return tuple(c for c in choices if isinstance(c, str))
    return ()
