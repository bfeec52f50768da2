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
"""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import keyword
import os
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validates_schema
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from hexie.workflows.expressions import ExpressionError, compile_expression
from hexie.workflows.spec import (
    COMMENT_RULES, FIELD_TYPES, LEDGER_KINDS, PRIORITIES, SYSTEM_ROLE, Diagnostic, Escalation, FieldSpec,
    FormField, Label, LedgerSpec, ProcessSpec, RateSpec, RoleSpec, RolesSpec, StateSpec, TaskSpec, TimerSpec,
    TransitionSpec,
)

__all__ = [
    "DefinitionError", "Registry", "default_definitions_dir", "load_definitions",
    "load_definitions_strict", "load_process_file", "load_process_text", "load_roles",
    "parse_duration",
]

PathKey = tuple[Any, ...]          # ('states', 1, 'task', 'role')
ROLES_FILE = "roles.yaml"
#: What a role in roles.yaml may be marked as (host.md): data, so that no code names a role.
ROLE_FLAGS = ("manager", "overseer", "admin")
DEFINITION_SUFFIXES = (".yaml", ".yml")
PROCESS_KEY = re.compile(r"[a-z][a-z0-9_]*")
NUMBER_TYPES = ("integer", "decimal", "money")
DATE_TYPES = ("date", "datetime")
CHOICE_TYPES = ("choice", "multichoice")
TEXT_TYPES = ("text", "textarea")
MULTIPLE_TYPES = ("file", "user", "org_unit")
# Names a field may not take: the expression language reads them as something else.
RESERVED_NAMES = frozenset({"true", "false", "null", "actor", "case"})


# --------------------------------------------------------------------------- messages

def _msg(zh: str, en: str) -> str:
    """A bilingual message: Chinese first, English second."""
    return f"{zh} / {en}"


def _nearest(word: Any, candidates: Iterable[Any]) -> str | None:
    """The known name closest to a typo, if any is close enough (case-insensitive)."""
    if not isinstance(word, str):
        return None
    by_lower: dict[str, str] = {}
    for c in candidates:
        if isinstance(c, str):
            by_lower.setdefault(c.lower(), c)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def _hinted(zh: str, en: str, word: Any, candidates: Iterable[Any], *, listing: bool = False) -> str:
    """A bilingual message with "did you mean …?" for a typo, optionally listing what is allowed."""
    candidates = [c for c in candidates if isinstance(c, str)]
    near = _nearest(word, candidates)
    if near is not None:
        zh, en = f"{zh}，是否应为 '{near}'？", f"{en}; did you mean '{near}'?"
    if listing and candidates:
        allowed = ", ".join(candidates)
        zh, en = f"{zh}（可选：{allowed}）", f"{en} (expected one of: {allowed})"
    return _msg(zh, en)


def _unknown(what_zh: str, what_en: str, word: Any, candidates: Iterable[Any],
             *, listing: bool = False) -> str:
    """The message for a name nobody declared, e.g. ``unknown role 'x'; did you mean 'y'?``."""
    return _hinted(f"未知的{what_zh} '{word}'", f"unknown {what_en} '{word}'", word, candidates, listing=listing)


_KINDS = (  # (python type, zh, en); bool before int, datetime before date
    (bool, "布尔值", "a boolean"), (int, "整数", "an integer"), (float, "小数", "a number"),
    (str, "文本", "text"), (dict, "映射", "a mapping"), (list, "列表", "a list"),
    (dt.datetime, "日期时间", "a datetime"), (dt.date, "日期", "a date"), (bytes, "二进制数据", "binary data"),
)


def _kinds(value: Any) -> dict[str, str]:
    """Format arguments naming what a value is, for "expected X, got Y" messages."""
    if value is None:
        return {"kz": "空值", "ke": "nothing"}
    for kind, zh, en in _KINDS:
        if isinstance(value, kind):
            return {"kz": zh, "ke": en}
    return {"kz": type(value).__name__, "ke": type(value).__name__}


def _expected(zh: str, en: str) -> str:
    """A marshmallow error template: "expected X, got {ke}"."""
    return _msg(f"应为{zh}，实际为{{kz}}", f"expected {en}, got {{ke}}")


class _Message(str):
    """An error text that also says where to point: at the key, or into the value."""

    at_key: bool = False
    offset: int | None = None

    @classmethod
    def make(cls, text: str, *, at_key: bool = False, offset: int | None = None) -> "_Message":
        message = cls(text)
        message.at_key, message.offset = at_key, offset
        return message


# Sentinels replaced by :func:`_report_messages`, which knows the key's name.
_REQUIRED = "\x00required"
_NULL = "\x00null"


def _dotted(path: PathKey) -> str:
    """('states', 1, 'task', 'role') -> 'states[1].task.role'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- durations

