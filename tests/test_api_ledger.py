"""``GET /api/v1/ledger`` and ``GET /api/v1/ledger/summary``: the postings to earmarked
funds and their totals, only of the cases the caller may see; paging, filters, errors
and the OpenAPI document. On SQLite and PostgreSQL."""
from __future__ import annotations

import pytest

from .api_support import AID_DISBURSE, ApiEnv, api_env, error_of
from .engine_helpers import pay_spring_bud as pay, spring_bud_to_disbursement

ENTRY_KEYS = {"id", "at", "case_id", "process", "trigger", "fund", "kind", "amount", "audit_seq", "org_unit",
              "org_unit_name", "state", "subject", "voucher", "donor", "received_on"}


@pytest.fixture
def env(engine) -> ApiEnv:
    return api_env(engine)


def pay_aid(env: ApiEnv) -> int:
    """200.00 from the first round of donations, for a mother of 东村 (t01)."""
    case_id = env.start_aid()
    env.to_approval(case_id)
    env.service.fire(env.actor("manager"), case_id, "approve")
    env.service.fire(env.actor("manager2"), case_id, "approve")
    env.service.fire(env.actor("finance"), case_id, "disburse", dict(AID_DISBURSE))
    return case_id


def pay_spring_bud(env: ApiEnv, amount: str = "1000.5") -> int:
    people = {"rep": "vrep1", "cadre": "cadre1", "manager": "manager", "matcher": "ccadre"}
    case_id = spring_bud_to_disbursement(env.service, env.actor, people)
    pay(env.service, env.actor, "finance", case_id, amount)
    return case_id


@pytest.fixture
def paid(env: ApiEnv) -> tuple[int, int]:
    aid = pay_aid(env)
    env.clock.advance(days=1)
    return aid, pay_spring_bud(env)


def test_county_chair_lists_the_entries_newest_first(env: ApiEnv, paid) -> None:
    aid, bud = paid
    r = env.as_("manager").get("/ledger")
    assert r.status_code == 200
    assert (r.headers["X-Total-Count"], r.headers["X-Page"], r.headers["X-Per-Page"], r.headers["X-Pages"]) == \
        ("2", "1", "50", "1")
    first, second = r.get_json()
    assert set(first) == ENTRY_KEYS
    assert (first["case_id"], first["process"], first["fund"], first["kind"], first["amount"], first["trigger"]) == \
        (bud, "spring_bud", "spring_bud_sponsors", "payment", "1000.50", "disburse")
    assert (second["case_id"], second["fund"], second["amount"]) == (aid, "donations_round1", "200.00")
    assert first["at"] == "2026-03-03T09:00:00+00:00" and second["at"] == "2026-03-02T09:00:00+00:00"
    assert (first["org_unit"], first["org_unit_name"], first["subject"]) == ("t01v01", "东村", "城关中心小学")
    assert second["subject"] == "王秀英" and second["state"] == "closed"
    # paging and filters
    r = env.as_("manager").get("/ledger?per_page=1&page=2")
    assert [e["case_id"] for e in r.get_json()] == [aid] and r.headers["X-Pages"] == "2"
    assert [e["case_id"] for e in env.as_("manager").get("/ledger?process=poor_mother_aid").get_json()] == [aid]
    assert [e["case_id"] for e in env.as_("manager").get("/ledger?fund=spring_bud_sponsors").get_json()] == [bud]


