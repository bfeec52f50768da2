"""Earmarked funds: the ``ledger`` key of the definition language, the entries an action
posts, the money totals (only of cases one may see) and the reconciliation with the
audit trail — on SQLite and PostgreSQL."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import delete, select, update

from hexie.models import AuditEvent, LedgerEntry
from hexie.workflows.audit import verify_chain
from hexie.workflows.errors import Invalid
from hexie.workflows.ledger import LedgerQueries, fund_labels, verify_ledger
from hexie.workflows.spec import LEDGER_KEY

from .engine_helpers import DEFINITIONS, env_with, make_env, pay_spring_bud, spring_bud_to_disbursement
from .test_loader import check, load, roles  # noqa: F401  (the roles fixture)

# ------------------------------------------------------------------ the language

FUND = """
process: demo
title: Demo
fields:
  fund: {type: choice, choices: [a, b]}
  amount: {type: money}
  note: {type: text}
states:
  - name: draft
    task: {role: clerk, form: [fund, amount]}
  - {name: done, final: true}
transitions:
  - {trigger: pay, source: draft, dest: done, ledger: LEDGER}
"""


def _with(ledger: str) -> str:
    return FUND.replace("LEDGER", ledger)


def test_a_posting_transition_loads(roles):
    spec, diagnostics = load(_with("{fund: fund, amount: amount, kind: refund}"), roles)
    assert diagnostics == []
    ledger = spec.transitions[0].ledger
    assert (ledger.fund, ledger.amount, ledger.kind) == ("fund", "amount", "refund")
    spec, _ = load(_with("{fund: fund, amount: amount}"), roles)
    assert spec.transitions[0].ledger.kind == "payment"


def test_ledger_names_an_unknown_field(roles):
    check(_with("{fund: fund, amount: amuont}"), roles, 12, "amuont", "transitions[0].ledger.amount",
          "did you mean 'amount'")


def test_ledger_fund_must_be_a_choice_and_amount_money(roles):
    check(_with("{fund: note, amount: amount}"), roles, 12, "note", "transitions[0].ledger.fund",
          "must be a choice field")
    check(_with("{fund: fund, amount: note}"), roles, 12, "note", "transitions[0].ledger.amount",
          "must be a money field")


def test_ledger_keys_are_checked(roles):
    check(_with("{fund: fund}"), roles, 12, "ledger", "transitions[0].ledger.amount", "amount")
    check(_with("{fund: fund, amount: amount, kind: gift}"), roles, 12, "gift", "transitions[0].ledger.kind", "gift")
    check(_with("{fund: fund, amount: amount, bank: x}"), roles, 12, "bank", "transitions[0].ledger.bank", "bank")


# ------------------------------------------------------------------ the engine

@pytest.fixture
def env(session_factory):
    return make_env(session_factory, definitions=DEFINITIONS)


PEOPLE = {"rep": "rep", "cadre": "cadre2", "manager": "mgr1", "matcher": "ccadre"}


def _spring_bud_to_disbursement(env) -> int:
    return spring_bud_to_disbursement(env.service, env.actor, PEOPLE)


def _pay(env, case_id, amount="1200", year="2026-2027"):
    return pay_spring_bud(env.service, env.actor, "fin", case_id, amount, year)


def _entries(env):
    with env.engine.session_factory() as s:
        return s.scalars(select(LedgerEntry).order_by(LedgerEntry.id)).all()


def test_a_disbursement_posts_one_entry_recorded_in_the_audit_trail(env):
    case_id = _spring_bud_to_disbursement(env)
    assert _entries(env) == []                       # nothing posts before the money moves
    _pay(env, case_id, "1000.5")
    (entry,) = _entries(env)
    assert (entry.case_id, entry.process_key, entry.trigger, entry.fund, entry.kind, entry.amount) == \
        (case_id, "spring_bud", "disburse", "spring_bud_sponsors", "payment", Decimal("1000.50"))
    assert entry.actor_id == env.actor("fin").user_id and entry.org_path == "/county/t01/t01v01/"
    with env.engine.session_factory() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id,
                                                   AuditEvent.seq == entry.audit_seq)).one()
        assert (event.kind, event.trigger) == ("fired", "disburse")
        assert event.changes[LEDGER_KEY] == [None, {"fund": "spring_bud_sponsors", "kind": "payment",
                                                    "amount": "1000.50", "voucher": "CL-2026-007"}]
        assert entry.voucher == "CL-2026-007"   # ledger: {voucher: voucher_number}
        assert verify_chain(s) == [] and verify_ledger(s) == []
    # the history shows the posting like any other change
    history = env.queries.history(env.actor("mgr1"), case_id)
    assert history[-1]["changes"][LEDGER_KEY][1]["amount"] == "1000.50"


def test_a_refused_posting_writes_nothing(env):
    case_id = _spring_bud_to_disbursement(env)
    before = env.snapshot()
    with pytest.raises(Invalid) as info:
        _pay(env, case_id, "0")
    assert "disbursed_amount" in info.value.details
    assert env.snapshot() == before and _entries(env) == []


def test_totals_by_fund_town_and_month_count_only_what_she_may_see(env):
    first = _spring_bud_to_disbursement(env)
    _pay(env, first, "1200")
    env.clock.advance(days=40)
    second = _spring_bud_to_disbursement(env)
    _pay(env, second, "800.25")
    ledger = LedgerQueries(env.engine)

    county = ledger.summary(env.actor("mgr1"))
    assert county["funds"] == [{"process": "spring_bud", "fund": "spring_bud_sponsors", "entries": 2,
                                "paid": Decimal("2000.25"), "refunded": Decimal("0.00"), "net": Decimal("2000.25")}]
    assert county["total"]["net"] == Decimal("2000.25") and county["total"]["entries"] == 2
    (town,) = county["towns"]
    assert (town["code"], town["total"]) == ("t01", Decimal("2000.25"))
    assert [(m["month"], m["paid"]) for m in county["months"]] == [("2026-03", Decimal("1200.00")),
                                                                   ("2026-04", Decimal("800.25"))]
    page = ledger.entries(env.actor("mgr1"))
    assert page.total == 2 and [e["case_id"] for e in page.items] == [second, first]   # newest first
    assert page.items[0]["amount"] == Decimal("800.25") and page.items[0]["subject"]

    other_town = env.actor("cadre_t02")
    assert ledger.summary(other_town)["funds"] == [] and ledger.entries(other_town).total == 0
    assert ledger.summary(env.actor("mgr1"), fund="elsewhere")["total"]["entries"] == 0
    assert ledger.summary(env.actor("mgr1"), process="poor_mother_aid")["funds"] == []


def test_fund_labels_come_from_the_definitions(env):
    labels = fund_labels(env.engine.processes.values())
    assert labels[("spring_bud", "spring_bud_sponsors")].zh == "春蕾班资助方专款"
    assert ("poor_mother_aid", "donations_round1") in labels
    assert not any(key == "elder_support" for key, _ in labels)


def test_reconciliation_finds_edited_missing_and_invented_entries(env):
    first = _spring_bud_to_disbursement(env)
    _pay(env, first)
    second = _spring_bud_to_disbursement(env)
    _pay(env, second)
    with env.engine.session_factory() as s:
        assert verify_ledger(s) == []
        s.execute(update(LedgerEntry).where(LedgerEntry.case_id == first).values(amount=Decimal("9999")))
        s.execute(delete(LedgerEntry).where(LedgerEntry.case_id == second))
        s.add(LedgerEntry(case_id=second, audit_seq=1, process_key="spring_bud", trigger="disburse",
                          fund="spring_bud_sponsors", kind="payment", amount=Decimal("50"), org_unit_id=1,
                          org_path="/county/", at=env.clock()))
        s.commit()
        problems = verify_ledger(s)
    assert len(problems) == 3, problems
    assert any(f"case {first} " in p and "9999.00" in p for p in problems)
    assert any(f"case {second} " in p and "台账中没有" in p for p in problems)
    assert any(f"case {second} #1" in p and "has no posting" in p for p in problems)


def test_a_refund_counts_against_the_fund(session_factory, tmp_path):
    env = env_with(session_factory, tmp_path / "defs", grant="""
