"""Engine objects in the shapes the API schemas describe.

Definitions become plain dicts (labels in the caller's language plus both
languages), durations ISO 8601 text, money bounds decimal text. No rule is decided
here: this is presentation only.
"""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from flask import request

from hexie.workflows.access import Actor
from hexie.workflows.spec import FieldSpec, FormField, Label, ProcessSpec, StateSpec, TaskSpec, TransitionSpec

LOCALES = ("zh", "en")


def locale_of(actor: Actor | None) -> str:
    """The caller's language: Accept-Language when it names zh or en, else her own setting, else
    HEXIE_DEFAULT_LOCALE (zh)."""
    from ..i18n import default_locale
    best = request.accept_languages.best_match(LOCALES) if request.accept_languages else None
    return best or (actor.locale if actor is not None and actor.locale in LOCALES else default_locale())


def iso_duration(value: timedelta | None) -> str | None:
    """``timedelta(days=3)`` -> ``P3D``; ``timedelta(hours=12)`` -> ``PT12H``."""
    if value is None:
        return None
    days, seconds = value.days, value.seconds
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    text = "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
    return text if text != "P" else "P0D"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _label(label: Label | None, locale: str) -> str | None:
    return None if label is None else label.get(locale)


def _i18n(label: Label | None) -> dict[str, str] | None:
    return None if label is None else {"zh": label.zh, "en": label.en}


def _form(entries: tuple[FormField, ...]) -> list[dict[str, Any]]:
    return [{"field": f.name, "required": f.required} for f in entries]


def process_summary(spec: ProcessSpec, version: int, locale: str) -> dict[str, Any]:
    return {"process": spec.key, "version": version, "title": spec.title.get(locale),
            "title_i18n": _i18n(spec.title), "confidential": spec.confidential}


def process_detail(spec: ProcessSpec, version: int, locale: str) -> dict[str, Any]:
    return {
        **process_summary(spec, version, locale),
        "description": _label(spec.description, locale), "description_i18n": _i18n(spec.description),
        "org_level": spec.org_level,
        "starters": sorted({role for role, _ in spec.starter_roles}),
        "initial_state": spec.initial_state.name,
        "fields": {name: _field(f, locale) for name, f in spec.fields.items()},
        "states": [_state(s, locale, s.name == spec.initial_state.name) for s in spec.states],
        "transitions": [_transition(t, locale) for t in spec.transitions],
    }


def _field(f: FieldSpec, locale: str) -> dict[str, Any]:
    return {"name": f.name, "type": f.type, "label": f.label.get(locale), "label_i18n": _i18n(f.label),
            "help": _label(f.help, locale), "required": f.required, "default": _plain(f.default),
            "min": _plain(f.min), "max": _plain(f.max), "max_length": f.max_length, "pattern": f.pattern,
            "sensitive": f.sensitive, "multiple": f.multiple,
            "choices": [{"key": k, "label": lab.get(locale), "label_i18n": _i18n(lab)} for k, lab in f.choices]}


def _task(t: TaskSpec, locale: str) -> dict[str, Any]:
    return {"name": t.name, "role": t.role, "label": t.label.get(locale), "at": t.at, "form": _form(t.form),
            "due": iso_duration(t.due),
            "escalate": {"after": iso_duration(t.escalate.after), "to": t.escalate.to} if t.escalate else None,
            "separate_from": list(t.separate_from), "same_as": t.same_as, "priority": t.priority,
            "optional": t.optional}


def _state(s: StateSpec, locale: str, initial: bool) -> dict[str, Any]:
    return {"name": s.name, "label": s.label.get(locale), "label_i18n": _i18n(s.label), "initial": initial,
            "final": s.final, "parallel": s.parallel, "tasks": [_task(t, locale) for t in s.tasks],
            "timers": [{"trigger": t.trigger, "after": iso_duration(t.after), "at": t.at_field} for t in s.timers],
            "for_each": {"field": s.for_each.field, "complete": s.for_each.complete} if s.for_each else None,
            "call": {"process": s.call.process, "data": dict(s.call.data), "result": dict(s.call.result),
                     "on_end": dict(s.call.on_end)} if s.call else None,
            "order": s.order, "end_when_idle": s.end_when_idle}


def _transition(t: TransitionSpec, locale: str) -> dict[str, Any]:
    return {"trigger": t.trigger, "source": t.sources[0] if len(t.sources) == 1 else list(t.sources),
            "sources": list(t.sources), "dest": t.dest, "label": t.label.get(locale),
            "label_i18n": _i18n(t.label), "roles": list(t.roles) if t.roles is not None else None,
            "when": getattr(t.when, "source", None), "comment": t.comment, "form": _form(t.form),
            "interrupt": t.interrupt, "quorum": t.quorum, "auto": t.auto,
            "ledger": {"fund": t.ledger.fund, "amount": t.ledger.amount, "kind": t.ledger.kind} if t.ledger else None}
