"""``hexie check`` on the keys of "work decided at run time": each mistake at its line and column,
the implicit-termination warning, cross-file checks of ``call:``, and the fuzz on a definition that
uses every construct (the checker never crashes)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from hexie.workflows.check import check_paths
from hexie.workflows.loader import load_definitions, load_process_text, load_roles

from . import test_loader_fuzz as fuzz

FIXTURES = Path(__file__).parent / "fixtures" / "runtime"
TEXT = (FIXTURES / "run_time.yaml").read_text(encoding="utf-8")
FILENAME = "run_time.yaml"


@pytest.fixture(scope="module")
def roles():
    spec, diagnostics = load_roles(FIXTURES / "roles.yaml")
    assert diagnostics == []
    return spec


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def col_of(text: str, line: int, needle: str) -> int:
    return text.splitlines()[line - 1].index(needle) + 1


def only_error(text: str, roles):
    spec, diagnostics = load_process_text(text, FILENAME, roles)
    errors = [d for d in diagnostics if d.severity == "error"]
    assert spec is None and len(errors) == 1, diagnostics
    return errors[0]


def expect(roles, old: str, new: str, needle: str, path: str, fragment: str) -> None:
    """Replacing ``old`` by ``new`` gives one error, at ``needle`` (on the line of ``new``)."""
    assert old in TEXT, old
    text = TEXT.replace(old, new, 1)
    d = only_error(text, roles)
    line = line_of(text, new.strip().splitlines()[0])
    assert (d.line, d.column, d.path) == (line, col_of(text, line, needle), path), str(d)
    assert fragment in d.message, str(d)


def test_the_fixture_loads_cleanly(roles):
    spec, diagnostics = load_process_text(TEXT, FILENAME, roles)
    assert diagnostics == [] and spec is not None
    referred = spec.state("referred")
    assert [t.name for t in referred.tasks] == ["police", "legal"]
    assert [t.role for t in referred.tasks] == ["cadre", "manager"]
    assert referred.for_each.complete == "any" and spec.state("checks").interleaved
    assert spec.state("pairing").call.on_end == (("paired", "paired"),)
    assert spec.transitions[1].auto and spec.state("wrap_up").end_when_idle


def test_folder_with_the_child_loads_cleanly():
    registry = load_definitions(FIXTURES)
    assert registry.diagnostics == [] and sorted(registry.processes) == ["run_time", "run_time_child"]


# ------------------------------------------------------------------ for_each

def test_for_each_unknown_field(roles):
    expect(roles, "for_each: agencies", "for_each: agencys", "agencys", "states[1].tasks.for_each",
           "did you mean 'agencies'")


def test_for_each_needs_a_multichoice_field(roles):
    expect(roles, "for_each: agencies", "for_each: notes", "notes", "states[1].tasks.for_each",
           "for_each takes a multichoice field")


def test_role_of_unknown_choice(roles):
    expect(roles, "role_of: {police: cadre, legal: manager}", "role_of: {polise: cadre, legal: manager}",
           "polise", "states[1].tasks.role_of.polise", "did you mean 'police'")


def test_role_of_unknown_role(roles):
    expect(roles, "role_of: {police: cadre, legal: manager}", "role_of: {police: cadet, legal: manager}",
           "cadet", "states[1].tasks.role_of.police", "unknown role 'cadet'")


def test_a_choice_without_a_role(roles):
    expect(roles, "role_of: {police: cadre, legal: manager}", "role_of: {police: cadre}",
           "role_of", "states[1].tasks.role_of", "no role for the choices legal")


def test_each_unknown_choice(roles):
    expect(roles, "        police: {label:", "        polic: {label:", "polic", "states[1].tasks.each.polic",
           "did you mean 'police'")


def test_complete_bad_word(roles):
    expect(roles, "complete: any", "complete: some", "some", "states[1].tasks.complete",
           "unknown complete rule 'some'")


def test_complete_zero(roles):
    expect(roles, "complete: any", "complete: 0", "0", "states[1].tasks.complete",
           "complete is all, any or a whole number")


def test_for_each_unknown_key(roles):
    expect(roles, "complete: any", "completes: any", "completes", "states[1].tasks.completes",
           "unknown key 'completes'")


def test_for_each_task_unknown_form_field(roles):
    expect(roles, "task: {form: [notes], due: 3d}", "task: {form: [note], due: 3d}", "note]",
           "states[1].tasks.task.form[0]", "did you mean 'notes'")


def test_complete_above_the_choices_warns(roles):
    text = TEXT.replace("complete: any", "complete: 3")
    spec, diagnostics = load_process_text(text, FILENAME, roles)
    (d,) = diagnostics
    line = line_of(text, "complete: 3")
    assert (d.severity, d.line, d.column) == ("warning", line, col_of(text, line, "3"))


# ------------------------------------------------------------------ order, auto, end_when_idle

def test_order_unknown(roles):
    expect(roles, "order: any_one_at_a_time", "order: one_by_one", "one_by_one", "states[2].order",
           "unknown task order 'one_by_one'")


def test_order_without_tasks(roles):
    text = TEXT.replace("  - name: pairing\n", "  - name: pairing\n    order: any_one_at_a_time\n")
    d = only_error(text, roles)
    line = [i for i, l in enumerate(text.splitlines(), 1) if "order: any_one_at_a_time" in l][1]
    assert (d.line, d.column, d.path) == (line, 5, "states[3].order") and "only for" in d.message


def test_auto_not_a_boolean(roles):
    expect(roles, "dest: checks, auto: true}", "dest: checks, auto: yes please}", "yes please",
           "transitions[1].auto", "true or false")


def test_auto_with_a_quorum(roles):
    expect(roles, "dest: checks, auto: true}", "dest: checks, auto: true, quorum: 2}", "auto",
           "transitions[1].auto", "no quorum")


def test_auto_from_a_calling_state(roles):
    expect(roles, "dest: wrap_up, roles: [system]}", "dest: wrap_up, roles: [system], auto: true}", "auto",
           "transitions[3].auto", "its child's end moves it on")


def test_auto_from_a_single_task_state_warns(roles):
    text = TEXT.replace("{trigger: refer, source: intake, dest: referred}",
                        "{trigger: refer, source: intake, dest: referred, auto: true}")
    spec, diagnostics = load_process_text(text, FILENAME, roles)
    (d,) = diagnostics
    assert d.severity == "warning" and "never fires" in d.message and d.path == "transitions[0].auto"


def test_end_when_idle_not_a_boolean(roles):
    expect(roles, "    end_when_idle: true", "    end_when_idle: 1", "1", "states[4].end_when_idle",
           "true or false")


def test_a_state_with_no_work_and_no_way_out_warns(roles):
    text = TEXT.replace("  - name: done\n    final: true\n",
                        "  - name: done\n    final: true\n  - name: limbo\n") \
        .replace("{trigger: finish, source: wrap_up, dest: done, roles: [manager]}",
                 "{trigger: finish, source: wrap_up, dest: done, roles: [manager]}\n"
                 "  - {trigger: park, source: wrap_up, dest: limbo, roles: [manager]}\n"
                 "  - {trigger: unpark, source: limbo, dest: done, roles: [system]}")
    spec, diagnostics = load_process_text(text, FILENAME, roles)
    assert spec is not None
    (d,) = [d for d in diagnostics if "no task, timer or call" in d.message]
    assert (d.severity, d.line, d.path) == ("warning", line_of(text, "- name: limbo"), "states[6]")
    quiet = text.replace("  - name: limbo\n", "  - name: limbo\n    end_when_idle: true\n")
    assert load_process_text(quiet, FILENAME, roles)[1] == []


# ------------------------------------------------------------------ call

def test_call_unknown_key(roles):
    expect(roles, "      on_end: {paired: paired}", "      on_ends: {paired: paired}", "on_ends",
           "states[3].call.on_ends", "unknown key 'on_ends'")


def test_call_needs_a_process(roles):
    text = TEXT.replace("      process: run_time_child\n", "      proces: run_time_child\n")
    spec, diagnostics = load_process_text(text, FILENAME, roles)
    line = line_of(text, "proces: run_time_child")
    assert spec is None and sorted((d.line, d.column, d.path) for d in diagnostics) == [
        (line - 1, 5, "states[3].call.process"), (line, 7, "states[3].call.proces")]
    assert "missing required key 'process'" in diagnostics[0].message + diagnostics[1].message


def test_call_with_a_task(roles):
    text = TEXT.replace("  - name: pairing\n    call:", "  - name: pairing\n    task: {role: clerk}\n    call:")
    d = only_error(text, roles)
    line = [i for i, l in enumerate(text.splitlines(), 1) if l.strip() == "call:"][0]
    assert (d.line, d.column, d.path) == (line, 5, "states[3].call") and "no task of its own" in d.message


def test_call_data_unknown_parent_field(roles):
    expect(roles, "data: {person: name}", "data: {person: nmae}", "nmae", "states[3].call.data.person",
           "did you mean 'name'")


def test_call_result_unknown_parent_field(roles):
    expect(roles, "result: {mentor: mentor}", "result: {mentr: mentor}", "mentr", "states[3].call.result.mentr",
           "did you mean 'mentor'")


def test_call_on_end_unknown_trigger(roles):
    expect(roles, "on_end: {paired: paired}", "on_end: {paired: pared}", "pared", "states[3].call.on_end.paired",
           "no transition with trigger 'pared'")


def test_call_itself(roles):
    text = TEXT.replace("      process: run_time_child\n", "      process: run_time\n")
    d = only_error(text, roles)
    line = line_of(text, "      process: run_time")
    assert (d.line, d.column, d.path) == (line, 16, "states[3].call.process") and "cannot call itself" in d.message


def check_folder(folder: Path) -> tuple[int, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    return check_paths([str(folder)], out=out, err=err), out.getvalue().splitlines()


def test_call_unknown_process_across_files(tmp_path):
    folder = tmp_path / "defs"
    shutil.copytree(FIXTURES, folder)
    text = TEXT.replace("process: run_time_child", "process: run_time_chld")
    (folder / "run_time.yaml").write_text(text, encoding="utf-8")
    status, lines = check_folder(folder)
    line = line_of(text, "process: run_time_chld")
    assert status == 1 and lines == [
        f"{folder}/run_time.yaml:{line}:{col_of(text, line, 'run_time_chld')}: error: states[3].call.process: "
        "未知的流程 'run_time_chld'，是否应为 'run_time_child'？ / unknown process 'run_time_chld'; "
        "did you mean 'run_time_child'?"]


def test_call_unknown_child_field_and_end_state(tmp_path):
    folder = tmp_path / "defs"
    shutil.copytree(FIXTURES, folder)
    text = TEXT.replace("data: {person: name}", "data: {persn: name}").replace(
        "on_end: {paired: paired}", "on_end: {pared: paired}")
    (folder / "run_time.yaml").write_text(text, encoding="utf-8")
    registry = load_definitions(folder)
    first, second = sorted(registry.errors, key=lambda d: d.line)
    assert (first.line, first.column, first.path) == (
        line_of(text, "persn"), col_of(text, line_of(text, "persn"), "persn"), "states[3].call.data.persn")
    assert "did you mean 'person'" in first.message
    assert (second.line, second.column, second.path) == (
        line_of(text, "pared:"), col_of(text, line_of(text, "pared:"), "pared"), "states[3].call.on_end.pared")
    assert "not a state where run_time_child ends" in second.message
    assert "run_time" not in registry.processes   # a process whose call is broken is not run


def test_call_is_checked_against_the_files_beside_a_single_file(tmp_path):
    """``hexie check FILE``: the called process, its fields and its ends are looked up in the
    folder the file sits in (where it will be loaded from), at their line and column."""
    folder = tmp_path / "defs"
    shutil.copytree(FIXTURES, folder)
    out, err = io.StringIO(), io.StringIO()
    assert check_paths([str(folder / "run_time.yaml")], out=out, err=err) == 0, out.getvalue()
    text = TEXT.replace("data: {person: name}", "data: {persn: name}").replace(
        "on_end: {paired: paired}", "on_end: {pared: paired}")
    (folder / "run_time.yaml").write_text(text, encoding="utf-8")
    out = io.StringIO()
    assert check_paths([str(folder / "run_time.yaml")], out=out, err=io.StringIO()) == 1
    lines = out.getvalue().splitlines()
    persn, pared = line_of(text, "persn"), line_of(text, "pared:")
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{folder}/run_time.yaml:{persn}:{col_of(text, persn, 'persn')}: error: "
                               "states[3].call.data.persn: ") and "did you mean 'person'" in lines[0]
    assert lines[1].startswith(f"{folder}/run_time.yaml:{pared}:{col_of(text, pared, 'pared')}: error: "
                               "states[3].call.on_end.pared: ") and "did you mean 'paired'" in lines[1]
    (folder / "run_time.yaml").write_text(TEXT.replace("process: run_time_child", "process: run_time_chld"),
                                          encoding="utf-8")
    out = io.StringIO()
    assert check_paths([str(folder / "run_time.yaml")], out=out, err=io.StringIO()) == 1
    assert "did you mean 'run_time_child'?" in out.getvalue()


def test_call_field_types_must_agree(tmp_path):
    folder = tmp_path / "defs"
    shutil.copytree(FIXTURES, folder)
    (folder / "run_time_child.yaml").write_text(
        (FIXTURES / "run_time_child.yaml").read_text(encoding="utf-8").replace(
            "person: {type: text}", "person: {type: integer}"), encoding="utf-8")
    (d,) = load_definitions(folder).errors
    assert d.path == "states[3].call.data.person" and "differ in type" in d.message


def test_call_loop_across_files(tmp_path):
    folder = tmp_path / "defs"
    shutil.copytree(FIXTURES, folder)
    child = (FIXTURES / "run_time_child.yaml").read_text(encoding="utf-8").replace(
        "  - name: paired\n", "  - name: back\n    call: {process: run_time, on_end: {done: pair}}\n"
        "  - name: paired\n").replace("{trigger: pair, source: match, dest: paired}",
                                      "{trigger: pair, source: [back, match], dest: paired}\n"
                                      "  - {trigger: again, source: match, dest: back}")
    (folder / "run_time_child.yaml").write_text(child, encoding="utf-8")
    errors = load_definitions(folder).errors
    assert any("calls itself through a chain of calls" in d.message for d in errors), errors


# ------------------------------------------------------------------ fuzz

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=fuzz.mutated_from(TEXT))
def test_mutated_run_time_definitions_never_crash_the_checker(roles, text):
    spec, diagnostics = load_process_text(text, FILENAME, roles)
    errors = [d for d in diagnostics if d.severity == "error"]
    assert (spec is not None) != bool(errors), diagnostics
    for d in diagnostics:
        assert d.line >= 1 and d.column >= 1, d
        assert "internal error" not in d.message, d


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=fuzz.mutated_from((FIXTURES / "run_time_child.yaml").read_text(encoding="utf-8")))
def test_mutated_children_never_crash_the_folder_check(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("defs")
    for name in ("roles.yaml", "run_time.yaml"):
        shutil.copy(FIXTURES / name, folder)
    (folder / "run_time_child.yaml").write_text(text, encoding="utf-8")
    for d in load_definitions(folder).diagnostics:
        assert d.line >= 1 and "internal error" not in d.message, d


def test_the_patterns_table_names_real_tests():
    """docs/patterns.md: 20 control-flow and 43 resource patterns, at least 14 of the 20 fully
    supported, and every test it names exists."""
    import re
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "patterns.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (R?\d+) \| [^|]+ \| (yes|partly|no) \|(.*)$", text, re.M)
    flow = [r for r in rows if not r[0].startswith("R")]
    resource = [r for r in rows if r[0].startswith("R")]
    assert [int(r[0]) for r in flow] == list(range(1, 21))
    assert [r[0] for r in resource] == [f"R{i}" for i in range(1, 44)]
    assert sum(r[1] == "yes" for r in flow) >= 14
    for number, verdict, rest in rows:
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", rest)
        assert verdict == "no" or named, number
        for path, test in named:
            assert re.search(rf"^def {test}\(", (root / path).read_text(encoding="utf-8"), re.M), (number, test)
