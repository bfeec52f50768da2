"""Loading the org file, and the org path helpers."""
from __future__ import annotations

import copy
from typing import Any, Callable

import pytest
import yaml
from sqlalchemy import event, select

from hexie.models import Case, OrgUnit, RoleAssignment, Task, User
from hexie.workflows.auth import UNUSABLE_PASSWORD, verify_password
from hexie.workflows.org import (
    OrgFileError, ancestor_paths, in_subtree, load_org, load_org_file, parse_role, unit_by_code,
)

# The example of interfaces.md, verbatim.
EXAMPLE_YAML = """\
units:
  - {code: county, name: 某县, level: county}
  - {code: t01, name: 城关镇, level: town, parent: county}
  - {code: t01v01, name: 东村, level: village, parent: t01}
users:
  - {username: lifang, name: 李芳, password: "s3cret-pass", roles: [village_rep@t01v01]}
  - {username: wangmin, name: 王敏, password: "s3cret-pass", roles: [town_cadre@t01, town_chair@t01]}
"""
LEVELS = ["county", "town", "village"]
ROLES = {"village_rep", "town_chair", "town_cadre", "county_cadre", "county_manager",
         "finance_officer", "legal_aid", "police_liaison", "court_liaison", "admin"}


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_YAML)


def paths(session) -> dict[str, str]:
    return dict(session.execute(select(OrgUnit.code, OrgUnit.path)).all())


def roles_of(session, username: str) -> set[str]:
    rows = session.execute(
        select(RoleAssignment.role, OrgUnit.code).join(RoleAssignment.org_unit).join(RoleAssignment.user)
        .where(User.username == username)).all()
    return {f"{role}@{code}" for role, code in rows}


def snapshot(session) -> tuple:
    """Everything a load could write, as plain values."""
    return (
        sorted(session.execute(select(OrgUnit.code, OrgUnit.name, OrgUnit.level, OrgUnit.parent_id,
                                      OrgUnit.path)).all()),
        sorted(session.execute(select(User.username, User.name, User.password_hash, User.active,
                                      User.locale)).all()),
        sorted(session.execute(select(RoleAssignment.user_id, RoleAssignment.role,
                                      RoleAssignment.org_unit_id)).all()),
    )


def record_writes(session) -> list[str]:
    """Collect the INSERT/UPDATE/DELETE statements sent through the session's engine."""
    writes: list[str] = []

    def listener(conn, cursor, statement, *args):
        if statement.lstrip().split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(statement)

    event.listen(session.get_bind(), "before_cursor_execute", listener)
    return writes


# --- loading ------------------------------------------------------------------------

def test_the_example_loads(session):
    result = load_org(session, example(), roles=ROLES, levels=LEVELS)
    session.commit()

    assert result.created_units == ["county", "t01", "t01v01"]
    assert result.created_users == ["lifang", "wangmin"]
    assert result.updated_units == result.updated_users == []
    assert paths(session) == {"county": "/county/", "t01": "/county/t01/", "t01v01": "/county/t01/t01v01/"}
    t01v01 = unit_by_code(session, "t01v01")
    assert (t01v01.name, t01v01.level, t01v01.parent.code) == ("东村", "village", "t01")
    assert [c.code for c in unit_by_code(session, "county").children] == ["t01"]
    assert roles_of(session, "lifang") == {"village_rep@t01v01"}
    assert roles_of(session, "wangmin") == {"town_cadre@t01", "town_chair@t01"}
    lifang = session.scalar(select(User).where(User.username == "lifang"))
    assert (lifang.name, lifang.active, lifang.locale) == ("李芳", True, "zh")


def test_passwords_are_hashed_and_verify(session):
    load_org(session, example())
    session.commit()
    for user in session.scalars(select(User)):
        assert "s3cret-pass" not in user.password_hash
        assert user.password_hash.startswith("$argon2id$")
        assert verify_password(user.password_hash, "s3cret-pass")
        assert not verify_password(user.password_hash, "wrong")
    hashes = {u.password_hash for u in session.scalars(select(User))}
    assert len(hashes) == 2  # salted: the same password hashes differently


def test_loading_twice_changes_nothing(session):
    load_org(session, example(), roles=ROLES, levels=LEVELS)
    session.commit()
    before = snapshot(session)
    writes = record_writes(session)

    result = load_org(session, example(), roles=ROLES, levels=LEVELS)
    session.commit()

    assert not result.changed
    assert writes == []
    assert snapshot(session) == before


