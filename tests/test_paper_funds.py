"""Fund receipts (kind ``receipt``: donor, day, voucher), balances by period (received − paid
+ refunded), and the reconciliation of receipts with the audit trail. SQLite and PostgreSQL."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import update

from hexie.models import AuditEvent, LedgerEntry
from hexie.workflows.errors import Forbidden, Invalid
from hexie.workflows.ledger import LedgerQueries, record_receipt, verify_ledger

from .api_support import ApiEnv, api_env, error_of
from .test_api_ledger import pay_aid

ROUND2 = {"process": "poor_mother_aid", "fund": "donations_round1", "amount": "159215.00",
          "donor": "县直机关干部职工", "received_on": "2026-02-20", "voucher": "记-2026-017", "org_unit": "county"}


@pytest.fixture
def env(engine) -> ApiEnv:
    return api_env(engine)


def test_a_receipt_is_recorded_audited_and_balanced(env: ApiEnv) -> None:
    entry = record_receipt(env.engine, env.actor("finance"), ROUND2)
    assert (entry["kind"], entry["amount"], entry["case_id"], entry["voucher"]) == \
        ("receipt", Decimal("159215.00"), None, "记-2026-017")
    pay_aid(env)                                     # 200.00 paid out of the same fund in March
    ledger = LedgerQueries(env.engine)
    balances = ledger.balances(env.actor("manager"))
    fund = balances["funds"][0]
    assert (fund["received"], fund["paid"], fund["refunded"], fund["balance"]) == \
        (Decimal("159215.00"), Decimal("200.00"), Decimal("0.00"), Decimal("159015.00"))
    assert [(p["period"], p["change"], p["balance"]) for p in fund["periods"]] == \
        [("2026-02", Decimal("159215.00"), Decimal("159215.00")), ("2026-03", Decimal("-200.00"), Decimal("159015.00"))]
    assert ledger.balances(env.actor("manager"), period="year")["funds"][0]["periods"][0]["balance"] == \
        Decimal("159015.00")
    # the money summary (paid) is not changed by a receipt
    assert ledger.summary(env.actor("manager"))["total"]["paid"] == Decimal("200.00")
    receipts = ledger.entries(env.actor("manager"), kind="receipt").items
    assert [(e["donor"], e["voucher"]) for e in receipts] == [("县直机关干部职工", "记-2026-017")]
    with env.engine.session_factory() as s:
        assert verify_ledger(s) == []


def test_a_tampered_receipt_does_not_reconcile(env: ApiEnv) -> None:
    record_receipt(env.engine, env.actor("finance"), ROUND2)
    with env.engine.transaction() as s:
        s.execute(update(LedgerEntry).values(amount=Decimal("15921.50")))
    with env.engine.session_factory() as s:
        problems = verify_ledger(s)
    assert len(problems) == 1 and "receipt" in problems[0] and "15921.50" in problems[0]
    with env.engine.transaction() as s:
        s.execute(update(LedgerEntry).values(amount=Decimal("159215.00"), voucher="记-2026-099"))
    with env.engine.session_factory() as s:
        assert len(verify_ledger(s)) == 1


def test_refused_receipts_write_nothing(env: ApiEnv) -> None:
    with pytest.raises(Invalid) as err:
        record_receipt(env.engine, env.actor("finance"), {**ROUND2, "amount": "-3", "fund": "nope",
                                                          "received_on": "2030-01-01", "voucher": ""})
    assert set(err.value.details) == {"amount", "fund", "received_on", "voucher"}
    with pytest.raises(Forbidden):
        record_receipt(env.engine, env.actor("vrep1"), {**ROUND2, "org_unit": "t01v01"})
    record_receipt(env.engine, env.actor("finance"), ROUND2)
    with pytest.raises(Invalid) as err:
        record_receipt(env.engine, env.actor("finance"), ROUND2)
    assert set(err.value.details) == {"voucher"}
    with env.engine.session_factory() as s:
        assert s.query(LedgerEntry).count() == 1
        assert s.query(AuditEvent).filter(AuditEvent.kind == "receipt").count() == 1


def test_the_api_records_receipts_and_gives_balances(env: ApiEnv) -> None:
    r = env.as_("finance").post("/ledger/receipts", json=ROUND2)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert (body["kind"], body["amount"], body["donor"], body["received_on"], body["case_id"]) == \
        ("receipt", "159215.00", "县直机关干部职工", "2026-02-20", None)
    r = env.as_("finance").post("/ledger/receipts", json={**ROUND2, "amount": "abc"})
    assert r.status_code == 422 and "amount" in error_of(r)["details"]
    assert env.as_("vrep1").post("/ledger/receipts", json={**ROUND2, "org_unit": "t01v01"}).status_code == 403
    r = env.as_("manager").get("/ledger/balances?period=year")
    assert r.status_code == 200
    fund = r.get_json()["funds"][0]
    assert (fund["received"], fund["balance"], fund["periods"][0]["period"]) == ("159215.00", "159215.00", "2026")
    assert env.as_("manager").get("/ledger?kind=receipt").get_json()[0]["voucher"] == "记-2026-017"
    # a village rep sees no county receipts
    assert env.as_("vrep1").get("/ledger?kind=receipt").get_json() == []


def test_a_malformed_receipt_says_what_is_wrong_in_chinese_too(env: ApiEnv) -> None:
    """The 400 of a body the schema refuses names each field in Chinese first, with its limits,
    not a bare "格式不正确" before the English reason."""
    r = env.as_("finance").post("/ledger/receipts", json={**ROUND2, "donor": "", "received_on": "2026-13-01"})
    assert r.status_code == 400
    details = error_of(r)["details"]
    assert details["donor"] == "长度须在 1 到 200 个字符之间 / Length must be between 1 and 200."
    assert details["received_on"]== "日期无效（应为 YYYY-MM-DD） / Not a valid date."
    assert "格式不正确" not in str(details)
    with env.engine.session_factory() as s:
        assert s.query(LedgerEntry).count() == 0       # a refused call changes nothing
