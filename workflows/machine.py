"""Compiled processes: one shared ``transitions`` machine per (process, version).

The machine is pure configuration (states, triggers, named conditions) and holds no
case. Firing a trigger on a case hands the machine a throw-away token that carries
only the case's state; every case of a version shares the same machine, so memory
and start-up cost do not grow with the number of cases.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable, Mapping

from transitions import Machine
from transitions.core import EventData

from .refusals import refusal
from .spec import SYSTEM_ROLE, Label, ProcessSpec, TransitionSpec

try:  # the expression module raises these at run time
    from .expressions import ExpressionError
except ImportError:  # pragma: no cover - only while the tree is being assembled
    ExpressionError = ValueError  # type: ignore[misc,assignment]


@dataclass
class FireContext:
    """What the conditions of one firing may look at: no database, no Flask."""

    data: Mapping[str, Any]
    held: frozenset[tuple[str, str]]      # (role, level) the actor holds at the case's unit or above
    actor: Mapping[str, Any] = field(default_factory=dict)
    case: Mapping[str, Any] = field(default_factory=dict)
    today: date | None = None
    is_system: bool = False
    #: transition index -> why its guard could not be evaluated (a limit broken, a value of the
    #: wrong kind): said instead of the guard's words, since the guard itself was not the reason
    guard_errors: dict[int, str] = field(default_factory=dict)

    @classmethod
    def for_case(cls, spec: ProcessSpec, data: Mapping[str, Any], actor: Any, org_path: str,
                 created_at: Any, today: date, open_tasks: Iterable[Any] = ()) -> "FireContext":
        """The context for ``actor`` (a hexie.workflows.access.Actor) acting on a case.

        An open task escalated to her (``open_tasks``) lets her act as its role would: the
        escalation offers her the task, so the task's default-role actions are hers too.
        """
        from .access import escalated_to
        from .forms import typed_data
        held = actor.held_at(org_path)
        standing_in = frozenset((t.role, t.at_level) for t in open_tasks if escalated_to(actor, t))
        return cls(data=typed_data(spec, data), held=held | standing_in, is_system=actor.is_system,
                   actor={"username": actor.username, "roles": sorted({r for r, _ in held})},
                   case={"org_unit": org_path.rstrip("/").rsplit("/", 1)[-1], "created_at": created_at},
                   today=today)

    def holds_any(self, allowed: tuple[tuple[str, str | None], ...]) -> bool:
        """True when the actor holds one of the (role, at-level) pairs."""
        for role, at in allowed:
            if role == SYSTEM_ROLE:
                if self.is_system:
                    return True
                continue
            for held_role, held_level in self.held:
                if held_role == role and (at is None or held_level == at):
                    return True
        return False


class _Token:
    """The stand-in model handed to the shared machine for one firing."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


@dataclass(frozen=True)
class Selection:
    """Which transition a trigger would take now, or why none."""

    transition: TransitionSpec | None
    permitted: tuple[TransitionSpec, ...]   # role check passed (guards may still fail)
    reasons: tuple[Label, ...]              # why each permitted transition's guard failed, in words
    expressions: tuple[str, ...] = ()       # and the guards themselves, for those who wrote them


def _said(message: str) -> Label:
    """An engine message "中文 / English" as a Label."""
    zh, sep, en = message.partition(" / ")
    return Label(zh, en) if sep else Label(message, message)


