"""Validation of submitted form values against a definition's typed fields.

Values arrive as JSON (API) or strings (web forms). They are checked and stored in a
JSON-safe canonical form: money and decimals as strings ("800.00"), dates and times
as ISO text, integers as ints. :func:`typed_data` turns stored data back into Python
values (``Decimal``, ``date``) for guards and reports.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

from .errors import Invalid
from .spec import FieldSpec, FormField, ProcessSpec

_CENT = Decimal("0.01")
#: The length limit of text fields whose definition gives no ``max_length``
#: (docs/definitions-extensions.md): no field takes megabytes of text.
DEFAULT_MAX_LENGTH = {"text": 1_000, "textarea": 10_000, "org_unit": 200, "user": 200}
#: The length limit of a comment on an action.
MAX_COMMENT = 4_000
#: Characters that show nothing: text made only of these (and spaces) is empty.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064"
                                    "\ufeff\u180e\u00ad\u034f\u061c\u115f\u1160\u3164\uffa0"))
#: The same characters, for a look at one character.
_INVISIBLE_CHARS = frozenset(map(chr, _INVISIBLE))
_NUMBER_LIMIT = Decimal(10) ** 15
#: A number as people write an amount: digits, an optional point with decimals, an optional
#: leading minus, commas only between groups of three (100,000.50)
_DIGITS = re.compile(r"-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")
#: full-width digits, point and comma (a Chinese input method's) read as their ASCII twins
_WIDE = str.maketrans("０１２３４５６７８９．，－", "0123456789.,-")


class WrittenFloat(float):
    """A JSON number with a fraction or exponent as the client wrote it (``written``), so that
    an amount sent as ``1e5`` is refused like the text "1e5" (``json.loads(parse_float=...)``)."""

    written: str

    def __new__(cls, text: str) -> "WrittenFloat":
        number = super().__new__(cls, text)
        number.written = text
        return number


def written_number(value: Any) -> Decimal:
    """A ``decimal`` or ``money`` value read strictly as digits (:data:`_DIGITS`): 100000,
    100000.50, 100,000.50, -20.00, full-width digits too; ``ValueError`` for anything else
    (1e5, Infinity, NaN, 1_000, +5, .5, 0x10, a boolean). Web forms, the API and imports
    all read amounts through it (one rule)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError("not a number")
    if isinstance(value, int):
        return Decimal(value)
    text = getattr(value, "written", None) or (repr(value) if isinstance(value, float) else str(value))
    text = text.strip().translate(_WIDE)
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"not written as digits: {text[:40]!r}")
    return Decimal(text.replace(",", ""))


def digits_error(field: FieldSpec) -> FieldError:
    """The refusal of a number not written as digits, naming the field, Chinese first."""
    zh, en = (field.label.zh, field.label.en) if field.label is not None else (field.name, field.name)
    if field.type == "money":
        return FieldError(f"{zh}：金额请写成数字，如 100000 或 100000.50",
                          f"{en}: write the amount as digits, e.g. 100000 or 100000.50")
    return FieldError(f"{zh}：请写成数字，如 12 或 12.5", f"{en}: write the number as digits, e.g. 12 or 12.5")


class FieldError(ValueError):
    """One field's value is wrong; the message is bilingual."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(f"{zh} / {en}")


def blank_text(text: str) -> bool:
    """True for text that shows nothing: empty, spaces, or zero-width characters only."""
    stripped = text.strip()
    if not stripped:
        return True
    if stripped[0] not in _INVISIBLE_CHARS:   # a character that shows: nothing else to look at
        return False
    return not text.translate(_INVISIBLE).strip()


def checked_comment(comment: Any) -> str | None:
    """A comment as stored: stripped, None when it shows nothing; refused past :data:`MAX_COMMENT`."""
    text = comment.strip() if isinstance(comment, str) else ""
    if blank_text(text):
        return None
    if len(text) > MAX_COMMENT:
        raise Invalid("意见过长", f"the comment is longer than {MAX_COMMENT:,} characters",
                      {"comment": f"最多 {MAX_COMMENT} 个字符 / at most {MAX_COMMENT} characters"})
    return text


def max_length(field: FieldSpec) -> int | None:
    """The field's length limit: its own ``max_length``, else the default for its type."""
    return field.max_length if field.max_length is not None else DEFAULT_MAX_LENGTH.get(field.type)


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value or blank_text(value)
    return isinstance(value, (list, tuple)) and len(value) == 0


def _bounds(field: FieldSpec, value: int | Decimal) -> None:
    low, high = field.min, field.max
    if isinstance(value, Decimal):  # the loader gives Decimal bounds for money, ints elsewhere
        low = None if low is None else Decimal(str(low))
        high = None if high is None else Decimal(str(high))
    if low is not None and value < low:
        raise FieldError(f"不能小于 {field.min}", f"must be at least {field.min}")
    if high is not None and value > high:
        raise FieldError(f"不能大于 {field.max}", f"must be at most {field.max}")


