"""A leader's approvals: first in her inbox, back to the list after a vote, many at once, a vote withdrawn."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from hexie.models import AuditEvent, Vote
from hexie.workflows.errors import Conflict

from .test_admin import (MOTHER, SURVEY, Browser, app, browse, defs, hexie, service, surveyed_case,  # noqa: F401
                         text_of)


def approval_case(hexie, service) -> int:
    case_id = surveyed_case(hexie, service)
    service.fire(hexie.actor("cadre01"), case_id, "surveyed", SURVEY)
    return case_id


def test_the_county_chair_sees_her_approvals_first(browse, hexie, service):
    case_id = approval_case(hexie, service)
    page = text_of(browse("zhuxi").get("/"))          # nothing is allocated to her: what waits for her role
    assert f"#{case_id}" in page
    assert re.search(r'href="[^"]*view=available[^"]*"[^>]*aria-current="page"', page)
    rep = hexie.actor("rep0101")                      # with work of her own, she starts with it
    service.start_case(rep, "poor_mother_aid", "t01v01", dict(MOTHER, applicant_name="李秀珍"))
    assert re.search(r'href="[^"]*view=mine[^"]*"[^>]*aria-current="page"', text_of(browse("rep0101").get("/")))


def test_after_a_vote_she_is_back_on_her_approvals(browse, hexie, service):
    case_id = approval_case(hexie, service)
    chair = browse("zhuxi")
    page = text_of(chair.get(f"/cases/{case_id}?next=/admin/approvals"))
    assert 'name="next" value="/admin/approvals"' in page
    lock = re.search(r'name="lock_version" value="(\d+)"', page).group(1)
    response = chair.post(f"/cases/{case_id}/actions/approve", {"comment": "同意", "next": "/admin/approvals",
                                                               "lock_version": lock})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/approvals")
    # her vote is cast: nothing opens by itself now (not "reject"), and she may take it back
    page = text_of(chair.get(f"/cases/{case_id}"))
    assert "撤回我的投票" in page
    assert not re.search(r'<details class="action[^"]*" open>\s*<summary>\s*<span class="action-name">不予批准', page)
    # an outside address is never followed
    response = chair.post(f"/cases/{case_id}/actions/approve", {"comment": "同意", "next": "https://evil.example/"})
    assert "evil.example" not in response.headers.get("Location", "")


def test_bulk_approval_votes_on_each_case_and_reports_each_refusal(browse, hexie, service):
    first, second, third = (approval_case(hexie, service) for _ in range(3))
    service.fire(hexie.actor("zhuxi"), third, "approve", comment="同意")      # she already voted on the third
    chair = browse("zhuxi")
    page = text_of(chair.get("/admin/approvals"))
    assert f'value="{first}:approve"' in page and f'value="{second}:approve"' in page
    assert f'value="{third}:approve"' not in page                             # nothing to pick there
    response = chair.post("/admin/approvals/bulk", {"case": [f"{first}:approve", f"{second}:approve",
                                                            f"{third}:approve"], "comment": "经审核，同意救助"},
                          follow_redirects=True)
    page = text_of(response)
    assert f"已审批 2 件：#{first}、#{second}" in page
    assert f"案件 #{third} 未能审批" in page and "已投过票" in page
    with hexie.session_factory() as s:
        votes = s.execute(select(Vote.case_id, Vote.comment).order_by(Vote.case_id)).all()
        events = s.scalars(select(AuditEvent.case_id).where(AuditEvent.kind == "vote")).all()
    assert (first, "经审核，同意救助") in votes and (second, "经审核，同意救助") in votes
    assert sorted(events) == sorted([first, second, third])                  # each vote its own audited action
    # the vice-chair's votes in bulk reach the quorum: both cases move on
    vice = browse("fuzhuxi")
    text_of(vice.post("/admin/approvals/bulk", {"case": [f"{first}:approve", f"{second}:approve"]},
                      follow_redirects=True))
    for case_id in (first, second):
        assert hexie_state_of(hexie, case_id) == "disbursement"


def hexie_state_of(hexie, case_id: int) -> str:
    from hexie.models import Case
    with hexie.session_factory() as s:
        return s.get(Case, case_id).state


def test_nothing_picked_is_said_plainly(browse, hexie, service):
    response = browse("zhuxi").post("/admin/approvals/bulk", {"comment": "同意"}, follow_redirects=True)
    assert "请先勾选要审批的案件" in text_of(response)


def test_a_vote_is_withdrawn_until_the_quorum_is_reached(browse, hexie, service):
    case_id = approval_case(hexie, service)
    zhuxi, fuzhuxi = hexie.actor("zhuxi"), hexie.actor("fuzhuxi")
    service.fire(zhuxi, case_id, "approve", comment="同意")
    result = service.withdraw_vote(zhuxi, case_id, "approve", "再看看材料")
    assert result["votes"] == 0
    with hexie.session_factory() as s:
        kinds = s.scalars(select(AuditEvent.kind).where(AuditEvent.case_id == case_id).order_by(AuditEvent.seq)).all()
    assert kinds[-2:] == ["vote", "vote_withdrawn"]
    with pytest.raises(Conflict):                                  # nothing left to withdraw
        service.withdraw_vote(zhuxi, case_id, "approve")
    service.fire(zhuxi, case_id, "approve", comment="同意")
    service.fire(fuzhuxi, case_id, "approve", comment="同意")        # the quorum: the case moves on
    with pytest.raises(Conflict):
        service.withdraw_vote(zhuxi, case_id, "approve")
    assert hexie_state_of(hexie, case_id) == "disbursement"
