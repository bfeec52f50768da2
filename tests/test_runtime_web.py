"""Work decided at run time on the pages and in the API: a loan's page links the mentor pairing it
called, the pairing's page links the loan back, the API lists both, and the definitions say what
each state decides at run time."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from hexie.models import Case

from .api_support import api_env
from .test_web import page_text
from .web_helpers import make_web_env

LOAN = {"applicant_name": "孙秀芳", "id_number": "320123198803051226", "phone": "13912345678",
        "applicant_age": 38, "business_kind": "farming", "business_plan": "扩大蔬菜大棚",
        "loan_amount": "10000", "term_months": 24, "guarantee": "joint_guarantee"}
ELIGIBLE = {"local_resident": True, "credit_record": "good", "applicant_age": 38, "eligibility_notes": "信用良好"}


def _loan_waiting_for_its_pairing(env, rep, cadre):
    case_id = env.service.start_case(env.actor(rep), "microloan", "t01v01", LOAN)
    env.service.fire(env.actor(rep), case_id, "submit")
    env.service.fire(env.actor(cadre), case_id, "eligible", ELIGIBLE)
    with env.engine.session_factory() as s:
        child = s.scalar(select(Case.id).where(Case.parent_case_id == case_id))
    return case_id, child


def test_the_pages_link_the_parent_and_its_child(session_factory, tmp_path):
    env = make_web_env(session_factory, tmp_path)
    case_id, child = _loan_waiting_for_its_pairing(env, "vr1", "tc1")
    client = env.client("tc1")       # the loan's eligibility checker: no role in the pairing itself
    loan_page = client.get(f"/cases/{case_id}")
    assert loan_page.status_code == 200
    assert f'href="/cases/{child}"' in loan_page.get_data(as_text=True)
    assert "子流程案件" in page_text(loan_page) and "姐妹同行结对创业" in page_text(loan_page)
    child_page = client.get(f"/cases/{child}")          # seen because she sees the loan
    assert child_page.status_code == 200
    assert f'href="/cases/{case_id}"' in child_page.get_data(as_text=True) and "上级案件" in page_text(child_page)
    assert env.client("tc2").get(f"/cases/{child}").status_code == 404   # another town sees neither


def test_the_api_lists_parent_children_and_the_run_time_keys(engine):
    env = api_env(engine)
    case_id, child = _loan_waiting_for_its_pairing(env, "vrep1", "cadre1")
    body = env.as_("cadre1").get(f"/cases/{case_id}").get_json()
    assert [(c["id"], c["process"], c["state"]) for c in body["children"]] == [(child, "mentor_pairing", "proposal")]
    assert env.as_("cadre1").get(f"/cases/{child}").get_json()["parent"][0]["id"] == case_id
    loan = env.as_("manager").get("/processes/microloan").get_json()
    pairing = next(s for s in loan["states"] if s["name"] == "mentor_pairing")
    assert pairing["call"]["process"] == "mentor_pairing" and pairing["call"]["on_end"]["paired"] == "paired"
    dv = env.as_("manager").get("/processes/dv_complaint").get_json()
    referral = next(s for s in dv["states"] if s["name"] == "referral")
    assert referral["for_each"] == {"field": "referred_to", "complete": "all"}
    assert [t["name"] for t in referral["tasks"]] == ["police", "legal_aid", "court"]
