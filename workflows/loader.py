"""Load process definitions from YAML, check them, and build :mod:`hexie.workflows.spec` objects.

A file goes through four passes. None of them raises on bad input: every problem
becomes a :class:`~hexie.workflows.spec.Diagnostic` with the file, a 1-based line and
column, and the path inside the file (``states[1].task.role``; indices are 0-based).

1. *Compose*: PyYAML's ``compose`` (SafeLoader) keeps every node's position. The
   nodes become plain data, and a map from path to node remembers where each key and
   value came from. Duplicate keys are reported here, because PyYAML would silently
   keep the last one.
2. *Shape*: marshmallow schemas check unknown and missing keys, types, enumerations,
   durations and the options of each field (``validates_schema`` for rules that span
   several keys of one mapping).
3. *Meaning*: cross references (states, fields, roles, levels, timers), guard
   expressions, and the state graph (reachability, ways to finish).
4. *Build*: only when no error was found, the immutable spec objects.

Messages are bilingual, Chinese first: ``"未知的角色 … / unknown role …"``.

This module is the public face: the load functions and the registry. The passes live in
:mod:`hexie.workflows.language` (``yaml_tree``, ``schemas`` and ``fields``, ``checks``,
``build``; ``messages``, ``durations``, ``constants``); the names other modules use are
re-exported here, so ``from hexie.workflows.loader import ...`` keeps working.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any


from hexie.workflows.spec import SYSTEM_ROLE, Diagnostic, Label, ProcessSpec, RoleSpec, RolesSpec
from hexie.workflows.language.build import _build_process
from hexie.workflows.language.checks import _ProcessChecker, _closure, _is_name, _list, _mapping
from hexie.workflows.language.constants import DEFINITION_SUFFIXES, PathKey, ROLES_FILE, ROLE_FLAGS
from hexie.workflows.language.messages import _dotted, _hinted, _msg, _unknown
from hexie.workflows.language.schemas import _ProcessSchema, _RolesFileSchema, _report_schema_errors, _schema
from hexie.workflows.language.yaml_tree import _Report, _Tree, _read_yaml
# Re-exported: public names of the language package that callers import from here.
from hexie.workflows.language.constants import (  # noqa: F401
    CHOICE_TYPES, DATE_TYPES, MULTIPLE_TYPES, NUMBER_TYPES, PROCESS_KEY, RESERVED_NAMES, TEXT_TYPES,
)
from hexie.workflows.language.durations import parse_duration  # noqa: F401

__all__ = [
    "DefinitionError", "Registry", "default_definitions_dir", "load_definitions",
    "load_definitions_strict", "load_process_file", "load_process_text", "load_roles",
    "parse_duration",
]


# --------------------------------------------------------------------------- public API

def _choices_as_text(tree: _Tree) -> None:
    """Unquoted choice keys such as ``yes`` or ``1`` are names, not booleans or numbers.

    The same goes for the default of a choice field, which names one of them.
    """
    for name, spec in _mapping(tree.data.get("fields")).items():
        if not isinstance(spec, dict):
            continue
        base = ("fields", name)
        if isinstance(spec.get("choices"), list):
            spec["choices"] = _as_text(spec["choices"], base + ("choices",), tree)
        if spec.get("type") == "choice" and "default" in spec:
            spec["default"] = tree.plain.get(base + ("default",), spec["default"]) \
                if not isinstance(spec["default"], (str, type(None))) else spec["default"]
        elif spec.get("type") == "multichoice" and isinstance(spec.get("default"), list):
            spec["default"] = _as_text(spec["default"], base + ("default",), tree)


def _guards_as_text(tree: _Tree) -> None:
    """An unquoted guard such as ``when: true`` is an expression, not a YAML boolean."""
    transitions = tree.data.get("transitions")
    for i, transition in enumerate(transitions if isinstance(transitions, list) else ()):
        if isinstance(transition, dict) and not isinstance(transition.get("when"), (str, type(None))):
            transition["when"] = tree.plain.get(("transitions", i, "when"), transition["when"])


def _as_text(items: list, path: PathKey, tree: _Tree) -> list:
    """List items with each unquoted non-text scalar replaced by its source text."""
    return [tree.plain.get(path + (i,), item) if not isinstance(item, (str, type(None))) else item
            for i, item in enumerate(items)]


def _load_process(text: str, filename: str, roles: RolesSpec | None, cost_check: bool,
                  report: _Report) -> ProcessSpec | None:
    tree = _read_yaml(text, report)
    if tree is None:
        return None
    _choices_as_text(tree)
    _guards_as_text(tree)
    schema = _schema(_ProcessSchema)
    _report_schema_errors(schema.validate(tree.data), schema, (), report)
    compiled = _ProcessChecker(tree.data, roles, report, cost_check=cost_check).run()
    if report.has_errors:
        return None
    return _build_process(tree.data, roles, compiled, text, filename)


def _guarded(report: _Report, load: Any, *args: Any) -> Any:
    """Run a loading pass; a crash becomes a diagnostic, since input must never crash a check."""
    try:
        return load(*args, report)
    except Exception as exc:  # noqa: BLE001 — the last line of defence
        report.at(1, 1, "error", _msg("内部错误", "internal error") + f": {type(exc).__name__}: {exc}")
        return None


def load_process_text(text: str, filename: str, roles: RolesSpec | None, *,
                      cost_check: bool = True) -> tuple[ProcessSpec | None, list[Diagnostic]]:
    """Check one process definition; the spec is None when any error was found.

    ``filename`` names the file in diagnostics. With ``roles`` None, role and level names
    are not checked. ``cost_check=False`` skips the guards' cost model only: for versions
    already recorded (they run; the evaluation budget holds what their guards build).
    """
    report = _Report(str(filename))
    spec = _guarded(report, _load_process, text, str(filename), roles, cost_check)
    return (None if report.has_errors else spec), report.sorted()


def _read_text(path: str | Path, report: _Report) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        report.at(1, 1, "error", _msg(f"文件不是 UTF-8 编码：{exc.reason}", f"the file is not UTF-8: {exc.reason}"))
    except OSError as exc:
        report.at(1, 1, "error", _msg(f"无法读取文件：{exc.strerror}", f"cannot read the file: {exc.strerror}"))
    return None


def load_process_file(path: str | Path, roles: RolesSpec | None) -> tuple[ProcessSpec | None, list[Diagnostic]]:
    """Read and check one process definition file."""
    report = _Report(str(path))
    text = _read_text(path, report)
    if text is None:
        return None, report.sorted()
    return load_process_text(text, str(path), roles)


def _load_roles(text: str, filename: str, report: _Report) -> RolesSpec | None:
    tree = _read_yaml(text, report)
    if tree is None:
        return None
    schema = _schema(_RolesFileSchema)
    _report_schema_errors(schema.validate(tree.data), schema, (), report)
    levels, roles = _list(tree.data.get("levels")), _mapping(tree.data.get("roles"))
    for j, level in enumerate(levels):
        if isinstance(level, str) and levels.index(level) != j:
            report.error(("levels", j), _msg(f"重复的层级 '{level}'", f"duplicate level '{level}'"))
    for key in roles:
        if key == SYSTEM_ROLE:
            report.error(("roles", key), _msg("'system' 是保留角色，不能声明", "'system' is reserved and cannot be declared"),
                         at_key=True)
        elif not _is_name(key):
            report.error(("roles", key), _msg(f"无效的角色名 '{key}'：应为标识符", f"invalid role name '{key}': use an identifier"),
                         at_key=True)
    if report.has_errors:
        return None
    return RolesSpec(levels=tuple(levels), roles=MappingProxyType(
        {key: RoleSpec(key, Label.of(_mapping(spec).get("label"), key),
                       **{flag: _mapping(spec).get(flag) is True for flag in ROLE_FLAGS})
         for key, spec in roles.items()}),
        capabilities=tuple(w for w in _list(tree.data.get("capabilities")) if isinstance(w, str)))


def load_roles(path: str | Path) -> tuple[RolesSpec | None, list[Diagnostic]]:
    """Read and check ``roles.yaml``: ``levels`` (top first) and ``roles``."""
    report = _Report(str(path))
    text = _read_text(path, report)
    roles = None if text is None else _guarded(report, _load_roles, text, str(path))
    return (None if report.has_errors else roles), report.sorted()


@dataclass
class Registry:
    """Everything loaded from a definitions folder."""

    roles: RolesSpec | None
    processes: dict[str, ProcessSpec]
    diagnostics: list[Diagnostic]
    files: list[str] = field(default_factory=list)  # every file that was checked

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


class DefinitionError(Exception):
    """Definitions that do not load; ``str()`` lists the diagnostics one per line."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def definition_files(directory: str | Path) -> list[str]:
    """The process definition files of a folder (every *.yaml / *.yml but roles.yaml), sorted."""
    names = sorted(n for n in os.listdir(directory)
                   if n.endswith(DEFINITION_SUFFIXES) and n != ROLES_FILE and not n.startswith(".")
                   and os.path.isfile(os.path.join(directory, n)))
    return [os.path.join(str(directory), n) for n in names]


