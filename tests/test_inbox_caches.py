"""What the inbox keeps across requests is never stale: the filter bar's options (per person,
definitions, org tree and language), the places of its rows (the org tree each process keeps,
``hexie.web.orgmap``), and the signed-in person read in one statement (docs/performance.md §3)."""
from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import create_engine as sa_create_engine, select, text

from hexie.models import OrgUnit, RoleAssignment, User
from hexie.web import orgmap
from hexie.workflows import tokens
from hexie.workflows.org import load_org
from hexie.workflows.spec import Label

from .web_helpers import make_web_env
from .test_web import new_aid_case, page_text


@pytest.fixture
def env(session_factory, tmp_path):
    return make_web_env(session_factory, tmp_path)


def _rename(env, code: str, name: str, level: str, parent: str | None) -> None:
    roles = env.engine.registry.roles
    with env.engine.transaction() as s:
        load_org(s, {"units": [{"code": code, "name": name, "level": level, **({"parent": parent} if parent else {})}]},
                 roles=list(roles.roles), levels=list(roles.levels))


def test_the_filter_bar_follows_an_org_change_made_in_this_process(env):
    client = env.client("tc1")
    html = page_text(client.get("/?view=mine"))
    assert '<option value="t01v01">\u3000\u3000东村</option>' in html
    kept = env.engine.__dict__["_hexie_filter_options"]
    assert page_text(client.get("/?view=mine")).count("东村") == html.count("东村")
    assert env.engine.__dict__["_hexie_filter_options"] is kept   # the second request reused it
    _rename(env, "t01v01", "东风村", "village", "t01")
    _rename(env, "t01v03", "北村", "village", "t01")
    html = page_text(client.get("/?view=mine"))
    assert '<option value="t01v01">\u3000\u3000东风村</option>' in html
    assert '<option value="t01v03">\u3000\u3000北村</option>' in html
    assert "东村<" not in html


def test_the_filter_bar_follows_her_roles(env):
    client = env.client("tc1")
    assert 'value="t02v01"' not in page_text(client.get("/?view=mine"))
    with env.engine.transaction() as s:
        user_id = s.scalar(select(User.id).where(User.username == "tc1"))
        unit_id = s.scalar(select(OrgUnit.id).where(OrgUnit.code == "t02"))
        s.add(RoleAssignment(user_id=user_id, role="town_cadre", org_unit_id=unit_id))
    html = page_text(client.get("/?view=mine"))
    assert '<option value="t02v01">\u3000\u3000南村</option>' in html
    assert '<option value="t01v01">\u3000\u3000东村</option>' in html


def test_the_filter_bar_follows_her_language(env):
    client = env.client("tc1")
    assert "救助贫困母亲</option>" in page_text(client.get("/?view=mine"))
    client.post("/lang/en")
    html = page_text(client.get("/?view=mine"))
    assert "Aid to poor mothers</option>" in html and "救助贫困母亲</option>" not in html
    client.post("/lang/zh")
    assert "救助贫困母亲</option>" in page_text(client.get("/?view=mine"))


def test_the_filter_bar_follows_a_new_step(env):
    client = env.client("tc1")
    spec = env.engine.processes["poor_mother_aid"]
    first = spec.states[0]
    assert f">{first.label.zh}</option>" in page_text(client.get(f"/?view=mine&process={spec.key}"))
    renamed = dataclasses.replace(first, label=Label(zh="新的第一步", en="A new first step"))
    new_spec = dataclasses.replace(spec, states=(renamed, *spec.states[1:]))
    registry = env.engine.registry   # what a publish does: a new registry with the new definition
    env.engine.registry = dataclasses.replace(registry, processes={**registry.processes, spec.key: new_spec})
    html = page_text(client.get(f"/?view=mine&process={spec.key}"))
    assert ">新的第一步</option>" in html


def test_the_rows_places_follow_an_org_change(env):
    new_aid_case(env)                      # waits for t01's survey: offered to tc1
    client = env.client("tc1")
    assert "城关镇 东村" in page_text(client.get("/?view=available"))
    _rename(env, "t01", "城关新镇", "town", "county")
    html = page_text(client.get("/?view=available"))
    assert "城关新镇 东村" in html and "城关镇 东村" not in html


