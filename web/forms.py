"""WTForms forms built at run time from a process definition's typed fields.

Each field type becomes a proper input (``money`` a number with two decimals,
``date`` a date picker, ``multichoice`` checkboxes, ``file`` an upload...) with the
definition's validators, so that most mistakes are caught next to the field before
the engine sees them. The engine checks everything again; its
:class:`~hexie.workflows.errors.Invalid` ``details`` are put back next to the same fields
(:func:`apply_engine_errors`).

Which fields a form has mirrors the engine: starting a case fills the initial state's
task form; firing an action fills :meth:`ProcessSpec.action_form` (see
:func:`action_form`); marking a parallel task done fills that task's form.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping, Sequence

from wtforms import Form, ValidationError
from wtforms import fields as wf
from wtforms.fields.choices import SelectChoice
from wtforms import validators as v
from wtforms import widgets

from hexie.workflows.forms import MAX_COMMENT, blank_text, max_length, written_number
from hexie.workflows.spec import FieldSpec, FormField, ProcessSpec

from .i18n import detail_text, label, t

MASK = "***"
COMMENT = "comment"
_CENT = Decimal("0.01")
_NUMBER_LIMIT = Decimal(10) ** 15

#: Upload allow-list: extension -> (content type, accepted leading bytes).
ALLOWED_UPLOADS: dict[str, tuple[str, tuple[bytes, ...]]] = {
    "pdf": ("application/pdf", (b"%PDF",)),
    "jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    "doc": ("application/msword", (b"\xd0\xcf\x11\xe0",)),
    "xls": ("application/vnd.ms-excel", (b"\xd0\xcf\x11\xe0",)),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", (b"PK\x03\x04",)),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", (b"PK\x03\x04",)),
}
MAX_FILE = 10 * 1024 * 1024
ACCEPT = ",".join(f".{ext}" for ext in ALLOWED_UPLOADS)


# ----------------------------------------------------------------- which fields

def start_form(spec: ProcessSpec) -> tuple[FormField, ...]:
    """What a new case is opened with: the initial state's task form."""
    return spec.initial_state.form


def action_form(spec: ProcessSpec, state_name: str, trigger: str) -> tuple[FormField, ...]:
    """The fields shown with ``trigger`` from ``state_name``, from the engine's form for it.

    :meth:`ProcessSpec.action_form` is what the engine accepts and validates (the state's
    task form, demanded only by an action that completes the task, plus the action's own
    fields). A send-back, refusal or interruption (``comment: required`` or
    ``interrupt``) shows just its own fields, so that returning a case is not buried
    under the whole survey form; every other action shows the task form to check and
    complete before it goes on.
    """
    entries = spec.action_form(state_name, trigger)
    transitions = spec.transitions_from(state_name, trigger)
    if not all(t_.comment == "required" or t_.interrupt for t_ in transitions):
        return entries
    own = {entry.name for t_ in transitions for entry in t_.form}
    return tuple(entry for entry in entries if entry.name in own)


def task_form(spec: ProcessSpec, state_name: str, task_name: str) -> tuple[FormField, ...]:
    task = spec.state(state_name).task(task_name)
    return tuple(task.form) if task else ()


def comment_rule(spec: ProcessSpec, state_name: str, trigger: str) -> str:
    """``required`` if any candidate transition needs a comment, ``none`` if none takes one."""
    rules = {t_.comment for t_ in spec.transitions_from(state_name, trigger)}
    if "required" in rules:
        return "required"
    if rules == {"none"}:
        return "none"
    return "optional"


# --------------------------------------------------------------------- validators

class _Required:
    """Required, without the HTML ``required`` flag (which on checkboxes means *each*); text
    of spaces or zero-width characters only is no answer (the engine's rule)."""

    def __call__(self, form: Form, field: wf.Field) -> None:
        data = field.data
        if data in (None, "", [], ()) or (isinstance(data, str) and blank_text(data)):
            field.errors[:] = []
            raise v.StopValidation(t("form.error.required"))


class _Finite:
    """NaN, infinities and numbers too large to store are refused next to the field, before
    any comparison or rounding of them (which would raise)."""

    def __call__(self, form: Form, field: wf.Field) -> None:
        value = field.data
        if isinstance(value, Decimal) and (not value.is_finite() or value.copy_abs() > _NUMBER_LIMIT):
            field.errors[:] = []
            raise v.StopValidation(t("form.error.number_range"))


