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
    assert "任务已暂停，期限停止计算" in inbox and "天后到期" not in inbox   # no countdown on a stopped clock
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


def test_consent_ticked_at_intake_stays_ticked_and_the_agency_opens_its_referral(session_factory, tmp_path):
    from .test_web import new_complaint
    web = make_web_env(session_factory, tmp_path)
    case_id = new_complaint(web)                                   # consent_to_share: true at intake
    page = _client(web, "cc1").get(f"/cases/{case_id}").get_data(as_text=True)
    import re
    checked = re.search(r'<input[^>]*name="a-refer-consent_to_share"[^>]*value="true"[^>]*>', page)
    assert checked and "checked" in checked.group(0)
    web.service.fire(web.actor("cc1"), case_id, "refer", {"consent_to_share": True})
    police = _client(web, "pl1").get(f"/cases/{case_id}")           # offered to her: no claim first
    assert police.status_code == 200 and "派出所" in police.get_data(as_text=True)


def test_pickers_name_the_people_of_the_role_the_field_is_for(session_factory, tmp_path):
    from hexie.workflows.spec import FormField

    from hexie.web.views.case import _choices
    web = make_web_env(session_factory, tmp_path)
    spec = web.engine.current("poor_mother_aid")[0]
    with web.app.test_request_context():
        choices = _choices(spec, (FormField("responsible_town_chair", True), FormField("responsible_village_rep", True)),
                           "/county/t01/t01v01/")
    assert choices.users_by_field["responsible_town_chair"] == [("tch1", "陈红")]
    assert choices.users_by_field["responsible_village_rep"] == [("vr1", "李芳")]


def test_a_refused_form_says_to_choose_the_file_again_and_later_yes_no_is_undecided(session_factory, tmp_path):
    import io
    web = make_web_env(session_factory, tmp_path)
    case_id = new_aid_case(web)
    cadre = _client(web, "tc1")
    with web.engine.session_factory() as s:
        task_id = s.scalar(select(Task.id).where(Task.case_id == case_id, Task.status == "offered"))
    cadre.post(f"/tasks/{task_id}/claim", data={})
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    response = cadre.post(f"/cases/{case_id}/actions/surveyed", content_type="multipart/form-data",
                          data={"a-surveyed-survey_photos": (io.BytesIO(png), "home.png")})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "请重新选择文件" in page
    assert "尚未决定" in page                                        # 已脱贫 is a later step's yes/no
