"""Reading YAML with positions (the compose pass), and the report that collects diagnostics."""
from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from hexie.workflows.spec import Diagnostic
from hexie.workflows.language.constants import PathKey
from hexie.workflows.language.messages import _dotted, _msg


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