def test_another_process_org_change_shows_after_the_next_check(env, db_url):
    """A write no ORM event of this process sees (another worker, the command line): each
    process's checking thread compares its trees with the database every CHECK_SECONDS; the
    request after a check that found a different digest reads the tree again."""
    new_aid_case(env)
    client = env.client("tc1")
    assert "城关镇 东村" in page_text(client.get("/?view=available"))
    other = sa_create_engine(db_url)
    try:
        with other.begin() as conn:
            conn.execute(text("UPDATE hexie_org_units SET name = '东方村' WHERE code = 't01v01'"))
    finally:
        other.dispose()
    kept = orgmap.org_map(env.engine)
    orgmap.check_now()                         # what the thread does every CHECK_SECONDS
    html = page_text(client.get("/?view=available"))
    assert "城关镇 东方村" in html and '<option value="t01v01">\u3000\u3000东方村</option>' in html
    assert orgmap.org_map(env.engine) is not kept
    orgmap.check_now()                         # nothing changed since: the tree is kept
    again = orgmap.org_map(env.engine)
    client.get("/?view=available")
    assert orgmap.org_map(env.engine) is again


def test_the_tree_is_read_again_only_when_it_changed(env):
    first = orgmap.org_map(env.engine)
    orgmap.check_now()
    assert orgmap.org_map(env.engine) is first      # compared, the same: kept
    _rename(env, "t02v01", "南山村", "village", "t02")
    second = orgmap.org_map(env.engine)
    assert second is not first and second.version != first.version
    assert second.by_id[next(u.id for u in second.units if u.code == "t02v01")].name == "南山村"
    assert orgmap._checker is not None and orgmap._checker[1].is_alive()


def test_the_signed_in_person_in_one_statement_is_who_two_made(env):
    from hexie.workflows.tokens import credential_actor, credential_user, new_credential
    with env.engine.transaction() as s:
        user_id = s.scalar(select(User.id).where(User.username == "tc1"))
        jti = new_credential(s, user_id, "session", "login", env.clock())
    with env.engine.read_session() as r:
        user = credential_user(r, "tc1", jti, "session", env.clock())
        expected = env.engine.actor_for(r, user)
    with env.engine.read_session() as r:
        actor, password_hash = credential_actor(r, "tc1", jti, "session", env.clock())
        assert actor == expected and actor.assignments == expected.assignments
        assert password_hash == user.password_hash
        assert credential_actor(r, "tc2", jti, "session", env.clock()) is None     # another's session
        assert credential_actor(r, "tc1", jti, "token", env.clock()) is None       # not a token
        nobody = credential_actor(r, "tc1", "x" * 65, "session", env.clock())
        assert nobody is None
    with env.engine.transaction() as s:
        tokens.revoke(s, jti, env.clock())
    with env.engine.read_session() as r:
        assert credential_actor(r, "tc1", jti, "session", env.clock()) is None


def test_dates_are_written_as_babel_writes_them():
    """fmt_dt / fmt_date write the fields directly: what Babel's patterns gave, in both locales."""
    from datetime import datetime, timedelta, timezone
    from babel import Locale
    from babel.dates import format_date, format_datetime
    for locale in ("zh_CN", "en"):
        parsed = Locale.parse(locale)
        for value in (datetime(2026, 3, 2, 9, 5), datetime(999, 1, 1, 0, 0), datetime(2026, 12, 31, 23, 59),
                      datetime(2024, 2, 29, 12, 0) + timedelta(seconds=59)):
            local = value.replace(tzinfo=timezone(timedelta(hours=8)))
            assert format_datetime(local, "yyyy-MM-dd HH:mm", locale=parsed) == \
                f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}"
            assert format_date(local, "yyyy-MM-dd", locale=parsed) == f"{local.year:04d}-{local.month:02d}-{local.day:02d}"


def test_the_check_leaves_a_database_that_went_away(tmp_path):
    """A SQLite file that is gone (a test's, a removed install) is not made again, empty, by the check."""
    import time
    gone = tmp_path / "gone.db"
    url = f"sqlite:///{gone}"
    orgmap._used[url] = time.monotonic()
    orgmap.check_now()
    assert not gone.exists() and url not in orgmap._used