class CompiledProcess:
    """A process definition compiled into a shared ``transitions.Machine``."""

    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec
        self._specs: dict[int, TransitionSpec] = {}
        self.machine = Machine(
            model=None,
            states=[s.name for s in spec.states],
            initial=spec.initial_state.name,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=False,
            name=spec.key,
        )
        for t in spec.transitions:
            for source in t.sources:
                self.machine.add_transition(
                    t.trigger, source, t.dest,
                    conditions=[self._role_condition(t, source), self._guard_condition(t)],
                )
                self._specs[id(self.machine.events[t.trigger].transitions[source][-1])] = t

    # -- conditions: named closures over the transition's spec --------------
    def _role_condition(self, t: TransitionSpec, source: str):
        allowed = self.spec.transition_roles(t, source)

        def may_fire(event: EventData) -> bool:
            ctx: FireContext = event.kwargs["ctx"]
            return ctx.holds_any(allowed)

        may_fire.__name__ = f"may_fire_{t.trigger}_from_{source}"
        return may_fire

    @staticmethod
    def _guard_condition(t: TransitionSpec):
        def guard(event: EventData) -> bool:
            if t.when is None:
                return True
            ctx: FireContext = event.kwargs["ctx"]
            try:
                return t.when.holds(ctx.data, actor=ctx.actor, case=ctx.case, today=ctx.today)
            except ExpressionError as err:   # the guard does not hold; the reason is kept for the person
                ctx.guard_errors[t.index] = str(getattr(err, "message", err))
                return False

        guard.__name__ = f"guard_{t.index}"
        return guard

    # -- queries -------------------------------------------------------------
    def candidates(self, state: str, trigger: str) -> list[tuple[Any, TransitionSpec]]:
        """The machine's transitions for ``trigger`` from ``state``, in file order."""
        event = self.machine.events.get(trigger)
        if event is None:
            return []
        return [(t, self._specs[id(t)]) for t in event.transitions.get(state, [])]

    def select(self, state: str, trigger: str, ctx: FireContext) -> Selection:
        """Try the transitions in file order: the first whose role and guard hold wins."""
        event = self.machine.events.get(trigger)
        permitted: list[TransitionSpec] = []
        refused: list[TransitionSpec] = []
        if event is None:
            return Selection(None, (), ())
        event_data = EventData(self.machine.get_state(state), event, self.machine,
                               _Token(state), args=(), kwargs={"ctx": ctx})
        for trans, tspec in self.candidates(state, trigger):
            role_ok, guard_ok = (c.check(event_data) for c in trans.conditions)
            if not role_ok:
                continue
            permitted.append(tspec)
            if guard_ok:
                return self._selection(tspec, permitted, refused, ctx)
            refused.append(tspec)
        return self._selection(None, permitted, refused, ctx)

    def quorum(self, state: str, trigger: str, ctx: FireContext, otherwise: int) -> int:
        """How many people ``trigger`` needs from ``state`` as the case stands, for the actor of
        ``ctx``: the quorum of the transition :meth:`select` picks (a 10,000 yuan loan needs one
        leader, a 120,000 one two); ``otherwise`` when none is picked now (a guard fails, or
        reads what the action's own form fills in)."""
        chosen = self.select(state, trigger, ctx).transition
        return chosen.quorum if chosen is not None else otherwise

    def _selection(self, chosen: TransitionSpec | None, permitted: list[TransitionSpec],
                   refused: list[TransitionSpec], ctx: FireContext | None = None) -> Selection:
        errors = ctx.guard_errors if ctx is not None else {}
        return Selection(chosen, tuple(permitted),
                         tuple(_said(errors[t.index]) if t.index in errors else refusal(t, self.spec) for t in refused),
                         tuple(t.when.source for t in refused if t.when is not None))

    def fire(self, state: str, trigger: str, ctx: FireContext) -> str:
        """Run the machine from ``state``; returns the state it lands in."""
        token = _Token(state)
        if not self.machine.events[trigger].trigger(token, ctx=ctx):
            raise RuntimeError(f"{self.spec.key}: {trigger} from {state} did not fire")
        return token.state

    def triggers(self, state: str) -> list[str]:
        """Triggers with at least one transition from ``state``, in file order."""
        return list(self.spec.triggers_from(state))

    def mermaid(self, current: str | None = None, locale: str = "zh") -> str:
        """The machine as a Mermaid state diagram (``stateDiagram-v2``)."""
        lines = ["stateDiagram-v2"]
        for s in self.spec.states:
            lines.append(f'    state "{_mermaid_text(s.label.get(locale))}" as {s.name}')
        lines.append(f"    [*] --> {self.spec.initial_state.name}")
        for name, event in self.machine.events.items():
            for source, transitions in event.transitions.items():
                for trans in transitions:
                    label = self._specs[id(trans)].label.get(locale)
                    lines.append(f"    {source} --> {trans.dest}: {_mermaid_text(label)}")
        for s in self.spec.states:
            if s.final:
                lines.append(f"    {s.name} --> [*]")
        if current:
            lines.append("    classDef current fill:#c8102e,color:#fff,font-weight:bold")
            lines.append(f"    class {current} current")
        return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "'").replace(":", "：").replace("\n", " ")


_cache: dict[tuple[str, str], CompiledProcess] = {}
_cache_lock = threading.Lock()


def compile_process(spec: ProcessSpec) -> CompiledProcess:
    """The shared compiled machine for this (process, content): built once, then reused."""
    key = (spec.key, spec.content_hash or str(id(spec)))
    compiled = _cache.get(key)
    if compiled is None:
        with _cache_lock:
            compiled = _cache.get(key)
            if compiled is None:
                compiled = _cache[key] = CompiledProcess(spec)
    return compiled
