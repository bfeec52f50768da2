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