_SHORT_DURATION = re.compile(r"(\d+)\s*([mhdw])")
_ISO_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?")
_ISO_CALENDAR = re.compile(r"P(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T.*)?")
_SHORT_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> dt.timedelta:
    """Parse ``30m``, ``12h``, ``3d``, ``2w`` or ISO 8601 (``P180D``, ``PT12H``, ``P1DT2H``).

    Days are calendar days. Years and months are refused, having no fixed length.
    Raises :class:`ValueError` with a bilingual message for anything else.
    """
    if not isinstance(text, str):
        raise ValueError(_msg(f"时长应为文本（如 3d），实际为{_kinds(text)['kz']}",
                              f"a duration must be text such as 3d, got {_kinds(text)['ke']}"))
    source = text.strip()
    short = _SHORT_DURATION.fullmatch(source)
    if short:
        delta = dt.timedelta(**{_SHORT_UNITS[short.group(2)]: int(short.group(1))})
    else:
        delta = _parse_iso_duration(source.upper(), text)
    if delta <= dt.timedelta(0):
        raise ValueError(_msg(f"时长必须大于零：'{text}'", f"a duration must be longer than zero: '{text}'"))
    return delta


def _parse_iso_duration(upper: str, original: str) -> dt.timedelta:
    """The ISO 8601 branch of :func:`parse_duration`."""
    match = _ISO_DURATION.fullmatch(upper)
    parts = match.groupdict() if match else {}
    if not match or not any(parts.values()) or upper.endswith("T"):
        if _ISO_CALENDAR.fullmatch(upper) and ("Y" in upper.split("T")[0] or "M" in upper.split("T")[0]):
            raise ValueError(_msg(f"时长不能用年或月（长度不固定）：'{original}'，请改用天数，如 P30D",
                                  f"years and months have no fixed length: '{original}'; use days such as P30D"))
        raise ValueError(_msg(
            f"无效的时长 '{original}'：应为 30m、12h、3d、2w 或 ISO 8601（如 P180D、PT12H）",
            f"bad duration '{original}': use 30m, 12h, 3d, 2w or ISO 8601 such as P180D or PT12H"))
    return dt.timedelta(weeks=int(parts["weeks"] or 0), days=int(parts["days"] or 0),
                        hours=int(parts["hours"] or 0), minutes=int(parts["minutes"] or 0),
                        seconds=float(parts["seconds"] or 0))


# --------------------------------------------------------------------------- reading YAML

