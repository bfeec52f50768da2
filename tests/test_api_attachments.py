"""Files through the API: POST /cases/{id}/attachments stores a file for a ``file`` field,
whose id then goes into the form — so a process with a required file can be worked
end to end without the browser. On SQLite and PostgreSQL."""
from __future__ import annotations

import io

import pytest

from .api_support import AID_DISBURSE, ApiEnv, api_env, error_of

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


@pytest.fixture
def env(engine, tmp_path) -> ApiEnv:
    env = api_env(engine)
    env.app.config["HEXIE_UPLOAD_DIR"] = str(tmp_path / "uploads")
    return env


def _to_agreement(env: ApiEnv) -> int:
    case_id = env.start_aid(self_reliant=True)
    env.to_approval(case_id, aid_programme="project")
    for manager in ("manager", "manager2"):
        env.service.fire(env.actor(manager), case_id, "approve")
    env.service.fire(env.actor("finance"), case_id, "disburse",
                     {**AID_DISBURSE, "aid_kind": "piglets", "approved_amount": "800", "livestock_count": 2})
    assert env.state_of(case_id) == "agreement"
    return case_id


def _upload(env: ApiEnv, who: str, case_id: int, field: str | None = "agreement_file",
            content: bytes = PDF, name: str = "协议.pdf"):
    data = {"file": (io.BytesIO(content), name)} if content is not None else {}
    if field is not None:
        data["field"] = field
    return env.as_(who).call("POST", f"/cases/{case_id}/attachments", data=data,
                             content_type="multipart/form-data")


def test_a_required_file_is_uploaded_and_the_step_completed_through_the_api(env: ApiEnv) -> None:
    case_id = _to_agreement(env)
    r = _upload(env, "chair1", case_id)
    assert r.status_code == 201, r.get_json()
    attachment = r.get_json()
    assert (attachment["case_id"], attachment["field"], attachment["filename"], attachment["content_type"],
            attachment["size"]) == (case_id, "agreement_file", "协议.pdf", "application/pdf", len(PDF))
    r = env.as_("chair1").post(f"/cases/{case_id}/actions/sign", {"data": {
        "agreement_signed_on": "2026-03-12", "responsible_town_chair": "chair1", "responsible_village_rep": "vrep1",
        "year_end_visit_date": "2026-12-15", "agreement_file": attachment["id"]}})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["state"] == "awaiting_mid_year_visit"
    assert r.get_json()["data"]["agreement_file"] == attachment["id"]


def test_refused_uploads_say_why_and_store_nothing(env: ApiEnv, tmp_path) -> None:
    case_id = _to_agreement(env)
    assert _upload(env, "chair1", case_id, field=None).status_code == 400
    r = _upload(env, "chair1", case_id, content=None)
    assert r.status_code == 400 and "file" in error_of(r)["details"]
    r = _upload(env, "chair1", case_id, content=b"MZ\x90\x00 not a pdf")       # the bytes are not a PDF
    assert r.status_code == 422 and "file" in error_of(r)["details"]
    r = _upload(env, "chair1", case_id, name="run.exe")
    assert r.status_code == 422
    r = _upload(env, "chair1", case_id, field="applicant_name")               # not a file field
    assert r.status_code == 422 and "applicant_name" in error_of(r)["details"]
    assert _upload(env, "chair2", case_id).status_code == 404                # another town: not visible
    assert env.as_(None).call("POST", f"/cases/{case_id}/attachments").status_code == 401
    uploads = tmp_path / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
