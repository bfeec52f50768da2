"""The typed, immutable in-memory form of a process definition.

The loader (:mod:`hexie.workflows.loader`) turns YAML into these objects after checking
it; the engine compiles and runs them. Nothing here touches the database or Flask.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Iterable, Mapping

FIELD_TYPES = (
    "text", "textarea", "integer", "decimal", "money", "date", "datetime",
    "boolean", "choice", "multichoice", "file", "org_unit", "user",
)
PRIORITIES = ("low", "normal", "high")
#: ``assign: {policy: …}`` (definitions.md, "Who gets a task")
ASSIGN_POLICIES = ("round_robin", "shortest_queue", "random")
COMMENT_RULES = ("required", "optional", "none")
LEDGER_KINDS = ("payment", "refund")
#: The key under which a fired audit event records its ledger posting (never a field name).
LEDGER_KEY = "$ledger"
SYSTEM_ROLE = "system"


@dataclass(frozen=True)
class Label:
    """A text in Chinese and English; either may be missing in the source."""

    zh: str
    en: str

    @classmethod
    def of(cls, value: Any, fallback: str = "") -> "Label":
        """Build from a plain string, a ``{zh, en}`` mapping, or nothing."""
        if value is None:
            return cls(fallback, fallback)
        if isinstance(value, Label):
            return value
        if isinstance(value, Mapping):
            zh = value.get("zh") or value.get("en") or fallback
            en = value.get("en") or value.get("zh") or fallback
            return cls(str(zh), str(en))
        return cls(str(value), str(value))

    def get(self, locale: str = "zh") -> str:
        return self.en if locale.startswith("en") else self.zh

    def __str__(self) -> str:  # Chinese first
        return self.zh


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    label: Label
    help: Label | None = None
    required: bool = False
    default: Any = None
    min: Any = None
    max: Any = None
    max_length: int | None = None
    pattern: str | None = None
    sensitive: bool = False
    multiple: bool = False
    # for choice / multichoice: (key, label) pairs in declared order
    choices: tuple[tuple[str, Label], ...] = ()
    #: for a user field: the role of the people it names (``role:``; the picker lists only them)
    role: str | None = None

    @property
    def choice_keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.choices)


@dataclass(frozen=True)
class FormField:
    """A field as listed in a form; ``required`` already merges the field's own flag."""

    name: str
    required: bool


def merge_forms(forms: Iterable[Iterable[FormField]]) -> tuple[FormField, ...]:
    """Several forms as one: each field once, in first-seen order, required if any form requires it."""
    merged: dict[str, FormField] = {}
    for form in forms:
        for entry in form:
            old = merged.get(entry.name)
            merged[entry.name] = FormField(entry.name, entry.required or bool(old and old.required))
    return tuple(merged.values())


@dataclass(frozen=True)
class Escalation:
    after: timedelta
    to: str


@dataclass(frozen=True)
class LedgerSpec:
    """A transition that moves money: it posts one entry to an earmarked fund's ledger.

    ``fund`` names the case's choice field holding the fund, ``amount`` its money field;
    a ``payment`` takes money out of the fund, a ``refund`` puts it back.
    """

    fund: str
    amount: str
    kind: str = "payment"


@dataclass(frozen=True)
class TaskSpec:
    name: str                      # the state's name for a single ``task``
    role: str
    label: Label
    at: str | None = None          # only holders at this org level
    form: tuple[FormField, ...] = ()
    due: timedelta | None = None
    escalate: Escalation | None = None
    separate_from: tuple[str, ...] = ()
    same_as: str | None = None     # retain familiar: allocate to who completed that state's task
    #: ``assign: {user: FIELD}``: allocated to the person the case's ``user`` field names
    assign_user: str | None = None
    #: ``assign: {owner: true}``: allocated to the case's owner
    assign_owner: bool = False
    #: ``assign: {policy: …}``: allocated at once to one of those who may take it
    policy: str | None = None
    #: ``requires: [CAPABILITY…]``: offered only to holders with every one of them
    requires: tuple[str, ...] = ()
    priority: str = "normal"
    optional: bool = False
    #: a machine step (``external: TOPIC``): done by an external worker holding ``role``
    #: (the definition's ``worker_role``), who is given ``variables`` and ``retries`` tries
    external: str | None = None
    variables: tuple[str, ...] = ()
    retries: int = 3


@dataclass(frozen=True)
class TimerSpec:
    trigger: str
    after: timedelta | None = None  # relative to entering the state
    at_field: str | None = None     # a date/datetime field of the case


@dataclass(frozen=True)
class StateSpec:
    name: str
    label: Label
    initial: bool = False
    final: bool = False
    tasks: tuple[TaskSpec, ...] = ()
    parallel: bool = False          # declared with ``tasks:`` (several work items)
    timers: tuple[TimerSpec, ...] = ()
    host_editable: bool = False     # a host's mapped fields may change here (host.md)

    def task(self, name: str) -> TaskSpec | None:
        return next((t for t in self.tasks if t.name == name), None)

    @cached_property
    def form(self) -> tuple[FormField, ...]:
        """The fields of the state's task(s), once each, required if any task requires them."""
        return merge_forms(task.form for task in self.tasks)


