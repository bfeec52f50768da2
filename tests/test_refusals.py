"""Why an action is refused, in words built from the field labels (definitions.md, additions)."""
from __future__ import annotations

import textwrap

import pytest

from hexie.workflows.errors import Invalid
from hexie.workflows.loader import load_process_text
from hexie.workflows.refusals import explain, refusal

from .engine_helpers import DEFINITIONS

SOURCE = textwrap.dedent("""
    process: grant
    title: {zh: 补助, en: Grant}
    fields:
      amount:  {type: money, label: {zh: 批准金额, en: Approved amount}}
      size:    {type: integer, label: {zh: 家庭人口, en: Household size}}
      income:  {type: money, label: {zh: 年收入, en: Yearly income}}
      consent: {type: boolean, label: {zh: 同意转介, en: Consents to referral}}
      kind:    {type: choice, choices: {cash: {zh: 现金, en: Cash}, goats: {zh: 山羊, en: Goats}},
                label: {zh: 救助物资, en: Aid given}}
      agencies: {type: multichoice, choices: {police: {zh: 派出所, en: Police}}, label: {zh: 转介部门, en: Agencies}}
      due_on:  {type: date, label: {zh: 到期日, en: Due on}}
      paid_on: {type: date, label: {zh: 发放日, en: Paid on}}
    states:
      - {name: draft, task: {role: village_rep}}
      - {name: done, final: true}
    transitions:
      - {trigger: pay, source: draft, dest: done, when: "amount <= 800"}
      - {trigger: pay2, source: draft, dest: done, when: "amount <= 800",
         message: {zh: 项目帮扶每户不超过 800 元, en: project aid is at most 800 yuan a household}}
""")


@pytest.fixture(scope="module")
def spec():
    from hexie.workflows.loader import load_roles

    roles, _ = load_roles(DEFINITIONS / "roles.yaml")
    spec, diagnostics = load_process_text(SOURCE, "grant.yaml", roles)
    assert spec is not None, diagnostics
    return spec


@pytest.mark.parametrize("source, zh, en", [
    ("amount <= 800", "批准金额须不超过 800", "Approved amount must be at most 800"),
    ("amount > 0", "批准金额须大于 0", "Approved amount must be more than 0"),
    ("income / size < 4000", "年收入 ÷ 家庭人口须小于 4000", "Yearly income ÷ Household size must be less than 4000"),
    ("consent == true", "须勾选「同意转介」", "Consents to referral must be ticked"),
    ("consent", "须勾选「同意转介」", "Consents to referral must be ticked"),
    ("not consent", "「同意转介」不能勾选", "Consents to referral must not be ticked"),
    ("kind == 'goats'", "救助物资须为「山羊」", "Aid given must be “Goats”"),
    ("kind != 'cash'", "救助物资不能为「现金」", "Aid given must not be “Cash”"),
    ("kind in ['cash', 'goats']", "救助物资须为以下之一：「现金」、「山羊」", "Aid given must be one of “Cash”, “Goats”"),
    ("'police' in agencies", "「转介部门」须包含「派出所」", "Agencies must include “Police”"),
    ("due_on > paid_on", "到期日须晚于发放日", "Due on must be after Paid on"),
    ("amount != null", "须填写「批准金额」", "Approved amount must be filled in"),
    ("amount <= 800 and (kind == 'cash' or consent)",
     "批准金额须不超过 800，且（救助物资须为「现金」，或须勾选「同意转介」）",
     "Approved amount must be at most 800, and (Aid given must be “Cash”, or Consents to referral must be ticked)"),
    ("days_between(paid_on, today()) <= 30", "从发放日到今天的天数须不超过 30",
     "the days from Paid on to today must be at most 30"),
])
def test_guards_are_put_into_words(spec, source, zh, en):
    said = explain(source, spec)
    assert (said.zh, said.en) == (zh, en)


def test_what_has_no_plain_wording_names_the_fields_never_the_expression(spec):
    said = explain("amount if consent else size", spec)
    assert "批准金额" in said.zh and "if" not in said.zh and "amount" not in said.en.split()


def test_a_transitions_own_message_comes_first(spec):
    pay, pay2 = spec.transitions[-2:]
    assert refusal(pay2, spec).zh == "项目帮扶每户不超过 800 元"
    assert refusal(pay, spec).en == "Approved amount must be at most 800"


def test_the_checker_reports_a_message_of_the_wrong_type():
    from hexie.workflows.loader import load_roles

    roles, _ = load_roles(DEFINITIONS / "roles.yaml")
    bad = SOURCE.replace("message: {zh: 项目帮扶每户不超过 800 元, en: project aid is at most 800 yuan a household}",
                         "message: [1, 2]")
    spec, diagnostics = load_process_text(bad, "grant.yaml", roles)
    assert spec is None
    assert any("transitions[1].message" in str(d) for d in diagnostics)


def test_a_refused_action_says_why_in_words_and_keeps_the_expression_for_the_api(session_factory, tmp_path):
    from .engine_helpers import env_with

    two_steps = SOURCE.replace(
        "  - {name: draft, task: {role: village_rep}}",
        "  - {name: start, task: {role: village_rep, form: [amount, kind]}}\n  - {name: draft, task: {role: village_rep}}",
    ).replace("transitions:\n", "transitions:\n  - {trigger: submit, source: start, dest: draft}\n")
    env = env_with(session_factory, tmp_path / "defs", grant=two_steps)
    case_id = env.service.start_case(env.actor("rep"), "grant", "t01v01", {"amount": "900", "kind": "cash"})
    env.service.fire(env.actor("rep"), case_id, "submit")
    before = env.snapshot()
    with pytest.raises(Invalid) as refused:
        env.service.fire(env.actor("rep"), case_id, "pay")
    assert refused.value.zh == "不能执行此操作：批准金额须不超过 800"
    assert refused.value.en == "not allowed now: Approved amount must be at most 800"
    assert refused.value.details == {"when": "批准金额须不超过 800 / Approved amount must be at most 800",
                                     "expression": "amount <= 800"}
    with pytest.raises(Invalid) as refused:
        env.service.fire(env.actor("rep"), case_id, "pay2")
    assert "项目帮扶每户不超过 800 元" in refused.value.zh and "amount" not in refused.value.en
    assert env.snapshot() == before
    # the case page's "why not" says the same words
    case = env.queries.case(env.actor("rep"), case_id)
    why = {b["trigger"]: b for b in case["blocked_actions"]}
    assert why["pay"]["reason_zh"] == "批准金额须不超过 800"
    assert why["pay2"]["reason_en"] == "project aid is at most 800 yuan a household"