class _Digits:
    """A number is read as digits only, by the engine's rule (:func:`written_number`): 1e5,
    Infinity, NaN and 1_000 (which ``Decimal`` itself would take) are refused next to the field."""

    def __init__(self, money: bool) -> None:
        self.money = money

    def __call__(self, form: Form, field: wf.Field) -> None:
        raw = field.raw_data[0] if field.raw_data else None
        if not isinstance(raw, str) or not raw.strip():
            return
        try:
            field.data = written_number(raw)
        except (ValueError, ArithmeticError):
            field.errors[:] = []
            raise v.StopValidation(t("form.error.digits_money" if self.money else "form.error.digits")) from None
        field.errors[:] = []     # 100,000.50 or full-width digits: as the engine reads them


class _Money:
    def __call__(self, form: Form, field: wf.Field) -> None:
        if field.data is not None and field.data != field.data.quantize(_CENT):
            raise ValidationError(t("form.error.money"))


class _Bounds:
    """Like NumberRange, with our messages; Decimal-safe."""

    def __init__(self, low: Any, high: Any, money: bool = False) -> None:
        self.low, self.high, self.money = low, high, money
        self.field_flags = {k: val for k, val in (("min", low), ("max", high)) if val is not None}

    def _shown(self, bound: Any) -> str:
        """A limit as she reads amounts elsewhere: ¥300,000.00 for money, else the number."""
        if not self.money:
            return str(bound)
        from babel.numbers import format_decimal
        from .i18n import babel_locale
        amount = Decimal(str(bound))
        return ("-" if amount < 0 else "") + "¥" + format_decimal(abs(amount), "#,##0.00", locale=babel_locale())

    def __call__(self, form: Form, field: wf.Field) -> None:
        value = field.data
        if value is None:
            return
        if self.low is not None and value < _num(self.low, value):
            raise ValidationError(t("form.error.min", min=self._shown(self.low)))
        if self.high is not None and value > _num(self.high, value):
            raise ValidationError(t("form.error.max", max=self._shown(self.high)))


def _num(bound: Any, like: Any) -> Any:
    return Decimal(str(bound)) if isinstance(like, Decimal) else bound


class _Files:
    """Uploads: allowed type (by extension and by content) and size."""

    def __init__(self, multiple: bool, required: bool) -> None:
        self.multiple, self.required = multiple, required

    def __call__(self, form: Form, field: wf.Field) -> None:
        files = uploads_of(field)
        if self.required and not files:
            raise v.StopValidation(t("form.error.required"))
        if len(files) > 1 and not self.multiple:
            raise ValidationError(t("form.file.one"))
        for f in files:
            problem = check_upload(f)
            if problem:
                raise ValidationError(problem)


def uploads_of(field: wf.Field) -> list[Any]:
    """The non-empty uploaded files of a file field."""
    data = field.data
    items = data if isinstance(data, list) else [data]
    return [f for f in items if f is not None and getattr(f, "filename", "")]


def check_upload(storage: Any) -> str | None:
    """Why an upload is refused, or None: type allow-list, leading bytes, size."""
    name = storage.filename or ""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    allowed = ALLOWED_UPLOADS.get(ext)
    if allowed is None:
        return t("form.file.bad_type", name=name)
    stream = storage.stream
    head = stream.read(8)
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    if not any(head.startswith(magic) for magic in allowed[1]):
        return t("form.file.bad_type", name=name)
    if size > MAX_FILE:
        return t("form.file.too_big", name=name)
    return None


# ------------------------------------------------------------------------- fields

@dataclass
class Choices:
    """Run-time options of ``org_unit`` and ``user`` fields."""

    units: Sequence[tuple[str, str]] = ()     # (code, display name)
    users: Sequence[tuple[str, str]] = ()     # (username, display name)
    #: a user field's own list (the people of the role the field is for), else ``users``
    users_by_field: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)


def _options(pairs: Iterable[tuple[str, str]], blank: bool = False) -> list[SelectChoice]:
    out = [SelectChoice("", t("form.choose"))] if blank else []
    return out + [SelectChoice(value, text) for value, text in pairs]