def storable_text(text: str) -> bool:
    """False for text no database can keep: NUL characters and lone UTF-16 surrogates."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def coerce_value(field: FieldSpec, value: Any) -> Any:
    """Check one non-empty value and return its stored (JSON-safe) form."""
    kind = field.type
    if kind in ("text", "textarea", "org_unit", "user"):
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise FieldError("应为文本", "must be text")
        text = str(value).strip()
        if not storable_text(text):
            raise FieldError("包含无法保存的字符", "contains characters that cannot be stored (NUL, lone surrogates)")
        limit = max_length(field)
        if limit is not None and len(text) > limit:
            raise FieldError(f"最多 {limit} 个字符", f"at most {limit} characters")
        if field.pattern and not re.fullmatch(field.pattern, text):
            raise FieldError("格式不正确", f"does not match the required format {field.pattern}")
        return text
    if kind == "integer":
        if isinstance(value, bool):
            raise FieldError("应为整数", "must be a whole number")
        try:
            number = int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise FieldError("应为整数", "must be a whole number") from None
        if abs(number) > 10**15:
            raise FieldError("数值过大", "number too large")
        _bounds(field, number)
        return number
    if kind in ("decimal", "money"):
        try:
            number = written_number(value)
        except (ValueError, InvalidOperation):
            raise digits_error(field) from None
        if not number.is_finite() or number.copy_abs() > _NUMBER_LIMIT:  # copy_abs: no context, no Overflow
            raise FieldError("不是有效的数字（不接受 NaN、无穷大或绝对值超过 10^15 的数）",
                             "not a usable number (NaN, infinity and numbers beyond 10^15 are refused)")
        if kind == "money":
            if number != number.quantize(_CENT, rounding=ROUND_HALF_UP):
                raise FieldError("金额最多两位小数", "money has at most two decimals (fen)")
            number = number.quantize(_CENT)
        _bounds(field, number)
        return str(number)
    if kind == "date":
        try:
            parsed = value if isinstance(value, date) and not isinstance(value, datetime) \
                else date.fromisoformat(str(value).strip())
        except ValueError:
            raise FieldError("日期格式应为 YYYY-MM-DD", "date must be YYYY-MM-DD") from None
        return parsed.isoformat()
    if kind == "datetime":
        try:
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise FieldError("时间格式应为 ISO 8601", "datetime must be ISO 8601") from None
        return parsed.isoformat(timespec="minutes")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "y", "on", "是"):
            return True
        if text in ("false", "0", "no", "n", "off", "否"):
            return False
        raise FieldError("应为是或否", "must be true or false")
    if kind == "choice":
        if not isinstance(value, str) or value not in field.choice_keys:
            raise FieldError("不是可选项之一", f"must be one of {', '.join(field.choice_keys)}")
        return value
    if kind == "multichoice":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or any(
                not isinstance(v, str) or v not in field.choice_keys for v in items):
            raise FieldError("包含无效选项", f"each item must be one of {', '.join(field.choice_keys)}")
        return list(dict.fromkeys(items))
    if kind == "file":
        items = value if isinstance(value, (list, tuple)) else [value]
        try:
            ids = [int(v) for v in items if not isinstance(v, bool)]
        except (TypeError, ValueError):
            raise FieldError("附件编号无效", "must be attachment ids") from None
        if len(ids) != len(items) or (not field.multiple and len(ids) > 1):
            raise FieldError("只能上传一个文件", "only one file allowed")
        return ids if field.multiple else ids[0]
    raise FieldError("未知字段类型", f"unknown field type {kind}")  # the loader prevents this


def validate_form(process: ProcessSpec, form: Iterable[FormField], submitted: Mapping[str, Any],
                  current: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Check submitted values against a form.

    Returns ``(changes, errors)``: the canonical values of the fields that changed, and
    a message per field that is wrong. A field submitted that the form does not list is
    an error; a required field is satisfied by a new value or one the case already has.
    """
    form = tuple(form)
    allowed = {f.name for f in form}
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in submitted:
        if name not in allowed:
            errors[name] = "此表单不含该字段 / not a field of this form"
    fields = process.fields
    for entry in form:
        name = entry.name
        field = fields[name]
        if name in submitted:
            value = submitted[name]
            if not _is_empty(value):
                try:
                    value = coerce_value(field, value)
                except FieldError as err:
                    errors[name] = str(err)
                    continue
                if current.get(name) != value:
                    changes[name] = value
            elif entry.required:  # explicitly emptied
                errors[name] = "必填 / required"
            elif current.get(name) is not None:
                changes[name] = None
        elif entry.required and _is_empty(current.get(name)):
            errors[name] = "必填 / required"
    return changes, errors


def defaults(process: ProcessSpec) -> dict[str, Any]:
    """Stored values of the fields that declare a ``default``."""
    out = {}
    for name, field in process.fields.items():
        if field.default is not None:
            try:
                out[name] = coerce_value(field, field.default)
            except FieldError:
                pass  # the loader reports defaults that do not fit
    return out


def typed_value(field: FieldSpec | None, value: Any) -> Any:
    """A stored value as the Python type its field declares."""
    if value is None or field is None:
        return value
    try:
        if field.type in ("decimal", "money"):
            return Decimal(str(value))
        if field.type == "date":
            return date.fromisoformat(value)
        if field.type == "datetime":
            return datetime.fromisoformat(value)
    except (ValueError, InvalidOperation):
        return None
    return value


def typed_data(process: ProcessSpec, data: Mapping[str, Any]) -> dict[str, Any]:
    """Stored case data as Python values, for guards and reports."""
    return {k: typed_value(process.fields.get(k), v) for k, v in data.items()}