_STANDARD_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Tree:
    """Plain data composed from one YAML text, and the node behind every path."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data: Any = None
        self.nodes: dict[PathKey, Node] = {}      # path -> value node
        self.key_nodes: dict[PathKey, Node] = {}  # path -> the key node naming it
        self.plain: dict[PathKey, str] = {}       # path -> source text of an unquoted scalar

    def locate(self, path: PathKey, *, at_key: bool = False) -> tuple[int, int]:
        """1-based (line, column) for a path, or for its nearest ancestor when absent.

        A collection is pointed at by its key (``task:`` rather than ``{``), a scalar by
        its value, unless ``at_key`` asks for the key.
        """
        path = tuple(path)
        while True:
            node = self.nodes.get(path)
            if node is not None:
                key = self.key_nodes.get(path)
                if key is not None and (at_key or not isinstance(node, ScalarNode)):
                    node = key
                return node.start_mark.line + 1, node.start_mark.column + 1
            if not path:
                return 1, 1
            path = path[:-1]
            at_key = True  # a missing key is reported at the mapping that lacks it

    def locate_inside(self, path: PathKey, offset: int) -> tuple[int, int]:
        """Position of character ``offset`` of a scalar, when the source shows it verbatim.

        That holds for a plain scalar on one line, a quoted one without escapes, and a
        block scalar (``|`` or ``>``) whose lines join simply; otherwise the scalar's own
        position is the best we can say.
        """
        node = self.nodes.get(tuple(path))
        if isinstance(node, ScalarNode) and node.style in ("|", ">"):
            found = self._inside_block(node, offset)
            if found is not None:
                return found
        if isinstance(node, ScalarNode) and node.start_mark.line == node.end_mark.line:
            source = self.text[node.start_mark.index:node.end_mark.index]
            value = node.value
            offset = max(0, min(offset, len(value)))
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
            if node.style is None and source == value:
                return line, column + offset
            if node.style in ("'", '"') and source == f"{node.style}{value}{node.style}":
                return line, column + 1 + offset
        return self.locate(path)


    def _inside_block(self, node: ScalarNode, offset: int) -> tuple[int, int] | None:
        """``offset`` in a block scalar's value, mapped back onto its source lines."""
        lines = self.text[node.start_mark.index:node.end_mark.index].split("\n")[1:]
        filled = [line for line in lines if line.strip()]
        if not filled:
            return None
        indent = min(len(line) - len(line.lstrip(" ")) for line in filled)
        joiner = "\n" if node.style == "|" else " "
        rebuilt, places = [], []
        for k, line in enumerate(lines):
            for j, char in enumerate(line[indent:]):
                rebuilt.append(char)
                places.append((node.start_mark.line + 2 + k, indent + j + 1))
            rebuilt.append(joiner)
            places.append((node.start_mark.line + 2 + k, len(line) + 1))
        if offset >= len(places) or "".join(rebuilt)[:offset + 1] != node.value[:offset + 1]:
            return None   # folding or chomping the simple join does not explain
        return places[offset]


class _TooLarge(Exception):
    """Alias expansion made the document unreasonably large."""


class _Composer:
    """Turn composed YAML nodes into plain data, recording positions and problems."""

    MAX_DEPTH = 60
    MAX_NODES = 200_000  # guards against "billion laughs" alias bombs

    def __init__(self, tree: _Tree, report: "_Report") -> None:
        self.tree, self.report = tree, report
        self.constructor = yaml.SafeLoader("")  # a constructor for scalars only
        self.active: set[int] = set()           # nodes being converted: catches recursive aliases
        self.count = 0

    def convert(self, node: Node, path: PathKey, depth: int = 0) -> Any:
        """Plain data for ``node``, which sits at ``path``."""
        self.count += 1
        if self.count > self.MAX_NODES:
            raise _TooLarge()
        self.tree.nodes[path] = node
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active or depth > self.MAX_DEPTH:
            self.report.at_node(node, path, _msg("嵌套过深或别名自我引用", "nested too deeply, or an alias refers to itself"))
            return None
        if not node.tag.startswith(_STANDARD_TAG):
            self.report.at_node(node, path, _msg(f"不支持的 YAML 标签 {node.tag}", f"unsupported YAML tag {node.tag}"))
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self.mapping(node, path, depth)
            return [self.convert(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode, path: PathKey) -> Any:
        """A scalar as PyYAML's SafeLoader would read it; problems become diagnostics."""
        if node.style is None:
            self.tree.plain[path] = node.value
        if not node.tag.startswith(_STANDARD_TAG):
            self.report.at_node(node, path, _msg(f"不支持的 YAML 标签 {node.tag}", f"unsupported YAML tag {node.tag}"))
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except Exception as exc:  # e.g. 2024-02-30 read as a timestamp
            problem = getattr(exc, "problem", None) or str(exc)
            self.report.at_node(node, path, _msg(f"无法读取的值：{problem}", f"cannot read this value: {problem}"))
            return node.value

    def mapping(self, node: MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        """A mapping; merge keys (``<<: *base``) first, then explicit keys, duplicates reported."""
        result: dict[str, Any] = {}
        explicit = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE_TAG:
                result.update(self.merged(value_node, path, depth))
            else:
                explicit.append((key_node, value_node))
        self.tree.nodes[path] = node
        first_seen: dict[str, int] = {}
        for key_node, value_node in explicit:
            if not isinstance(key_node, ScalarNode):
                self.report.at_node(key_node, path, _msg("键必须是简单文本", "a key must be plain text"))
                continue
            key = key_node.value  # the key as written: `yes:` stays "yes", `1:` stays "1"
            if key in first_seen:
                self.report.at_node(key_node, path + (key,), _msg(
                    f"重复的键 '{key}'（第 {first_seen[key]} 行已出现），后者会覆盖前者",
                    f"duplicate key '{key}' (first at line {first_seen[key]}); the last one would win"))
            first_seen[key] = key_node.start_mark.line + 1
            self.tree.key_nodes[path + (key,)] = key_node
            result.pop(key, None)  # keep the written order for keys that override a merge
            result[key] = self.convert(value_node, path + (key,), depth + 1)
        return result

    def merged(self, value: Node, path: PathKey, depth: int) -> dict[str, Any]:
        """The entries a merge key brings in; earlier sources win, as YAML says."""
        if isinstance(value, MappingNode):
            sources = [value]
        elif isinstance(value, SequenceNode) and all(isinstance(v, MappingNode) for v in value.value):
            sources = list(value.value)
        else:
            self.report.at_node(value, path, _msg("'<<' 只能合并映射", "'<<' can only merge mappings"))
            return {}
        out: dict[str, Any] = {}
        for source in reversed(sources):
            data = self.convert(source, path, depth + 1)
            if isinstance(data, dict):
                out.update(data)
        return out


def _read_yaml(text: str, report: "_Report") -> _Tree | None:
    """Compose ``text``; None (with a diagnostic) when it is not well-formed YAML."""
    tree = _Tree(text)
    report.tree = tree
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.problem, exc.context and f"({exc.context})") if p)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        report.at(line, column, "error", _msg(f"YAML 语法错误：{problem}", f"YAML syntax error: {problem}"))
        return None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line, column = _line_column(text, exc.position)
        report.at(line, column, "error", _msg(f"YAML 不允许的字符：{exc.reason}", f"YAML syntax error: {exc.reason}"))
        return None
    except (yaml.YAMLError, RecursionError) as exc:
        report.at(1, 1, "error", _msg(f"无法读取 YAML：{exc}", f"cannot read YAML: {exc}"))
        return None
    if root is None:
        report.at(1, 1, "error", _msg("文件为空", "the file is empty"))
        return None
    try:
        tree.data = _Composer(tree, report).convert(root, ())
    except _TooLarge:
        report.at(1, 1, "error", _msg("文件过大（别名展开过多）", "document too large (too many alias expansions)"))
        return None
    if not isinstance(tree.data, dict):
        report.error((), _msg("文件顶层必须是映射（键: 值）", "the top level must be a mapping (key: value)"))
        return None
    return tree


def _line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of a character index."""
    index = max(0, min(index, len(text)))
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


# --------------------------------------------------------------------------- diagnostics

class _Report:
    """Collects the diagnostics of one file, placing each by its path in the tree."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.tree: _Tree | None = None
        self.items: list[Diagnostic] = []

    def at(self, line: int, column: int, severity: str, message: str, path: PathKey = ()) -> None:
        self.items.append(Diagnostic(self.filename, line, column, severity, message, _dotted(path)))

    def add(self, severity: str, path: PathKey, message: str, *, at_key: bool = False,
            offset: int | None = None) -> None:
        if self.tree is None:
            line, column = 1, 1
        elif offset is not None:
            line, column = self.tree.locate_inside(path, offset)
        else:
            line, column = self.tree.locate(path, at_key=at_key)
        self.at(line, column, severity, message, path)

    def error(self, path: PathKey, message: str, **where: Any) -> None:
        self.add("error", path, message, **where)

    def warning(self, path: PathKey, message: str, **where: Any) -> None:
        self.add("warning", path, message, **where)

    def at_node(self, node: Node, path: PathKey, message: str) -> None:
        """An error at a node's own position (used while the path map is being built)."""
        self.at(node.start_mark.line + 1, node.start_mark.column + 1, "error", message, path)

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        """Unique diagnostics in file order (aliases can repeat a problem)."""
        unique = dict.fromkeys(self.items)
        return sorted(unique, key=lambda d: (d.line, d.column))


# --------------------------------------------------------------------------- marshmallow fields

class _Base(fields.Field):
    """Shared messages; ``required``/``null`` are finished by the error walker."""

    default_error_messages = {"required": _REQUIRED, "null": _NULL,
                              "validator_failed": _msg("无效的值", "invalid value")}


class _Str(_Base, fields.String):
    default_error_messages = {"invalid": _expected("文本", "text")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid", **_kinds(value))
        return value


class _Bool(_Base, fields.Field):
    """Only a real YAML boolean (``true``/``false``)."""

    default_error_messages = {"invalid": _expected(" true 或 false", "true or false")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", **_kinds(value))
        return value


class _Int(_Base, fields.Field):
    """A whole number (a boolean is not one, though Python says so)."""

    default_error_messages = {"invalid": _expected("整数", "a whole number")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid", **_kinds(value))
        return value


class _Raw(_Base, fields.Raw):
    """Any value; its meaning is checked against the field type elsewhere."""


class _List(_Base, fields.List):
    default_error_messages = {"invalid": _expected("列表", "a list")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list:
        if not isinstance(value, list):
            raise self.make_error("invalid", **_kinds(value))
        return super()._deserialize(value, attr, data, **kwargs)


class _Nested(_Base, fields.Nested):
    default_error_messages = {"type": _expected("映射（键: 值）", "a mapping (key: value)")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise self.make_error("type", **_kinds(value))
        return super()._deserialize(value, attr, data, **kwargs)


def _text_errors(value: Any) -> list[str] | dict[str, list[str]] | None:
    """Problems of a display text: a string, or ``{zh: …, en: …}``."""
    if isinstance(value, str):
        return None
    if not isinstance(value, dict):
        return [_msg(f"应为文本或 {{zh, en}}，实际为{_kinds(value)['kz']}",
                     f"expected text or {{zh, en}}, got {_kinds(value)['ke']}")]
    if not value:
        return [_msg("文本不能为空映射，请写 {zh: …, en: …}", "empty text; write {zh: …, en: …}")]
    errors: dict[str, list[str]] = {}
    for lang, text in value.items():
        if lang not in ("zh", "en"):
            errors[lang] = [_Message.make(_unknown("语言", "language", lang, ("zh", "en"), listing=True), at_key=True)]
        elif not isinstance(text, str):
            errors[lang] = [_msg(f"应为文本，实际为{_kinds(text)['kz']}", f"expected text, got {_kinds(text)['ke']}")]
    return errors or None


class _Text(_Base, fields.Field):
    """Display text: ``label: 申请`` or ``label: {zh: 申请, en: Application}``."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        errors = _text_errors(value)
        if errors:
            raise ValidationError(errors)
        return value


class _Duration(_Base, fields.Field):
    """A duration such as ``3d`` or ``P180D``, kept as written."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        try:
            parse_duration(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return value


class _Source(_Base, fields.Field):
    """A transition's ``source``: a state, a list of states, or ``'*'``."""

    default_error_messages = {"invalid": _expected("状态名或状态名列表", "a state name or a list of state names")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise self.make_error("invalid", **_kinds(value))
        if not value:
            raise ValidationError(_msg("来源状态列表不能为空", "the list of source states is empty"))
        errors = {i: [_expected("状态名", "a state name").format(**_kinds(v))]
                  for i, v in enumerate(value) if not isinstance(v, str)}
        if errors:
            raise ValidationError(errors)
        return value


class _Choices(_Base, fields.Field):
    """``choices``: a list of keys, or a mapping key -> display text."""

    default_error_messages = {"invalid": _expected("选项列表或映射", "a list or a mapping of choices")}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, (list, dict)):
            raise self.make_error("invalid", **_kinds(value))
        if not value:
            raise ValidationError(_msg("选项不能为空", "no choices given"))
        errors: dict[Any, Any] = {}
        if isinstance(value, list):
            seen: set[str] = set()
            for i, key in enumerate(value):
                if not isinstance(key, str) or not key:
                    errors[i] = [_expected("选项键（文本）", "a choice key (text)").format(**_kinds(key))]
                    continue
                if key in seen:
                    errors[i] = [_msg(f"重复的选项 '{key}'", f"duplicate choice '{key}'")]
                seen.add(key)
        else:
            for key, label in value.items():
                problems = None if label is None else _text_errors(label)
                if problems:
                    errors[key] = problems
        if errors:
            raise ValidationError(errors)
        return value


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


# --------------------------------------------------------------------------- validators

def _one_of(options: Iterable[str], what_zh: str, what_en: str):
    """A validator accepting only ``options``, suggesting the nearest on a typo."""
    options = tuple(options)

    def check(value: Any) -> None:
        if value not in options:
            raise ValidationError(_unknown(what_zh, what_en, value, options, listing=True))
    return check


def _at_least(minimum: int, what_zh: str, what_en: str):
    """A validator for numbers (or list lengths) that must reach ``minimum``."""
    def check(value: Any) -> None:
        size = len(value) if isinstance(value, (list, dict)) else value
        if size < minimum:
            raise ValidationError(_msg(f"{what_zh}至少为 {minimum}", f"{what_en} must be at least {minimum}"))
    return check


def _process_key(value: str) -> None:
    if not PROCESS_KEY.fullmatch(value):
        raise ValidationError(_msg(
            f"无效的流程键 '{value}'：只能用小写字母、数字和下划线，以字母开头",
            f"invalid process key '{value}': use [a-z][a-z0-9_]* (lower-case letter first)"))


def _regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(_Message.make(
            _msg(f"无效的正则表达式：{exc.msg}", f"invalid regular expression: {exc.msg}"),
            offset=exc.pos)) from None


# --------------------------------------------------------------------------- field values

class _Unfit(ValueError):
    """A value that a field of some type could not hold; the reason in both languages."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(_msg(zh, en))
        self.zh, self.en = zh, en


def _coerce(ftype: str, value: Any, choices: Iterable[str] = ()) -> Any:
    """``value`` as a field of type ``ftype`` holds it; :class:`_Unfit` when it cannot."""
    kinds = _kinds(value)
    if ftype == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Unfit(f"应为整数，实际为{kinds['kz']}", f"expected a whole number, got {kinds['ke']}")
        return value
    if ftype in ("decimal", "money"):
        return _coerce_decimal(ftype, value)
    if ftype in DATE_TYPES:
        return _coerce_date(ftype, value)
    if ftype == "boolean":
        if not isinstance(value, bool):
            raise _Unfit(f"应为 true 或 false，实际为{kinds['kz']}", f"expected true or false, got {kinds['ke']}")
        return value
    if ftype in CHOICE_TYPES:
        return _coerce_choice(ftype, value, tuple(choices))
    if ftype == "file":
        raise _Unfit("文件字段不能有默认值", "a file field cannot have a default")
    if not isinstance(value, str):
        raise _Unfit(f"应为文本，实际为{kinds['kz']}", f"expected text, got {kinds['ke']}")
    return value


def _coerce_decimal(ftype: str, value: Any) -> Decimal:
    """A decimal or money value, never through float arithmetic; money to the fen."""
    number: Decimal | None = None
    if not isinstance(value, bool) and isinstance(value, (int, float, str, Decimal)):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = None
    if number is None or not number.is_finite():
        raise _Unfit(f"应为数字，实际为{_kinds(value)['kz']} '{value}'",
                     f"expected a number, got {_kinds(value)['ke']} '{value}'")
    if ftype == "money" and number != number.quantize(Decimal("0.01")):
        raise _Unfit(f"金额最多两位小数：{value}", f"money has at most two decimals: {value}")
    return number


def _coerce_date(ftype: str, value: Any) -> dt.date:
    """A date (YAML ``2024-01-31``) or datetime, also accepted as ISO text."""
    if ftype == "date":
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        parse: Any = dt.date.fromisoformat
    else:
        if isinstance(value, dt.datetime):
            return value
        parse = dt.datetime.fromisoformat
    if isinstance(value, str):
        try:
            return parse(value.strip())
        except ValueError:
            pass
    what_zh, what_en = ("日期（YYYY-MM-DD）", "a date (YYYY-MM-DD)") if ftype == "date" else (
        "日期时间（ISO 8601）", "a datetime (ISO 8601)")
    raise _Unfit(f"应为{what_zh}，实际为 '{value}'", f"expected {what_en}, got '{value}'")


def _coerce_choice(ftype: str, value: Any, choices: tuple[str, ...]) -> Any:
    """A choice key, or a list of them for ``multichoice``."""
    if ftype == "multichoice" and not isinstance(value, list):
        raise _Unfit("多选字段的值应为列表", "a multichoice value must be a list")
    for item in value if ftype == "multichoice" else [value]:
        if not isinstance(item, str) or (choices and item not in choices):
            near = _nearest(item, choices)
            hint_zh, hint_en = (f"，是否应为 '{near}'？", f"; did you mean '{near}'?") if near else ("", "")
            raise _Unfit(f"'{item}' 不是可选项（{', '.join(choices)}）{hint_zh}",
                         f"'{item}' is not a choice ({', '.join(choices)}){hint_en}")
    return tuple(value) if ftype == "multichoice" else value


def _choice_keys(choices: Any) -> tuple[str, ...]:
    if isinstance(choices, dict):
        return tuple(choices)
    if isinstance(choices, list):
        return tuple(c for c in choices if isinstance(c, str))
    return ()


# --------------------------------------------------------------------------- schemas

_SCHEMAS: dict[type, Schema] = {}


def _schema(cls: type[Schema]) -> Schema:
    """One shared instance per schema class (building them is not free)."""
    instance = _SCHEMAS.get(cls)
    if instance is None:
        instance = _SCHEMAS[cls] = cls()
    return instance


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
    same_as = _Str(required=True)


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
    tasks = _List(_Nested(_ParallelTaskSchema), validate=_at_least(1, "并行任务数", "the number of parallel tasks"))
    timers = _List(_Nested(_TimerSchema))
    host_editable = _Bool()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _task_or_tasks(self, data: dict, original: Any, **kwargs: Any) -> None:
        if isinstance(original, dict) and "task" in original and "tasks" in original:
            raise ValidationError({"tasks": [_Message.make(_msg(
                "状态不能同时有 task 和 tasks", "a state has either task or tasks, not both"), at_key=True)]})


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
        from .retention import parse_retention
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


class _RateSchema(_Strict):
    label = _Text(required=True)
    of = _List(_Str(), required=True, validate=_at_least(1, "状态数", "the number of states"))
    over = _List(_Str())


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
    retention = _Nested(_RetentionSchema)


class _RoleSchema(_Strict):
    label = _Text()
    manager = _Bool()
    overseer = _Bool()
    admin = _Bool()


class _RolesFileSchema(_Strict):
    levels = _List(_Str(), required=True, validate=_at_least(1, "层级数", "the number of levels"))
    roles = _NamedMap(_RoleSchema, required=True)


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
        self.with_tasks = {s["name"] for s in first if isinstance(s.get("task"), dict) or _list(s.get("tasks"))}
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
        return self.compiled

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
        """A posting names the case's fund (a choice field) and amount (a money field)."""
        for key, wanted in (("fund", "choice"), ("amount", "money")):
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
    description = data.get("description")
    return ProcessSpec(
        key=data["process"], title=Label.of(data["title"]), states=states, transitions=transitions,
        fields=MappingProxyType(fields_),
        description=Label.of(description) if description is not None else None,
        org_level=data.get("org_level", default_level), confidential=data.get("confidential", False),
        starters=tuple(data["starters"]) if "starters" in data else None,
        rates=tuple(RateSpec(name, Label.of(r["label"], name), tuple(r["of"]), tuple(r.get("over", ())))
                    for name, r in _mapping(data.get("rates")).items()),
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
        same_as=task["assign"]["same_as"] if "assign" in task else None,
        priority=task.get("priority", "normal"), optional=task.get("optional", False),
        external=task.get("external"), variables=tuple(task.get("variables", ())),
        retries=int(task.get("retries", 3)))


def _build_state(state: dict, fields_: Mapping[str, FieldSpec]) -> StateSpec:
    name = state["name"]
    label = Label.of(state.get("label"), name)
    if "task" in state:
        tasks = (_build_task(state["task"], name, label, fields_),)
    else:
        tasks = tuple(_build_task(t, t["name"], Label.of(t.get("label"), t["name"]), fields_)
                      for t in state.get("tasks", ()))
    timers = tuple(TimerSpec(trigger=t["trigger"],
                             after=parse_duration(t["after"]) if "after" in t else None,
                             at_field=t.get("at")) for t in state.get("timers", ()))
    return StateSpec(name=name, label=label, initial=state.get("initial", False), final=state.get("final", False),
                     tasks=tasks, parallel="tasks" in state, timers=timers,
                     host_editable=state.get("host_editable", False))


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
        message=Label.of(t["message"]) if t.get("message") is not None else None)


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
         for key, spec in roles.items()}))


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
    return Registry(roles, processes, diagnostics, files)


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
