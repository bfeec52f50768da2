"""The meaning pass: cross references, guard expressions, and the state graph."""
from __future__ import annotations

import keyword
import re
import string

from typing import Any, Mapping

from hexie.workflows.expressions import ExpressionError, compile_expression
from hexie.workflows.spec import DOCUMENT_PLACEHOLDERS, FIELD_TYPES, SYSTEM_ROLE, RolesSpec
from hexie.workflows.language.constants import DATE_TYPES, MULTIPLE_TYPES, NUMBER_TYPES, PathKey, RESERVED_NAMES, TEXT_TYPES
from hexie.workflows.language.fields import _choice_keys
from hexie.workflows.language.messages import _hinted, _msg, _nearest, _unknown
from hexie.workflows.language.yaml_tree import _Report


# --------------------------------------------------------------------------- the meaning pass

def _items(value: Any) -> list[tuple[int, dict]]:
    """(index, mapping) for the mappings of a list; anything else yields nothing."""
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)] if isinstance(value, list) else []


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value.isidentifier()


class _ProcessChecker:
    """Cross references and graph checks over data whose shape may still be wrong.

    Every check skips values of the wrong type: the schema pass reported those.
    """

    def __init__(self, data: dict, roles: RolesSpec | None, report: _Report, cost_check: bool = True) -> None:
        self.data, self.roles, self.report, self.cost_check = data, roles, report, cost_check
        self.fields = _mapping(data.get("fields"))
        self.states = _items(data.get("states"))
        self.transitions = _items(data.get("transitions"))
        self.state_index: dict[str, int] = {}
        for i, state in self.states:
            if isinstance(state.get("name"), str):
                self.state_index.setdefault(state["name"], i)
        # A duplicate name is reported once; checks that follow use the first state of that name.
        first = [s for i, s in self.states if isinstance(s.get("name"), str) and self.state_index[s["name"]] == i]
        self.final = {s["name"] for s in first if s.get("final") is True}
        self.with_tasks = {s["name"] for s in first if isinstance(s.get("task"), dict) or _list(s.get("tasks"))
                           or isinstance(s.get("tasks"), dict)}
        self.compiled: dict[int, Any] = {}
        # Reachability is judged only when every transition's ends are known states;
        # otherwise one typo would also be reported as unreachable states.
        self.graph_known = isinstance(data.get("transitions"), list) and len(self.transitions) == len(data["transitions"])

    def run(self) -> dict[int, Any]:
        """Run every check; returns the compiled guard of each transition index."""
        self.check_header()
        self.check_fields()
        self.check_states()
        self.check_transitions()
        self.check_timers()
        self.check_graph()
        self.check_rates()
        self.check_documents()
        self.check_runtime()
        return self.compiled

    def check_documents(self) -> None:
        """A document's ``{placeholder}`` names a field of this process or one of the case's facts
        (DOCUMENT_PLACEHOLDERS); the error points at the placeholder, with "did you mean"."""
        known = list(self.fields) + list(DOCUMENT_PLACEHOLDERS)
        for name, doc in _mapping(self.data.get("documents")).items():
            body = _mapping(doc).get("body")
            texts = [(("documents", name, "body"), body)] if isinstance(body, str) else \
                [(("documents", name, "body", lang), text) for lang, text in _mapping(body).items()]
            for path, text in texts:
                if not isinstance(text, str):
                    continue
                try:
                    found = _placeholders(text)
                except ValueError:
                    self.report.error(path, _msg("文书正文的花括号不成对（字面的花括号请写作 {{ 或 }}）",
                                                 "a brace in the document's body is not closed (write {{ or }} "
                                                 "for a brace itself)"))
                    continue
                for placeholder, offset in found:
                    if placeholder not in known:
                        self.report.error(path, _unknown("占位符", "placeholder", placeholder, known),
                                          offset=offset)

    def check_rates(self) -> None:
        """A rate counts states of this process."""
        for name, rate in _mapping(self.data.get("rates")).items():
            for key in ("of", "over"):
                for j, state in enumerate(_list(_mapping(rate).get(key))):
                    self.state_ref(("rates", name, key, j), state)

    # -- names

    def role(self, path: PathKey, name: Any, *, allow_system: bool = False) -> None:
        """A role must be declared in roles.yaml; ``system`` only fires transitions."""
        if not isinstance(name, str) or self.roles is None:
            return
        if name == SYSTEM_ROLE:
            if not allow_system:
                self.report.error(path, _msg("'system' 只能用于转换的 roles", "'system' may only be used in transition roles"))
            return
        if name not in self.roles.roles:
            known = list(self.roles.roles) + ([SYSTEM_ROLE] if allow_system else [])
            self.report.error(path, _hinted(f"未知的角色 '{name}'（roles.yaml 中没有）",
                                            f"unknown role '{name}' (not in roles.yaml)", name, known))

    def level(self, path: PathKey, name: Any) -> None:
        if isinstance(name, str) and self.roles is not None and name not in self.roles.levels:
            self.report.error(path, _unknown("组织层级", "org level", name, self.roles.levels, listing=True))

    def state_ref(self, path: PathKey, name: Any, *, needs_task: bool = False) -> bool:
        """A reference to a state: it must exist (and have a task, when asked)."""
        if not isinstance(name, str):
            return False
        if name not in self.state_index:
            self.report.error(path, _unknown("状态", "state", name, self.state_index))
            return False
        if needs_task and name not in self.with_tasks:
            self.report.error(path, _msg(f"状态 '{name}' 没有任务", f"state '{name}' has no task"))
            return False
        return True

    def form(self, path: PathKey, entries: Any) -> None:
        """Every form entry names a declared field, once."""
        seen: set[str] = set()
        for j, entry in enumerate(_list(entries)):
            name, where = (entry, path + (j,)) if isinstance(entry, str) else (
                _mapping(entry).get("field"), path + (j, "field"))
            if not isinstance(name, str):
                continue
            if name not in self.fields:
                self.report.error(where, _unknown("字段", "field", name, self.fields))
            elif name in seen:
                self.report.warning(where, _msg(f"字段 '{name}' 在表单中重复", f"field '{name}' is listed twice in this form"))
            seen.add(name)

    # -- sections

    def check_header(self) -> None:
        self.level(("org_level",), self.data.get("org_level"))
        for j, role in enumerate(_list(self.data.get("starters"))):
            self.role(("starters", j), role, allow_system=True)   # system: only the host starts it

    def check_fields(self) -> None:
        for name, spec in self.fields.items():
            if not _is_name(name) or keyword.iskeyword(name) or name in RESERVED_NAMES:
                self.report.error(("fields", name), _msg(
                    f"无效的字段名 '{name}'：应为标识符（字母、数字、下划线），且不能是保留字",
                    f"invalid field name '{name}': use an identifier (letters, digits, _) that is not a reserved word"),
                    at_key=True)
            if isinstance(spec, dict):
                self.check_field_options(name, spec)
                if "role" in spec:
                    if spec.get("type") != "user":
                        self.report.error(("fields", name, "role"), _msg(
                            "只有人员字段（type: user）可以有 role", "only a user field takes role"), at_key=True)
                    else:
                        self.role(("fields", name, "role"), spec.get("role"))

    def check_field_options(self, name: str, spec: dict) -> None:
        """Options that do nothing for the field's type are likely mistakes."""
        ftype = spec.get("type")
        if ftype not in FIELD_TYPES:
            return
        useless = []
        if ftype not in NUMBER_TYPES + DATE_TYPES:
            useless += [k for k in ("min", "max") if k in spec]
        if ftype not in TEXT_TYPES:
            useless += [k for k in ("max_length", "pattern") if k in spec]
        if ftype not in MULTIPLE_TYPES and "multiple" in spec:
            useless.append("multiple")
        for key in useless:
            self.report.warning(("fields", name, key), _msg(
                f"选项 '{key}' 对 {ftype} 字段无效", f"option '{key}' has no effect on a {ftype} field"), at_key=True)

    def check_states(self) -> None:
        first: dict[str, int] = {}
        initial_seen = False
        for i, state in self.states:
            path = ("states", i)
            name = state.get("name")
            if isinstance(name, str):
                if not _is_name(name):
                    self.report.error(path + ("name",), _msg(
                        f"无效的状态名 '{name}'：应为标识符", f"invalid state name '{name}': use an identifier"))
                if name in first:
                    self.report.error(path + ("name",), _msg(
                        f"重复的状态名 '{name}'（已在 states[{first[name]}] 定义）",
                        f"duplicate state name '{name}' (already states[{first[name]}])"))
                first.setdefault(name, i)
            if state.get("initial") is True:
                if initial_seen:
                    self.report.error(path + ("initial",), _msg(
                        "有多个初始状态（initial: true）", "several states are marked initial: true"))
                if state.get("final") is True:
                    self.report.error(path + ("initial",), _msg("初始状态不能是终止状态", "the initial state cannot be final"))
                initial_seen = True
            self.check_state_tasks(path, state)

    def check_state_tasks(self, path: PathKey, state: dict) -> None:
        if state.get("final") is True:
            for key in ("task", "tasks"):
                if key in state:
                    self.report.error(path + (key,), _msg("终止状态不能有任务", "a final state cannot have a task"), at_key=True)
        if isinstance(state.get("task"), dict):
            self.check_task(path + ("task",), state["task"])
        if isinstance(state.get("tasks"), dict):
            self.check_for_each(path + ("tasks",), state["tasks"])
        names: dict[str, int] = {}
        for j, task in _items(state.get("tasks")):
            self.check_task(path + ("tasks", j), task)
            name = task.get("name")
            if not isinstance(name, str):
                continue
            if not _is_name(name):
                self.report.error(path + ("tasks", j, "name"), _msg(
                    f"无效的任务名 '{name}'：应为标识符", f"invalid task name '{name}': use an identifier"))
            if name in names:
                self.report.error(path + ("tasks", j, "name"), _msg(
                    f"重复的并行任务名 '{name}'（已在 tasks[{names[name]}]）",
                    f"duplicate parallel task name '{name}' (already tasks[{names[name]}])"))
            names.setdefault(name, j)

    def check_task(self, path: PathKey, task: dict) -> None:
        self.role(path + ("role",), task.get("role"))
        self.role(path + ("worker_role",), task.get("worker_role"))
        topic = task.get("external")
        if isinstance(topic, str) and not re.match(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$", topic):
            self.report.error(path + ("external",), _msg(
                f"无效的外部任务主题 '{topic}'", f"invalid external task topic '{topic}': letters, digits, _ . -"))
        for j, name in enumerate(_list(task.get("variables"))):
            if isinstance(name, str) and name not in self.fields:
                self.report.error(path + ("variables", j), _unknown("字段", "field", name, self.fields))
        self.level(path + ("at",), task.get("at"))
        self.form(path + ("form",), task.get("form"))
        escalate = _mapping(task.get("escalate"))
        self.role(path + ("escalate", "to"), escalate.get("to"))
        for j, other in enumerate(_list(task.get("separate_from"))):
            self.state_ref(path + ("separate_from", j), other, needs_task=True)
        assign = _mapping(task.get("assign"))
        self.state_ref(path + ("assign", "same_as"), assign.get("same_as"), needs_task=True)
        person = assign.get("user")
        if isinstance(person, str):
            if person not in self.fields:
                self.report.error(path + ("assign", "user"), _unknown("字段", "field", person, self.fields))
            elif _mapping(self.fields[person]).get("type") != "user":
                self.report.error(path + ("assign", "user"), _msg(
                    f"字段 '{person}' 不是人员字段（type: user）", f"field '{person}' is not of type user"))
        known = self.roles.capabilities if self.roles is not None else ()
        for j, word in enumerate(_list(task.get("requires"))):
            if not isinstance(word, str):
                continue
            if not re.match(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$", word):
                self.report.error(path + ("requires", j), _msg(
                    f"无效的能力名 '{word}'", f"invalid capability '{word}': letters, digits, _ . -"))
            elif known and word not in known:
                self.report.error(path + ("requires", j), _unknown("能力", "capability", word, known))
        self.check_protection(path, task)

    def check_protection(self, path: PathKey, task: dict) -> None:
        """``consent`` names a declared agency (when ``agencies`` is declared); ``acceptance`` is for
        a person's task (a single task or one of a parallel state's), not an external one."""
        agencies = self.data.get("agencies")
        known = list(agencies) if isinstance(agencies, (list, dict)) else []
        agency = _mapping(task.get("consent")).get("agency")
        # Without a top-level ``agencies`` the agencies are those the tasks' consent names
        # (definitions.md); once declared, a consent naming another one is a typo.
        if isinstance(agency, str) and "agencies" in self.data and agency not in known:
            self.report.error(path + ("consent", "agency"), _unknown("机构", "agency", agency, known, listing=True))
        if task.get("acceptance") is True and "external" in task:
            self.report.error(path + ("acceptance",), _msg(
                "外部任务不能接受或拒绝转介", "an external task cannot accept or decline a referral"))

    # -- work decided at run time

    def check_for_each(self, path: PathKey, spec: dict) -> None:
        """``tasks: {for_each: FIELD, role_of, task, each, complete}``: FIELD is a multichoice field,
        every one of its choices has a role, and ``role_of`` / ``each`` name only its choices."""
        name = spec.get("for_each")
        choices: tuple[str, ...] | None = None
        if isinstance(name, str):
            if name not in self.fields:
                self.report.error(path + ("for_each",), _unknown("字段", "field", name, self.fields))
            elif _mapping(self.fields[name]).get("type") != "multichoice":
                ftype = _mapping(self.fields[name]).get("type")
                self.report.error(path + ("for_each",), _msg(
                    f"for_each 须为 multichoice 字段，'{name}' 是 {ftype}",
                    f"for_each takes a multichoice field; '{name}' is {ftype}"))
            else:
                choices = _choice_keys(_mapping(self.fields[name]).get("choices"))
        template = _mapping(spec.get("task"))
        self.check_task(path + ("task",), template)
        role_of = _mapping(spec.get("role_of"))
        for value, role in role_of.items():
            if choices is not None and value not in choices:
                self.report.error(path + ("role_of", value), _unknown(
                    f"字段 '{name}' 的选项", f"choice of '{name}'", value, choices, listing=True), at_key=True)
            self.role(path + ("role_of", value), role)
        each = _mapping(spec.get("each"))
        for value, override in each.items():
            if choices is not None and value not in choices:
                self.report.error(path + ("each", value), _unknown(
                    f"字段 '{name}' 的选项", f"choice of '{name}'", value, choices, listing=True), at_key=True)
            if isinstance(override, dict):
                self.check_task(path + ("each", value), override)
        typo = choices is not None and any(v not in choices for v in role_of)   # reported above
        if choices is not None and not typo and "role" not in template and "external" not in template:
            missing = [c for c in choices if c not in role_of and "role" not in _mapping(each.get(c))]
            if missing:
                self.report.error(path + ("role_of",) if "role_of" in spec else path + ("for_each",), _msg(
                    f"这些选项没有对应的角色：{', '.join(missing)}（在 role_of 中给出，或给 task 一个 role）",
                    f"no role for the choices {', '.join(missing)} (map them in role_of, or give the task a role)"),
                    at_key="role_of" in spec)
        complete = spec.get("complete")
        if isinstance(complete, int) and not isinstance(complete, bool) and choices is not None \
                and complete > len(choices):
            self.report.warning(path + ("complete",), _msg(
                f"complete 为 {complete}，但 '{name}' 只有 {len(choices)} 个选项：将等全部完成",
                f"complete is {complete} but '{name}' has only {len(choices)} choices: all will be waited for"))

    def check_runtime(self) -> None:
        """Calls, automatic transitions and states left with no work and no way out."""
        for i, state in self.states:
            path = ("states", i)
            name = state.get("name")
            call = state.get("call")
            if isinstance(call, dict):
                if state.get("final") is True:
                    self.report.error(path + ("call",), _msg("终止状态不能调用子流程", "a final state cannot call a process"),
                                      at_key=True)
                if call.get("process") == self.data.get("process") and isinstance(call.get("process"), str):
                    self.report.error(path + ("call", "process"), _msg(
                        "流程不能调用自己", "a process cannot call itself"))
                for child_field, field in _mapping(call.get("data")).items():
                    if isinstance(field, str) and field not in self.fields:
                        self.report.error(path + ("call", "data", child_field), _unknown("字段", "field", field, self.fields))
                for field in _mapping(call.get("result")):
                    if field not in self.fields:
                        self.report.error(path + ("call", "result", field), _unknown("字段", "field", field, self.fields),
                                          at_key=True)
                known = self.triggers_from(name) if isinstance(name, str) else []
                for end, trigger in _mapping(call.get("on_end")).items():
                    if isinstance(trigger, str) and isinstance(name, str) and trigger not in known:
                        self.report.error(path + ("call", "on_end", end), _hinted(
                            f"没有从状态 '{name}' 出发、触发器为 '{trigger}' 的转换",
                            f"no transition with trigger '{trigger}' leaves state '{name}'", trigger, known))
            if self.dead_end(state) and state.get("end_when_idle") is not True \
                    and self.data.get("end_when_idle") is not True:
                self.report.warning(path, _msg(
                    f"状态 '{name}' 没有任务、计时器或子流程，也没有人能把案件从这里推进：案件会停在这里。"
                    "请标为 final，或加上 end_when_idle: true（无事可做时结案）",
                    f"state '{name}' has no task, timer or call and nobody can move the case on from it: "
                    "cases would sit there forever; mark it final, or add end_when_idle: true (the case ends "
                    "once no work is left)"))
        for i, transition in self.transitions:
            if transition.get("auto") is not True:
                continue
            path = ("transitions", i, "auto")
            if isinstance(transition.get("quorum"), int) and transition["quorum"] > 1:
                self.report.error(path, _msg("自动转换不能有 quorum（没有人投票）",
                                             "an automatic transition takes no quorum (nobody votes)"), at_key=True)
            if transition.get("comment") == "required":
                self.report.error(path, _msg("自动转换不能要求意见（没有人填写）",
                                             "an automatic transition cannot require a comment (nobody writes one)"),
                                  at_key=True)
            if any(isinstance(e, dict) and e.get("required") is True for e in _list(transition.get("form"))):
                self.report.error(path, _msg("自动转换的表单不能有必填字段（没有人填写）",
                                             "an automatic transition's form cannot have required fields (nobody fills it)"),
                                  at_key=True)
            for source in self.sources(i, transition):
                state = self.states_by_name().get(source, {})
                if isinstance(state.get("call"), dict):
                    self.report.error(path, _msg(
                        f"状态 '{source}' 调用子流程：用 call.on_end 在子流程结束时推进，不用 auto",
                        f"state '{source}' calls a process: its child's end moves it on (call.on_end), not auto"),
                        at_key=True)
                elif isinstance(state.get("task"), dict):
                    self.report.warning(path, _msg(
                        f"状态 '{source}' 只有一个任务，它随操作完成：自动转换永远不会触发（用 tasks: 或去掉 task）",
                        f"state '{source}' has a single task, done by its own action: the automatic transition never "
                        "fires (use tasks:, or no task)"), at_key=True)

    def states_by_name(self) -> dict[str, dict]:
        return {s["name"]: s for i, s in self.states if isinstance(s.get("name"), str)
                and self.state_index.get(s["name"]) == i}

    def dead_end(self, state: dict) -> bool:
        """No work and no way out: see :meth:`hexie.workflows.spec.ProcessSpec.dead_end`."""
        name = state.get("name")
        if not isinstance(name, str) or self.state_index.get(name) is None or state.get("final") is True:
            return False
        if any(k in state for k in ("task", "tasks", "call")) or _list(state.get("timers")):
            return False
        exits = 0
        for i, transition in self.transitions:
            if name not in self.sources(i, transition):
                continue
            exits += 1
            roles = transition.get("roles")
            if transition.get("auto") is True or not isinstance(roles, list) or roles != [SYSTEM_ROLE]:
                return False
        # no exit at all is already "no final state can be reached from it"
        return exits > 0

    def source_refs(self, i: int, transition: dict) -> list[tuple[PathKey, str]]:
        """(path, name) of each source state as written (``'*'`` included)."""
        source = transition.get("source")
        if isinstance(source, str):
            return [(("transitions", i, "source"), source)]
        return [(("transitions", i, "source", j), s) for j, s in enumerate(_list(source)) if isinstance(s, str)]

    def sources(self, i: int, transition: dict) -> list[str]:
        """Known source state names, ``'*'`` expanded to every non-final state."""
        names: dict[str, None] = {}
        for _, name in self.source_refs(i, transition):
            if name == "*":
                names.update((s, None) for s in self.state_index if s not in self.final)
            elif name in self.state_index:
                names[name] = None
        return list(names)

    def check_transitions(self) -> None:
        for i, transition in self.transitions:
            path = ("transitions", i)
            trigger = transition.get("trigger")
            if isinstance(trigger, str) and not _is_name(trigger):
                self.report.error(path + ("trigger",), _msg(
                    f"无效的触发器名 '{trigger}'：应为标识符", f"invalid trigger '{trigger}': use an identifier"))
            self.check_ends(i, transition)
            for j, role in enumerate(_list(transition.get("roles"))):
                self.role(path + ("roles", j), role, allow_system=True)
            self.form(path + ("form",), transition.get("form"))
            self.ledger(path + ("ledger",), transition.get("ledger"))
            self.compile_guard(i, transition.get("when"))
        self.check_shadowed()

    def check_ends(self, i: int, transition: dict) -> None:
        """Source and destination states; a graph with a dangling edge is not judged."""
        source = transition.get("source")
        resolved = isinstance(source, str) or (
            isinstance(source, list) and bool(source) and all(isinstance(s, str) for s in source))
        for where, name in self.source_refs(i, transition):
            if name == "*":
                continue
            if not self.state_ref(where, name):
                resolved = False
            elif name in self.final:
                self.report.error(where, _msg(f"终止状态 '{name}' 不能有出去的转换",
                                              f"final state '{name}' cannot have an outgoing transition"))
        if not self.state_ref(("transitions", i, "dest"), transition.get("dest")):
            resolved = False
        if not resolved:
            self.graph_known = False

    def ledger(self, path: PathKey, ledger: Any) -> None:
        """A posting names the case's fund (a choice field) and amount (a money field), and may
        name the text field holding its voucher number."""
        for key, wanted in (("fund", "choice"), ("amount", "money"), ("voucher", "text")):
            name = _mapping(ledger).get(key)
            if not isinstance(name, str):
                continue
            if name not in self.fields:
                self.report.error(path + (key,), _unknown("字段", "field", name, self.fields))
            elif _mapping(self.fields[name]).get("type") != wanted:
                self.report.error(path + (key,), _msg(
                    f"记账的 {key} 必须是 {wanted} 类型的字段，'{name}' 不是",
                    f"the ledger's {key} must be a {wanted} field; '{name}' is not"))

    def compile_guard(self, i: int, source: Any) -> None:
        """Compile ``when``; errors point into the expression when the source allows."""
        if not isinstance(source, str):
            return
        path = ("transitions", i, "when")
        try:
            self.compiled[i] = compile_expression(source, tuple(self.fields), cost_check=self.cost_check)
        except ExpressionError as exc:
            message = getattr(exc, "message", None) or str(exc)
            offset = exc.offset if isinstance(getattr(exc, "offset", None), int) else 0
            self.report.error(path, _msg("条件表达式无效", "invalid expression") + f": {message}"
                              + self.expression_hint(source, offset, message), offset=offset)
        except Exception as exc:  # a fault in the expression module must not crash a check
            self.report.error(path, _msg("无法解析条件表达式", "cannot parse the expression") + f": {exc}")

    def expression_hint(self, source: str, offset: int, message: str) -> str:
        """A field-name suggestion for the identifier at ``offset``, unless one was given."""
        if "did you mean" in message:
            return ""
        match = re.match(r"[A-Za-z_]\w*", source[offset:]) if 0 <= offset < len(source) else None
        near = _nearest(match.group(0), self.fields) if match and match.group(0) not in self.fields else None
        return f" (did you mean '{near}'?)" if near else ""

    def check_shadowed(self) -> None:
        """Warn about transitions that an earlier unguarded one always pre-empts."""
        open_: dict[tuple[str, str], int] = {}  # (state, trigger) -> index of an unguarded transition
        for i, transition in self.transitions:
            trigger = transition.get("trigger")
            if not isinstance(trigger, str):
                continue
            for state in self.sources(i, transition):
                earlier = open_.get((state, trigger))
                if earlier is not None:
                    self.report.warning(("transitions", i), _msg(
                        f"从状态 '{state}' 触发 '{trigger}' 时永远不会走到此转换：transitions[{earlier}] 没有条件",
                        f"never taken from state '{state}' on '{trigger}': transitions[{earlier}] has no guard"))
                    break
            for state in self.sources(i, transition):
                if transition.get("when") is None:
                    open_.setdefault((state, trigger), i)

    def triggers_from(self, state: str) -> list[str]:
        return [t["trigger"] for i, t in self.transitions
                if isinstance(t.get("trigger"), str) and state in self.sources(i, t)]

    def check_timers(self) -> None:
        """A timer fires a trigger of its own state, at a duration or a date field."""
        for i, state in self.states:
            name = state.get("name")
            for j, timer in _items(state.get("timers")):
                path = ("states", i, "timers", j)
                trigger = timer.get("trigger")
                if isinstance(name, str) and isinstance(trigger, str):
                    known = self.triggers_from(name)
                    if trigger not in known:
                        self.report.error(path + ("trigger",), _hinted(
                            f"没有从状态 '{name}' 出发、触发器为 '{trigger}' 的转换",
                            f"no transition with trigger '{trigger}' leaves state '{name}'", trigger, known))
                self.timer_field(path + ("at",), timer.get("at"))

    def timer_field(self, path: PathKey, name: Any) -> None:
        if not isinstance(name, str):
            return
        if name not in self.fields:
            self.report.error(path, _unknown("字段", "field", name, self.fields))
            return
        ftype = _mapping(self.fields[name]).get("type")
        if isinstance(ftype, str) and ftype not in DATE_TYPES:
            self.report.error(path, _msg(f"计时器字段 '{name}' 是 {ftype} 类型，应为 date 或 datetime",
                                         f"timer field '{name}' is {ftype}, not date or datetime"))

    def check_graph(self) -> None:
        """Every state is reachable from the initial one; warn where no end can be reached."""
        order = [(i, s["name"]) for i, s in self.states
                 if isinstance(s.get("name"), str) and self.state_index.get(s["name"]) == i]
        if not order or not self.graph_known:
            return
        initial = next((s["name"] for _, s in self.states
                        if s.get("initial") is True and isinstance(s.get("name"), str)), None)
        if initial is None:
            first = self.states[0][1] if self.states and self.states[0][0] == 0 else {}
            initial = first.get("name") if isinstance(first.get("name"), str) else None
        if initial is None:
            return
        edges: dict[str, set[str]] = {name: set() for _, name in order}
        for i, transition in self.transitions:
            dest = transition.get("dest")
            if dest in edges:
                for source in self.sources(i, transition):
                    edges[source].add(dest)
        reachable = _closure({initial}, edges)
        reverse: dict[str, set[str]] = {name: set() for _, name in order}
        for source, dests in edges.items():
            for dest in dests:
                reverse[dest].add(source)
        finishing = _closure(self.final & set(edges), reverse)
        for i, name in order:
            if name not in reachable:
                self.report.error(("states", i), _msg(
                    f"状态 '{name}' 无法从初始状态 '{initial}' 到达",
                    f"state '{name}' cannot be reached from the initial state '{initial}'"))
            elif name not in self.final and name not in finishing:
                self.report.warning(("states", i), _msg(
                    f"从状态 '{name}' 无法到达任何终止状态", f"no final state can be reached from state '{name}'"))


def _closure(start: set[str], edges: Mapping[str, set[str]]) -> set[str]:
    """Every node reachable from ``start`` along ``edges``."""
    seen, todo = set(start), list(start)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


_BRACES = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def _placeholders(body: str) -> list[tuple[str, int]]:
    """The ``{name}`` placeholders of a document body with the offset of each name; ValueError
    on an unbalanced brace (``{{`` and ``}}`` are braces themselves)."""
    string.Formatter().parse(body) and list(string.Formatter().parse(body))   # raises on a lone brace
    return [(m.group(1), m.start(1)) for m in _BRACES.finditer(body) if m.group(1) is not None]
