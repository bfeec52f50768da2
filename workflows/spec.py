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
#: ``tasks: {for_each: …, complete: …}``: every instance, the first one, or a number of them
COMPLETE_RULES = ("all", "any")
#: ``order:`` on a parallel state's tasks: any order, one open at a time (interleaved routing)
ORDERS = ("any_one_at_a_time",)


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
    #: found by its exact value through the blind index (protection.md): sensitive text fields only
    searchable: bool = False
    multiple: bool = False
    # for choice / multichoice: (key, label) pairs in declared order
    choices: tuple[tuple[str, Label], ...] = ()
    #: for a user field: the role of the people it names (``role:``; the picker lists only them)
    role: str | None = None

    @cached_property
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
    a ``payment`` takes money out of the fund, a ``refund`` puts it back; ``voucher`` (optional)
    the text field holding the voucher number the entry is filed under.
    """

    fund: str
    amount: str
    kind: str = "payment"
    voucher: str | None = None


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
    #: ``consent: {agency: AGENCY}``: opens only once the survivor's consent for that agency
    #: (scope ``services``) is recorded, or an overseer overrides (protection.md)
    consent: str | None = None
    #: ``acceptance: true``: whoever takes it first accepts or declines the referral
    acceptance: bool = False


@dataclass(frozen=True)
class TimerSpec:
    trigger: str
    after: timedelta | None = None  # relative to entering the state
    at_field: str | None = None     # a date/datetime field of the case


@dataclass(frozen=True)
class ForEachSpec:
    """``tasks: {for_each: FIELD, role_of: {…}, task: {…}, complete: …}``: one task per value.

    The state's ``tasks`` hold one task per choice of the multichoice ``field`` (its name is the
    choice's key, its role the one ``role_of`` maps it to); entering the state opens those whose
    value the case holds. ``complete``: ``all``, ``any`` (the first done cancels the rest) or a
    number N (the N-th done cancels the rest; fewer chosen than N: all of them).
    """

    field: str
    complete: str | int = "all"
    #: the field's default, for a case that has no value at all (one migrated from a version
    #: without the field): the instances it opens then
    default: tuple[str, ...] = ()

    def needed(self, opened: int) -> int:
        """How many of ``opened`` instances must be done before the state's transitions open."""
        if self.complete == "all":
            return opened
        if self.complete == "any":
            return min(1, opened)
        return min(int(self.complete), opened)


@dataclass(frozen=True)
class CallSpec:
    """``call: {process, data, result, on_end}``: entering the state starts a child case.

    ``data``: (child field, parent field) pairs copied in at the start; ``result``: (parent field,
    child field) pairs copied back when the child ends; ``on_end``: (child end state, parent
    trigger) pairs: the trigger fired on the parent, as ``system``, when the child ends there.
    """

    process: str
    data: tuple[tuple[str, str], ...] = ()
    result: tuple[tuple[str, str], ...] = ()
    on_end: tuple[tuple[str, str], ...] = ()

    def trigger_for(self, end_state: str) -> str | None:
        return dict(self.on_end).get(end_state)


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
    for_each: ForEachSpec | None = None   # the tasks are instances, one per value of a field
    call: CallSpec | None = None          # entering starts a child case; the state waits for it
    order: str | None = None              # ``any_one_at_a_time``: interleaved parallel tasks
    end_when_idle: bool = False           # the case ends here once no work is left

    def task(self, name: str) -> TaskSpec | None:
        return next((t for t in self.tasks if t.name == name), None)

    @property
    def interleaved(self) -> bool:
        """Any order, but never two at once: one task may be in hand at a time."""
        return self.order == "any_one_at_a_time"

    def tasks_to_open(self, data: Mapping[str, Any]) -> tuple[TaskSpec, ...]:
        """The tasks entering the state opens: all of them, or one per value the case holds."""
        if self.for_each is None:
            return self.tasks
        chosen = data.get(self.for_each.field, self.for_each.default)
        chosen = set(chosen) if isinstance(chosen, (list, tuple)) else ({chosen} if chosen else set())
        return tuple(t for t in self.tasks if t.name in chosen)

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
    #: fired by the engine (as ``system``) once the source state's tasks are done and the guard holds
    auto: bool = False

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


#: Placeholders a document's body may use besides the process's fields (``{case_id}`` ...).
DOCUMENT_PLACEHOLDERS = ("case_id", "business_key", "process", "unit", "today")


@dataclass(frozen=True)
class DocumentSpec:
    """A printable document (``documents:`` in the definition): a title and a body in both
    languages; ``{field}`` in the body is the case's value as the reader may see it."""

    name: str
    title: Label
    body: Label


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
    #: receiving agencies a case may be referred to (``agencies:``), for consent: (key, label)
    agencies: tuple[tuple[str, Label], ...] = ()
    documents: Mapping[str, DocumentSpec] = field(default_factory=lambda: MappingProxyType({}))
    #: a case ends in any state where no work is left and nobody can move it on (implicit termination)
    end_when_idle: bool = False
    #: ``retention: {anonymise_after: DURATION}``: how long after closure a case is anonymised (None: never)
    anonymise_after: str | None = None   # as written (P5Y, 1825d): see workflows.retention.cutoff
    source_text: str = ""
    path: str = ""
    content_hash: str = ""

    def agency_label(self, key: str) -> Label:
        return next((label for k, label in self.agencies if k == key), Label.of(key))

    def state(self, name: str) -> StateSpec:
        for s in self.states:
            if s.name == name:
                return s
        raise KeyError(name)

    @cached_property
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
        the source state's task(s), with the same ``at``, and the engine (``system``) for a
        trigger the state itself fires: one of its timers, or its ``call``'s ``on_end`` (a
        calling state has no task, so without this nobody could fire it).
        """
        engine = ((SYSTEM_ROLE, None),) if t.auto else ()
        if t.roles is not None:
            return tuple((r, None) for r in t.roles) + engine
        source = self.state(state)
        if not engine and (any(timer.trigger == t.trigger for timer in source.timers)
                           or (source.call is not None and t.trigger in dict(source.call.on_end).values())):
            engine = ((SYSTEM_ROLE, None),)
        return tuple((task.role, task.at) for task in source.tasks) + engine

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

    @cached_property
    def file_fields(self) -> frozenset[str]:
        """The names of the process's file fields."""
        return frozenset(name for name, f in self.fields.items() if f.type == "file")

    @cached_property
    def acts_by_itself(self) -> bool:
        """Whether the engine may move a case of this process without a person: an automatic
        transition, a call, or an idle end (otherwise an action never needs settling)."""
        return self.end_when_idle or any(t.auto for t in self.transitions) or any(
            s.call is not None or s.end_when_idle for s in self.states)

    def auto_triggers(self, state: str) -> tuple[str, ...]:
        """Triggers from ``state`` with an automatic transition, in file order."""
        seen: dict[str, None] = {}
        for t in self.transitions_from(state):
            if t.auto:
                seen.setdefault(t.trigger)
        return tuple(seen)

    def dead_end(self, state: StateSpec) -> bool:
        """No work and no way out: not final, no task, no timer, no call, and no transition that a
        person or the engine could fire from it (implicit termination, ``hexie check`` warns)."""
        if state.final or state.tasks or state.timers or state.call:
            return False
        for t in self.transitions_from(state.name):
            if t.auto or (t.roles is not None and not t.system_only):
                return False
        return True

    def ends_when_idle(self, state: StateSpec) -> bool:
        """The case ends in ``state`` once its work is done and no automatic transition leads on."""
        return state.end_when_idle or (self.end_when_idle and self.dead_end(state))

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
