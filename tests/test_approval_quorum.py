"""The votes a case's "yes" needs, said the same way on the approvals list and on the case page:
one rule in the workflows (CompiledProcess.quorum), whatever the guard reads."""
from __future__ import annotations

import pytest

from .test_admin import DEFINITIONS, app, browse, hexie, service, text_of  # noqa: F401
from .test_approval_figures import _row, loan_at_approval


@pytest.fixture
def defs(tmp_path):
    """The shipped definitions, with the loan's approval guards also reading the case's unit
    (``case.org_unit``: not in the case's data, so only the engine's selection can read it)."""
    import shutil
    target = tmp_path / "definitions"
    shutil.copytree(DEFINITIONS, target)
    loan = target / "microloan.yaml"
    text = loan.read_text(encoding="utf-8")
    for guard in ("loan_amount > 50000", "loan_amount <= 50000"):
        assert f'when: "{guard}"' in text
        text = text.replace(f'when: "{guard}"', f'when: "{guard} and case.org_unit != \'nowhere\'"')
    loan.write_text(text, encoding="utf-8")
    return target


def test_the_list_and_the_case_page_agree_on_the_votes_needed(browse, hexie, service):
    big, small = loan_at_approval(hexie, "120000.00"), loan_at_approval(hexie, "10000.00", village=2)
    chair = browse("zhuxi")
    page = text_of(chair.get("/admin/approvals"))
    # a small loan needs one leader, though its guard reads the case's unit as well as its data
    assert "已有 0/2 票" in _row(page, big) and "/2 票" not in _row(page, small)
    assert "· 0/2" in text_of(chair.get(f"/cases/{big}"))
    assert "· 0/2" not in text_of(chair.get(f"/cases/{small}"))
