"""Property: whatever is done to a valid definition's text, the loader never raises.

It returns a spec, or diagnostics that place each problem at line >= 1 — and never an
"internal error", which would mean a check crashed and was caught by the safety net.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hexie.workflows.loader import load_process_text, load_roles

FIXTURES = Path(__file__).parent / "fixtures" / "defs"
VALID_TEXT = (FIXTURES / "small_grant.yaml").read_text(encoding="utf-8")
FILENAME = "small_grant.yaml"

# Characters that matter to YAML, to the language, and a few that should not be there.
SPECIAL = list(":-[]{},#&*!|>'\"%@`?\t\n ") + ["\x00", "\x07", "\ufeff", "é", "中", "0", "9", "P", "d"]
WORDS = ["true", "null", "~", "*", "&a", "*a", "<<: *a", "- ", ": ", "---", "...", "{", "}", "[", "]",
         "P1M", "3x", "system", "final: true", "initial: true", "when: ((", "source: '*'", "!!python/name:x",
         "tasks: []", "task: {}", "  ", "\n", "\t",
         # work decided at run time
         "tasks: {for_each: x}", "for_each: ", "role_of: {}", "complete: ", "any", "all", "0", "-1",
         "call: {}", "call: {process: x}", "on_end: {a: b}", "result: ", "auto: true", "order: ",
         "any_one_at_a_time", "end_when_idle: true", "each: {}"]


@st.composite
def mutated_from(draw: st.DrawFn, text: str) -> str:
    """``text`` after one to four random edits."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        lines = _edit(draw, lines)
    return "\n".join(lines)


def mutated() -> st.SearchStrategy[str]:
    """The valid text after one to four random edits."""
    return mutated_from(VALID_TEXT)


def _edit(draw: st.DrawFn, lines: list[str]) -> list[str]:
    lines = list(lines) or [""]
    i = draw(st.integers(0, len(lines) - 1))
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "insert", "indent", "dedent"]))
    if kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "swap":
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "replace" and lines[i]:
        at = draw(st.integers(0, len(lines[i]) - 1))
        char = draw(st.sampled_from(SPECIAL) | st.characters())
        lines[i] = lines[i][:at] + char + lines[i][at + 1:]
    elif kind == "insert":
        at = draw(st.integers(0, len(lines[i])))
        text = draw(st.sampled_from(WORDS) | st.text(max_size=12))
        lines[i] = lines[i][:at] + text + lines[i][at:]
    elif kind == "indent":
        lines[i] = " " * draw(st.integers(1, 4)) + lines[i]
    elif kind == "dedent":
        lines[i] = lines[i][draw(st.integers(1, 4)):] if lines[i].startswith(" ") else lines[i]
    return lines


@pytest.fixture(scope="module")
def roles():
    spec, diagnostics = load_roles(FIXTURES / "roles.yaml")
    assert diagnostics == []
    return spec


def _assert_sane(text: str, roles) -> None:
    spec, diagnostics = load_process_text(text, FILENAME, roles)
    errors = [d for d in diagnostics if d.severity == "error"]
    assert (spec is not None) != bool(errors), diagnostics
    for d in diagnostics:
        assert d.line >= 1 and d.column >= 1, d
        assert d.file == FILENAME and d.severity in ("error", "warning")
        assert "internal error" not in d.message, d


def test_the_unmutated_text_loads(roles):
    spec, diagnostics = load_process_text(VALID_TEXT, FILENAME, roles)
    assert spec is not None and diagnostics == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated())
def test_mutated_definitions_never_raise(roles, text):
    _assert_sane(text, roles)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(SPECIAL + WORDS + ["a", "b", "process", "states"]), max_size=40).map("".join))
def test_arbitrary_text_never_raises(roles, text):
    _assert_sane(text, roles)
