"""YAML shown with line numbers, light highlighting and diagnostics at their lines (the editor's read view)."""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Iterable, Mapping

from markupsafe import Markup, escape

from hexie.workflows.spec import Diagnostic

from .. import i18n

# ---------------------------------------------------------- YAML with line numbers

_KEY = re.compile(r"^(\s*(?:-\s+)?)([A-Za-z_][\w.-]*|'[^']*'|\"[^\"]*\")(\s*:)(?=\s|$)")
_SCALAR = re.compile(r"('[^']*'|\"(?:[^\"\\]|\\.)*\"|(?<![\w.-])(?:true|false|null|True|False|~|-?\d+(?:\.\d+)?)(?![\w.-]))")


def _comment_start(line: str) -> int:
    """Where a ``#`` comment starts outside quotes (``-1``: none)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return -1


def _highlight_value(part: str) -> Markup:
    out, last = [], 0
    for match in _SCALAR.finditer(part):
        out.append(escape(part[last:match.start()]))
        kind = "str" if match.group(0)[0] in "'\"" else "lit"
        out.append(Markup('<span class="y-{}">{}</span>').format(kind, match.group(0)))
        last = match.end()
    out.append(escape(part[last:]))
    return Markup("").join(out)


def highlight_yaml_line(line: str) -> Markup:
    """One line of YAML as escaped HTML with spans for keys, comments, strings and literals."""
    cut = _comment_start(line)
    body, comment = (line, "") if cut < 0 else (line[:cut], line[cut:])
    match = _KEY.match(body)
    if match:
        html = (escape(match.group(1)) + Markup('<span class="y-key">{}</span>').format(match.group(2))
                + escape(match.group(3)) + _highlight_value(body[match.end():]))
    else:
        html = _highlight_value(body)
    if comment:
        html += Markup('<span class="y-comment">{}</span>').format(comment)
    return html


def numbered_source(source: str, highlight: Iterable[int] = (), notes: Mapping[int, list[dict]] | None = None
                    ) -> list[dict[str, Any]]:
    """The lines of a source for display: number, highlighted HTML, marked or not, notes."""
    marked = set(highlight)
    notes = notes or {}
    return [{"number": n, "html": highlight_yaml_line(line), "marked": n in marked, "notes": notes.get(n, [])}
            for n, line in enumerate(source.split("\n"), 1)]


def _notes(diagnostics: Iterable[Diagnostic]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in _diagnostic_dicts(diagnostics):
        out[d["line"]].append(d)
    return out


def _diagnostic_dicts(diagnostics: Iterable[Diagnostic]) -> list[dict[str, Any]]:
    return [{"line": d.line, "column": d.column, "severity": d.severity, "message": i18n.detail_text(d.message),
             "path": d.path} for d in diagnostics]