def test_parents_may_come_after_their_children(session):
    data = example()
    data["units"].reverse()
    load_org(session, data, roles=ROLES, levels=LEVELS)
    session.commit()
    assert paths(session)["t01v01"] == "/county/t01/t01v01/"


def test_a_later_file_may_refer_to_units_already_loaded(session):
    load_org(session, example())
    session.commit()
    result = load_org(session, {
        "units": [{"code": "t01v02", "name": "西村", "level": "village", "parent": "t01"}],
        "users": [{"username": "zhaoli", "name": "赵丽", "roles": ["village_rep@t01v02", "town_cadre@t01"]}],
    }, roles=ROLES, levels=LEVELS)
    session.commit()
    assert (result.created_units, result.created_users) == (["t01v02"], ["zhaoli"])
    assert paths(session)["t01v02"] == "/county/t01/t01v02/"
    assert roles_of(session, "zhaoli") == {"village_rep@t01v02", "town_cadre@t01"}


def test_changes_are_applied_and_reported(session):
    load_org(session, example())
    session.commit()
    old_hash = session.scalar(select(User.password_hash).where(User.username == "lifang"))
    data = example()
    data["units"][1]["name"] = "城关镇（新）"
    data["users"][0]["password"] = "n3w-pass"
    data["users"][1]["roles"] = ["town_chair@t01", "county_cadre@county"]
    data["users"][1]["active"] = False

    result = load_org(session, data)
    session.commit()

    assert (result.created_units, result.updated_units) == ([], ["t01"])
    assert (result.created_users, result.updated_users) == ([], ["lifang", "wangmin"])
    assert unit_by_code(session, "t01").name == "城关镇（新）"
    lifang = session.scalar(select(User).where(User.username == "lifang"))
    assert lifang.password_hash != old_hash
    assert verify_password(lifang.password_hash, "n3w-pass")
    assert not verify_password(lifang.password_hash, "s3cret-pass")
    assert roles_of(session, "wangmin") == {"town_chair@t01", "county_cadre@county"}
    assert session.scalar(select(User.active).where(User.username == "wangmin")) is False


def test_omitted_optional_keys_keep_what_is_there(session):
    load_org(session, example())
    session.commit()
    data = example()
    data["users"][1]["active"] = False
    load_org(session, data)
    session.commit()
    before = snapshot(session)
    data = example()
    for user in data["users"]:
        del user["password"], user["roles"]
    result = load_org(session, data)
    session.commit()
    assert not result.changed
    assert snapshot(session) == before  # still inactive, same password, same roles


def test_a_user_without_password_cannot_sign_in(session):
    load_org(session, {"users": [{"username": "host_only", "name": "外部账号"}]})
    session.commit()
    user = session.scalar(select(User).where(User.username == "host_only"))
    assert user.password_hash == UNUSABLE_PASSWORD
    assert not verify_password(user.password_hash, "")
    assert not verify_password(user.password_hash, UNUSABLE_PASSWORD)


def test_load_org_file(session, tmp_path):
    path = tmp_path / "org.yaml"
    path.write_text(EXAMPLE_YAML, encoding="utf-8")
    result = load_org_file(session, path, roles=ROLES, levels=LEVELS)
    session.commit()
    assert len(result.created_units) == 3 and len(result.created_users) == 2
    assert str(result) == "units: 3 created, 0 updated; users: 2 created, 0 updated"


def test_a_file_that_does_not_parse(session, tmp_path):
    path = tmp_path / "org.yaml"
    path.write_text("units: [{code: county", encoding="utf-8")
    with pytest.raises(OrgFileError) as info:
        load_org_file(session, path)
    assert len(info.value.messages) == 1 and info.value.messages[0].startswith(f"{path}: ")
    with pytest.raises(OrgFileError):
        load_org_file(session, tmp_path / "missing.yaml")


# --- moving units ------------------------------------------------------------------------