process: grant
title: {zh: 补助, en: Grant}
org_level: village
fields:
  fund: {type: choice, choices: {relief: {zh: 救助金, en: Relief fund}}}
  amount: {type: money, required: true}
  returned: {type: money}
states:
  - name: payment
    task: {role: finance_officer, form: [fund, amount]}
  - name: paid
    task: {role: finance_officer, form: [returned]}
  - {name: closed, final: true}
transitions:
  - {trigger: pay, source: payment, dest: paid, ledger: {fund: fund, amount: amount}}
  - {trigger: refund, source: paid, dest: closed, ledger: {fund: fund, amount: returned, kind: refund}}
""")
    fin = env.actor("fin")
    case_id = env.service.start_case(fin, "grant", "t01v01", {"fund": "relief", "amount": "500"})
    env.service.fire(fin, case_id, "pay")
    env.service.fire(fin, case_id, "refund", {"returned": "120.40"})
    (fund,) = LedgerQueries(env.engine).summary(env.actor("mgr1"))["funds"]
    assert (fund["entries"], fund["paid"], fund["refunded"], fund["net"]) == \
        (2, Decimal("500.00"), Decimal("120.40"), Decimal("379.60"))
    with env.engine.session_factory() as s:
        assert verify_ledger(s) == []


def test_hexie_ledger_verify_on_the_demo_county(tmp_path, monkeypatch):
    import sqlite3
    from click.testing import CliRunner
    from hexie.cli import main
    db = tmp_path / "demo.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEXIE_DATABASE_URL", f"sqlite:///{db}")
    runner = CliRunner()
    assert runner.invoke(main, ["demo"]).exit_code == 0
    out = runner.invoke(main, ["ledger", "verify"])
    assert out.exit_code == 0 and "ledger reconciles" in out.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM hexie_ledger_entries").fetchone()[0] > 0   # the demo paid out
        conn.execute("UPDATE hexie_ledger_entries SET amount = amount + 1 WHERE id = (SELECT min(id) FROM hexie_ledger_entries)")
    out = runner.invoke(main, ["ledger", "verify"])
    assert out.exit_code == 1 and "台账条目" in out.output and "ledger does not reconcile: 1 problem(s)" in out.output
