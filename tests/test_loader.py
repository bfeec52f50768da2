"""The definition loader: every error kind at its exact place, and the specs it builds."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from decimal import Decimal
from pathlib import Path
from textwrap import dedent

import pytest

from hexie.workflows.loader import (
    DefinitionError, Registry, default_definitions_dir, load_definitions, load_definitions_strict,
    load_process_file, load_process_text, load_roles, parse_duration,
)
from hexie.workflows.spec import Diagnostic, ProcessSpec

FIXTURES = Path(__file__).parent / "fixtures" / "defs"
PROJECT_DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"


@pytest.fixture(scope="module")
def roles():
    spec, diagnostics = load_roles(FIXTURES / "roles.yaml")
    assert diagnostics == []
    return spec


def load(text: str, roles, filename: str = "demo.yaml") -> tuple[ProcessSpec | None, list[Diagnostic]]:
    return load_process_text(source(text), filename, roles)


def source(text: str) -> str:
    """Inline YAML as the loader sees it: dedented, the first line is line 1."""
    return dedent(text).lstrip("\n")


def column(text: str, line: int, needle: str) -> int:
    """1-based column of ``needle`` on ``line`` of the (dedented) text."""
    found = source(text).splitlines()[line - 1].find(needle)
    assert found >= 0, f"{needle!r} is not on line {line}"
    return found + 1


def problem(text: str, roles, severity: str = "error", filename: str = "demo.yaml") -> Diagnostic:
    """The one diagnostic of ``severity`` that ``text`` produces."""
    spec, diagnostics = load(text, roles, filename)
    found = [d for d in diagnostics if d.severity == severity]
    assert len(found) == 1, "\n".join(map(str, diagnostics))
    if severity == "error":
        assert spec is None
    return found[0]


def assert_at(d: Diagnostic, line: int, column_: int, path: str, fragment: str) -> None:
    assert (d.line, d.column, d.path) == (line, column_, path), str(d)
    assert fragment in d.message, str(d)


def check(text: str, roles, line: int, needle: str, path: str, fragment: str, **kw) -> Diagnostic:
    """``text`` has exactly one error, at ``needle`` on ``line``, with ``path`` and ``fragment``."""
    d = problem(text, roles, **kw)
    assert_at(d, line, column(text, line, needle), path, fragment)
    return d


# A valid process, the base most cases below change in one place.
VALID = """
process: demo
title: Demo
fields:
  amount: {type: money}
states:
  - name: draft
    task: {role: clerk, form: [amount]}
  - {name: done, final: true}
transitions:
  - {trigger: submit, source: draft, dest: done}
