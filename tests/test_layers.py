"""The arrows of the house point down: no import circle inside ``web/``, and the engine and
the models import neither the web nor the command line (docs/architecture.md).

Every import counts, also one inside a function: a circle that is only broken by importing
late is still a circle. A module's own package ``__init__`` (which Python runs first) is not
counted as an arrow; ``from . import name`` points at the submodule when ``name`` is one.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = ("hexie",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(folder: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / folder).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The hexie modules ``name`` imports (resolved to modules in ``known`` where possible)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            for alias in node.names:
                if f"{module}.{alias.name}" in known:
                    found.add(f"{module}.{alias.name}")
                    if not node.module:
                        found.discard(module)
    return {m for m in found if m == "hexie" or m.startswith("hexie.")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, ()):
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def web_graph() -> dict[str, set[str]]:
    modules = _modules("web")
    known = set(modules)
    return {name: {m for m in _imports(name, path, known) if m in known and m != name}
            for name, path in modules.items()}


def test_no_import_circle_in_web():
    assert _cycles(web_graph()) == []


def test_engine_and_models_do_not_import_the_web_or_the_cli():
    wrong = []
    for folder in ("workflows", "models"):
        modules = _modules(folder)
        for name, path in modules.items():
            for target in _imports(name, path, set(modules)):
                if target in ("hexie.web", "hexie.cli") or target.startswith(("hexie.web.", "hexie.cli.")):
                    wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_the_check_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


if __name__ == "__main__":  # python tests/test_layers.py: print the web graph's circles
    for group in _cycles(web_graph()):
        print(" <-> ".join(group))
