"""``hexie check``: the exact lines it prints, its summary and its exit status."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from hexie.workflows.check import check_paths

FIXTURES = Path(__file__).parent / "fixtures" / "defs"

GOOD = """\
process: good
title: Good
states:
  - name: draft
    task: {role: clerk}
  - {name: done, final: true}
transitions:
  - {trigger: submit, source: draft, dest: done}
"""

BAD = """\
process: bad
title: Bad
states:
  - name: draft
    task: {role: clerck}
  - {name: done, final: true}
transitions:
  - {trigger: submit, source: draft, dest: don}
"""

WARN = """\
process: warn
title: Warn
states:
  - {name: draft}
  - {name: loop}
  - {name: done, final: true}
transitions:
  - {trigger: go, source: draft, dest: loop}
  - {trigger: end, source: draft, dest: done}
"""


def run(*paths: str) -> tuple[int, list[str], str]:
    """Exit status, stdout lines and stderr of ``hexie check PATHS``."""
    out, err = io.StringIO(), io.StringIO()
    status = check_paths(list(paths), out=out, err=err)
    return status, out.getvalue().splitlines(), err.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A definitions folder: the fixture roles, one good, one bad, one with a warning."""
    shutil.copy(FIXTURES / "roles.yaml", tmp_path)
    for name, text in (("good", GOOD), ("bad", BAD), ("warn", WARN)):
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_clean_folder_exits_zero():
    status, lines, err = run(str(FIXTURES))
    assert status == 0
    assert lines == []
    assert "0 errors, 0 warnings in 2 files" in err


def test_folder_with_problems(folder):
    status, lines, err = run(str(folder))
    assert status == 1
    assert lines == [
        f"{folder}/bad.yaml:5:18: error: states[0].task.role: 未知的角色 'clerck'（roles.yaml 中没有），"
        f"是否应为 'clerk'？ / unknown role 'clerck' (not in roles.yaml); did you mean 'clerk'?",
        f"{folder}/bad.yaml:8:44: error: transitions[0].dest: 未知的状态 'don'，是否应为 'done'？ / "
        f"unknown state 'don'; did you mean 'done'?",
        f"{folder}/warn.yaml:5:5: warning: states[1]: 从状态 'loop' 无法到达任何终止状态 / "
        f"no final state can be reached from state 'loop'",
    ]
    assert err.strip().endswith("2 errors, 1 warning in 4 files")


def test_file_names_keep_the_folder_as_given(folder, monkeypatch):
    monkeypatch.chdir(folder.parent)
    status, lines, _ = run(f"./{folder.name}/")
    assert status == 1
    assert lines[0].startswith(f"./{folder.name}/bad.yaml:5:18: error: ")


def test_warnings_alone_exit_zero(folder):
    status, lines, err = run(str(folder / "warn.yaml"))
    assert status == 0
    assert lines == [f"{folder}/warn.yaml:5:5: warning: states[1]: 从状态 'loop' 无法到达任何终止状态 / "
                     f"no final state can be reached from state 'loop'"]
    assert "0 errors, 1 warning in 1 file" in err


def test_single_file_uses_the_roles_beside_it(folder):
    status, lines, _ = run(str(folder / "good.yaml"))
    assert (status, lines) == (0, [])


def test_single_file_falls_back_to_the_default_roles(tmp_path, monkeypatch):
    monkeypatch.setenv("HEXIE_DEFINITIONS", str(FIXTURES))
    (tmp_path / "good.yaml").write_text(GOOD, encoding="utf-8")
    status, lines, _ = run(str(tmp_path / "good.yaml"))
    assert (status, lines) == (0, [])


def test_single_file_without_any_roles(tmp_path, monkeypatch):
    monkeypatch.setenv("HEXIE_DEFINITIONS", str(tmp_path / "nowhere"))
    (tmp_path / "good.yaml").write_text(GOOD, encoding="utf-8")
    status, lines, _ = run(str(tmp_path / "good.yaml"))
    assert status == 1
    assert lines == [f"{tmp_path}/good.yaml:1:1: error: 找不到 roles.yaml（同目录或默认定义目录中），未检查角色和层级 / "
                     "no roles.yaml beside the file or in the default definitions folder; roles and levels not checked"]


def test_several_paths_are_sorted_by_file_then_line(folder):
    status, lines, err = run(str(folder / "warn.yaml"), str(folder / "bad.yaml"))
    assert status == 1
    assert [line.split(": ")[0] for line in lines] == [
        f"{folder}/bad.yaml:5:18", f"{folder}/bad.yaml:8:44", f"{folder}/warn.yaml:5:5"]
    assert "2 errors, 1 warning in 2 files" in err


def test_yaml_syntax_error(tmp_path):
    shutil.copy(FIXTURES / "roles.yaml", tmp_path)
    (tmp_path / "broken.yaml").write_text("process: broken\ntitle: [x\n", encoding="utf-8")
    status, lines, _ = run(str(tmp_path / "broken.yaml"))
    assert status == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path}/broken.yaml:3:1: error: YAML 语法错误")