def load_definitions(directory: str | Path) -> Registry:
    """Load ``roles.yaml`` and every process definition of a folder, checking them all.

    File names in diagnostics are the folder as given joined with the file name.
    Two files declaring the same process key are an error.
    """
    directory = str(directory)
    if not os.path.isdir(directory):
        message = _msg("定义目录不存在", "no such definitions folder")
        return Registry(None, {}, [Diagnostic(directory, 1, 1, "error", message)], [])
    roles_path = os.path.join(directory, ROLES_FILE)
    roles, diagnostics = load_roles(roles_path)
    files = [roles_path] + definition_files(directory)
    processes: dict[str, ProcessSpec] = {}
    for path in files[1:]:
        spec, found = load_process_file(path, roles)
        diagnostics += found
        if spec is None:
            continue
        if spec.key in processes:
            line, column = _key_position(spec.source_text)
            diagnostics.append(Diagnostic(path, line, column, "error", _msg(
                f"流程键 '{spec.key}' 重复（已在 {processes[spec.key].path} 定义）",
                f"duplicate process key '{spec.key}' (already defined in {processes[spec.key].path})"), "process"))
            continue
        processes[spec.key] = spec
    diagnostics += _check_calls(processes)
    return Registry(roles, processes, diagnostics, files)


def _check_calls(processes: dict[str, ProcessSpec]) -> list[Diagnostic]:
    """``call:`` across files: the called process exists, the fields copied in and out exist on
    both sides with the same type, ``on_end`` names states where the child ends, and no process
    calls itself round a loop. A process with such an error is dropped from ``processes``."""
    found: list[Diagnostic] = []
    trees: dict[str, _Tree | None] = {}

    def report(spec: ProcessSpec, path: PathKey, message: str, *, at_key: bool = False) -> None:
        if spec.key not in trees:
            trees[spec.key] = _read_yaml(spec.source_text, _Report(spec.path))
        tree = trees[spec.key]
        line, column = tree.locate(path, at_key=at_key) if tree is not None else (1, 1)
        found.append(Diagnostic(spec.path, line, column, "error", message, _dotted(path)))

    bad: set[str] = set()
    calls: dict[str, set[str]] = {}
    for spec in processes.values():
        for i, state in enumerate(spec.states):
            call = state.call
            if call is None:
                continue
            base = ("states", i, "call")
            calls.setdefault(spec.key, set()).add(call.process)
            child = processes.get(call.process)
            if child is None:
                report(spec, base + ("process",), _unknown("流程", "process", call.process,
                                                           [k for k in processes if k != spec.key]))
                bad.add(spec.key)
                continue
            pairs = [(base + ("data", c), c, p) for c, p in call.data] + \
                    [(base + ("result", p), c, p) for p, c in call.result]
            for path, child_field, parent_field in pairs:
                if child_field not in child.fields:
                    report(spec, path, _unknown(f"流程 {child.key} 的字段", f"field of {child.key}", child_field,
                                                child.fields), at_key=path[-2] == "data")
                    bad.add(spec.key)
                elif parent_field in spec.fields and \
                        child.fields[child_field].type != spec.fields[parent_field].type:
                    report(spec, path, _msg(
                        f"字段类型不一致：'{parent_field}' 是 {spec.fields[parent_field].type}，"
                        f"{child.key} 的 '{child_field}' 是 {child.fields[child_field].type}",
                        f"the fields differ in type: '{parent_field}' is {spec.fields[parent_field].type}, "
                        f"{child.key}'s '{child_field}' is {child.fields[child_field].type}"))
                    bad.add(spec.key)
            ends = [s.name for s in child.states if s.final or child.ends_when_idle(s)]
            for end, _ in call.on_end:
                if end not in ends:
                    report(spec, base + ("on_end", end), _hinted(
                        f"'{end}' 不是流程 {child.key} 结束的状态", f"'{end}' is not a state where {child.key} ends",
                        end, ends, listing=True), at_key=True)
                    bad.add(spec.key)
    for key in calls:   # a loop of calls would start cases without end
        if key in _closure(set(calls[key]), calls):
            spec = processes[key]
            i = next(i for i, st in enumerate(spec.states) if st.call is not None)
            report(spec, ("states", i, "call", "process"), _msg(
                f"流程 {key} 经由调用链又调用了自己", f"{key} calls itself through a chain of calls"))
            bad.add(key)
    for key in bad:
        processes.pop(key, None)
    return found


def _key_position(text: str) -> tuple[int, int]:
    """Where ``process:`` holds its value in a (valid) definition."""
    tree = _read_yaml(text, _Report(""))
    return tree.locate(("process",)) if tree is not None else (1, 1)


def load_definitions_strict(directory: str | Path) -> Registry:
    """:func:`load_definitions`, raising :class:`DefinitionError` when anything is in error."""
    registry = load_definitions(directory)
    if registry.errors:
        raise DefinitionError(registry.errors)
    return registry


def default_definitions_dir() -> Path:
    """``$HEXIE_DEFINITIONS``, else the project's ``definitions/`` folder."""
    configured = os.environ.get("HEXIE_DEFINITIONS")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "definitions"
