"""Paper: the case file (审批表) and the definitions' documents as PDF with the right Chinese
text (read back with pypdf), masked as for the reader; the same 404 for hidden and missing.
SQLite and PostgreSQL."""
from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from .test_web_ledger import pay_aid
from .web_helpers import make_web_env


@pytest.fixture
def env(session_factory, tmp_path):
    return make_web_env(session_factory, tmp_path)


def pdf_text(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/pdf"
    reader = PdfReader(io.BytesIO(response.get_data()))
    return "\n".join(page.extract_text() for page in reader.pages).replace(" ", "")


def test_the_case_file_prints_data_approvals_and_signature_lines(env) -> None:
    case_id = pay_aid(env, name="王小红")
    text = pdf_text(env.client("cm1").get(f"/cases/{case_id}/print.pdf"))
    for words in ("救助贫困母亲审批表", "申请人姓名", "王小红", "审批记录", "办理记录", "经办人（签字）",
                  "审批人（签字）", "单位（盖章）", "记-2026-031", "Approvals", "casefileandapprovalsheet"):
        assert words in text, words
    # approvals with the approvers' names
    assert text.count("批准") >= 2
    assert "2026-03-02" in text


def test_a_reader_not_working_the_case_gets_it_masked(env) -> None:
    case_id = pay_aid(env, name="王小红")
    working = pdf_text(env.client("cm1").get(f"/cases/{case_id}/print.pdf"))
    text = pdf_text(env.client("tch1").get(f"/cases/{case_id}/print.pdf"))
    assert "11010119800101123X" not in text
    assert "●●●●" in text or "遮蔽" in text


def test_deidentified_print_outs_carry_the_case_code_for_every_sensitive_value(env) -> None:
    """protection.md: ``deidentified=1`` on any export, the case file and documents printed too."""
    from hexie.workflows.protection import case_code
    case_id = pay_aid(env, name="王小红")
    plain = pdf_text(env.client("cm1").get(f"/cases/{case_id}/print.pdf"))
    assert "11010119800101123X" in plain
    text = pdf_text(env.client("cm1").get(f"/cases/{case_id}/print.pdf?deidentified=1"))
    assert "11010119800101123X" not in text and case_code(case_id) in text
    assert "王小红" in text                       # not a sensitive field of this programme: kept


def test_hidden_and_missing_are_the_same_404(env) -> None:
    case_id = pay_aid(env)
    hidden = env.client("vr2").get(f"/cases/{case_id}/print.pdf")
    missing = env.client("vr2").get("/cases/999999/print.pdf")
    assert hidden.status_code == missing.status_code == 404
    assert env.client("cm1").get(f"/cases/{case_id}/documents/nope.pdf").status_code == 404
    assert env.client("vr2").get(f"/cases/{case_id}/documents/aid_agreement.pdf").status_code == 404


def test_the_case_page_has_the_print_buttons(env) -> None:
    case_id = pay_aid(env)
    html = env.client("cm1").get(f"/cases/{case_id}").get_data(as_text=True)
    assert f"/cases/{case_id}/print.pdf" in html and "data-print" in html


def test_the_aid_agreement_names_the_first_responsible_persons(env) -> None:
    from .test_web_ledger import APPLICATION, SURVEY
    s, actor = env.service, env.actor
    case_id = s.start_case(actor("vr1"), "poor_mother_aid", "t01v01", {**APPLICATION, "applicant_name": "王秀英"})
    s.fire(actor("vr1"), case_id, "submit")
    s.fire(actor("tc1"), case_id, "surveyed", {**SURVEY, "aid_programme": "project"})
    s.fire(actor("cm1"), case_id, "approve")
    s.fire(actor("cm2"), case_id, "approve")
    s.fire(actor("fo1"), case_id, "disburse", {"fund": "donations_round1", "aid_kind": "piglets",
                                               "approved_amount": "800", "livestock_count": 2,
                                               "disbursed_on": "2026-03-05", "voucher_number": "记-2026-031"})
    attachment = s.add_attachment(actor("tch1"), case_id, "agreement_file", "agreement.pdf", "application/pdf", 10,
                                  "test-key-agreement")
    s.fire(actor("tch1"), case_id, "sign", {"agreement_file": attachment, "agreement_signed_on": "2026-03-06",
                                            "responsible_town_chair": "tch1", "responsible_village_rep": "vr1",
                                            "year_end_visit_date": "2026-12-20"})
    text = pdf_text(env.client("cm1").get(f"/cases/{case_id}/documents/aid_agreement.pdf"))
    for words in ("救助贫困母亲项目帮扶协议书", "乙方（受助母亲）：王秀英", "第一责任人（镇妇联主席）", "第一责任人（村妇代会主任）",
                  "苗猪", "800.00", "记-2026-031", "2026-03-06", "Firstresponsibleperson"):
        assert words in text, words
    assert "tch1" in text and "vr1" in text   # the two people, by name and username


def test_documents_check_their_placeholders(tmp_path) -> None:
    from hexie.workflows.check import check_paths
    from pathlib import Path
    source = (Path(__file__).resolve().parent.parent / "definitions" / "poor_mother_aid.yaml").read_text("utf-8")
    assert "{applicant_name}" in source
    bad = source.replace("乙方（受助母亲）：{applicant_name}", "乙方（受助母亲）：{aplicant_name}", 1)
    path = tmp_path / "poor_mother_aid.yaml"
    path.write_text(bad, encoding="utf-8")
    (tmp_path / "roles.yaml").write_text((Path(__file__).resolve().parent.parent / "definitions" / "roles.yaml")
                                         .read_text("utf-8"), encoding="utf-8")
    import io
    out, err = io.StringIO(), io.StringIO()
    assert check_paths([str(path)], out=out, err=err) == 1
    text = out.getvalue() + err.getvalue()
    line = next(i for i, l in enumerate(bad.splitlines(), start=1) if "{aplicant_name}" in l)
    column = bad.splitlines()[line - 1].index("aplicant_name") + 1
    assert f"{line}:{column}" in text and "did you mean 'applicant_name'" in text, text


def _bearer(env, username: str) -> dict[str, str]:
    from hexie.workflows.tokens import issue_token
    return {"Authorization": f"Bearer {issue_token(username, engine=env.engine, secret='test-secret')}"}


def test_the_case_file_and_documents_through_the_api_with_a_token(env) -> None:
    """interfaces.md, "Documents and exports": the same PDFs under /api/v1, with a Bearer token;
    hidden and missing the API's same JSON 404."""
    case_id = pay_aid(env, name="王小红")
    api = env.app.test_client()
    text = pdf_text(api.get(f"/api/v1/cases/{case_id}/print.pdf", headers=_bearer(env, "cm1")))
    assert "救助贫困母亲审批表" in text and "王小红" in text
    deid = pdf_text(api.get(f"/api/v1/cases/{case_id}/print.pdf?deidentified=1", headers=_bearer(env, "cm1")))
    assert "11010119800101123X" not in deid                     # the web's deidentified=1, through the API
    masked = pdf_text(api.get(f"/api/v1/cases/{case_id}/print.pdf", headers=_bearer(env, "tch1")))
    assert "11010119800101123X" not in masked
    doc = api.get(f"/api/v1/cases/{case_id}/documents/aid_agreement.pdf", headers=_bearer(env, "cm1"))
    assert doc.status_code == 200 and doc.mimetype == "application/pdf"
    for path, who in ((f"/cases/{case_id}/print.pdf", "vr2"), ("/cases/999999/print.pdf", "vr2"),
                      (f"/cases/{case_id}/documents/nope.pdf", "cm1"),
                      (f"/cases/{case_id}/documents/aid_agreement.pdf", "vr2")):
        refused = api.get("/api/v1" + path, headers=_bearer(env, who))
        assert refused.status_code == 404, path
        assert set(refused.get_json()["error"]) == {"code", "message", "details"}
    assert api.get(f"/api/v1/cases/{case_id}/print.pdf").status_code == 401


def test_the_approval_sheet_tells_a_vote_from_an_approval(env) -> None:
    """One leader's vote of two is not an approval: the sheet says which vote it was, that it
    waits for the others, that a vote was withdrawn, and which vote carried it."""
    from .test_web_ledger import APPLICATION, SURVEY
    case_id = env.service.start_case(env.actor("vr1"), "poor_mother_aid", "t01v01", dict(APPLICATION))
    env.service.fire(env.actor("vr1"), case_id, "submit")
    env.service.fire(env.actor("tc1"), case_id, "surveyed", SURVEY)
    env.service.fire(env.actor("cm1"), case_id, "approve", comment="同意")
    text = pdf_text(env.client("cm1").get(f"/cases/{case_id}/print.pdf")).replace("\n", "")  # cells wrap
    assert "批准（第1/2票，待他人）" in text
    env.service.withdraw_vote(env.actor("cm1"), case_id, "approve")
    env.service.fire(env.actor("cm2"), case_id, "approve")
    env.service.fire(env.actor("cm1"), case_id, "approve")
    text = pdf_text(env.client("cm1").get(f"/cases/{case_id}/print.pdf")).replace("\n", "")  # cells wrap
    assert "撤回投票：批准（还有0/2票）" in text
    assert "批准（第2/2票，通过）" in text
    assert text.count("批准（第1/2票，待他人）") == 2      # cm1's first vote, then cm2's
