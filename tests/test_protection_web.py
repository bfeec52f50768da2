"""protection.md on the pages and the API, on both databases: reports with small counts hidden
(page, CSV, API), lists and exports without names (the case code), ``deidentified=1``, the
encrypted case file, the blind-index search box, and "Need to know ... made exact" for what this
work added (the same 404 for hidden and missing exports) and the bullets not yet tested
elsewhere (the team view; overseers read unmasked once they act).
"""
from __future__ import annotations

import csv
import io
import json
import re

import pytest
import pyzipper
from sqlalchemy import select

from hexie.models import AuditEvent
from hexie.workflows.org import load_org
from hexie.workflows.protection import case_code

from .api_support import DV_INTAKE, PASSWORD, api_env, error_of

MISSING = 999_999
NAME = "某女士"
ID_NUMBER = "11010519900307002X"


@pytest.fixture
def api(engine):
    env = api_env(engine)
    with env.engine.transaction() as s:
        load_org(s, {"users": [{"username": "police1b", "name": "police1b", "password": PASSWORD,
                                "roles": ["police_liaison@t01"]}]})
    return env


def _dv(env, n: int = 1, refer: bool = True) -> list[int]:
    ids = []
    for _ in range(n):
        case_id = env.service.start_case(env.actor("ccadre"), "dv_complaint", "t01",
                                         {**DV_INTAKE, "victim_id_number": ID_NUMBER})
        if refer:
            env.service.fire(env.actor("ccadre"), case_id, "refer")
        ids.append(case_id)
    return ids


def _rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


# ---------------------------------------------------------------------- reports

def test_the_report_api_hides_small_counts_of_a_confidential_process(api):
    _dv(api, 3)
    body = api.as_("manager").get("/reports/dv_complaint").get_json()
    assert body["suppressed"] is True and body["total"] == "<5"
    assert all(v == "<5" for v in body["units"][0]["counts"].values())
    open_report = api.as_("manager").get("/reports/poor_mother_aid").get_json()
    assert open_report["suppressed"] is False
    assert api.as_("manager").get("/reports/nothing_like_it").status_code == 404


# ---------------------------------------------------------------------- lists and exports

def test_lists_and_the_list_export_carry_the_case_code_never_the_name(api):
    (case_id,) = _dv(api)
    listed = api.as_("ccadre").get("/cases?process=dv_complaint").get_json()
    assert listed[0]["subject"] == case_code(case_id)
    assert NAME not in json.dumps(listed, ensure_ascii=False)


def test_the_blind_index_through_the_api(api):
    (case_id,) = _dv(api)
    assert [c["id"] for c in api.as_("ccadre").get(f"/cases?lookup={NAME}").get_json()] == [case_id]
    assert [c["id"] for c in api.as_("manager").get(f"/cases?lookup={ID_NUMBER.lower()}").get_json()] == [case_id]
    assert api.as_("ccadre").get("/cases?lookup=某女").get_json() == []                  # no substring
    for other in ("police1b", "cadre1", "chair1", "admin"):
        assert api.as_(other).get(f"/cases?lookup={NAME}").get_json() == [], other
    # the search is logged: in the access log of the case it found
    log = api.as_("ccadre").get(f"/cases/{case_id}/access-log").get_json()
    searches = [(e["username"], e["what"], e["remote_addr"]) for e in log if e["what"] == "search"]
    assert sorted(searches) == [("ccadre", "search", "127.0.0.1"),            # who, and from where
                                ("manager", "search", "127.0.0.1")]          # not the search that found nothing


