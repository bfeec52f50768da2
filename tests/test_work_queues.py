"""Work queues: the order of a task list (sort) and the work that timers will open (view=upcoming)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from hexie.models import Task
from hexie.workflows.errors import BadRequest

from .engine_helpers import make_env
from .test_engine import APPLICATION, _to_approval


@pytest.fixture
def env(session_factory):
    return make_env(session_factory)


def to_follow_up(env) -> int:
    case_id = _to_approval(env)
    env.service.fire(env.actor("mgr1"), case_id, "approve")
    env.service.fire(env.actor("mgr2"), case_id, "approve")
    env.service.fire(env.actor("fin"), case_id, "disburse", {"approved_amount": "800"})
    return case_id


def test_upcoming_lists_the_visits_timers_will_open_for_her(env):
    case_id = to_follow_up(env)                        # the visit is due in 180 days, to the surveyor
    cadre2 = env.actor("cadre2")
    (row,) = env.queries.upcoming(cadre2, 200).items
    assert row == {"case_id": case_id, "process": "aid", "state": "follow_up", "trigger": "visit_due",
                   "due_at": env.clock() + timedelta(days=180), "role": "town_cadre", "assignee": "cadre2"}
    assert env.queries.upcoming(cadre2, 30).total == 0             # not within a month
    assert env.queries.upcoming(env.actor("cadre"), 200).total == 0  # a colleague's visit is not hers
    assert env.queries.upcoming(env.actor("rep"), 200).total == 0
    with pytest.raises(BadRequest):
        env.queries.upcoming(cadre2, 0)


def test_sort_orders_by_due_priority_or_creation(env):
    rep = env.actor("rep")
    ids = [env.service.start_case(rep, "aid", "t01v01", APPLICATION) for _ in range(4)]
    now = env.clock()
    with env.engine.transaction() as s:               # give the four application tasks dates and priorities
        for case_id, due, priority in zip(ids, [now + timedelta(days=3), None, now + timedelta(days=1),
                                                now + timedelta(days=2)], ["low", "high", "normal", "high"]):
            s.execute(update(Task).where(Task.case_id == case_id).values(due_at=due, priority=priority))

    def order(sort):
        return [t["case_id"] for t in env.queries.tasks(rep, "mine", sort=sort).items]

    assert order(None) == order("due") == [ids[2], ids[3], ids[0], ids[1]]        # undated last
    assert order("-due") == [ids[0], ids[3], ids[2], ids[1]]                       # still undated last
    assert order("priority")[:2] == [ids[3], ids[1]] and order("priority")[-1] == ids[0]
    assert order("created") == ids and order("-created") == ids[::-1]
    with pytest.raises(BadRequest):
        env.queries.tasks(rep, "mine", sort="subject")


def test_the_api_takes_sort_and_view_upcoming(engine):
    from .api_support import api_env

    api = api_env(engine)
    first, second = api.start_aid(), api.start_aid()
    with api.engine.transaction() as s:
        s.execute(update(Task).where(Task.case_id == second).values(priority="high"))
    rows = api.as_("vrep1").get("/tasks?view=mine&sort=priority").get_json()
    assert [r["case_id"] for r in rows] == [second, first]
    rows = api.as_("vrep1").get("/tasks?view=mine&sort=-created").get_json()
    assert [r["case_id"] for r in rows] == [second, first]
    bad = api.as_("vrep1").get("/tasks?sort=subject")
    assert bad.status_code == 400 and "sort" in bad.get_json()["error"]["details"]
    upcoming = api.as_("vrep1").get("/tasks?view=upcoming&days=60")
    assert upcoming.status_code == 200 and upcoming.get_json() == [] and upcoming.headers["X-Total-Count"] == "0"
    assert api.as_("vrep1").get("/tasks?view=upcoming&days=0").status_code == 400


def test_the_coming_up_page_lists_her_visits_by_day(session_factory, tmp_path):
    from hexie.models import Case, Timer

    from .test_web import new_aid_case
    from .web_helpers import login, make_web_env

    web = make_web_env(session_factory, tmp_path)
    case_id = new_aid_case(web)                                    # waiting for t01's home survey
    with web.engine.transaction() as s:                             # a timer that will open the survey's next step
        state = s.get(Case, case_id).state
        s.add(Timer(case_id=case_id, state=state, trigger="surveyed", due_at=web.clock() + timedelta(days=5)))
    chair = web.app.test_client()
    login(chair, "cm1")
    page = chair.get("/upcoming").get_data(as_text=True)
    assert f"#{case_id}" in page and (web.clock() + timedelta(days=5)).strftime("%Y-%m-%d") in page
    assert "县妇联主席" in page                                       # offered to her role, named
    rep = web.app.test_client()
    login(rep, "vr1")
    assert f"#{case_id}" not in rep.get("/upcoming").get_data(as_text=True)   # not work for her role


def test_saved_views_are_kept_checked_and_private(engine):
    from .api_support import api_env

    api = api_env(engine)
    rep, other = api.as_("vrep1"), api.as_("cadre1")
    made = rep.post("/me/views", {"name": "逾期的救助", "query": "?view=overdue&process=poor_mother_aid&sort=priority"})
    assert made.status_code == 201, made.get_json()
    view = made.get_json()
    assert view["query"] == "view=overdue&sort=priority&process=poor_mother_aid"   # normalised
    assert rep.get("/tasks?" + view["query"]).status_code == 200                    # it opens
    assert [v["name"] for v in rep.get("/me/views").get_json()] == ["逾期的救助"]
    assert other.get("/me/views").get_json() == []                                 # hers alone
    assert rep.post("/me/views", {"name": "逾期的救助", "query": "view=mine"}).status_code == 409
    for bad in ("view=everything", "sort=subject", "process=nope", "colour=red", "days=0", "view=mine&view=overdue"):
        answer = rep.post("/me/views", {"name": "x", "query": bad})
        assert answer.status_code == 422, bad
        assert "query" in answer.get_json()["error"]["details"]
    assert other.delete(f"/me/views/{view['id']}").status_code == 404               # not hers to delete
    assert rep.delete(f"/me/views/{view['id']}").status_code == 204
    assert rep.get("/me/views").get_json() == []


def test_the_inbox_saves_and_opens_a_view(session_factory, tmp_path):
    import re

    from .web_helpers import csrf_token, login, make_web_env

    web = make_web_env(session_factory, tmp_path, csrf=True)
    cadre = web.app.test_client()
    login(cadre, "tc1")
    page = cadre.get("/?view=overdue&sort=priority&process=poor_mother_aid").get_data(as_text=True)
    query = re.search(r'name="query" value="([^"]*)"', page).group(1).replace("&amp;", "&")
    assert query == "view=overdue&sort=priority&process=poor_mother_aid"
    token = csrf_token(cadre, "/")
    saved = cadre.post("/views", data={"name": "逾期救助", "query": query, "csrf_token": token})
    assert saved.status_code == 302 and "view=overdue" in saved.headers["Location"]
    page = cadre.get("/").get_data(as_text=True)
    assert "逾期救助" in page and "/?view=overdue&amp;sort=priority&amp;process=poor_mother_aid" in page
    bad = cadre.post("/views", data={"name": "坏的", "query": "colour=red", "csrf_token": token},
                     follow_redirects=True)
    assert "不能包含" in bad.get_data(as_text=True)


def test_pages_of_a_task_list_keep_their_order_total_and_subjects(env):
    """The page is cut from the tasks before their cases are joined: each page is the next slice
    of the same order, every row has its case's subject, the total is all the matching tasks
    (also on a page past the end), and a search on the subject still joins what it reads."""
    rep = env.actor("rep")
    ids = [env.service.start_case(rep, "aid", "t01v01", APPLICATION) for _ in range(5)]
    everything = env.queries.tasks(rep, "mine", sort="created")
    assert [t["case_id"] for t in everything.items] == ids and everything.total == 5
    pages = [env.queries.tasks(rep, "mine", sort="-created", page=n, per_page=2) for n in (1, 2, 3, 4)]
    assert [t["case_id"] for p in pages for t in p.items] == ids[::-1]
    assert [p.total for p in pages] == [5, 5, 5, 5] and pages[3].items == []
    subjects = {t["case_id"]: t["subject"] for t in everything.items}
    assert all(subjects[t["case_id"]] == t["subject"] for p in pages for t in p.items)
    some = subjects[ids[0]]
    assert some
    found = env.queries.tasks(rep, "mine", search=some)
    assert ids[0] in [t["case_id"] for t in found.items]
    assert all(some in t["subject"] for t in found.items)
    assert env.queries.tasks(rep, "mine", search="没有这样的标题").total == 0