@dataclass(frozen=True)
class TransitionSpec:
    index: int                      # position in the file: guards are tried in this order
    trigger: str
    sources: tuple[str, ...]        # '*' already expanded to every non-final state
    dest: str
    label: Label
    roles: tuple[str, ...] | None = None   # None: whoever may take the source state's tasks
    when: Any = None                # a compiled workflows.expressions.Expression, or None
    comment: str = "optional"
    form: tuple[FormField, ...] = ()
    interrupt: bool = False
    quorum: int = 1
    ledger: LedgerSpec | None = None
    message: Label | None = None    # what a person reads when the guard is false (refusals.py)

    @property
    def system_only(self) -> bool:
        return self.roles == (SYSTEM_ROLE,)


@dataclass(frozen=True)
class RateSpec:
    """A share that reports show by unit: cases in ``of`` among cases in ``over`` (all when empty)."""

    name: str
    label: Label
    of: tuple[str, ...]
    over: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProcessSpec:
    key: str
    title: Label
    states: tuple[StateSpec, ...]
    transitions: tuple[TransitionSpec, ...]
    fields: Mapping[str, FieldSpec] = field(default_factory=lambda: MappingProxyType({}))
    description: Label | None = None
    org_level: str = "county"
    confidential: bool = False
    starters: tuple[str, ...] | None = None
    rates: tuple[RateSpec, ...] = ()   # report columns such as elder support's signing rate
    source_text: str = ""
    path: str = ""
    content_hash: str = ""

    def state(self, name: str) -> StateSpec:
        for s in self.states:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def initial_state(self) -> StateSpec:
        return next((s for s in self.states if s.initial), self.states[0])

    def transitions_from(self, state: str, trigger: str | None = None) -> tuple[TransitionSpec, ...]:
        """Transitions leaving ``state`` (optionally for one trigger), in file order."""
        return tuple(t for t in self.transitions
                     if state in t.sources and (trigger is None or t.trigger == trigger))

    def triggers_from(self, state: str) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for t in self.transitions_from(state):
            seen.setdefault(t.trigger)
        return tuple(seen)

    def transition_roles(self, t: TransitionSpec, state: str) -> tuple[tuple[str, str | None], ...]:
        """(role, at-level) pairs allowed to fire ``t`` from ``state``.

        Explicit ``roles`` are held at any level; the default is whoever may take
        the source state's task(s), with the same ``at``.
        """
        if t.roles is not None:
            return tuple((r, None) for r in t.roles)
        return tuple((task.role, task.at) for task in self.state(state).tasks)

    def action_form(self, state: str, trigger: str) -> tuple[FormField, ...]:
        """The fields submitted with ``trigger`` from ``state``.

        The transitions' own forms, plus the form of the state's single task. That task
        form is demanded (its required fields enforced) only when the action completes
        the work item: a transition with the default roles that is not a send-back or
        refusal (``comment: required``). Withdrawals, refusals and other roles' actions
        accept those fields without demanding them.
        """
        candidates = self.transitions_from(state, trigger)
        spec = self.state(state)
        completes = any(t.roles is None and t.comment != "required" for t in candidates)
        task_form = () if spec.parallel else tuple(
            FormField(entry.name, entry.required and completes) for entry in spec.form)
        return merge_forms([task_form, *(t.form for t in candidates)])

    @property
    def starter_roles(self) -> tuple[tuple[str, str | None], ...]:
        if self.starters is not None:
            return tuple((r, None) for r in self.starters)
        return tuple((t.role, t.at) for t in self.initial_state.tasks)

    @property
    def host_started(self) -> bool:
        """``starters: [system]``: only the host (through the engine) starts such cases."""
        return self.starters is not None and SYSTEM_ROLE in self.starters

    def roles_named(self) -> frozenset[str]:
        """Every role the process names for a task, an escalation or a transition."""
        names: set[str] = set()
        for s in self.states:
            for t in s.tasks:
                names.add(t.role)
                if t.escalate:
                    names.add(t.escalate.to)
        for t in self.transitions:
            names.update(t.roles or ())
        names.update(self.starters or ())
        names.discard(SYSTEM_ROLE)
        return frozenset(names)


@dataclass(frozen=True)
class RoleSpec:
    key: str
    label: Label
    manager: bool = False    # may reassign; sees every non-confidential case and task of her area
    overseer: bool = False   # also sees the confidential cases below her unit
    admin: bool = False      # definitions, people, units, webhooks, migrations


@dataclass(frozen=True)
class RolesSpec:
    levels: tuple[str, ...]
    roles: Mapping[str, RoleSpec]
    #: the words a task's ``requires:`` may name (roles.yaml's optional ``capabilities:``);
    #: empty: any word is accepted
    capabilities: tuple[str, ...] = ()

    @cached_property
    def managers(self) -> frozenset[str]:
        """The roles marked ``manager: true``."""
        return frozenset(k for k, r in self.roles.items() if r.manager)

    @cached_property
    def overseers(self) -> frozenset[str]:
        """The roles marked ``overseer: true``."""
        return frozenset(k for k, r in self.roles.items() if r.overseer)

    @cached_property
    def admins(self) -> frozenset[str]:
        """The roles marked ``admin: true``."""
        return frozenset(k for k, r in self.roles.items() if r.admin)

    def level_rank(self, level: str) -> int:
        """0 for the top level (county); larger is lower in the tree."""
        return self.levels.index(level)


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a definition file."""

    file: str
    line: int          # 1-based
    column: int        # 1-based
    severity: str      # "error" or "warning"
    message: str
    path: str = ""     # the place inside the file, e.g. states[1].task.role

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {where}{self.message}"
