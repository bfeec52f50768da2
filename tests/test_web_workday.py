"""The working day on the pages: owner and hand-over, hold and resume, notes, consults (issue 12)."""
from __future__ import annotations

from sqlalchemy import select

from hexie.models import Case, Task

from .test_web import new_aid_case
from .web_helpers import login, make_web_env


def _client(web, username):
    client = web.app.test_client()
    login(client, username)
    return client


def test_the_case_page_names_its_owner_and_hands_it_over(session_factory, tmp_path):
    web = make_web_env(session_factory, tmp_path)
    case_id = new_aid_case(web)
    rep = _client(web, "vr1")
    page = rep.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "负责人" in page and "李芳" in page and ">vr1<" not in page
    assert "移交案件" in page and "暂停案件" in page and "写备注" in page
    cadre = _client(web, "tc1").get(f"/cases/{case_id}").get_data(as_text=True)
    assert "移交案件" not in cadre                      # neither the owner nor a manager
    done = rep.post(f"/cases/{case_id}/owner", data={"to": "tc1", "comment": "她接手"}, follow_redirects=True)
    page = done.get_data(as_text=True)
    assert "案件已移交" in page and "王敏" in page
    with web.engine.session_factory() as s:
        assert s.get(Case, case_id).owner_id == web.actor("tc1").user_id


def test_hold_and_resume_from_the_case_page(session_factory, tmp_path):
    web = make_web_env(session_factory, tmp_path)
    case_id = new_aid_case(web)
    rep = _client(web, "vr1")
    refused = rep.post(f"/cases/{case_id}/suspend", data={"comment": ""}, follow_redirects=True)
    assert "请填写原因" in refused.get_data(as_text=True)
    held = rep.post(f"/cases/{case_id}/suspend", data={"comment": "申请人住院", "until": ""},
                    follow_redirects=True).get_data(as_text=True)
    assert "本案已暂停办理" in held and "申请人住院" in held
    cadre = _client(web, "tc1")
    inbox = cadre.get("/?view=available").get_data(as_text=True)
    assert "已暂停" in inbox
    page = cadre.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "案件已暂停办理" in page                      # the actions are blocked, with why
    resumed = rep.post(f"/cases/{case_id}/resume", data={"comment": "出院"}, follow_redirects=True)
    assert "案件已恢复办理" in resumed.get_data(as_text=True)
    history = rep.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "暂停办理" in history and "恢复办理" in history


def test_a_note_with_a_mention_and_a_consult_answered(session_factory, tmp_path):
    web = make_web_env(session_factory, tmp_path)
    case_id = new_aid_case(web)
    cadre = _client(web, "tc1")
    with web.engine.session_factory() as s:
        task_id = s.scalar(select(Task.id).where(Task.case_id == case_id, Task.status == "offered"))
    cadre.post(f"/tasks/{task_id}/claim", data={})
    noted = cadre.post(f"/cases/{case_id}/notes", data={"text": "已电话联系申请人", "mentions": ["tch1"]},
                       follow_redirects=True).get_data(as_text=True)
    assert "备注已添加" in noted and "已电话联系申请人" in noted
    asked = cadre.post(f"/tasks/{task_id}/consult", data={"case_id": case_id, "to": "tch1", "comment": "收入怎么核？"},
                       follow_redirects=True).get_data(as_text=True)
    assert "已征求意见" in asked
    chair = _client(web, "tch1")
    inbox = chair.get("/?view=mine").get_data(as_text=True)
    assert "征求意见" in inbox and f"#{case_id}" in inbox
    page = chair.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "答复意见" in page
    with web.engine.session_factory() as s:
        consult_id = s.scalar(select(Task.id).where(Task.case_id == case_id, Task.kind == "consult"))
    answered = chair.post(f"/tasks/{consult_id}/answer", data={"case_id": case_id, "comment": "按实际收入"},
                          follow_redirects=True).get_data(as_text=True)
    assert "意见已答复" in answered and "按实际收入" in answered
    notices = chair.get("/notifications").get_data(as_text=True)
    assert f"#{case_id}" in notices or "提到了您" in notices
