"""Reading YAML with positions (the compose pass), and the report that collects diagnostics."""
from __future__ import annotations

import re
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


_BRACKETS = {"}": "{ }", "]": "[ ]"}


def _yaml_problem(exc: "yaml.MarkedYAMLError") -> tuple[str, str]:
    """What PyYAML's error means, said so that the person can mend it (zh, en); PyYAML's own
    words (English, about tokens) where the problem is not one of those known here."""
    problem, context = exc.problem or "", exc.context or ""
    found = re.fullmatch(r"expected ',' or '([}\]])', but got '(.*)'", problem)
    if found:
        pair = _BRACKETS[found.group(1)]
        return (f"在 {pair} 里，各项之间要用逗号分开（“键: 值”的冒号后要有空格），或者缺少右括号“{found.group(1)}”",
                f"inside {pair}, items are separated by commas (with a space after each key's ':'), "
                f"or the closing '{found.group(1)}' is missing")
    if problem == "mapping values are not allowed here":
        return ("这里不能再开始“键: 值”：值里有“: ”时请给值加引号，或检查这一行的缩进",
                "a 'key: value' cannot start here: put a value that contains ': ' in quotes, "
                "or check this line's indentation")
    if problem == "could not find expected ':'":
        return "键后面缺少冒号（写成“键: 值”）", "a ':' is missing after a key (write 'key: value')"
    found = re.fullmatch(r"found character '(.*)' that cannot start any token", problem)
    if found:
        if found.group(1) == "\\t":
            return "YAML 不能用制表符（Tab）缩进，请改用空格", "YAML cannot be indented with tabs: use spaces"
        return (f"值不能以“{found.group(1)}”开头，请给这个值加引号",
                f"a value cannot start with '{found.group(1)}': put the value in quotes")
    if problem.startswith("expected <block end>, but found"):
        if problem.endswith("'<scalar>'"):
            return ("这里多了一段文本：引号结束后不能再写内容，或者这一行的缩进不对",
                    "unexpected text here: nothing may follow a closing quote, or this line's indentation is wrong")
        return ("缩进不对：这一行与上面同一层的行没有对齐",
                "the indentation is wrong: this line does not line up with the lines above it at the same level")
    if problem == "found unexpected end of stream":
        if "quoted scalar" in context and exc.context_mark is not None:
            line = exc.context_mark.line + 1
            return (f"引号没有闭合：第 {line} 行开始的文本缺少结尾的引号",
                    f"a quote is not closed: the text that starts on line {line} has no closing quote")
        return "文件意外结束：有括号或引号没有闭合", "the file ends too early: a bracket or a quote is not closed"
    found = re.fullmatch(r"found undefined alias '(.*)'", problem)
    if found:
        name = found.group(1)
        return f"别名 *{name} 没有定义：前面需要有 &{name}", f"the alias *{name} is not defined: it needs an &{name} before it"
    found = re.fullmatch(r"found duplicate anchor '(.*)'; first occurrence", context)
    if found and exc.context_mark is not None:
        name, line = found.group(1), exc.context_mark.line + 1
        return f"锚点 &{name} 定义了两次（第一次在第 {line} 行）", f"the anchor &{name} is defined twice (first on line {line})"
    found = re.fullmatch(r"found unknown escape character '(.*)'", problem)
    if found:
        code = found.group(1)
        return (f"双引号里的“\\{code}”不是有效的转义：请改用单引号，或把 \\ 写成 \\\\",
                f"'\\{code}' is not an escape double quotes allow: use single quotes, or write \\ as \\\\")
    if problem.startswith("expected the node content"):
        return "这里缺少一个值", "a value is missing here"
    raw = " ".join(p for p in (problem, context and f"({context})") if p)
    return raw, raw


def _read_yaml(text: str, report: "_Report") -> _Tree | None:
    """Compose ``text``; None (with a diagnostic) when it is not well-formed YAML."""
    tree = _Tree(text)
    report.tree = tree
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        zh, en = _yaml_problem(exc)
        report.at(line, column, "error", _msg(f"YAML 语法错误：{zh}", f"YAML syntax error: {en}"))
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