"""


def test_valid_base_loads(roles):
    spec, diagnostics = load(VALID, roles)
    assert diagnostics == []
    assert spec.key == "demo" and spec.initial_state.name == "draft"


# ---------------------------------------------------------------- YAML level

def test_yaml_syntax_error_at_the_parser_mark(roles):
    text = """
        process: demo
        title: [Demo
        states: []
        """
    # the flow sequence is still open when the parser meets the next key
    check(text, roles, 3, ": []", "", "YAML syntax error")


@pytest.mark.parametrize("text, line, zh, en", [
    ("process: demo\ntitle: Demo: the first\n", 2, "值里有“: ”时请给值加引号", "put a value that contains ': ' in quotes"),
    ("process: demo\n\ttitle: Demo\n", 2, "不能用制表符（Tab）缩进，请改用空格", "cannot be indented with tabs: use spaces"),
    ("process: demo\nfields:\n  a:\n    type: text\n   label: x\n", 5, "缩进不对", "the indentation is wrong"),
    ("process: demo\ntitle: {zh: 演示 en: Demo}\n", 2, "在 { } 里，各项之间要用逗号分开", "inside { }, items are separated by commas"),
    ("process: demo\ntitle: 'Demo\n", 3, "引号没有闭合：第 2 行开始的文本缺少结尾的引号",
     "a quote is not closed: the text that starts on line 2"),
    ("process: demo\ntitle: *name\n", 2, "别名 *name 没有定义", "the alias *name is not defined"),
    ("process: demo\ntitle: '@demo' x\n", 2, "引号结束后不能再写内容", "nothing may follow a closing quote"),
    ("process: demo\ntitle: @demo\n", 2, "值不能以“@”开头，请给这个值加引号", "a value cannot start with '@'"),
])
def test_yaml_syntax_errors_say_how_to_mend_them(roles, text, line, zh, en):
    """PyYAML's words are about its tokens ("expected <block end>, but found '<scalar>'"): the
    administrator reads what is wrong on that line and what to write instead, zh then en."""
    d = problem(text, roles)
    assert d.line == line, str(d)
    assert d.message.index("YAML 语法错误：") < d.message.index(zh) < d.message.index("YAML syntax error: ")
    assert en in d.message and "<" not in d.message, str(d)


def test_yaml_forbidden_character(roles):
    d = problem("process: demo\ntitle: a\x07b\n", roles)
    assert_at(d, 2, 9, "", "YAML syntax error")


def test_empty_file(roles):
    assert_at(problem("", roles), 1, 1, "", "empty")


def test_top_level_must_be_a_mapping(roles):
    assert_at(problem("- a\n- b\n", roles), 1, 1, "", "top level must be a mapping")


def test_duplicate_key_in_any_mapping(roles):
    text = """
        process: demo
        title: Demo
        states:
          - name: draft
            task: {role: clerk, role: manager}
          - {name: done, final: true}
        transitions:
          - {trigger: submit, source: draft, dest: done}
        """
    check(text, roles, 5, "role: manager", "states[0].task.role", "duplicate key 'role' (first at line 5)")


def test_several_documents_are_a_syntax_error(roles):
    check(VALID + "---\nextra: 1\n", roles, 11, "---", "", "expected a single document")


def test_recursive_alias(roles):
    text = VALID.replace("title: Demo", "title: &t [*t]")
    spec, diagnostics = load(text, roles)
    assert spec is None
    d = next(d for d in diagnostics if "refers to itself" in d.message)
    # PyYAML resolves an alias to the anchored node itself, so that is where it points
    assert (d.line, d.column, d.path) == (2, column(text, 2, "&t"), "title[0]")


def test_alias_bombs_are_stopped(roles):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 7):
        prev, name = chr(ord("a") + n - 1), chr(ord("a") + n)
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    d = problem("\n".join(levels) + "\n", roles)
    assert_at(d, 1, 1, "", "document too large")


def test_merge_keys_are_followed(roles):
    spec, diagnostics = load("""
        process: demo
        title: Demo
        states:
          - name: draft
            task: &base {role: clerk, due: 3d}
          - name: check
            task: {<<: *base, role: manager}
          - {name: done, final: true}
        transitions:
          - {trigger: submit, source: draft, dest: check}
          - {trigger: ok, source: check, dest: done}
        """, roles)
    assert diagnostics == []
    task = spec.state("check").tasks[0]
    assert (task.role, task.due) == ("manager", dt.timedelta(days=3))


# ---------------------------------------------------------------- shape (schemas)

def test_unknown_key_suggests_the_nearest(roles):
    check(VALID.replace("title: Demo", "title: Demo\ntitel: Demo"), roles, 3, "titel", "titel",
          "unknown key 'titel'; did you mean 'title'?")


def test_unknown_key_in_a_task(roles):
    check(VALID.replace("form: [amount]}", "form: [amount], rol: x}"), roles, 7, "rol:", "states[0].task.rol",
          "did you mean 'role'?")


def test_unknown_language_in_a_text(roles):
    check(VALID.replace("title: Demo", "title: {zh: 演示, fr: Démo}"), roles, 2, "fr", "title.fr",
          "unknown language 'fr'")


def test_missing_required_key_at_the_mapping(roles):
    text = VALID.replace("{trigger: submit, source: draft, dest: done}", "{trigger: submit, source: draft}")
    check(text, roles, 10, "{trigger", "transitions[0].dest", "missing required key 'dest'")


def test_missing_top_level_key(roles):
    check(VALID.replace("title: Demo\n", ""), roles, 1, "process", "title", "missing required key 'title'")


def test_wrong_type(roles):
    check(VALID.replace("title: Demo", "title: Demo\nconfidential: 'no'"), roles, 3, "'no'", "confidential",
          "expected true or false, got text")


def test_wrong_type_for_a_list_points_at_the_value(roles):
    check(VALID.replace("form: [amount]", "form: amount"), roles, 7, "amount", "states[0].task.form",
          "expected a list, got text")


def test_wrong_type_for_a_mapping_points_at_the_value(roles):
    check(VALID.replace("task: {role: clerk, form: [amount]}", "task: clerk"), roles, 7, "clerk", "states[0].task",
          "expected a mapping (key: value), got text")


def test_wrong_type_for_the_fields_mapping(roles):
    check(VALID.replace("amount: {type: money}", "amount: money"), roles, 4, "money", "fields.amount",
          "expected a mapping (key: value), got text")


def test_empty_value_points_at_the_key(roles):
    check(VALID.replace("{role: clerk,", "{role: ,"), roles, 7, "role", "states[0].task.role", "'role' has no value")


def test_invalid_process_key(roles):
    check(VALID.replace("process: demo", "process: Demo-1"), roles, 1, "Demo-1", "process",
          "invalid process key 'Demo-1'", filename="Demo-1.yaml")


def test_the_file_name_need_not_be_the_process_key(roles):
    spec, diagnostics = load(VALID, roles, filename="defs/other.yaml")
    assert diagnostics == [] and spec.key == "demo"


@pytest.mark.parametrize("entry, fragment", [
    ("5", "expected a field name or {field, required}, got an integer"), ("[1]", "got a list"),
    ("true", "got a boolean"), ("1.5", "got a number"), ("[]", "got a list"), ("null", "has no value")])
def test_a_form_entry_of_the_wrong_type_is_reported_where_it_is(roles, entry, fragment):
    text = VALID.replace("form: [amount]", f"form: [{entry}]")
    check(text, roles, 7, entry, "states[0].task.form[0]", fragment)


def test_a_duplicate_state_name_is_reported_once(roles):
    text = VALID.replace("  - {name: done, final: true}", "  - {name: done, final: true}\n  - {name: draft, final: true}")
    d = problem(text, roles)
    assert d.path == "states[2].name" and "duplicate state name 'draft'" in d.message


def test_invalid_field_type_suggests_the_nearest(roles):
    check(VALID.replace("{type: money}", "{type: mony}"), roles, 4, "mony", "fields.amount.type",
          "unknown field type 'mony'; did you mean 'money'?")


def test_choice_without_choices(roles):
    check(VALID.replace("{type: money}", "{type: choice}"), roles, 4, "amount", "fields.amount.choices",
          "a choice field needs choices")


def test_choices_on_another_type(roles):
    check(VALID.replace("{type: money}", "{type: money, choices: [a, b]}"), roles, 4, "choices",
          "fields.amount.choices", "only choice and multichoice fields take choices")


def test_unquoted_choice_keys_are_text(roles):
    spec, diagnostics = load(VALID.replace("{type: money}", "{type: choice, choices: [yes, no, 1], default: yes}"), roles)
    assert diagnostics == []
    assert spec.fields["amount"].choice_keys == ("yes", "no", "1")
    assert spec.fields["amount"].default == "yes"


def test_bad_pattern_points_into_the_regex(roles):
    text = VALID.replace("{type: money}", "{type: text, pattern: '^[0-9'}")
    # re reports the unterminated set at its '[' (offset 1 of the pattern)
    check(text, roles, 4, "[0-9", "fields.amount.pattern", "invalid regular expression")


def test_min_greater_than_max(roles):
    check(VALID.replace("{type: money}", "{type: money, min: 10, max: 5}"), roles, 4, "10", "fields.amount.min",
          "min (10) is greater than max (5)")


def test_bound_of_the_wrong_type(roles):
    check(VALID.replace("{type: money}", "{type: integer, max: 2.5}"), roles, 4, "2.5", "fields.amount.max",
          "expected a whole number")


@pytest.mark.parametrize("field, needle, fragment", [
    ("{type: integer, default: ten}", "ten", "expected a whole number, got text"),
    ("{type: money, default: 1.234}", "1.234", "money has at most two decimals"),
    ("{type: date, default: tomorrow}", "tomorrow", "expected a date"),
    ("{type: boolean, default: 1}", "1", "expected true or false"),
    ("{type: choice, choices: [a, b], default: c}", "c}", "'c' is not a choice"),
    ("{type: integer, min: 1, default: 0}", "0", "below min"),
    ("{type: text, max_length: 2, default: abc}", "abc", "longer than max_length"),
    ("{type: file, default: x}", "x}", "cannot have a default"),
])
def test_default_must_fit_the_type(roles, field, needle, fragment):
    check(VALID.replace("{type: money}", field), roles, 4, needle, "fields.amount.default", fragment)


def test_invalid_field_name(roles):
    check(VALID.replace("amount: {type: money}", "amount: {type: money}\n  not: {type: text}"), roles, 5, "not",
          "fields.not", "invalid field name 'not'")


def test_options_without_effect_are_warned_about(roles):
    text = VALID.replace("{type: money}", "{type: money, max_length: 5}")
    spec, diagnostics = load(text, roles)
    assert spec is not None
    (d,) = diagnostics
    assert d.severity == "warning"
    assert_at(d, 4, column(text, 4, "max_length"), "fields.amount.max_length", "no effect on a money field")


def test_a_field_twice_in_one_form_is_warned_about(roles):
    text = VALID.replace("form: [amount]", "form: [amount, amount]")
    spec, diagnostics = load(text, roles)
    assert spec is not None
    (d,) = diagnostics
    assert d.severity == "warning" and d.path == "states[0].task.form[1]" and "listed twice" in d.message


def test_state_names_are_identifiers(roles):
    text = VALID.replace("name: draft", "name: first draft").replace("source: draft", "source: first draft")
    check(text, roles, 6, "first draft", "states[0].name", "invalid state name 'first draft'")


def test_trigger_names_are_identifiers(roles):
    check(VALID.replace("trigger: submit", "trigger: send off"), roles, 10, "send off", "transitions[0].trigger",
          "invalid trigger 'send off'")


def test_quorum_below_one(roles):
    check(VALID.replace("dest: done}", "dest: done, quorum: 0}"), roles, 10, "0}", "transitions[0].quorum",
          "quorum must be at least 1")


def test_comment_rule(roles):
    check(VALID.replace("dest: done}", "dest: done, comment: requird}"), roles, 10, "requird",
          "transitions[0].comment", "unknown comment rule 'requird'; did you mean 'required'?")


def test_priority(roles):
    check(VALID.replace("form: [amount]}", "form: [amount], priority: urgent}"), roles, 7, "urgent",
          "states[0].task.priority", "unknown priority 'urgent'")


def test_task_and_tasks_together(roles):
    check(VALID.replace("form: [amount]}", "form: [amount]}\n    tasks: [{name: a, role: clerk}]"), roles, 8,
          "tasks", "states[0].tasks", "either task or tasks, not both")


def test_parallel_task_needs_a_name(roles):
    check(VALID.replace("task: {role: clerk, form: [amount]}", "tasks: [{role: clerk}]"), roles, 7, "{role",
          "states[0].tasks[0].name", "missing required key 'name'")


def test_parallel_task_names_are_unique(roles):
    text = VALID.replace("task: {role: clerk, form: [amount]}",
                         "tasks: [{name: a, role: clerk}, {name: a, role: manager}]")
    check(text, roles, 7, "a, role: manager", "states[0].tasks[1].name", "duplicate parallel task name 'a'")


def test_timer_needs_after_or_at(roles):
    check(VALID.replace("form: [amount]}", "form: [amount]}\n    timers: [{trigger: submit}]"), roles, 8,
          "{trigger", "states[0].timers[0]", "a timer needs either after")


def test_timer_has_after_or_at_not_both(roles):
    text = VALID.replace("form: [amount]}", "form: [amount]}\n    timers: [{after: 1d, at: amount, trigger: submit}]")
    spec, diagnostics = load(text, roles)
    assert any(d.path == "states[0].timers[0].at" and "not both" in d.message for d in diagnostics)


# ---------------------------------------------------------------- durations

@pytest.mark.parametrize("text, expected", [
    ("30m", dt.timedelta(minutes=30)), ("12h", dt.timedelta(hours=12)), ("3d", dt.timedelta(days=3)),
    ("2w", dt.timedelta(weeks=2)), ("P180D", dt.timedelta(days=180)), ("PT12H", dt.timedelta(hours=12)),
    ("P1W", dt.timedelta(weeks=1)), ("P1DT2H", dt.timedelta(days=1, hours=2)),
    ("PT1H30M", dt.timedelta(hours=1, minutes=30)), ("p2d", dt.timedelta(days=2)),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("3x", "bad duration"), ("P", "bad duration"), ("PT", "bad duration"), ("P1DT", "bad duration"),
    ("", "bad duration"), ("3", "bad duration"), ("-3d", "bad duration"), ("P1M", "no fixed length"),
    ("P1Y", "no fixed length"), ("0d", "longer than zero"), (30, "must be text"),
])
def test_parse_duration_refuses(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_duration(text)


def test_bad_duration(roles):
    check(VALID.replace("form: [amount]}", "form: [amount], due: 3x}"), roles, 7, "3x", "states[0].task.due",
          "bad duration '3x'")


def test_bad_escalation_duration(roles):
    check(VALID.replace("form: [amount]}", "form: [amount], escalate: {after: P1M, to: manager}}"), roles, 7,
          "P1M", "states[0].task.escalate.after", "no fixed length")


def test_bad_timer_duration(roles):
    check(VALID.replace("form: [amount]}", "form: [amount]}\n    timers: [{after: 30, trigger: submit}]"), roles, 8,
          "30", "states[0].timers[0].after", "must be text such as 3d")


# ---------------------------------------------------------------- references

def test_duplicate_state_names(roles):
    text = VALID.replace("  - {name: done, final: true}", "  - {name: done, final: true}\n  - {name: draft}")
    check(text, roles, 9, "draft", "states[2].name", "duplicate state name 'draft'")


def test_several_initial_states(roles):
    text = """
        process: demo
        title: Demo
        states:
          - {name: a, initial: true}
          - {name: b, initial: true}
          - {name: done, final: true}
        transitions:
          - {trigger: go, source: a, dest: b}
          - {trigger: end, source: b, dest: done}
        """
    check(text, roles, 5, "true", "states[1].initial", "several states are marked initial")


def test_explicit_initial_state(roles):
    spec, diagnostics = load("""
        process: demo
        title: Demo
        states:
          - {name: done, final: true}
          - {name: start, initial: true}
        transitions:
          - {trigger: end, source: start, dest: done}
        """, roles)
    assert diagnostics == [] and spec.initial_state.name == "start"


def test_unknown_source(roles):
    check(VALID.replace("source: draft", "source: draf"), roles, 10, "draf", "transitions[0].source",
          "unknown state 'draf'; did you mean 'draft'?")


def test_unknown_source_in_a_list(roles):
    check(VALID.replace("source: draft", "source: [draft, nowhere]"), roles, 10, "nowhere",
          "transitions[0].source[1]", "unknown state 'nowhere'")


def test_unknown_dest(roles):
    check(VALID.replace("dest: done}", "dest: dne}"), roles, 10, "dne", "transitions[0].dest",
          "unknown state 'dne'; did you mean 'done'?")


def test_unknown_same_as(roles):
    check(VALID.replace("form: [amount]}", "form: [amount], assign: {same_as: drat}}"), roles, 7, "drat",
          "states[0].task.assign.same_as", "unknown state 'drat'; did you mean 'draft'?")


def test_same_as_state_without_a_task(roles):
    check(VALID.replace("form: [amount]}", "form: [amount], assign: {same_as: done}}"), roles, 7, "done",
          "states[0].task.assign.same_as", "state 'done' has no task")


def test_unknown_separate_from(roles):
    check(VALID.replace("form: [amount]}", "form: [amount], separate_from: [draft, nope]}"), roles, 7, "nope",
          "states[0].task.separate_from[1]", "unknown state 'nope'")


def test_separate_from_state_without_a_task(roles):
    check(VALID.replace("form: [amount]}", "form: [amount], separate_from: [done]}"), roles, 7, "done",
          "states[0].task.separate_from[0]", "state 'done' has no task")


def test_unknown_task_form_field(roles):
    check(VALID.replace("form: [amount]", "form: [amont]"), roles, 7, "amont", "states[0].task.form[0]",
          "unknown field 'amont'; did you mean 'amount'?")


def test_unknown_form_field_in_an_entry_mapping(roles):
    check(VALID.replace("form: [amount]", "form: [{field: amout, required: true}]"), roles, 7, "amout",
          "states[0].task.form[0].field", "unknown field 'amout'")


def test_unknown_transition_form_field(roles):
    check(VALID.replace("dest: done}", "dest: done, form: [amunt]}"), roles, 10, "amunt", "transitions[0].form[0]",
          "unknown field 'amunt'; did you mean 'amount'?")


def test_unknown_task_role_suggests(roles):
    check(VALID.replace("role: clerk", "role: clrek"), roles, 7, "clrek", "states[0].task.role",
          "unknown role 'clrek' (not in roles.yaml); did you mean 'clerk'?")


def test_system_is_not_a_task_role(roles):
    check(VALID.replace("role: clerk", "role: system"), roles, 7, "system", "states[0].task.role",
          "'system' may only be used in transition roles")


def test_unknown_transition_role(roles):
    check(VALID.replace("dest: done}", "dest: done, roles: [system, managr]}"), roles, 10, "managr",
          "transitions[0].roles[1]", "did you mean 'manager'?")


def test_unknown_escalation_role(roles):
    check(VALID.replace("form: [amount]}", "form: [amount], escalate: {after: 2d, to: boss}}"), roles, 7, "boss",
          "states[0].task.escalate.to", "unknown role 'boss'")


def test_starters_name_known_roles(roles):
    check(VALID.replace("title: Demo", "title: Demo\nstarters: [clerk, mangaer]"), roles, 3, "mangaer",
          "starters[1]", "did you mean 'manager'?")


def test_unknown_org_level(roles):
    check(VALID.replace("title: Demo", "title: Demo\norg_level: twon"), roles, 3, "twon", "org_level",
          "unknown org level 'twon'; did you mean 'town'?")


def test_unknown_task_level(roles):
    check(VALID.replace("form: [amount]}", "form: [amount], at: villag}"), roles, 7, "villag",
          "states[0].task.at", "did you mean 'village'?")


# ---------------------------------------------------------------- expressions

def test_expression_syntax_error_points_into_the_expression(roles):
    # Python reports the missing operand where the text ends
    check(VALID.replace("dest: done}", "dest: done, when: amount >}"), roles, 10, "}", "transitions[0].when",
          "invalid expression: syntax error")


def test_expression_unknown_field(roles):
    d = check(VALID.replace("dest: done}", "dest: done, when: amout > 5}"), roles, 10, "amout",
              "transitions[0].when", "unknown name 'amout'")
    assert "did you mean 'amount'?" in d.message


def test_expression_in_quotes(roles):
    check(VALID.replace("dest: done}", "dest: done, when: \"amount > 5 and x\"}"), roles, 10, "x\"",
          "transitions[0].when", "unknown name 'x'")


def test_expression_is_compiled(roles):
    spec, diagnostics = load(VALID.replace("dest: done}", "dest: done, when: amount > 5}"), roles)
    assert diagnostics == []
    guard = spec.transitions[0].when
    assert guard.evaluate({"amount": Decimal("6")}) is True


# ---------------------------------------------------------------- timers, finals, the graph

def test_timer_trigger_without_a_transition(roles):
    d = check(VALID.replace("form: [amount]}", "form: [amount]}\n    timers: [{after: 2d, trigger: sbmit}]"), roles,
              8, "sbmit", "states[0].timers[0].trigger", "no transition with trigger 'sbmit' leaves state 'draft'")
    assert "did you mean 'submit'?" in d.message


def test_timer_at_unknown_field(roles):
    check(VALID.replace("form: [amount]}", "form: [amount]}\n    timers: [{at: due_on, trigger: submit}]"), roles, 8,
          "due_on", "states[0].timers[0].at", "unknown field 'due_on'")


def test_timer_at_field_must_be_a_date(roles):
    check(VALID.replace("form: [amount]}", "form: [amount]}\n    timers: [{at: amount, trigger: submit}]"), roles, 8,
          "amount", "states[0].timers[0].at", "timer field 'amount' is money, not date or datetime")


def test_final_state_with_a_task(roles):
    check(VALID.replace("{name: done, final: true}", "{name: done, final: true, task: {role: clerk}}"), roles, 8,
          "task", "states[1].task", "a final state cannot have a task")


def test_final_state_with_an_outgoing_transition(roles):
    check(VALID + "  - {trigger: reopen, source: done, dest: draft}\n", roles, 11, "done",
          "transitions[1].source", "final state 'done' cannot have an outgoing transition")


def test_star_source_expands_to_non_final_states(roles):
    spec, diagnostics = load(VALID + "  - {trigger: cancel, source: '*', dest: done}\n", roles)
    assert diagnostics == []
    assert spec.transitions[1].sources == ("draft",)


def test_unreachable_state(roles):
    text = VALID.replace("  - {name: done, final: true}", "  - {name: done, final: true}\n  - {name: limbo}")
    check(text, roles, 9, "{name: limbo", "states[2]", "state 'limbo' cannot be reached from the initial state 'draft'")


def test_warning_when_no_final_state_can_be_reached(roles):
    text = """
        process: demo
        title: Demo
        states:
          - {name: a}
          - {name: loop}
          - {name: done, final: true}
        transitions:
          - {trigger: go, source: a, dest: loop}
          - {trigger: again, source: loop, dest: loop}
          - {trigger: end, source: a, dest: done}
        """
    spec, diagnostics = load(text, roles)
    assert spec is not None, diagnostics
    (d,) = diagnostics
    assert d.severity == "warning"
    assert_at(d, 5, column(text, 5, "{name"), "states[1]", "no final state can be reached from state 'loop'")


def test_warning_for_a_shadowed_transition(roles):
    text = VALID + "  - {trigger: submit, source: draft, dest: done, when: amount > 1}\n"
    spec, diagnostics = load(text, roles)
    assert spec is not None
    (d,) = diagnostics
    assert d.severity == "warning"
    assert_at(d, 11, column(text, 11, "{trigger"), "transitions[1]", "transitions[0] has no guard")


def test_every_problem_is_reported(roles):
    spec, diagnostics = load("""
        process: demo
        title: Demo
        states:
          - name: draft
            task: {role: clrek, form: [amont], due: 3x}
          - {name: done, final: true}
        transitions:
          - {trigger: submit, source: draf, dest: done, comment: never}
        """, roles)
    assert spec is None
    paths = {d.path for d in diagnostics if d.severity == "error"}
    assert paths == {"states[0].task.role", "states[0].task.form[0]", "states[0].task.due",
                     "transitions[0].source", "transitions[0].comment"}
    assert [(d.line, d.column) for d in diagnostics] == sorted((d.line, d.column) for d in diagnostics)


# ---------------------------------------------------------------- what gets built

@pytest.fixture(scope="module")
def grant(roles):
    spec, diagnostics = load_process_file(FIXTURES / "small_grant.yaml", roles)
    assert diagnostics == []
    return spec


def test_build_header(grant):
    text = (FIXTURES / "small_grant.yaml").read_text(encoding="utf-8")
    assert grant.key == "small_grant"
    assert (grant.title.zh, grant.title.en) == ("小额补助", "Small grant")
    assert grant.description.zh == grant.description.en == "演示用"
    assert grant.org_level == "town" and grant.confidential is False
    assert grant.starters == ("clerk",)
    assert grant.source_text == text
    assert grant.content_hash == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert grant.path == str(FIXTURES / "small_grant.yaml")


def test_build_fields(grant):
    amount = grant.fields["amount"]
    assert (amount.min, amount.max, amount.default) == (Decimal("0"), Decimal("800.50"), Decimal("100"))
    assert all(isinstance(v, Decimal) for v in (amount.min, amount.max, amount.default))
    kind = grant.fields["kind"]
    assert kind.choice_keys == ("cash", "goods")
    assert (kind.choices[0][1].en, kind.choices[1][1].en) == ("Cash", "物资")
    assert grant.fields["tags"].choice_keys == ("urgent", "repeat")
    assert grant.fields["applicant"].label.en == "Applicant" and grant.fields["applicant"].max_length == 50
    assert grant.fields["notes"].label.zh == "notes"  # the name when no label
    assert grant.fields["photos"].multiple is True
    assert list(grant.fields) == ["applicant", "amount", "kind", "tags", "visit_on", "photos", "notes"]


def test_build_single_task_takes_the_state_name_and_label(grant):
    state = grant.state("application")
    assert state.initial and not state.parallel
    (task,) = state.tasks
    assert (task.name, task.label.en, task.role, task.due) == ("application", "Application", "clerk", dt.timedelta(days=3))
    # FormField.required merges the field's own flag and the entry's
    assert [(f.name, f.required) for f in task.form] == [("applicant", True), ("amount", True), ("kind", False)]


def test_build_parallel_tasks(grant):
    state = grant.state("review")
    assert state.parallel
    check, finance = state.tasks
    assert (check.name, check.due, check.escalate.after, check.escalate.to) == (
        "check", dt.timedelta(hours=12), dt.timedelta(weeks=1), "manager")
    assert (finance.name, finance.label.zh, finance.at, finance.optional) == ("finance_view", "财务意见", "county", True)


def test_build_assignment_rules_and_timers(grant):
    payment = grant.state("payment").tasks[0]
    assert (payment.separate_from, payment.priority) == (("review",), "high")
    visit = grant.state("visit")
    assert visit.tasks[0].same_as == "review"
    assert [(t.trigger, t.after, t.at_field) for t in visit.timers] == [
        ("visit_due", dt.timedelta(days=30), None), ("visit_due", None, "visit_on")]


def test_build_transitions(grant):
    submit, approve, back, pay, due, withdraw = grant.transitions
    assert [t.index for t in grant.transitions] == list(range(6))
    assert (submit.label.zh, submit.roles, submit.comment, submit.quorum) == ("submit", None, "optional", 1)
    assert approve.quorum == 2 and approve.when.evaluate({"amount": Decimal("600"), "kind": "goods"}) is True
    assert back.sources == ("review", "payment") and back.comment == "required"
    assert pay.label.en == "付款" and pay.form[0].name == "visit_on"
    assert due.system_only
    assert withdraw.sources == ("application", "review", "payment", "visit") and withdraw.interrupt


def test_the_example_of_the_language_page_loads():
    registry = load_definitions(FIXTURES / "spec_example")
    assert registry.diagnostics == []
    spec = registry.processes["poor_mother_aid"]
    assert [s.name for s in spec.states if s.final] == ["closed", "rejected"]
    assert spec.state("survey").tasks[0].escalate.to == "town_chair"
    assert spec.state("follow_up").tasks[0].same_as == "survey"
    assert spec.state("follow_up").timers[0].after == dt.timedelta(days=180)
    approve = spec.transitions_from("approval", "approve")[0]
    assert approve.quorum == 2 and approve.when.names == {"monthly_income", "household_size"}
    assert spec.transitions_from("survey", "withdraw")[0].sources == ("application", "survey")
    assert spec.fields["aid_kind"].choice_keys == ("piglets", "goats", "cash")
    assert spec.fields["approved_amount"].max == Decimal("800")


# ---------------------------------------------------------------- roles.yaml

def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_roles_load(roles):
    assert roles.levels == ("county", "town", "village")
    assert roles.roles["clerk"].label.en == "Village clerk"
    assert roles.roles["finance"].label.zh == "财务"


@pytest.mark.parametrize("text, line, column, path, fragment", [
    ("levels: [county]\nroles: {a: {lable: x}}\n", 2, 13, "roles.a.lable", "did you mean 'label'?"),
    ("roles: {a: {label: x}}\n", 1, 1, "levels", "missing required key 'levels'"),
    ("levels: [county, county]\nroles: {}\n", 1, 18, "levels[1]", "duplicate level 'county'"),
    ("levels: [county]\nroles: {system: {}}\n", 2, 9, "roles.system", "reserved"),
    ("levels: county\nroles: {}\n", 1, 9, "levels", "expected a list"),
    ("levels: [county]\nroles: [a]\n", 2, 1, "roles", "expected a mapping"),
])
def test_roles_file_problems(tmp_path, text, line, column, path, fragment):
    spec, diagnostics = load_roles(write(tmp_path, "roles.yaml", text))
    assert spec is None
    (d,) = diagnostics
    assert_at(d, line, column, path, fragment)


def test_missing_roles_file(tmp_path):
    spec, (d,) = load_roles(tmp_path / "roles.yaml")
    assert spec is None and (d.line, d.column) == (1, 1) and "cannot read" in d.message


def test_without_roles_only_the_shape_is_checked():
    spec, diagnostics = load_process_text(dedent(VALID).replace("clerk", "anyone"), "demo.yaml", None)
    assert diagnostics == [] and spec.states[0].tasks[0].role == "anyone"


# ---------------------------------------------------------------- folders

def test_load_definitions(roles):
    registry = load_definitions(FIXTURES)
    assert isinstance(registry, Registry)
    assert registry.diagnostics == [] and registry.errors == []
    assert list(registry.processes) == ["small_grant"]
    assert registry.roles == roles


def test_duplicate_process_keys_across_files(tmp_path):
    shutil.copy(FIXTURES / "roles.yaml", tmp_path)
    write(tmp_path, "demo.yaml", VALID)
    write(tmp_path, "demo.yml", VALID)
    registry = load_definitions(tmp_path)
    (d,) = registry.errors
    assert d.file == os.path.join(str(tmp_path), "demo.yml")
    assert_at(d, 1, 10, "process", "duplicate process key 'demo'")
    assert list(registry.processes) == ["demo"]


def test_strict_loading_raises_with_every_error(tmp_path):
    shutil.copy(FIXTURES / "roles.yaml", tmp_path)
    write(tmp_path, "demo.yaml", VALID.replace("role: clerk", "role: nobody").replace("dest: done", "dest: gone"))
    with pytest.raises(DefinitionError) as raised:
        load_definitions_strict(tmp_path)
    assert len(raised.value.diagnostics) == 2
    lines = str(raised.value).splitlines()
    assert lines == [str(d) for d in raised.value.diagnostics]
    assert lines[0].startswith(f"{tmp_path}/demo.yaml:7:18: error: states[0].task.role: ")


def test_strict_loading_returns_the_registry():
    assert "small_grant" in load_definitions_strict(FIXTURES).processes


def test_missing_folder(tmp_path):
    registry = load_definitions(tmp_path / "nope")
    assert registry.processes == {} and len(registry.errors) == 1


def test_default_definitions_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("HEXIE_DEFINITIONS", raising=False)
    assert default_definitions_dir() == PROJECT_DEFINITIONS
    monkeypatch.setenv("HEXIE_DEFINITIONS", str(tmp_path))
    assert default_definitions_dir() == tmp_path


def _project_files() -> list[str]:
    if not PROJECT_DEFINITIONS.is_dir():
        return []
    return sorted(p.name for p in PROJECT_DEFINITIONS.iterdir()
                  if p.suffix in (".yaml", ".yml") and p.name != "roles.yaml")


@pytest.mark.skipif(not _project_files(), reason="the project has no process definitions yet")
def test_project_definitions_load_without_errors():
    registry = load_definitions(PROJECT_DEFINITIONS)
    assert registry.errors == [], "\n".join(map(str, registry.errors))
    assert sorted(registry.processes) == sorted(Path(n).stem for n in _project_files())


@pytest.mark.parametrize("guard, holds", [("true", True), ("false", False), ("True", True), ("1", True)])
def test_an_unquoted_guard_is_an_expression(roles, guard, holds):
    spec, diagnostics = load(VALID.replace("{trigger: submit, source: draft, dest: done}",
                                           f"{{trigger: submit, source: draft, dest: done, when: {guard}}}"), roles)
    assert diagnostics == [], diagnostics
    assert spec.transitions[0].when.holds({}) is holds


@pytest.mark.parametrize("style, body, line", [
    (">-", "      amount > 1 and\n      nofield < 2", 15),      # folded: the lines join with a space
    ("|-", "      nofield < 2", 14)])                           # literal, on one line
def test_an_expression_error_in_a_block_scalar_points_into_it(roles, style, body, line):
    text = VALID.replace("  - {trigger: submit, source: draft, dest: done}", f"""  - trigger: submit
    source: draft
    dest: done
    when: {style}
{body}""")
    check(text, roles, line, "nofield", "transitions[0].when", "nofield")