def test_the_encrypted_case_file_through_the_api(api):
    (case_id,) = _dv(api)
    r = api.as_("ccadre").post(f"/cases/{case_id}/export", {"password": "correct horse battery"})
    assert r.status_code == 200 and r.mimetype == "application/zip"
    with pyzipper.AESZipFile(io.BytesIO(r.data)) as archive:
        with pytest.raises(RuntimeError):
            archive.read("case.json")                                # no password, no content
        archive.setpassword(b"correct horse battery")
        document = json.loads(archive.read("case.json"))
        assert document["data"]["victim_name"] == NAME and document["subject"] == case_code(case_id)
        assert NAME in archive.read("case.csv").decode("utf-8")
        assert {i.filename for i in archive.infolist()} == {"case.json", "case.csv"}
        # encrypted, AES-256 (WinZip AE-2: method 99, strength 3)
        assert all(i.flag_bits & 1 and getattr(i, "wz_aes_strength", None) == 3 for i in archive.infolist())
    assert r.data[8:10] == b"\x63\x00"
    short = api.as_("ccadre").post(f"/cases/{case_id}/export", {"password": "short"})
    assert short.status_code in (400, 422)
    deid = api.as_("ccadre").post(f"/cases/{case_id}/export", {"password": "correct horse battery",
                                                               "deidentified": True})
    with pyzipper.AESZipFile(io.BytesIO(deid.data)) as archive:
        archive.setpassword(b"correct horse battery")
        text = archive.read("case.json").decode("utf-8") + archive.read("case.csv").decode("utf-8")
        assert NAME not in text and ID_NUMBER not in text and case_code(case_id) in text
        assert json.loads(archive.read("case.json"))["id"] is None
    # hidden and missing: one 404
    hidden = api.as_("police2").post(f"/cases/{case_id}/export", {"password": "correct horse battery"})
    missing = api.as_("police2").post(f"/cases/{MISSING}/export", {"password": "correct horse battery"})
    assert hidden.status_code == missing.status_code == 404 and hidden.get_json() == missing.get_json()
    assert not re.search(r"\d", json.dumps(error_of(hidden), ensure_ascii=False))
    with api.engine.session_factory() as s:
        kinds = [e.changes["export"][1] for e in s.scalars(select(AuditEvent).where(AuditEvent.kind == "exported"))]
        assert kinds == ["case.zip", "case.zip"]                     # the refused ones are not exports


# ---------------------------------------------------------------------- need to know, made exact

def test_the_team_view_lists_no_confidential_task_of_a_case_its_manager_may_not_see(api):
    (case_id,) = _dv(api)
    team = api.as_("chair1").get("/tasks?view=team").get_json()
    assert case_id not in {t["case_id"] for t in team}
    assert api.as_("chair1").get(f"/cases/{case_id}").status_code == 404


def test_an_overseer_reads_unmasked_once_she_acts_on_the_case(api):
    (case_id,) = _dv(api)
    assert api.as_("manager").get(f"/cases/{case_id}").get_json()["data"]["victim_name"] == "***"
    history = api.as_("manager").get(f"/cases/{case_id}/history").get_json()
    assert history[0]["changes"]["victim_name"] == ["***", "***"]
    r = api.as_("manager").post(f"/cases/{case_id}/actions/emergency", {"data": {"emergency_reason": "危险"},
                                                                        "comment": "立即处置"})
    assert r.status_code == 200, r.get_json()
    assert api.as_("manager").get(f"/cases/{case_id}").get_json()["data"]["victim_name"] == NAME


def test_an_agency_offered_a_referral_may_not_consult_anyone_before_it_takes_it(api):
    """Found in the walk of 2 Dec: the police desk, offered a referral (the case masked for her,
    not accepted yet), consulted the town chair, who then read the survivor's name, phone and
    address in clear. On a confidential case only the task's holder consults (403, nothing written)."""
    (case_id,) = _dv(api)
    api.as_("ccadre").post(f"/cases/{case_id}/consents", {"agency": "police", "given": True, "scope": "services"})
    police = next(t for t in api.as_("ccadre").get(f"/cases/{case_id}").get_json()["referrals"]
                  if t["agency"] == "police")
    assert police["status"] == "offered"
    assert api.as_("police1").get(f"/cases/{case_id}").get_json()["data"]["victim_name"] == "***"
    before = api.snapshot(case_id)
    r = api.as_("police1").post(f"/tasks/{police['id']}/consult", {"to": "chair1", "comment": "帮忙看看"})
    assert r.status_code == 403, r.get_json()
    assert api.snapshot(case_id) == before                              # no consult task, no event
    assert api.as_("chair1").get(f"/cases/{case_id}").status_code == 404
    assert api.as_("chair1").get("/tasks?view=mine").get_json() == []
    # once she has accepted the referral she holds it, and may ask a colleague (interfaces.md)
    assert api.as_("police1").post(f"/tasks/{police['id']}/accept").status_code == 200
    r = api.as_("police1").post(f"/tasks/{police['id']}/consult", {"to": "chair1", "comment": "帮忙看看"})
    assert r.status_code == 201, r.get_json()
    assert api.as_("chair1").get(f"/cases/{case_id}").status_code == 200