def test_roles_file_alone(tmp_path):
    (tmp_path / "roles.yaml").write_text("levels: [county]\nroles: {a: {lable: A}}\n", encoding="utf-8")
    status, lines, err = run(str(tmp_path / "roles.yaml"))
    assert status == 1
    assert lines == [f"{tmp_path}/roles.yaml:2:13: error: roles.a.lable: 未知的键 'lable'，是否应为 'label'？（可选：label, manager, overseer, admin） / "
                     "unknown key 'lable'; did you mean 'label'? (expected one of: label, manager, overseer, admin)"]
    assert "1 error, 0 warnings in 1 file" in err


def test_broken_roles_file_is_reported_with_the_folder(folder):
    (folder / "roles.yaml").write_text("levels: [county]\n", encoding="utf-8")
    status, lines, _ = run(str(folder))
    assert status == 1
    assert f"{folder}/roles.yaml:1:1: error: roles: 缺少必需的键 'roles' / missing required key 'roles'" in lines
    # without roles, the other files are still checked for everything else
    assert any(line.startswith(f"{folder}/bad.yaml:8:44: error: transitions[0].dest") for line in lines)


def test_missing_path(tmp_path):
    status, lines, err = run(str(tmp_path / "nope.yaml"))
    assert status == 1
    assert lines == [f"{tmp_path}/nope.yaml:1:1: error: 文件或目录不存在 / no such file or directory"]
    assert "1 error, 0 warnings in 0 files" in err


def test_default_path_is_the_definitions_folder(monkeypatch):
    monkeypatch.setenv("HEXIE_DEFINITIONS", str(FIXTURES))
    status, lines, err = run()
    assert (status, lines) == (0, [])
    assert "in 2 files" in err


def test_stdout_defaults_to_sys_stdout(folder, capsys):
    assert check_paths([str(folder / "bad.yaml")]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    assert "2 errors, 0 warnings in 1 file" in captured.err


RETENTION = """\
process: kept
title: Kept
confidential: true
retention: {anonymise_after: P5X}
fields:
  name: {type: text, sensitive: true, searchable: true}
  age: {type: integer, searchable: true}
states:
  - name: draft
    task: {role: clerk, form: [name, age]}
  - {name: done, final: true}
transitions:
  - {trigger: submit, source: draft, dest: done}
"""


def test_retention_and_searchable_are_checked_at_their_line_and_column(tmp_path):
    shutil.copy(FIXTURES / "roles.yaml", tmp_path)
    (tmp_path / "kept.yaml").write_text(RETENTION, encoding="utf-8")
    status, lines, _ = run(str(tmp_path))
    assert status == 1
    assert lines[0].startswith(f"{tmp_path}/kept.yaml:4:30: error: retention.anonymise_after: ")
    assert "bad retention period 'P5X'" in lines[0]
    assert lines[1].startswith(f"{tmp_path}/kept.yaml:7:36: error: fields.age.searchable: ")
    assert "only a sensitive text field" in lines[1]
    (tmp_path / "kept.yaml").write_text(RETENTION.replace("P5X", "P5Y").replace("retention:", "retension:"),
                                        encoding="utf-8")
    _, lines, _ = run(str(tmp_path))
    assert "did you mean 'retention'?" in lines[0]
    fine = RETENTION.replace("P5X", "P5Y").replace(", searchable: true}\n  age", "}\n  age") \
                    .replace("age: {type: integer, searchable: true}", "age: {type: integer}")
    (tmp_path / "kept.yaml").write_text(fine, encoding="utf-8")
    assert run(str(tmp_path))[0] == 0


CONSENT = """\
process: referral
title: Referral
confidential: true
states:
  - name: intake
    task: {role: cadre}
  - name: referred
    tasks:
      - {name: police, role: cadre, consent: {agency: police}}
      - {name: legal, role: manager, consent: {agency: legal_aid}}
  - {name: done, final: true}
transitions:
  - {trigger: refer, source: intake, dest: referred}
  - {trigger: finish, source: referred, dest: done}
"""


def test_consent_agencies_need_no_declaration_but_a_declared_list_catches_typos(tmp_path):
    """definitions.md: ``consent: {agency: AGENCY}`` on a task; without a top-level ``agencies``
    the agencies are those the tasks name (in file order), with one the name must be in it."""
    from hexie.workflows.loader import load_definitions
    shutil.copy(FIXTURES / "roles.yaml", tmp_path)
    (tmp_path / "referral.yaml").write_text(CONSENT, encoding="utf-8")
    assert run(str(tmp_path))[0] == 0
    spec = load_definitions(tmp_path).processes["referral"]
    assert [key for key, _ in spec.agencies] == ["police", "legal_aid"]
    declared = CONSENT.replace("confidential: true\n", "confidential: true\nagencies: [police, legal_aid]\n") \
                      .replace("{agency: legal_aid}", "{agency: legal_ad}")
    (tmp_path / "referral.yaml").write_text(declared, encoding="utf-8")
    status, lines, _ = run(str(tmp_path))
    line = declared.splitlines().index(next(x for x in declared.splitlines() if "legal_ad}" in x)) + 1
    column = declared.splitlines()[line - 1].index("legal_ad}") + 1
    assert status == 1 and len(lines) == 1
    assert lines[0].startswith(f"{tmp_path}/referral.yaml:{line}:{column}: error: states[1].tasks[1].consent.agency: ")
    assert "did you mean 'legal_aid'?" in lines[0]
