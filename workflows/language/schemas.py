"""The structural schemas (the shape pass) and how their errors become diagnostics."""
from __future__ import annotations

import re

from typing import Any, Mapping

from marshmallow import RAISE, Schema, ValidationError, fields, validates_schema

from hexie.workflows.spec import (
    ASSIGN_POLICIES, COMMENT_RULES, COMPLETE_RULES, FIELD_TYPES, LEDGER_KINDS, ORDERS, PRIORITIES,
)
from hexie.workflows.language.constants import CHOICE_TYPES, DATE_TYPES, NUMBER_TYPES, PathKey, TEXT_TYPES
from hexie.workflows.language.fields import _Base, _Bool, _Choices, _Duration, _Int, _List, _Nested, _Raw, _Source, _Str, _Text, _Unfit, _at_least, _choice_keys, _coerce, _one_of, _process_key, _regex
from hexie.workflows.language.messages import _Message, _NULL, _REQUIRED, _expected, _kinds, _msg, _unknown
from hexie.workflows.language.yaml_tree import _Report


# --------------------------------------------------------------------------- schemas

_SCHEMAS: dict[type, Schema] = {}


def _schema(cls: type[Schema]) -> Schema:
    """One shared instance per schema class (building them is not free)."""
    instance = _SCHEMAS.get(cls)
    if instance is None:
        instance = _SCHEMAS[cls] = cls()
    return instance


class _FormEntry(_Base, fields.Field):
    """A form entry: a field name, or ``{field: name, required: true}``."""

    default_error_messages = {"invalid": _expected("字段名或 {{field, required}}", "a field name or {{field, required}}")}

    @property
    def schema(self) -> Schema:
        return _schema(_FormEntrySchema)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if not isinstance(value, dict):
            raise self.make_error("invalid", **_kinds(value))
        errors = self.schema.validate(value)
        if errors:
            raise ValidationError(errors)
        return value


