"""Security finding 1: a guard must never hang the server.

The tester's guard ``[[[1]*10000]*10000]*10000 == [[[1]*10000]*10000]*10000`` passed
``hexie check`` and the editor, then hung every worker that opened such a case. Now a cost
model refuses it when the definition is checked (the checker, the loader, the editor all
compile through :func:`compile_expression`), and a step/time budget at evaluation refuses
whatever the case's data makes too big (an ``Invalid``, a 422, never a hang).
"""
from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest

from hexie.workflows.check import check_paths
from hexie.workflows.errors import Invalid
from hexie.workflows.expressions import EvaluationError, ExpressionError, compile_expression

from .engine_helpers import env_with

ISSUE = "[[[1]*10000]*10000]*10000 == [[[1]*10000]*10000]*10000"
FIELDS = ("name", "n", "tags", "x")


def _fast(fn, limit: float = 0.5):
    start = time.perf_counter()
    try:
        return fn()
    finally:
        assert time.perf_counter() - start < limit, "took too long"


# ---------------------------------------------------------------- check time

def test_the_issue_example_is_refused_when_compiled():
    with pytest.raises(ExpressionError) as info:
        _fast(lambda: compile_expression(ISSUE, FIELDS))
    message = info.value.message
    assert "10,000" in message and "limit" in message
    assert any("\u4e00" <= ch <= "\u9fff" for ch in message), "the message is bilingual (Chinese first)"
    # it points at the first repetition that grows too big (on the left: 10,000 x 10,000)
    assert info.value.offset == 1 and ISSUE[info.value.offset:].startswith("[[1]*10000]*10000")


@pytest.mark.parametrize("source", [
    "[[1] * 10000] * 10000 == x",                 # nested construction
    "['a'] * 5000 + ['b'] * 5001 == x",          # concatenation of two big constructions
    "'a' * 100000000 == x",                      # string multiplication
    "'ab' * 5001 == x",
    "[1] * (100 * 1000) == x",                   # a count computed from constants
    "[[1] * n] * n == x",                        # nested, repeated by counts from the case's data
    "[[name]] * n == x",
    "[[1] * n] * 2 * n == x",
    "[[1] * 100, [2] * 100] * 100 == x",
    "[1,2,3,4,5,6,7,8,9,0] * 1001 == x",
])
def test_growth_beyond_the_budget_is_refused_at_check_time(source):
    with pytest.raises(ExpressionError, match="10,000"):
        _fast(lambda: compile_expression(source, FIELDS))


@pytest.mark.parametrize("source", [
    "'ab' * 5000 == name", "[1] * 10000 == tags", "name * 2 == 'abab'", "x * 12 > 1000",
    "n * n > 10", "[[1] * 10] * 10 == tags", "tags + ['a'] == tags", "'a' + name == 'ab'",
    "'-' * n == name", "[0] * n == tags", "len(tags * n) > 1", "[name] * n == tags",  # weighed at run time
])
def test_reasonable_expressions_still_compile(source):
    compile_expression(source, FIELDS)


def test_deep_nesting_and_huge_literals_stay_refused():
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("[" * 30 + "1" + "]" * 30, FIELDS)
    with pytest.raises(ExpressionError, match="too large"):
        compile_expression("x == 10000000000000000", FIELDS)
    with pytest.raises(ExpressionError, match="too long"):
        compile_expression("name == '" + "a" * 600 + "'", FIELDS)


GUARDED = """\
process: guarded
title: Guarded
fields:
  name: {type: text}
  n: {type: integer}
states:
  - name: draft
    task: {role: clerk}
  - {name: done, final: true}
transitions:
  - {trigger: submit, source: draft, dest: done,
     when: "WHEN"}
"""