def test_an_agency_no_longer_sees_the_case_once_she_withdraws_her_consent_to_it(api):
    """Found in the walk of 2 Dec: the police desk had accepted the referral; the survivor then
    took her consent to the police back (the referral was cancelled), and the desk still read her
    name, phone and address, printed the case and found it by her name. protection.md: consent is
    what lets the case be shared with that agency; as Primero revokes a referral, the agency that
    worked the case only through that referral loses it (the 404 of a missing case) until she
    consents again. The owner, overseers and other agencies keep theirs."""
    (case_id,) = _dv(api)
    cadre = api.as_("ccadre")
    for agency in ("police", "legal_aid"):
        cadre.post(f"/cases/{case_id}/consents", {"agency": agency, "given": True, "scope": "services"})
    tasks = {t["agency"]: t["id"] for t in cadre.get(f"/cases/{case_id}").get_json()["referrals"]}
    assert api.as_("police1").post(f"/tasks/{tasks['police']}/accept").status_code == 200
    assert api.as_("legal").post(f"/tasks/{tasks['legal_aid']}/accept").status_code == 200
    assert api.as_("police1").get(f"/cases/{case_id}").get_json()["data"]["victim_name"] == NAME
    r = cadre.post(f"/cases/{case_id}/consents/withdraw", {"agency": "police", "note": "她不愿报警"})
    assert r.status_code == 201, r.get_json()
    police = api.as_("police1")
    missing = police.get(f"/cases/{MISSING}")
    for path in (f"/cases/{case_id}", f"/cases/{case_id}/history", f"/cases/{case_id}/print.pdf",
                 f"/cases/{case_id}/access-log", f"/cases/{case_id}/consents"):
        r = police.get(path)
        assert r.status_code == 404 and r.get_json() == missing.get_json(), path
    assert case_id not in {c["id"] for c in police.get("/cases").get_json()}
    assert police.get(f"/cases?lookup={NAME}").get_json() == []
    assert case_id not in {t["case_id"] for t in police.get("/tasks?view=mine").get_json()}
    # the others keep the case: the owner, the legal aid that still has her consent, the overseer
    assert cadre.get(f"/cases/{case_id}").get_json()["data"]["victim_name"] == NAME
    assert api.as_("legal").get(f"/cases/{case_id}").get_json()["data"]["victim_name"] == NAME
    assert api.as_("manager").get(f"/cases/{case_id}").status_code == 200
    # she consents again: the referral is offered to the desk anew (masked until taken)
    cadre.post(f"/cases/{case_id}/consents", {"agency": "police", "given": True, "scope": "services"})
    again = police.get(f"/cases/{case_id}")
    assert again.status_code == 200


def test_a_town_chair_consulted_on_a_confidential_case_may_not_manage_it(api):
    """Found in the walk of 2 Dec: the town chair, consulted by the police desk, could hold and
    resume the complaint, reassign its referral and hand the case to another cadre, as "a manager
    of its area". definitions.md gives a confidential case to overseers, not to managers: only the
    owner and an overseer (the county chair) manage it; the chair answers her consult, nothing else."""
    (case_id,) = _dv(api)
    cadre = api.as_("ccadre")
    cadre.post(f"/cases/{case_id}/consents", {"agency": "police", "given": True, "scope": "services"})
    police = next(t["id"] for t in cadre.get(f"/cases/{case_id}").get_json()["referrals"] if t["agency"] == "police")
    assert api.as_("police1").post(f"/tasks/{police}/accept").status_code == 200
    assert api.as_("police1").post(f"/tasks/{police}/consult", {"to": "chair1", "comment": "请教"}).status_code == 201
    chair = api.as_("chair1")
    assert chair.get(f"/cases/{case_id}").status_code == 200                 # she may read it while asked
    before = api.snapshot(case_id)
    for path, body in ((f"/cases/{case_id}/suspend", {"comment": "先停一下"}),
                       (f"/cases/{case_id}/owner", {"to": "manager2", "comment": "交给别人"}),
                       (f"/tasks/{police}/reassign", {"to": "police1b"}),
                       (f"/tasks/{police}/suspend", {"comment": "先停一下"})):
        r = chair.post(path, body)
        assert r.status_code == 403, (path, r.get_json())
    assert api.snapshot(case_id) == before
    # the overseer does manage it
    assert api.as_("manager").post(f"/cases/{case_id}/suspend", {"comment": "安全起见暂停"}).status_code == 200
    assert api.as_("manager").post(f"/cases/{case_id}/resume", {"comment": "恢复"}).status_code == 200


# ---------------------------------------------------------------------- the pages

@pytest.fixture
def web(session_factory, tmp_path):
    from .web_helpers import make_web_env
    env = make_web_env(session_factory, tmp_path)
    with env.engine.transaction() as s:
        load_org(s, {"users": [{"username": "pl1b", "name": "郑二警官", "password": "s3cret-pass-1",
                                "roles": ["police_liaison@t01"]}]})
    return env