def test_moving_a_unit_moves_its_subtree_and_the_cases_and_tasks_in_it(session):
    from tests.test_models import new_case

    load_org(session, {"units": [
        {"code": "county", "name": "某县", "level": "county"},
        {"code": "t01", "name": "城关镇", "level": "town", "parent": "county"},
        {"code": "t02", "name": "新镇", "level": "town", "parent": "county"},
        {"code": "t01v01", "name": "东村", "level": "village", "parent": "t01"},
        {"code": "g1", "name": "一组", "level": "group", "parent": "t01v01"},
    ]})
    moved_case = new_case(session, unit_code="g1")
    moved_task = Task(case=moved_case, process_key="aid", state="application", name="application",
                      role="village_rep", org_unit=moved_case.org_unit, org_path=moved_case.org_path)
    session.add(moved_task)
    staying_case = new_case(session, unit_code="t01")
    session.commit()
    assert moved_case.org_path == "/county/t01/t01v01/g1/"

    result = load_org(session, {"units": [
        {"code": "t01v01", "name": "东村", "level": "village", "parent": "t02"}]})
    session.commit()

    assert set(result.updated_units) == {"t01v01", "g1"}
    assert paths(session) == {
        "county": "/county/", "t01": "/county/t01/", "t02": "/county/t02/",
        "t01v01": "/county/t02/t01v01/", "g1": "/county/t02/t01v01/g1/"}
    session.expire_all()
    assert session.get(Case, moved_case.id).org_path == "/county/t02/t01v01/g1/"
    assert session.get(Task, moved_task.id).org_path == "/county/t02/t01v01/g1/"
    assert session.get(Case, staying_case.id).org_path == "/county/t01/"


def test_a_unit_without_parent_in_the_file_becomes_a_root(session):
    load_org(session, example())
    session.commit()
    load_org(session, {"units": [{"code": "t01", "name": "城关镇", "level": "town"}]})
    session.commit()
    assert paths(session) == {"county": "/county/", "t01": "/t01/", "t01v01": "/t01/t01v01/"}


def test_moving_a_unit_under_its_own_subtree_is_refused(session):
    load_org(session, example())
    session.commit()
    with pytest.raises(OrgFileError) as info:
        load_org(session, {"units": [{"code": "t01", "name": "城关镇", "level": "town", "parent": "t01v01"}]})
    assert info.value.messages == ["units[0].parent: cycle t01 -> t01v01 -> t01"]


# --- invalid files write nothing ---------------------------------------------------------

def _set(path: str, value: Any) -> Callable[[dict], None]:
    def apply(data: dict) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value
    return apply


def _append(key: str, item: dict) -> Callable[[dict], None]:
    return lambda data: data[key].append(item)


def _delete(path: str) -> Callable[[dict], None]:
    def apply(data: dict) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        del target[last]
    return apply


INVALID = {
    "unknown parent": (
        [_set("units.1.parent", "nowhere")],
        ["units[1].parent: unknown unit 'nowhere'"]),
    "unknown unit in a role": (
        [_append("users", {"username": "zhaoli", "name": "赵丽", "roles": ["village_rep@t99"]})],
        ["users[2].roles[0]: unknown unit 't99'"]),
    "unknown role": (
        [_set("users.0.roles", ["village_rep@t01v01", "village_chief@t01v01"])],
        ["users[0].roles[1]: unknown role 'village_chief'"]),
    "malformed role": (
        [_set("users.1.roles", ["town_cadre"])],
        ["users[1].roles[0]: expected 'role@unit', got 'town_cadre'"]),
    "unknown level": (
        [_set("units.2.level", "hamlet")],
        ["units[2].level: unknown level 'hamlet'"]),
    "level not below the parent's": (
        [_set("units.2.level", "town")],
        ["units[2].level: 'town' is not below its parent's level 'town'"]),
    "duplicate code": (
        [_append("units", {"code": "t01", "name": "重复", "level": "town", "parent": "county"})],
        ["units[3].code: duplicate code 't01' (also units[1])"]),
    "duplicate username": (
        [_append("users", {"username": "lifang", "name": "另一个李芳"})],
        ["users[2].username: duplicate username 'lifang' (also users[0])"]),
    "missing and unknown keys": (
        [_delete("units.1.name"), _set("units.1.nmae", "城关镇"), _delete("users.0.username")],
        ["units[1]: unknown key 'nmae'", "units[1]: missing key 'name'",
         "users[0]: missing key 'username'"]),
    "bad code": (
        [_append("units", {"code": "t/02", "name": "坏", "level": "town", "parent": "county"})],
        ["units[3].code: invalid value 't/02'"]),
    "bad active": (
        [_set("users.0.active", "yes")],
        ["users[0].active: expected true or false"]),
    "a unit its own parent": (
        [_set("units.1.parent", "t01")],
        ["units[1].parent: cycle t01 -> t01"]),
    "unknown top-level key": (
        [_set("people", [])],
        ["unknown key 'people'"]),
    "units not a list": (
        [_set("units", {"code": "county"}), _set("users", [])],
        ["units: expected a list"]),
    "a user not a mapping": (
        [_set("users.1", "wangmin")],
        ["users[1]: expected a mapping"]),
    "several problems at once": (
        [_set("units.0.level", "province"), _set("units.2.parent", "t09"),
         _set("users.0.roles", ["village_rep@t99", "boss@county"])],
        ["units[0].level: unknown level 'province'", "units[2].parent: unknown unit 't09'",
         "users[0].roles[0]: unknown unit 't99'", "users[0].roles[1]: unknown role 'boss'"]),
}