def test_hexie_check_reports_the_issue_example_at_its_line_and_column(tmp_path: Path):
    shutil.copy(Path(__file__).parent / "fixtures" / "defs" / "roles.yaml", tmp_path)
    (tmp_path / "guarded.yaml").write_text(GUARDED.replace("WHEN", ISSUE), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    status = _fast(lambda: check_paths([str(tmp_path)], out=out, err=err), limit=5)
    assert status == 1
    (line,) = [x for x in out.getvalue().splitlines() if "transitions[0].when" in x]
    where, _, message = line.partition(": error: ")
    text = GUARDED.replace("WHEN", ISSUE)
    row = next(i for i, x in enumerate(text.splitlines(), 1) if "when:" in x)
    column = text.splitlines()[row - 1].index(ISSUE) + 2   # at the inner repetition (offset 1)
    assert where.endswith(f"guarded.yaml:{row}:{column}"), line
    assert "10,000" in message and "条件表达式无效" in message


# ---------------------------------------------------------------- evaluation

def test_the_issue_example_is_refused_fast_at_evaluation_when_compiled_unchecked():
    """A definition stored before the fix still compiles (the budget alone then holds it)."""
    e = compile_expression(ISSUE, FIELDS, cost_check=False)
    with pytest.raises(EvaluationError) as info:
        _fast(lambda: e.evaluate({}))
    assert "10,000" in info.value.message


def test_data_dependent_growth_is_refused_fast_at_evaluation():
    e = compile_expression("[[name] * 100] * 100 == [[name] * 100] * 100", FIELDS)  # 10,000: allowed
    assert e.evaluate({"name": "a"}) is True
    e = compile_expression("[name * 10, name * 10] == tags", FIELDS)
    with pytest.raises(EvaluationError, match="10,000"):
        _fast(lambda: e.evaluate({"name": "a" * 5000, "tags": []}))
    e = compile_expression("'-' * n == name", FIELDS)
    with pytest.raises(EvaluationError, match="10,000"):
        _fast(lambda: e.evaluate({"n": 10**15, "name": ""}))
    e = compile_expression("tags + tags == tags", FIELDS)
    with pytest.raises(EvaluationError, match="10,000"):
        _fast(lambda: e.evaluate({"tags": [["a" * 100] * 50] * 2}))  # nested data counts whole


def test_evaluation_time_budget():
    e = compile_expression(" and ".join(["[1] * 10000 == [1] * 10000"] * 12), FIELDS)
    with pytest.raises(EvaluationError, match="50 ms"):
        _fast(lambda: e.evaluate({}, budget=0.0000001))
    assert e.evaluate({}) is True  # well inside the default budget


CASEFILE = """\
process: heavy
title: Heavy
org_level: town
fields:
  name: {type: text, max_length: 5000}
  k: {type: integer}
states:
  - name: draft
    task: {role: town_cadre, form: [name, k]}
  - name: review
    task: {role: town_cadre}
  - {name: done, final: true}
transitions:
  - {trigger: submit, source: draft, dest: review}
  - {trigger: decide, source: review, dest: done, when: "[name * k, name * k] == [name, name]"}
"""


def test_an_oversized_guard_is_an_invalid_not_a_hang(session_factory, tmp_path: Path):
    env = env_with(session_factory, tmp_path / "defs", heavy=CASEFILE)
    cadre = env.actor("cadre")
    case_id = env.service.start_case(cadre, "heavy", "t01", {"name": "ab" * 2500, "k": 1000})
    env.service.fire(cadre, case_id, "submit")
    view = _fast(lambda: env.queries.case(cadre, case_id), limit=2)   # opening the case does not hang
    assert "decide" not in view["actions"]
    (blocked,) = [b for b in view["blocked_actions"] if b["trigger"] == "decide"]
    assert "10,000" in blocked["reason_en"]
    before = env.snapshot()
    with pytest.raises(Invalid) as info:
        _fast(lambda: env.service.fire(cadre, case_id, "decide"), limit=2)
    assert "10,000" in info.value.en
    assert env.snapshot() == before


STORED = """\
process: heavy
title: Heavy
org_level: town
fields:
  name: {type: text}
states:
  - name: draft
    task: {role: town_cadre, form: [name]}
  - name: review
    task: {role: town_cadre}
  - {name: done, final: true}
transitions:
  - {trigger: submit, source: draft, dest: review}
  - {trigger: decide, source: review, dest: done, when: "WHEN"}
"""


def test_a_version_published_before_the_cost_model_still_loads_and_is_held_by_the_budget(
        session_factory, tmp_path: Path):
    """The tester's guard was published on a demo server: after the upgrade that server must
    start and open such cases; the guard is then refused by the evaluation budget, fast."""
    from hexie.models import ProcessVersion
    from hexie.workflows.loader import load_process_text
    env = env_with(session_factory, tmp_path / "defs", heavy=STORED.replace("WHEN", "name == 'x'"))
    source = STORED.replace("WHEN", ISSUE)
    assert load_process_text(source, "heavy.yaml", env.engine.registry.roles)[0] is None   # a check refuses it
    with env.engine.transaction() as s:                      # ... but it was published before
        s.add(ProcessVersion(key="heavy", version=2, source_text=source, content_hash="published-before",
                             created_at=env.clock(), origin="published"))
    env.engine.refresh_versions(max_age=0)
    assert env.engine.current("heavy")[2] == 2
    cadre = env.actor("cadre")
    case_id = env.service.start_case(cadre, "heavy", "t01", {"name": "x"})
    env.service.fire(cadre, case_id, "submit")
    view = _fast(lambda: env.queries.case(cadre, case_id), limit=2)
    assert "decide" not in view["actions"]
    with pytest.raises(Invalid) as info:
        _fast(lambda: env.service.fire(cadre, case_id, "decide"), limit=2)
    assert "10,000" in info.value.en
