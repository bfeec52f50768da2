"""Amounts are read as digits (100000, 100000.50, 100,000.50): 1e5, Infinity, NaN, 1_000 are
refused in web forms, the HTTP API and CSV imports with one message naming the field, Chinese
first, and a refused call writes nothing. SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import json

import pytest
from sqlalchemy import func, select

from hexie.models import AuditEvent, Case, LedgerEntry
from hexie.workflows.bulk import import_cases

from .api_support import AID_APPLICATION, ApiEnv, api_env, error_of
from .test_paper_funds import ROUND2
from .test_web import APPLICATION, page_text, prefixed
from .web_helpers import make_web_env

ODD = ["1e5", "1E5", "Infinity", "-Infinity", "NaN", "1_000", "0x10", "+5", ".5"]
ZH, EN = "家庭年收入（申报）：金额请写成数字，如 100000 或 100000.50", \
    "Household yearly income (declared): write the amount as digits, e.g. 100000 or 100000.50"


@pytest.fixture
def env(engine) -> ApiEnv:
    return api_env(engine)


def _counts(engine) -> tuple[int, int, int]:
    with engine.session_factory() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Case, AuditEvent, LedgerEntry))


@pytest.mark.parametrize("odd", ODD)
def test_the_api_refuses_an_amount_not_written_as_digits(env: ApiEnv, odd: str) -> None:
    before = _counts(env.engine)
    r = env.as_("vrep1").post("/cases", {"process": "poor_mother_aid", "org_unit": "t01v01",
                                         "data": {**AID_APPLICATION, "declared_annual_income": odd}})
    assert r.status_code == 422, r.get_json()
    assert error_of(r)["details"]["declared_annual_income"] == f"{ZH} / {EN}"
    assert _counts(env.engine) == before


def test_a_json_number_in_exponent_notation_is_refused_and_digits_pass(env: ApiEnv) -> None:
    api = env.as_("vrep1")
    before = _counts(env.engine)
    body = json.dumps({"process": "poor_mother_aid", "org_unit": "t01v01", "data": AID_APPLICATION},
                      ensure_ascii=False).replace('"6000.00"', "1e5")
    assert "1e5" in body
    r = api.call("POST", "/cases", data=body, content_type="application/json")
    assert r.status_code == 422 and error_of(r)["details"]["declared_annual_income"] == f"{ZH} / {EN}"
    assert _counts(env.engine) == before
    # digits, as text or as a JSON number, with thousands commas or full-width digits: taken
    for written, stored in (('"100,000.50"', "100000.50"), ("100000.5", "100000.50"), ("6000", "6000.00"),
                            ('"６０００"', "6000.00")):
        r = api.call("POST", "/cases", data=body.replace("1e5", written), content_type="application/json")
        assert r.status_code == 201, (written, r.get_json())
        assert r.get_json()["data"]["declared_annual_income"] == stored
    # a receipt into a fund: the same rule, naming its amount
    before = _counts(env.engine)
    r = env.as_("finance").post("/ledger/receipts", json={**ROUND2, "amount": "1.59215e5"})
    assert r.status_code == 422
    assert error_of(r)["details"]["amount"] == \
        "金额请写成数字，如 100000 或 100000.50 / write the amount as digits, e.g. 100000 or 100000.50"
    assert _counts(env.engine) == before


def test_a_csv_import_refuses_it_and_writes_nothing(env: ApiEnv, tmp_path) -> None:
    rows = [{"org_unit": "t01v01", **AID_APPLICATION, "hardships": "illness", "self_reliant": "false"}
            for _ in range(3)]
    rows[1]["declared_annual_income"] = "1e5"
    path = tmp_path / "aid.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = _counts(env.engine)
    result = import_cases(env.engine, env.actor("vrep1"), "poor_mother_aid", path)
    assert result.started == 0 and result.errors == [f"row 3: declared_annual_income: {ZH} / {EN}"]
    assert _counts(env.engine) == before


@pytest.mark.parametrize("odd", ["1e5", "Infinity", "NaN", "1_000"])
def test_the_start_form_says_so_next_to_the_field(session_factory, tmp_path, odd: str) -> None:
    web = make_web_env(session_factory, tmp_path)
    client = web.client("vr1")
    before = _counts(web.engine)
    response = client.post("/start/poor_mother_aid", data={"org_unit": "t01v01", **prefixed(
        "f", {**APPLICATION, "declared_annual_income": odd})})
    page = page_text(response)
    assert response.status_code in (200, 422) and "金额请写成数字，如 100000 或 100000.50" in page
    assert _counts(web.engine) == before
    english = page_text(client.post("/start/poor_mother_aid", headers={"Accept-Language": "en"}, data={
        "org_unit": "t01v01", **prefixed("f", {**APPLICATION, "declared_annual_income": odd})}))
    assert "write the amount as digits, e.g. 100000 or 100000.50" in english
