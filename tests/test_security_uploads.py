"""Security finding 5: uploads.

* A file goes only to a file field of a form its uploader may submit now (the current
  task's or action's form she may act on), not to any field of a case she once worked.
* A web action's uploads are part of the action's transaction: a refused action (409,
  422, 403) keeps no attachment, no audit event, no lock_version bump, no file on disk.
* Attachment ids given at a case's start (API) or in an import must be this upload's
  own: an attachment of another case is refused with a clear error.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hexie.models import Attachment, AuditEvent, Case
from hexie.workflows.bulk import import_cases
from hexie.workflows.org import load_org

from .api_support import AID_APPLICATION, AID_DISBURSE, AID_SURVEY, ApiEnv, api_env, error_of

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


# ------------------------------------------------------------------ API: which fields, when

@pytest.fixture
def api(engine, tmp_path) -> ApiEnv:
    env = api_env(engine)
    env.app.config["HEXIE_UPLOAD_DIR"] = str(tmp_path / "uploads")
    return env


def _upload(env: ApiEnv, who: str, case_id: int, field: str):
    return env.as_(who).call("POST", f"/cases/{case_id}/attachments",
                             data={"field": field, "file": (io.BytesIO(PDF), "协议.pdf")},
                             content_type="multipart/form-data")


def _to_agreement(env: ApiEnv) -> int:
    case_id = env.start_aid(self_reliant=True)
    env.to_approval(case_id, aid_programme="project")
    for manager in ("manager", "manager2"):
        env.service.fire(env.actor(manager), case_id, "approve")
    env.service.fire(env.actor("finance"), case_id, "disburse",
                     {**AID_DISBURSE, "aid_kind": "piglets", "approved_amount": "800", "livestock_count": 2})
    assert env.state_of(case_id) == "agreement"
    return case_id


def _attachments(env, case_id: int) -> list[tuple[str, str]]:
    with env.engine.session_factory() as s:
        return [tuple(r) for r in s.execute(select(Attachment.field, Attachment.filename)
                                            .where(Attachment.case_id == case_id).order_by(Attachment.id))]


def test_only_fields_of_a_form_she_may_submit_now(api):
    case_id = _to_agreement(api)
    before = api.snapshot(case_id)
    # the village rep filed the case (she worked it) but the agreement is the town chair's step
    r = _upload(api, "vrep1", case_id, "agreement_file")
    assert r.status_code == 403, r.get_json()
    assert "agreement_file" in error_of(r)["details"]
    # the chair may sign now, but the application's files are not part of her form
    assert _upload(api, "chair1", case_id, "application_files").status_code == 403
    assert _upload(api, "cadre1", case_id, "survey_photos").status_code == 403   # surveyed it, earlier
    assert api.snapshot(case_id) == before and _attachments(api, case_id) == []
    assert _upload(api, "chair1", case_id, "agreement_file").status_code == 201
    assert _attachments(api, case_id) == [("agreement_file", "协议.pdf")]


def test_no_upload_to_a_closed_case(api):
    case_id = api.start_aid()
    api.service.fire(api.actor("vrep1"), case_id, "withdraw", comment="不再申请")
    assert _upload(api, "vrep1", case_id, "application_files").status_code == 403


def test_attachment_ids_at_start_must_be_this_uploads_own(api):
    other = api.start_aid()
    r = _upload(api, "vrep1", other, "application_files")
    assert r.status_code == 201
    foreign = r.get_json()["id"]
    cases = _count(api, Case)
    r = api.as_("vrep1").post("/cases", {"process": "poor_mother_aid", "org_unit": "t01v01",
                                         "data": {**AID_APPLICATION, "application_files": [foreign]}})
    assert r.status_code == 422, r.get_json()
    assert "application_files" in error_of(r)["details"]
    assert _count(api, Case) == cases
    # ... and the same for an id that names nothing
    r = api.as_("vrep1").post("/cases", {"process": "poor_mother_aid", "org_unit": "t01v01",
                                         "data": {**AID_APPLICATION, "application_files": [987654]}})
    assert r.status_code == 422 and "application_files" in error_of(r)["details"]


def _count(env, table) -> int:
    with env.engine.session_factory() as s:
        return s.scalar(select(func.count()).select_from(table))


def test_an_import_may_not_name_attachments(api, tmp_path: Path):
    other = api.start_aid()
    foreign = _upload(api, "vrep1", other, "application_files").get_json()["id"]
    path = tmp_path / "rows.csv"
    row = {**{k: v for k, v in AID_APPLICATION.items() if k not in ("hardships", "self_reliant")},
           "hardships": "illness", "self_reliant": "false", "org_unit": "t01v01", "application_files": str(foreign)}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    cases = _count(api, Case)
    result = import_cases(api.engine, api.actor("vrep1"), "poor_mother_aid", path)
    assert result.started == 0
    assert len(result.errors) == 1 and result.errors[0].startswith("row 2: application_files: "), result.errors
    assert "附件" in result.errors[0]
    assert _count(api, Case) == cases


# ------------------------------------------------------------------ web: inside the action

@pytest.fixture
def web(session_factory, tmp_path: Path):
    from .web_helpers import make_web_env
    env = make_web_env(session_factory, tmp_path)
    with env.engine.transaction() as s:
        load_org(s, {"users": [{"username": "fo2", "name": "李会计", "password": "s3cret-pass-1",
                                "roles": ["finance_officer@county"]}]})
    return env


def _web_to_disbursement(env) -> int:
    vr1 = env.actor("vr1")
    case_id = env.service.start_case(vr1, "poor_mother_aid", "t01v01", {**AID_APPLICATION, "self_reliant": True})
    env.service.fire(vr1, case_id, "submit")
    env.service.fire(env.actor("tc1"), case_id, "surveyed", dict(AID_SURVEY))
    for manager in ("cm1", "cm2"):
        env.service.fire(env.actor(manager), case_id, "approve")
    assert env.queries.case(env.actor("cm1"), case_id)["state"] == "disbursement"
    return case_id


def _post_disburse(env, client, case_id: int, **values):
    view = env.queries.case(env.actor("fo1"), case_id)
    data = {f"a-disburse-{k}": v for k, v in {**AID_DISBURSE, **values}.items()}
    data["a-disburse-receipt"] = (io.BytesIO(PDF), "收据.pdf")
    data["lock_version"] = str(view["lock_version"])
    return client.post(f"/cases/{case_id}/actions/disburse", data=data, content_type="multipart/form-data")


def _state(env, case_id: int) -> tuple:
    with env.engine.session_factory() as s:
        case = s.get(Case, case_id)
        return (case.state, case.lock_version, dict(case.data),
                s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.case_id == case_id)),
                s.scalar(select(func.count()).select_from(Attachment).where(Attachment.case_id == case_id)))


def _files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("refusal", ["conflict", "guard"])
def test_a_refused_web_action_keeps_no_upload(web, tmp_path: Path, refusal: str):
    case_id = _web_to_disbursement(web)
    client = web.client("fo1")
    if refusal == "conflict":   # a colleague took the disbursement meanwhile
        task = web.queries.case(web.actor("fo1"), case_id)["tasks"][0]["id"]
        web.service.claim(web.actor("fo2"), task)
        values, status = {}, 409
    else:                       # the programme gives no piglets: the guard refuses
        values, status = {"aid_kind": "piglets"}, 422
    before = _state(web, case_id)
    response = _post_disburse(web, client, case_id, **values)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert _state(web, case_id) == before
    assert _files(tmp_path) == []


def test_an_accepted_web_action_records_its_upload_in_the_same_step(web, tmp_path: Path):
    case_id = _web_to_disbursement(web)
    before = _state(web, case_id)
    response = _post_disburse(web, web.client("fo1"), case_id)
    assert response.status_code == 302, response.get_data(as_text=True)[:800]
    state, lock, data, events, files = _state(web, case_id)
    assert state == "closed" and files == 1     # consolation paid in cash: closed and len(_files(tmp_path)) == 1
    assert lock == before[1] + 1            # one action, one change of the case
    with web.engine.session_factory() as s:
        (attachment,) = s.scalars(select(Attachment).where(Attachment.case_id == case_id))
        kinds = [e.kind for e in s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id)
                                           .order_by(AuditEvent.seq))][before[3]:]
    assert data["receipt"] == attachment.id
    assert kinds == ["attached", "fired"]


def test_web_start_with_a_refused_unit_keeps_no_file(web, tmp_path: Path):
    client = web.client("vr1")
    data = {"org_unit": "t02v01", **{f"f-{k}": v for k, v in AID_APPLICATION.items() if k != "hardships"},
            "f-hardships": ["illness"], "f-application_files": (io.BytesIO(PDF), "申请书.pdf")}
    response = client.post("/start/poor_mother_aid", data=data, content_type="multipart/form-data")
    assert response.status_code in (403, 422)
    assert _files(tmp_path) == [] and _count(web, Attachment) == 0
