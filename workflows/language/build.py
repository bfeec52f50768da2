"""Building the immutable :mod:`hexie.workflows.spec` objects once no error was found."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Mapping


from hexie.workflows.spec import (
    CallSpec, DocumentSpec, Escalation, FieldSpec, ForEachSpec, FormField, Label, LedgerSpec, ProcessSpec, RateSpec, RolesSpec,
    StateSpec, TaskSpec, TimerSpec, TransitionSpec,
)
from hexie.workflows.language.checks import _mapping
from hexie.workflows.language.constants import DATE_TYPES, NUMBER_TYPES
from hexie.workflows.language.durations import parse_duration
from hexie.workflows.language.fields import _choice_keys, _coerce


# --------------------------------------------------------------------------- building the spec

def _build_process(data: dict, roles: RolesSpec | None, compiled: Mapping[int, Any],
                   text: str, filename: str) -> ProcessSpec:
    """The spec of a checked process (every value has the right shape here)."""
    fields_ = {name: _build_field(name, spec) for name, spec in _mapping(data.get("fields")).items()}
    states = tuple(_build_state(s, fields_) for s in data["states"])
    if not any(s.initial for s in states):  # the first state is the default initial one
        states = (replace(states[0], initial=True),) + states[1:]
    non_final = tuple(s.name for s in states if not s.final)
    transitions = tuple(_build_transition(i, t, non_final, fields_, compiled.get(i))
                        for i, t in enumerate(data["transitions"]))
    default_level = "county" if roles is None or "county" in roles.levels else roles.levels[0]
    agencies = _agencies(data.get("agencies"))
    if "agencies" not in data:   # undeclared: the agencies the tasks' consent names, in file order
        named = dict.fromkeys(t.consent for s in states for t in s.tasks if t.consent)
        agencies = tuple((k, Label.of(k)) for k in named)
    description = data.get("description")
    return ProcessSpec(
        key=data["process"], title=Label.of(data["title"]), states=states, transitions=transitions,
        fields=MappingProxyType(fields_),
        description=Label.of(description) if description is not None else None,
        org_level=data.get("org_level", default_level), confidential=data.get("confidential", False),
        starters=tuple(data["starters"]) if "starters" in data else None,
        rates=tuple(RateSpec(name, Label.of(r["label"], name), tuple(r["of"]), tuple(r.get("over", ())))
                    for name, r in _mapping(data.get("rates")).items()),
        agencies=agencies,
        documents=MappingProxyType({name: DocumentSpec(name, Label.of(d["title"], name), Label.of(d["body"]))
                                    for name, d in _mapping(data.get("documents")).items()}),
        end_when_idle=data.get("end_when_idle", False),
        anonymise_after=(data.get("retention") or {}).get("anonymise_after"),
        source_text=text, path=filename, content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest())


def _build_field(name: str, spec: dict) -> FieldSpec:
    ftype = spec["type"]
    choices = spec.get("choices")
    pairs: tuple[tuple[str, Label], ...] = ()
    if isinstance(choices, dict):
        pairs = tuple((k, Label.of(v, k)) for k, v in choices.items())
    elif isinstance(choices, list):
        pairs = tuple((k, Label.of(k)) for k in choices)
    bounded = ftype in NUMBER_TYPES + DATE_TYPES

    def value(key: str) -> Any:
        raw = spec.get(key)
        return _coerce(ftype, raw, _choice_keys(choices)) if raw is not None and bounded else raw

    default = spec.get("default")
    return FieldSpec(
        name=name, type=ftype, label=Label.of(spec.get("label"), name),
        help=Label.of(spec["help"]) if spec.get("help") is not None else None,
        required=spec.get("required", False),
        default=_coerce(ftype, default, _choice_keys(choices)) if default is not None else None,
        min=value("min"), max=value("max"), max_length=spec.get("max_length"), pattern=spec.get("pattern"),
        role=spec.get("role"),
        sensitive=spec.get("sensitive", False), searchable=spec.get("searchable", False),
        multiple=spec.get("multiple", False), choices=pairs)


def _build_form(entries: Any, fields_: Mapping[str, FieldSpec]) -> tuple[FormField, ...]:
    """Form entries with ``required`` merged from the field and the entry."""
    out = []
    for entry in entries or ():
        name, required = (entry, False) if isinstance(entry, str) else (entry["field"], entry.get("required", False))
        out.append(FormField(name, bool(fields_[name].required or required)))
    return tuple(out)


def _build_task(task: dict, name: str, label: Label, fields_: Mapping[str, FieldSpec]) -> TaskSpec:
    escalate = task.get("escalate")
    return TaskSpec(
        name=name, role=task.get("role") or task["worker_role"], label=label, at=task.get("at"),
        form=_build_form(task.get("form"), fields_),
        due=parse_duration(task["due"]) if "due" in task else None,
        escalate=Escalation(parse_duration(escalate["after"]), escalate["to"]) if escalate else None,
        separate_from=tuple(task.get("separate_from", ())),
        same_as=task.get("assign", {}).get("same_as"),
        assign_user=task.get("assign", {}).get("user"), assign_owner=task.get("assign", {}).get("owner") is True,
        policy=task.get("assign", {}).get("policy"),
        requires=tuple(sorted(set(task.get("requires", ())))),
        priority=task.get("priority", "normal"), optional=task.get("optional", False),
        external=task.get("external"), variables=tuple(task.get("variables", ())),
        retries=int(task.get("retries", 3)),
        consent=task["consent"]["agency"] if "consent" in task else None,
        acceptance=bool(task.get("acceptance", False)))


def _agencies(value: Any) -> tuple[tuple[str, Label], ...]:
    """The declared receiving agencies as (key, label) pairs, in file order."""
    if isinstance(value, dict):
        return tuple((k, Label.of(v, k)) for k, v in value.items())
    return tuple((k, Label.of(k)) for k in value or ())


def _build_state(state: dict, fields_: Mapping[str, FieldSpec]) -> StateSpec:
    name = state["name"]
    label = Label.of(state.get("label"), name)
    for_each = None
    if "task" in state:
        tasks = (_build_task(state["task"], name, label, fields_),)
    elif isinstance(state.get("tasks"), dict):
        tasks, for_each = _build_for_each(state["tasks"], fields_)
    else:
        tasks = tuple(_build_task(t, t["name"], Label.of(t.get("label"), t["name"]), fields_)
                      for t in state.get("tasks", ()))
    timers = tuple(TimerSpec(trigger=t["trigger"],
                             after=parse_duration(t["after"]) if "after" in t else None,
                             at_field=t.get("at")) for t in state.get("timers", ()))
    call = state.get("call")
    return StateSpec(name=name, label=label, initial=state.get("initial", False), final=state.get("final", False),
                     tasks=tasks, parallel="tasks" in state, timers=timers,
                     host_editable=state.get("host_editable", False), for_each=for_each,
                     call=CallSpec(call["process"], tuple(_mapping(call.get("data")).items()),
                                   tuple(_mapping(call.get("result")).items()),
                                   tuple(_mapping(call.get("on_end")).items())) if call else None,
                     order=state.get("order"), end_when_idle=state.get("end_when_idle", False))


def _build_for_each(spec: dict, fields_: Mapping[str, FieldSpec]) -> tuple[tuple[TaskSpec, ...], ForEachSpec]:
    """One task per choice of the for-each field, named by the choice, given to its role."""
    field = fields_[spec["for_each"]]
    template, role_of, each = spec["task"], _mapping(spec.get("role_of")), _mapping(spec.get("each"))
    tasks = []
    for value, choice_label in field.choices:
        merged = {**template, **_mapping(each.get(value))}
        if value in role_of:
            merged["role"] = role_of[value]
        label = Label.of(merged["label"]) if merged.get("label") is not None else choice_label
        tasks.append(_build_task(merged, value, label, fields_))
    return tuple(tasks), ForEachSpec(spec["for_each"], spec.get("complete", "all"), tuple(field.default or ()))


def _build_transition(index: int, t: dict, non_final: tuple[str, ...], fields_: Mapping[str, FieldSpec],
                      when: Any) -> TransitionSpec:
    source = t["source"]
    names = [source] if isinstance(source, str) else source
    sources: dict[str, None] = {}
    for name in names:
        sources.update(dict.fromkeys(non_final if name == "*" else (name,)))
    return TransitionSpec(
        index=index, trigger=t["trigger"], sources=tuple(sources), dest=t["dest"],
        label=Label.of(t.get("label"), t["trigger"]),
        roles=tuple(t["roles"]) if "roles" in t else None, when=when,
        comment=t.get("comment", "optional"), form=_build_form(t.get("form"), fields_),
        interrupt=t.get("interrupt", False), quorum=t.get("quorum", 1),
        ledger=LedgerSpec(**t["ledger"]) if "ledger" in t else None,
        message=Label.of(t["message"]) if t.get("message") is not None else None,
        auto=t.get("auto", False))
