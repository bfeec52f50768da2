"""Security finding 6 (bad input): special numbers, unbounded text, invisible "required" text.

* NaN / Infinity / 1e400 in a money or decimal field: a field-level 422 in the pages and
  the API (it was a 500 in the pages);
* ``textarea`` (10,000) and ``text`` (1,000) fields have a length limit when the
  definition gives none (docs/definitions-extensions.md); comments are limited too;
* text of only whitespace or zero-width characters does not satisfy ``required``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hexie.workflows.errors import Invalid
from hexie.workflows.forms import DEFAULT_MAX_LENGTH

from .api_support import AID_APPLICATION, AID_SURVEY, api_env, error_of

SPECIAL = ["NaN", "nan", "Infinity", "-Infinity", "inf", "sNaN", "1e400", "-1e400", "1E+999999999"]


@pytest.fixture
def api(engine):
    return api_env(engine)


def _bilingual(text: str) -> bool:
    return " / " in text and any("\u4e00" <= ch <= "\u9fff" for ch in text)


@pytest.mark.parametrize("value", SPECIAL)
def test_api_special_numbers_are_a_field_level_422(api, value):
    r = api.as_("vrep1").post("/cases", {"process": "poor_mother_aid", "org_unit": "t01v01",
                                         "data": {**AID_APPLICATION, "declared_annual_income": value}})
    assert r.status_code == 422, r.get_data(as_text=True)
    details = error_of(r)["details"]
    assert "declared_annual_income" in details and _bilingual(details["declared_annual_income"])


@pytest.mark.parametrize("raw", ["1e400", "-1e400", "1e309"])
def test_api_json_numbers_beyond_float_are_a_422(api, raw):
    body = json.dumps({"process": "poor_mother_aid", "org_unit": "t01v01",
                       "data": {**AID_APPLICATION, "declared_annual_income": 0}}).replace(
        '"declared_annual_income": 0', f'"declared_annual_income": {raw}')
    r = api.as_("vrep1").call("POST", "/cases", data=body, content_type="application/json")
    assert r.status_code == 422, r.get_data(as_text=True)
    assert "declared_annual_income" in error_of(r)["details"]


def test_api_special_numbers_in_an_action(api):
    case_id = api.start_aid()
    api.service.fire(api.actor("vrep1"), case_id, "submit")
    before = api.snapshot(case_id)
    for value in SPECIAL:
        r = api.as_("cadre1").post(f"/cases/{case_id}/actions/surveyed",
                                   {"data": {**AID_SURVEY, "verified_annual_income": value}})
        assert r.status_code == 422, (value, r.get_data(as_text=True))
        assert "verified_annual_income" in error_of(r)["details"]
    assert api.snapshot(case_id) == before


def test_textarea_and_text_have_a_default_length_limit(api):
    assert DEFAULT_MAX_LENGTH["textarea"] == 10_000 and DEFAULT_MAX_LENGTH["text"] == 1_000
    case_id = api.start_aid()
    api.service.fire(api.actor("vrep1"), case_id, "submit")
    cadre = api.actor("cadre1")
    with pytest.raises(Invalid) as info:
        api.service.fire(cadre, case_id, "surveyed", {**AID_SURVEY, "survey_findings": "很" * 10_001})
    assert "survey_findings" in info.value.details and "10000" in info.value.details["survey_findings"]
    r = api.as_("cadre1").post(f"/cases/{case_id}/actions/surveyed",
                               {"data": {**AID_SURVEY, "survey_findings": "x" * 9 * 1024 * 1024}})
    assert r.status_code in (413, 422)
    api.service.fire(cadre, case_id, "surveyed", {**AID_SURVEY, "survey_findings": "很" * 10_000})


def test_text_without_max_length_is_limited_to_1000(session_factory):
    from .engine_helpers import make_env
    env = make_env(session_factory)     # complaint.victim_name: text, no max_length
    with pytest.raises(Invalid) as info:
        env.service.start_case(env.actor("ccadre"), "complaint", "t01v01", {"victim_name": "名" * 1_001})
    assert "victim_name" in info.value.details and "1000" in info.value.details["victim_name"]
    env.service.start_case(env.actor("ccadre"), "complaint", "t01v01", {"victim_name": "名" * 1_000})


def test_comments_have_a_length_limit(api):
    case_id = api.start_aid()
    before = api.snapshot(case_id)
    r = api.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {"comment": "好" * 4001})
    assert r.status_code == 422 and "comment" in error_of(r)["details"]
    assert api.snapshot(case_id) == before


@pytest.mark.parametrize("blank", ["   ", "\u200b", "\u200b\u200c\u200d\ufeff", " \u2060 \u00a0", "\u3000"])
def test_invisible_text_does_not_satisfy_required(api, blank):
    with pytest.raises(Invalid) as info:
        api.service.start_case(api.actor("vrep1"), "poor_mother_aid", "t01v01",
                               {**AID_APPLICATION, "applicant_name": blank})
    assert info.value.details["applicant_name"] == "必填 / required"


# ------------------------------------------------------------------ the pages

@pytest.fixture
def web(session_factory, tmp_path: Path):
    from .web_helpers import make_web_env
    return make_web_env(session_factory, tmp_path)


def _start_form(values):
    data = {"org_unit": "t01v01"}
    for k, v in {**AID_APPLICATION, **values}.items():
        data[f"f-{k}"] = ("y" if v else "") if isinstance(v, bool) else v
    return data


@pytest.mark.parametrize("value", SPECIAL)
def test_web_special_numbers_are_a_field_level_422(web, value):
    client = web.client("vr1")
    response = client.post("/start/poor_mother_aid", data=_start_form({"declared_annual_income": value}))
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    page = response.get_data(as_text=True)
    assert 'id="f-declared_annual_income-error"' in page


def test_web_invisible_required_text_and_long_textarea(web):
    client = web.client("vr1")
    response = client.post("/start/poor_mother_aid", data=_start_form({"applicant_name": "\u200b\u200b"}))
    assert response.status_code == 422
    assert 'id="f-applicant_name-error"' in response.get_data(as_text=True)
    vr1 = web.actor("vr1")
    case_id = web.service.start_case(vr1, "poor_mother_aid", "t01v01", {**AID_APPLICATION, "self_reliant": True})
    web.service.fire(vr1, case_id, "submit")
    lock = web.queries.case(web.actor("tc1"), case_id)["lock_version"]
    data = {f"a-surveyed-{k}": v for k, v in AID_SURVEY.items()}
    data["a-surveyed-survey_findings"] = "很" * 10_001
    data["a-surveyed-household_size"] = "4"
    data["lock_version"] = str(lock)
    response = web.client("tc1").post(f"/cases/{case_id}/actions/surveyed", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="a-surveyed-survey_findings-error"' in page and 'maxlength="10000"' in page