def _web_dv(env, n: int = 1) -> list[int]:
    from hexie.workflows.consent import Protection
    from .test_web import COMPLAINT
    ids = []
    for _ in range(n):
        case_id = env.service.start_case(env.actor("cc1"), "dv_complaint", "t01",
                                         {**COMPLAINT, "victim_id_number": ID_NUMBER})
        env.service.fire(env.actor("cc1"), case_id, "refer")
        for agency in ("police", "legal_aid"):   # her consent opens each referral (protection.md)
            Protection(env.engine).record_consent(env.actor("cc1"), case_id, agency)
        ids.append(case_id)
    return ids


def test_the_reports_page_and_its_csv_hide_small_counts(web):
    _web_dv(web, 3)
    client = web.client("cm1")
    page = client.get("/reports?process=dv_complaint").get_data(as_text=True)
    assert 'id="suppression-note"' in page and "&lt;5" in page
    rows = _rows(client.get("/reports.csv?process=dv_complaint"))
    unit = rows[1]
    assert "3" not in unit[1:] and "<5" in unit
    aid = client.get("/reports.csv?process=poor_mother_aid")
    assert aid.status_code == 200 and "<5" not in aid.get_data(as_text=True)


def test_the_case_page_offers_no_consult_on_a_referral_not_yet_taken(web):
    """The police desk offered a referral reads the case masked: no "ask a colleague" form for her
    until she accepts it (then it is hers)."""
    from hexie.workflows.consent import Protection
    (case_id,) = _web_dv(web)
    police = next(t for t in web.queries.case(web.actor("cc1"), case_id)["referrals"] if t["agency"] == "police")
    client = web.client("pl1")
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert f"/tasks/{police['id']}/accept" in page and f"/tasks/{police['id']}/consult" not in page
    Protection(web.engine).accept(web.actor("pl1"), police["id"])
    assert f"/tasks/{police['id']}/consult" in client.get(f"/cases/{case_id}").get_data(as_text=True)


def test_the_cases_page_finds_a_survivor_by_full_name_for_those_working_it(web):
    (case_id,) = _web_dv(web)
    _web_dv(web)
    found = web.client("cc1").post("/cases/find", data={"lookup": "秘密受害人"})
    page = found.get_data(as_text=True)
    assert found.status_code == 200 and 'id="lookup-result"' in page
    assert f"/cases/{case_id}\"" in page and "秘密受害人" not in page.split('id="lookup-result"')[1]
    assert page.count('class="case-link"') == 2                         # both cases share the name
    log = web.queries.access_log(web.actor("cc1"), case_id).items
    assert [(e["username"], e["what"], e["remote_addr"]) for e in log if e["what"] == "search"] == [
        ("cc1", "search", "127.0.0.1")]                                  # the search, from where
    for other in ("pl1b", "tc1", "tch1", "admin"):
        nobody = web.client(other).post("/cases/find", data={"lookup": "秘密受害人"}).get_data(as_text=True)
        assert 'class="case-link"' not in nobody, other
    assert web.client("cc1").post("/cases/find", data={"lookup": "秘密"}).get_data(as_text=True).count(
        'class="case-link"') == 0


def test_the_case_list_export_masks_and_deidentifies(web):
    (case_id,) = _web_dv(web)
    mine = _rows(web.client("cc1").get("/cases.csv?process=dv_complaint"))
    header = mine[0]
    row = mine[1]
    # a list of confidential cases never carries her name, not even for those working the case
    assert row[header.index("victim_name")] == case_code(case_id) and "秘密受害人" not in ",".join(row)
    assert row[6] == case_code(case_id)                                    # the subject is the code
    assert row[0] == str(case_id)                                          # the number stays (not deidentified)
    overseer = _rows(web.client("cm1").get("/cases.csv?process=dv_complaint"))[1]
    assert overseer[header.index("victim_name")] == case_code(case_id)
    deid = web.client("cc1").get("/cases.csv?process=dv_complaint&deidentified=1").get_data(as_text=True)
    assert "秘密受害人" not in deid and ID_NUMBER not in deid and case_code(case_id) in deid
    assert f"\n{case_id}," not in deid
    stranger = _rows(web.client("tc1").get("/cases.csv?process=dv_complaint"))
    assert stranger[1:] == []


def _sheet_text(response) -> str:
    from openpyxl import load_workbook
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.get_data()), read_only=True)
    return "\n".join(",".join("" if v is None else str(v) for v in row)
                     for sheet in book.worksheets for row in sheet.iter_rows(values_only=True))