@pytest.mark.parametrize("name", INVALID)
@pytest.mark.parametrize("preloaded", [False, True], ids=["empty", "preloaded"])
def test_an_invalid_file_writes_nothing(session, name, preloaded):
    mutations, expected = INVALID[name]
    if preloaded:
        load_org(session, example(), roles=ROLES, levels=LEVELS)
        session.commit()
    before = snapshot(session)
    data = copy.deepcopy(example())
    # Valid changes alongside the problem: none of them may be written either.
    data["units"][0]["name"] = "改名县"
    data["users"][0]["name"] = "李芳芳"
    data["users"][0]["password"] = "changed-pass"
    for mutate in mutations:
        mutate(data)

    with pytest.raises(OrgFileError) as info:
        load_org(session, data, roles=ROLES, levels=LEVELS)

    assert info.value.messages == expected
    assert str(info.value) == "\n".join(expected)
    assert not (session.new or session.dirty or session.deleted)
    session.commit()
    assert snapshot(session) == before


def test_a_cycle_is_reported_once(session):
    data = example()
    data["units"][0]["parent"] = "t01v01"
    with pytest.raises(OrgFileError) as info:
        load_org(session, data)
    assert info.value.messages == ["units[0].parent: cycle county -> t01v01 -> t01 -> county"]


def test_not_a_mapping(session):
    with pytest.raises(OrgFileError) as info:
        load_org(session, ["units"])  # type: ignore[arg-type]
    assert info.value.messages == ["expected a mapping with 'units' and 'users'"]


# --- helpers ----------------------------------------------------------------------------

def test_ancestor_paths():
    assert ancestor_paths("/county/t01/t01v01/") == ["/county/", "/county/t01/", "/county/t01/t01v01/"]
    assert ancestor_paths("/county/") == ["/county/"]
    assert ancestor_paths("/") == []


def test_parse_role():
    assert parse_role("town_cadre@t01") == ("town_cadre", "t01")
    assert parse_role("town_cadre") is None
    assert parse_role("@t01") is None
    assert parse_role("a@b@c") is None


def test_unit_by_code(session):
    load_org(session, example())
    assert unit_by_code(session, "t01").path == "/county/t01/"
    assert unit_by_code(session, "t99") is None


def test_in_subtree_matches_prefixes_literally(session):
    # '_' is a LIKE wildcard and SQLite's LIKE ignores case by default: neither may leak.
    load_org(session, {"units": [
        {"code": "county", "name": "县", "level": "county"},
        {"code": "t_1", "name": "甲", "level": "town", "parent": "county"},
        {"code": "tx1", "name": "乙", "level": "town", "parent": "county"},
        {"code": "T_1", "name": "丙", "level": "town", "parent": "county"},
        {"code": "v1", "name": "村", "level": "village", "parent": "t_1"},
        {"code": "v2", "name": "村", "level": "village", "parent": "tx1"},
        {"code": "v3", "name": "村", "level": "village", "parent": "T_1"},
    ]})
    found = session.scalars(select(OrgUnit.code).where(in_subtree(OrgUnit.path, "/county/t_1/"))).all()
    assert sorted(found) == ["t_1", "v1"]
    everything = session.scalars(select(OrgUnit.code).where(in_subtree(OrgUnit.path, "/county/"))).all()
    assert len(everything) == 7