def test_county_chair_gets_the_totals(env: ApiEnv, paid) -> None:
    r = env.as_("manager").get("/ledger/summary")
    assert r.status_code == 200 and "X-Total-Count" not in r.headers
    body = r.get_json()
    assert body["funds"] == [
        {"process": "poor_mother_aid", "fund": "donations_round1", "entries": 1, "paid": "200.00",
         "refunded": "0.00", "net": "200.00", "label": "“奉献你的爱心 救助贫困母亲”首轮捐款",
         "label_i18n": {"zh": "“奉献你的爱心 救助贫困母亲”首轮捐款", "en": "Aid-poor-mothers donations, first round"}},
        {"process": "spring_bud", "fund": "spring_bud_sponsors", "entries": 1, "paid": "1000.50",
         "refunded": "0.00", "net": "1000.50", "label": "春蕾班资助方专款",
         "label_i18n": {"zh": "春蕾班资助方专款", "en": "Spring Bud sponsors' earmarked fund"}},
    ]
    assert body["towns"] == [{"code": "t01", "name": "城关镇", "total": "1200.50",
                              "net": {"poor_mother_aid/donations_round1": "200.00",
                                      "spring_bud/spring_bud_sponsors": "1000.50"}}]
    assert body["months"] == [{"month": "2026-03", "paid": "1200.50", "refunded": "0.00", "net": "1200.50"}]
    assert body["total"] == {"entries": 2, "paid": "1200.50", "refunded": "0.00", "net": "1200.50"}
    only = env.as_("manager").get("/ledger/summary?process=spring_bud").get_json()
    assert [f["fund"] for f in only["funds"]] == ["spring_bud_sponsors"] and only["total"]["net"] == "1000.50"
    english = env.as_("manager").get("/ledger/summary", headers={"Accept-Language": "en"}).get_json()
    assert english["funds"][1]["label"] == "Spring Bud sponsors' earmarked fund"


def test_another_towns_chair_sees_nothing(env: ApiEnv, paid) -> None:
    r = env.as_("chair2").get("/ledger")
    assert r.status_code == 200 and r.get_json() == [] and r.headers["X-Total-Count"] == "0"
    assert env.as_("chair2").get("/ledger/summary").get_json() == {
        "funds": [], "towns": [], "months": [],
        "total": {"entries": 0, "paid": "0.00", "refunded": "0.00", "net": "0.00"}}
    assert len(env.as_("chair1").get("/ledger").get_json()) == 2      # her colleague of the town paid


def test_no_token_is_401(env: ApiEnv) -> None:
    for path in ("/ledger", "/ledger/summary"):
        r = env.as_(None).get(path)
        assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"


@pytest.mark.parametrize("path,field", [
    ("/ledger?process=nope", "process"), ("/ledger/summary?process=nope", "process"),
    ("/ledger?fund=nope", "fund"), ("/ledger/summary?fund=nope", "fund"),
    ("/ledger?process=spring_bud&fund=donations_round1", "fund"),
    ("/ledger?page=0", "page"), ("/ledger?per_page=500", "per_page"),
    ("/ledger?bogus=1", "bogus"), ("/ledger/summary?page=1", "page"),
])
def test_bad_filters_are_400_like_the_case_list(env: ApiEnv, path: str, field: str) -> None:
    r = env.as_("manager").get(path)
    assert r.status_code == 400
    error = error_of(r)
    assert error["code"] == "bad_request" and field in error["details"]
    # the same answer the case list gives for an unknown process
    if field == "process":
        assert error == error_of(env.as_("manager").get("/cases?process=nope"))


def test_openapi_documents_both_endpoints(env: ApiEnv) -> None:
    doc = env.as_(None).get("/openapi.json").get_json()
    listing, summary = doc["paths"]["/ledger"]["get"], doc["paths"]["/ledger/summary"]["get"]
    assert (listing["operationId"], summary["operationId"]) == ("list_ledger", "ledger_summary")
    assert {p["name"] for p in listing["parameters"]} == {"process", "fund", "kind", "page", "per_page"}
    assert {p["name"] for p in summary["parameters"]} == {"process", "fund"}
    assert {"200", "400", "401"} <= set(listing["responses"]) and {"200", "400", "401"} <= set(summary["responses"])
    assert "X-Total-Count" in listing["responses"]["200"]["headers"]
    assert "headers" not in summary["responses"]["200"]
    schemas = doc["components"]["schemas"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["items"] == \
        {"$ref": "#/components/schemas/LedgerEntry"}
    assert schemas["LedgerEntry"]["properties"]["amount"]["type"] == "string"
    assert set(schemas["LedgerEntry"]["properties"]) == ENTRY_KEYS
    assert set(schemas["LedgerSummary"]["properties"]) == {"funds", "towns", "months", "total"}
    assert schemas["LedgerTown"]["properties"]["net"]["additionalProperties"]["type"] == "string"