def _unbound(fs: FieldSpec, entry: FormField, choices: Choices, masked_value: bool,
             has_current_file: bool) -> wf.Field:
    """One WTForms (unbound) field for a definition field."""
    text = label(fs.label, fs.name)
    help_text = label(fs.help) if fs.help else ""
    required = entry.required
    kw: dict[str, Any] = {"label": text, "description": help_text}
    render: dict[str, Any] = {}
    if masked_value:
        render["placeholder"] = t("case.masked")
    checks: list[Any] = []
    kind = fs.type
    opt = [v.InputRequired(t("form.error.required"))] if required and not masked_value else [v.Optional()]

    if kind in ("text", "textarea"):
        checks = [*opt, _Required()] if required and not masked_value else list(opt)
        limit = max_length(fs)
        if limit:
            checks.append(v.Length(max=limit, message=t("form.error.length", max=limit)))
        if fs.pattern:
            checks.append(v.Regexp(f"(?:{fs.pattern})\\Z", message=t("form.error.pattern")))
        if kind == "textarea":
            render.setdefault("rows", 4)
            return wf.TextAreaField(validators=checks, render_kw=render, **kw)
        return wf.StringField(validators=checks, render_kw=render, **kw)
    if kind == "integer":
        checks = [*opt, _Bounds(fs.min, fs.max)]
        render["inputmode"] = "numeric"
        return wf.IntegerField(validators=checks, render_kw=render,
                               invalid_value_message=t("form.error.integer"), **kw)
    if kind in ("decimal", "money"):
        checks = [_Digits(kind == "money"), *opt, _Finite(), _Bounds(fs.min, fs.max, money=kind == "money")]
        if kind == "money":
            checks.append(_Money())
        render["inputmode"] = "decimal"
        widget = widgets.NumberInput(step="0.01" if kind == "money" else "any")
        return wf.DecimalField(validators=checks, render_kw=render, places=None, widget=widget,
                               invalid_value_message=t("form.error.money" if kind == "money"
                                                       else "form.error.number"), **kw)
    if kind == "date":
        return wf.DateField(validators=opt, render_kw=render,
                            invalid_value_message=t("form.error.date"), **kw)
    if kind == "datetime":
        return wf.DateTimeLocalField(validators=opt, render_kw=render, format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
                                     invalid_value_message=t("form.error.datetime"), **kw)
    if kind == "boolean":
        if required:  # an explicit yes/no, so that consent is an answer, not a default
            return wf.RadioField(choices=_options([("true", t("form.yes")), ("false", t("form.no"))]),
                                 validators=[_Required()], render_kw=render,
                                 invalid_choice_message=t("form.error.choice"), **kw)
        return wf.BooleanField(render_kw=render, **kw)
    if kind == "choice":
        options = [(key, label(lab, key)) for key, lab in fs.choices]
        if required and len(options) <= 4:
            return wf.RadioField(choices=_options(options), validators=[_Required()], render_kw=render,
                                 invalid_choice_message=t("form.error.choice"), **kw)
        return wf.SelectField(choices=_options(options, blank=True), validators=opt,
                              render_kw=render, invalid_choice_message=t("form.error.choice"), **kw)
    if kind == "multichoice":
        options = [(key, label(lab, key)) for key, lab in fs.choices]
        return wf.SelectMultipleField(
            choices=_options(options), validators=[_Required()] if required and not masked_value else [],
            widget=widgets.ListWidget(prefix_label=False), option_widget=widgets.CheckboxInput(),
            render_kw=render, invalid_choice_message=lambda n: t("form.error.choice") + " (%(value)s)", **kw)
    if kind == "file":
        render["accept"] = ACCEPT
        cls = wf.MultipleFileField if fs.multiple else wf.FileField
        kw["description"] = " ".join(x for x in (help_text, t("form.file.types"),
                                                  t("form.file.keep") if has_current_file else "") if x)
        return cls(validators=[_Files(fs.multiple, required and not has_current_file)], render_kw=render, **kw)
    if kind == "org_unit":
        options = [(code, name) for code, name in choices.units]
        if options:
            return wf.SelectField(choices=_options(options, blank=True), validators=opt,
                                  render_kw=render, invalid_choice_message=t("form.error.choice"), **kw)
        return wf.StringField(validators=opt, render_kw=render, **kw)
    if kind == "user":
        options = [(name, shown) for name, shown in choices.users_by_field.get(fs.name, choices.users)]
        if options:
            return wf.SelectField(choices=_options(options, blank=True), validators=opt,
                                  render_kw=render, invalid_choice_message=t("form.error.choice"), **kw)
        kw["description"] = help_text or t("form.user.help")
        return wf.StringField(validators=opt, render_kw=render, **kw)
    return wf.StringField(validators=opt, render_kw=render, **kw)  # the loader knows no other types


# ------------------------------------------------------------------------- forms

class DynamicForm(Form):
    """A form built from a definition; ``items`` pairs each entry with its field spec."""

    items: list[tuple[FormField, FieldSpec]]
    comment_rule: str
    has_files: bool
    general_errors: list[str]

    def definition_fields(self) -> list[tuple[FormField, FieldSpec, wf.Field]]:
        return [(e, fs, self[e.name]) for e, fs in self.items]