class _NamedMap(_Base, fields.Field):
    """A mapping name -> nested mapping, every value checked by one schema."""

    default_error_messages = {"invalid": _expected("映射（名称: 定义）", "a mapping of names to definitions")}

    def __init__(self, schema_class: type[Schema], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schema_class = schema_class

    @property
    def value_schema(self) -> Schema:
        return _schema(self.schema_class)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise self.make_error("invalid", **_kinds(value))
        errors: dict[str, Any] = {}
        for name, item in value.items():
            if not isinstance(item, dict):
                errors[name] = [_expected("映射（键: 值）", "a mapping (key: value)").format(**_kinds(item))]
                continue
            item_errors = self.value_schema.validate(item)
            if item_errors:
                errors[name] = item_errors
        if errors:
            raise ValidationError(errors)
        return value


class _Strict(Schema):
    """Unknown keys are errors; messages are ours."""

    class Meta:
        unknown = RAISE

    error_messages = {"type": _msg("应为映射（键: 值）", "expected a mapping (key: value)"), "unknown": "unknown"}


class _FormEntrySchema(_Strict):
    field = _Str(required=True)
    required = _Bool()


class _EscalationSchema(_Strict):
    after = _Duration(required=True)
    to = _Str(required=True)


class _AssignSchema(_Strict):
    """Who gets the task: exactly one of ``same_as``, ``user``, ``owner``, ``policy``."""

    same_as = _Str()
    user = _Str()
    owner = _Bool()
    policy = _Str(validate=_one_of(ASSIGN_POLICIES, "分派方式", "assignment policy"))

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _exactly_one(self, data: dict, original: Any, **kwargs: Any) -> None:
        if not isinstance(original, dict):
            return
        given = [k for k in original if k in ("same_as", "user", "owner", "policy")]
        if not given:
            raise ValidationError(_msg("assign 需要 same_as、user、owner 或 policy 之一",
                                       "assign needs one of same_as, user, owner or policy"))
        if len(given) > 1:
            raise ValidationError({given[1]: [_Message.make(_msg(
                f"assign 只能有一种分派方式（已有 {given[0]}）",
                f"assign takes one way of choosing (already {given[0]})"), at_key=True)]})
        if "owner" in original and original["owner"] is not True:
            raise ValidationError({"owner": [_msg("owner 只能是 true", "owner must be true")]})


class _TaskSchema(_Strict):
    role = _Str()
    external = _Str()            # a machine step's topic (interfaces.md, "external tasks")
    worker_role = _Str()
    variables = _List(_Str())
    retries = _Int(validate=_at_least(0, "retries ", "retries"))
    at = _Str()
    form = _List(_FormEntry())
    due = _Duration()
    escalate = _Nested(_EscalationSchema)
    separate_from = _List(_Str())
    assign = _Nested(_AssignSchema)
    requires = _List(_Str())     # capabilities her holder needs (definitions.md, "Who gets a task")
    priority = _Str(validate=_one_of(PRIORITIES, "优先级", "priority"))


    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _person_or_machine(self, data: dict, original: Any, **kwargs: Any) -> None:
        if not isinstance(original, dict):
            return
        if "external" in original:
            if "role" in original:
                raise ValidationError({"role": [_Message.make(_msg(
                    "外部任务用 worker_role，不用 role", "an external task has worker_role, not role"), at_key=True)]})
            if "worker_role" not in original:
                raise ValidationError({"worker_role": [_REQUIRED]})
            return
        if "role" not in original:
            raise ValidationError({"role": [_REQUIRED]})
        for key in ("worker_role", "variables", "retries"):
            if key in original:
                raise ValidationError({key: [_Message.make(_msg(
                    f"{key} 只用于外部任务（external）", f"{key} is only for external tasks (external: TOPIC)"),
                    at_key=True)]})


class _ParallelTaskSchema(_TaskSchema):
    name = _Str(required=True)
    label = _Text()
    optional = _Bool()


# -- work decided at run time (definitions.md): for_each tasks, call, interleaved order, auto

class _StrMap(_Base, fields.Field):
    """A mapping of names to names (``role_of``, a call's ``data``, ``result`` and ``on_end``)."""

    default_error_messages = {"invalid": _expected("映射（名称: 名称）", "a mapping of names to names")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise self.make_error("invalid", **_kinds(value))
        errors = {key: [_expected("名称", "a name").format(**_kinds(item))]
                  for key, item in value.items() if not isinstance(item, str)}
        if errors:
            raise ValidationError(errors)
        return value


class _Complete(_Base, fields.Field):
    """``complete:`` of a for-each state: ``all``, ``any`` or a whole number of at least 1."""

    default_error_messages = {"invalid": _msg("complete 应为 all、any 或不小于 1 的整数",
                                              "complete is all, any or a whole number of at least 1")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and value in COMPLETE_RULES:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        if isinstance(value, str):
            raise ValidationError(_unknown("完成规则", "complete rule", value, COMPLETE_RULES, listing=True))
        raise self.make_error("invalid")


class _EachTaskSchema(_TaskSchema):
    """The task of a for-each state (its role may come from ``role_of``), or one value's changes to it."""

    label = _Text()

    def _person_or_machine(self, data: dict, original: Any, **kwargs: Any) -> None:  # role: from role_of
        return None


class _ForEachSchema(_Strict):
    for_each = _Str(required=True)
    role_of = _StrMap()
    task = _Nested(_EachTaskSchema, required=True)
    each = _NamedMap(_EachTaskSchema)     # per value: what differs from ``task`` (form, due, label…)
    complete = _Complete()


class _Tasks(_Base, fields.Field):
    """A state's ``tasks``: a list of named parallel tasks, or ``{for_each: …}`` (one per value)."""

    default_error_messages = {"invalid": _expected("并行任务列表或 {for_each: …}", "a list of tasks or {for_each: …}")}

    @property
    def list_schema(self) -> Schema:
        return _schema(_ParallelTaskSchema)

    @property
    def each_schema(self) -> Schema:
        return _schema(_ForEachSchema)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, dict):
            errors = self.each_schema.validate(value)
            if errors:
                raise ValidationError(errors)
            return value
        if not isinstance(value, list):
            raise self.make_error("invalid", **_kinds(value))
        if not value:
            raise ValidationError([_msg("并行任务数不能少于 1", "the number of parallel tasks must be at least 1")])
        errors: dict[Any, Any] = {}
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                errors[i] = [_expected("映射（键: 值）", "a mapping (key: value)").format(**_kinds(item))]
                continue
            item_errors = self.list_schema.validate(item)
            if item_errors:
                errors[i] = item_errors
        if errors:
            raise ValidationError(errors)
        return value


class _CallSchema(_Strict):
    process = _Str(required=True, validate=_process_key)
    data = _StrMap()
    result = _StrMap()
    on_end = _StrMap()


class _TimerSchema(_Strict):
    after = _Duration()
    at = _Str()
    trigger = _Str(required=True)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _after_or_at(self, data: dict, original: Any, **kwargs: Any) -> None:
        given = [k for k in ("after", "at") if isinstance(original, dict) and k in original]
        if not given:
            raise ValidationError(_msg("计时器需要 after（时长）或 at（日期字段）之一",
                                       "a timer needs either after (a duration) or at (a date field)"))
        if len(given) == 2:
            raise ValidationError({"at": [_Message.make(_msg(
                "计时器只能有 after 或 at 其中之一", "a timer has either after or at, not both"), at_key=True)]})


class _StateSchema(_Strict):
    name = _Str(required=True)
    label = _Text()
    initial = _Bool()
    final = _Bool()
    task = _Nested(_TaskSchema)
    tasks = _Tasks()
    timers = _List(_Nested(_TimerSchema))
    host_editable = _Bool()
    call = _Nested(_CallSchema)
    order = _Str(validate=_one_of(ORDERS, "任务顺序", "task order"))
    end_when_idle = _Bool()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _task_or_tasks(self, data: dict, original: Any, **kwargs: Any) -> None:
        if isinstance(original, dict) and "task" in original and "tasks" in original:
            raise ValidationError({"tasks": [_Message.make(_msg(
                "状态不能同时有 task 和 tasks", "a state has either task or tasks, not both"), at_key=True)]})
        if not isinstance(original, dict):
            return
        if "call" in original and ("task" in original or "tasks" in original):
            raise ValidationError({"call": [_Message.make(_msg(
                "调用子流程的状态没有自己的任务（工作在子流程中完成）",
                "a state that calls a process has no task of its own (the child case does the work)"), at_key=True)]})
        if "order" in original and "tasks" not in original:
            raise ValidationError({"order": [_Message.make(_msg(
                "order 只用于并行任务（tasks）", "order is only for a state's parallel tasks (tasks)"), at_key=True)]})


class _FieldSchema(_Strict):
    type = _Str(required=True, validate=_one_of(FIELD_TYPES, "字段类型", "field type"))
    label = _Text()
    help = _Text()
    required = _Bool()
    default = _Raw()
    min = _Raw()
    max = _Raw()
    max_length = _Int(validate=_at_least(1, "max_length ", "max_length"))
    pattern = _Str(validate=_regex)
    sensitive = _Bool()
    searchable = _Bool()
    multiple = _Bool()
    choices = _Choices()
    role = _Str()        # a user field: the role of the people it names (its picker lists only them)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _options_fit_type(self, data: dict, original: Any, **kwargs: Any) -> None:
        ftype = data.get("type")
        if ftype is None or not isinstance(original, dict):
            return  # the type itself is wrong or missing: reported already
        errors: dict[str, list[str]] = {}
        _check_choices(ftype, original, errors)
        _check_searchable(ftype, data, errors)
        bounds = _check_bounds(ftype, data, errors)
        _check_default(ftype, data, bounds, errors)
        if errors:
            raise ValidationError(errors)


def _check_searchable(ftype: str, data: dict, errors: dict) -> None:
    """``searchable: true`` (the blind index, protection.md): only a sensitive text field."""
    if data.get("searchable") and (ftype != "text" or not data.get("sensitive")):
        errors["searchable"] = [_msg("只有敏感（sensitive: true）的 text 字段可以 searchable",
                                     f"only a sensitive text field (sensitive: true) may be searchable; this one is "
                                     f"{ftype}{'' if data.get('sensitive') else ', not sensitive'}")]


class _RetentionPeriod(_Base, fields.Field):
    """``anonymise_after``: an ISO 8601 period, years and months allowed (``P5Y``), kept as written."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        from hexie.workflows.retention import parse_retention
        try:
            parse_retention(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return value


def _check_choices(ftype: str, original: dict, errors: dict) -> None:
    """choice/multichoice need choices; other types may not have them."""
    if ftype in CHOICE_TYPES and "choices" not in original:
        errors["choices"] = [_msg(f"{ftype} 字段需要 choices", f"a {ftype} field needs choices")]
    elif ftype not in CHOICE_TYPES and "choices" in original:
        errors["choices"] = [_Message.make(_msg(
            f"只有 choice 和 multichoice 字段可以有 choices，此字段为 {ftype}",
            f"only choice and multichoice fields take choices; this one is {ftype}"), at_key=True)]


def _check_bounds(ftype: str, data: dict, errors: dict) -> dict[str, Any]:
    """min and max must be of the field's type, and min <= max."""
    bounds: dict[str, Any] = {}
    if ftype not in NUMBER_TYPES + DATE_TYPES:
        return bounds  # no effect: a warning from the meaning pass
    for key in ("min", "max"):
        if data.get(key) is not None:
            try:
                bounds[key] = _coerce(ftype, data[key])
            except _Unfit as exc:
                errors[key] = [_msg(f"{key} 不符合字段类型 {ftype}：{exc.zh}", f"{key} does not fit type {ftype}: {exc.en}")]
    if len(bounds) == 2 and bounds["min"] > bounds["max"]:
        errors["min"] = [_msg(f"min（{data['min']}）大于 max（{data['max']}）",
                              f"min ({data['min']}) is greater than max ({data['max']})")]
    return bounds


def _check_default(ftype: str, data: dict, bounds: dict, errors: dict) -> None:
    """A default must be a value the field could hold."""
    if data.get("default") is None:
        return
    default = data["default"]
    try:
        value = _coerce(ftype, default, _choice_keys(data.get("choices")))
    except _Unfit as exc:
        errors["default"] = [_msg(f"默认值不符合字段类型 {ftype}：{exc.zh}", f"the default does not fit type {ftype}: {exc.en}")]
        return
    problem = None
    if "min" in bounds and value < bounds["min"]:
        problem = _msg(f"默认值 {default} 小于 min {bounds['min']}", f"the default {default} is below min {bounds['min']}")
    elif "max" in bounds and value > bounds["max"]:
        problem = _msg(f"默认值 {default} 大于 max {bounds['max']}", f"the default {default} is above max {bounds['max']}")
    elif ftype in TEXT_TYPES and isinstance(data.get("max_length"), int) and len(value) > data["max_length"]:
        problem = _msg("默认值超过 max_length", "the default is longer than max_length")
    elif ftype in TEXT_TYPES and isinstance(data.get("pattern"), str) and not _matches(data["pattern"], value):
        problem = _msg("默认值不符合 pattern", "the default does not match the pattern")
    if problem:
        errors["default"] = [problem]


def _matches(pattern: str, value: str) -> bool:
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return True  # the pattern itself is reported


class _LedgerSchema(_Strict):
    fund = _Str(required=True)
    amount = _Str(required=True)
    voucher = _Str()
    kind = _Str(validate=_one_of(LEDGER_KINDS, "记账类型", "ledger kind"))


class _TransitionSchema(_Strict):
    trigger = _Str(required=True)
    source = _Source(required=True)
    dest = _Str(required=True)
    label = _Text()
    roles = _List(_Str(), validate=_at_least(1, "角色数", "the number of roles"))
    when = _Str()
    comment = _Str(validate=_one_of(COMMENT_RULES, "备注规则", "comment rule"))
    form = _List(_FormEntry())
    interrupt = _Bool()
    quorum = _Int(validate=_at_least(1, "quorum ", "quorum"))
    ledger = _Nested(_LedgerSchema)
    message = _Text()
    auto = _Bool()


class _RateSchema(_Strict):
    label = _Text(required=True)
    of = _List(_Str(), required=True, validate=_at_least(1, "状态数", "the number of states"))
    over = _List(_Str())


class _DocumentSchema(_Strict):
    title = _Text(required=True)
    body = _Text(required=True)
class _RetentionSchema(_Strict):
    anonymise_after = _RetentionPeriod(required=True)


class _ProcessSchema(_Strict):
    process = _Str(required=True, validate=_process_key)
    title = _Text(required=True)
    description = _Text()
    org_level = _Str()
    confidential = _Bool()
    starters = _List(_Str(), validate=_at_least(1, "发起角色数", "the number of starters"))
    fields = _NamedMap(_FieldSchema, allow_none=True)
    states = _List(_Nested(_StateSchema), required=True, validate=_at_least(1, "状态数", "the number of states"))
    transitions = _List(_Nested(_TransitionSchema), required=True)
    rates = _NamedMap(_RateSchema)
    documents = _NamedMap(_DocumentSchema)
    end_when_idle = _Bool()
    retention = _Nested(_RetentionSchema)


class _RoleSchema(_Strict):
    label = _Text()
    manager = _Bool()
    overseer = _Bool()
    admin = _Bool()


class _RolesFileSchema(_Strict):
    levels = _List(_Str(), required=True, validate=_at_least(1, "层级数", "the number of levels"))
    roles = _NamedMap(_RoleSchema, required=True)
    capabilities = _List(_Str())   # the words tasks' requires: may name (optional)


# --------------------------------------------------------------------------- schema errors -> diagnostics

def _report_schema_errors(errors: Mapping, schema: Schema, path: PathKey, report: _Report) -> None:
    """Turn marshmallow's nested error dict for ``schema`` into positioned diagnostics."""
    for key, messages in errors.items():
        if key == "_schema":
            _report_messages(messages, path, report, at_key=True)
            continue
        field_ = schema.fields.get(key)
        if field_ is None:
            report.error(path + (key,), _unknown("键", "key", key, schema.fields, listing=True), at_key=True)
        else:
            _report_field_errors(messages, field_, path + (key,), report)


def _report_field_errors(messages: Any, field_: fields.Field | None, path: PathKey, report: _Report) -> None:
    """Errors of one field: leaf messages, or nested ones shaped like the field."""
    if isinstance(messages, list):
        _report_messages(messages, path, report)
    elif isinstance(messages, dict):
        if "_schema" in messages and not isinstance(field_, (fields.Nested, _FormEntry)):
            # marshmallow files a list-level error beside the per-item ones under "_schema"
            messages = dict(messages)
            _report_messages(messages.pop("_schema"), path, report, at_key=True)
        if isinstance(field_, fields.List):
            for index, sub in messages.items():
                _report_field_errors(sub, field_.inner, path + (index,), report)
        elif isinstance(field_, _Tasks):
            for key, sub in messages.items():
                if isinstance(key, int):   # one task of the list
                    if isinstance(sub, dict):
                        _report_schema_errors(sub, field_.list_schema, path + (key,), report)
                    else:
                        _report_messages(sub, path + (key,), report)
                else:                      # a key of {for_each: …}
                    _report_schema_errors({key: sub}, field_.each_schema, path, report)
        elif isinstance(field_, _NamedMap):
            for name, sub in messages.items():
                if isinstance(sub, dict):
                    _report_schema_errors(sub, field_.value_schema, path + (name,), report)
                else:
                    _report_messages(sub, path + (name,), report)
        elif isinstance(field_, (fields.Nested, _FormEntry)):
            _report_schema_errors(messages, field_.schema, path, report)
        else:
            for key, sub in messages.items():
                _report_field_errors(sub, None, path + (key,), report)


def _report_messages(messages: list, path: PathKey, report: _Report, *, at_key: bool = False) -> None:
    """Leaf messages; the sentinels get their wording here, where the key is known."""
    key = path[-1] if path else ""
    for message in messages:
        if isinstance(message, dict):
            _report_field_errors(message, None, path, report)
        elif message == _REQUIRED:
            report.error(path, _msg(f"缺少必需的键 '{key}'", f"missing required key '{key}'"))
        elif message == _NULL:
            report.error(path, _msg(f"'{key}' 缺少值", f"'{key}' has no value"), at_key=True)
        else:
            report.error(path, str(message), at_key=at_key or getattr(message, "at_key", False),
                         offset=getattr(message, "offset", None))