def test_the_excel_exports_take_deidentified_too(web):
    """protection.md: ``deidentified=1`` on any export: the .xlsx lists of cases and tasks as well
    (the subject, here the applicant's name, and the case number become the case's code)."""
    from .test_web import APPLICATION
    (dv_id,) = _web_dv(web)
    aid_id = web.service.start_case(web.actor("vr1"), "poor_mother_aid", "t01v01", dict(APPLICATION))
    web.service.fire(web.actor("vr1"), aid_id, "submit")
    manager = web.client("cm1")
    plain = _sheet_text(manager.get("/cases.xlsx"))
    assert "王小红" in plain and "秘密受害人" not in plain               # names only of open processes
    deid = _sheet_text(manager.get("/cases.xlsx?deidentified=1"))
    assert "王小红" not in deid and "秘密受害人" not in deid and case_code(aid_id) in deid
    assert f"\n{aid_id}," not in deid
    tasks = _sheet_text(web.client("tc1").get("/tasks.xlsx?view=available"))
    assert "王小红" in tasks
    tasks = _sheet_text(web.client("tc1").get("/tasks.xlsx?view=available&deidentified=1"))
    assert "王小红" not in tasks and case_code(aid_id) in tasks
    ccadre = _sheet_text(web.client("cc1").get("/cases.xlsx?process=dv_complaint"))
    assert "秘密受害人" not in ccadre and case_code(dv_id) in ccadre     # the subject is the code


def test_the_case_page_exports_its_file_and_hides_it_like_a_missing_one(web):
    (case_id,) = _web_dv(web)
    client = web.client("cc1")
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'id="case-export"' in page and 'type="password"' in page
    r = client.post(f"/cases/{case_id}/export", data={"password": "a long enough secret"})
    assert r.status_code == 200 and r.mimetype == "application/zip"
    with pyzipper.AESZipFile(io.BytesIO(r.data)) as archive:
        archive.setpassword("a long enough secret".encode())
        assert "秘密受害人" in archive.read("case.json").decode("utf-8")
    short = client.post(f"/cases/{case_id}/export", data={"password": "short"})
    assert short.status_code == 302
    as_json = client.get(f"/cases/{case_id}/export.json?deidentified=1")
    assert as_json.status_code == 200 and "秘密受害人" not in as_json.get_data(as_text=True)
    stranger = web.client("pl1b")
    stranger.get("/")   # the welcome message is shown once
    web.service.claim(web.actor("pl1"), [t.id for t in _open(web, case_id) if t.role == "police_liaison"][0])
    from .test_security_access import _page
    for hidden, missing in ((f"/cases/{case_id}/export.json", f"/cases/{MISSING}/export.json"),):
        a, b = stranger.get(hidden), stranger.get(missing)
        assert a.status_code == b.status_code == 404 and _page(a) == _page(b)
    a = stranger.post(f"/cases/{case_id}/export", data={"password": "a long enough secret"})
    b = stranger.post(f"/cases/{MISSING}/export", data={"password": "a long enough secret"})
    assert a.status_code == b.status_code == 404 and _page(a) == _page(b)


def _open(env, case_id: int):
    from hexie.models import Task
    with env.engine.session_factory() as s:
        return list(s.scalars(select(Task).where(Task.case_id == case_id, Task.status.in_(("offered", "allocated")))))


def test_print_outs_and_exports_of_a_confidential_case_are_in_its_access_log(web):
    """protection.md: the page, print and export reads are logged, each with what was read."""
    from hexie.models import AccessLogEntry
    (case_id,) = _web_dv(web)
    client = web.client("cc1")

    def logged() -> list[tuple[str, str | None]]:
        with web.engine.session_factory() as s:
            return [tuple(r) for r in s.execute(select(AccessLogEntry.what, AccessLogEntry.detail)
                                                .where(AccessLogEntry.case_id == case_id)
                                                .order_by(AccessLogEntry.id)).all()]

    before = logged()
    assert client.get(f"/cases/{case_id}/print.pdf").status_code == 200
    assert client.get(f"/cases/{case_id}/export.json").status_code == 200
    assert client.post(f"/cases/{case_id}/export", data={"password": "a long enough secret"}).status_code == 200
    assert logged()[len(before):] == [("print", "case file"), ("export", "json"), ("export", "encrypted zip")]

    # the list exports name each confidential case they carry (the web's and the API's workbooks)
    before = logged()
    assert client.get("/cases.xlsx?process=dv_complaint").status_code == 200
    assert ("export", "cases.xlsx") in logged()[len(before):]
    before = logged()
    assert web.client("pl1").get("/tasks.xlsx?view=available").status_code == 200   # the police referral
    assert logged()[len(before):] == [("export", "tasks.xlsx")]