def error_summary(form: "DynamicForm | None") -> list[dict[str, str]]:
    """``[{id, label, message}]``: each field of a refused form with its first error, in the
    form's order, for the banner above it (a link to each field: on a phone the field in error
    may be screens below the banner)."""
    if form is None:
        return []
    out = []
    for field in form:
        if field.errors and field.type not in ("CSRFTokenField", "HiddenField"):
            text = field.label.text if field.label is not None else field.name
            out.append({"id": field.id, "label": str(text), "message": str(field.errors[0])})
    return out


def build_form(spec: ProcessSpec, entries: Sequence[FormField], *, formdata: Any = None,
               current: Mapping[str, Any] | None = None, masked: bool = False,
               comment: str = "none", prefix: str = "", choices: Choices | None = None,
               files_present: Iterable[str] = ()) -> DynamicForm:
    """A bound form for ``entries``, prefilled from the case's ``current`` data.

    ``comment``: the action's comment rule (``required``, ``optional``, ``none``).
    ``masked``: the viewer does not see sensitive values; they are left blank and
    keep their stored value unless she types a new one.
    """
    current = dict(current or {})
    choices = choices or Choices()
    files_present = set(files_present)
    attrs: dict[str, Any] = {}
    items: list[tuple[FormField, FieldSpec]] = []
    initial: dict[str, Any] = {}
    for entry in entries:
        fs = spec.fields.get(entry.name)
        if fs is None:
            continue
        value = current.get(entry.name)
        hidden = masked and fs.sensitive and value == MASK
        has_file = fs.type == "file" and (bool(value) or entry.name in files_present)
        attrs[entry.name] = _unbound(fs, entry, choices, hidden, has_file)
        items.append((entry, fs))
        if not hidden and fs.type != "file":
            initial[entry.name] = _initial(fs, value, entry.required)
    if comment != "none":
        checks = [v.InputRequired(t("case.comment.required"))] if comment == "required" else [v.Optional()]
        attrs[COMMENT] = wf.TextAreaField(label=t("case.comment"), validators=checks + [v.Length(max=MAX_COMMENT)],
                                          render_kw={"rows": 3})
    cls = type("DefinitionForm", (DynamicForm,), attrs)
    form = cls(formdata=formdata, prefix=prefix, data=initial)
    form.items = items
    form.comment_rule = comment
    form.has_files = any(fs.type == "file" for _, fs in items)
    form.general_errors = []
    return form


def _initial(fs: FieldSpec, value: Any, required: bool | None = None) -> Any:
    """A stored value as the WTForms field wants it (``required``: the form's entry asks for it,
    so a yes/no is a pair of radio buttons whose values are the texts ``true`` and ``false``)."""
    required = fs.required if required is None else required
    if value is None or value == "":
        return None
    try:
        if fs.type in ("decimal", "money"):
            return Decimal(str(value))
        if fs.type == "date":
            return date.fromisoformat(str(value))
        if fs.type == "datetime":
            return datetime.fromisoformat(str(value))
        if fs.type == "integer":
            return int(value)
        if fs.type == "boolean":
            return ("true" if value else "false") if required else bool(value)
        if fs.type == "multichoice":
            return list(value) if isinstance(value, (list, tuple)) else [value]
    except (ValueError, TypeError, InvalidOperation):
        return None
    return value


def engine_data(form: DynamicForm, masked: bool = False) -> dict[str, Any]:
    """The submitted values in the JSON-safe shape the engine validates (files left out).

    An emptied field is sent as None (the engine clears it); a hidden sensitive field
    left blank is not sent at all (it keeps its value).
    """
    data: dict[str, Any] = {}
    for entry, fs, field in form.definition_fields():
        if fs.type == "file":
            continue
        value = field.data
        if isinstance(value, str):
            value = value.strip()
        empty = value in (None, "", [])
        if empty and masked and fs.sensitive:
            continue
        if fs.type == "boolean" and isinstance(value, str):
            value = {"true": True, "false": False}.get(value)
        elif isinstance(value, Decimal):
            value = format(value, "f")
        elif isinstance(value, datetime):
            value = value.isoformat(timespec="minutes")
        elif isinstance(value, date):
            value = value.isoformat()
        data[entry.name] = None if empty else value
    return data


def comment_of(form: DynamicForm) -> str | None:
    field = form._fields.get(COMMENT)
    return (field.data or "").strip() or None if field is not None else None


def apply_engine_errors(form: DynamicForm, details: Mapping[str, Any]) -> None:
    """Put the engine's per-field messages next to the fields; the rest on top of the form."""
    for name, message in (details or {}).items():
        if isinstance(message, (list, tuple)):
            message = "; ".join(map(str, message))
        field = form._fields.get(name)
        if name == "expression":  # the guard itself is for the API's readers, not for the page
            continue
        if field is not None:
            field.errors = list(field.errors or []) + [detail_text(message)]
        else:
            form.general_errors.append(detail_text(message))
