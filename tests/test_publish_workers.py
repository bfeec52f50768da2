"""Security finding 9 (second half): a publish from the editor reaches the definitions file
under any worker, also when another worker made the previous publish.

Two app instances (two engines, as two gunicorn workers have) on one database and one
definitions folder. The cause was that a worker which picked up a version published by
another re-read it from the database under the bare name ``KEY.yaml``: its next publish
no longer knew the file and left it behind.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hexie.models import make_session_factory
from hexie.workflows.demo import load_demo
from hexie.workflows.engine import Engine
from hexie.workflows.loader import load_definitions_strict

from .test_admin import DEFINITIONS, Browser

KEY = "poor_mother_aid"


def _worker(engine, defs: Path, tmp_path: Path, name: str, monkeypatch):
    from hexie.web import create_app
    workflow = Engine(make_session_factory(engine), load_definitions_strict(defs))
    workflow.sync_definitions()
    monkeypatch.setenv("HEXIE_SECRET_KEY", "test-secret")
    monkeypatch.setenv("HEXIE_INSTANCE", str(tmp_path / "instance"))
    app = create_app(engine=workflow, config={"TESTING": True, "HEXIE_UPLOAD_DIR": str(tmp_path / f"up-{name}")})
    return workflow, app


@pytest.fixture
def workers(engine, tmp_path: Path, monkeypatch):
    defs = tmp_path / "definitions"
    shutil.copytree(DEFINITIONS, defs)
    first, app_a = _worker(engine, defs, tmp_path, "a", monkeypatch)
    load_demo(first, with_cases=False)
    second, app_b = _worker(engine, defs, tmp_path, "b", monkeypatch)
    return defs, (first, app_a), (second, app_b)


def _publish(browser: Browser, source: str, base: int):
    return browser.post(f"/admin/processes/{KEY}/edit", {"source": source, "action": "publish",
                                                          "base_version": str(base)})


def test_each_workers_publish_reaches_the_file(workers):
    defs, (engine_a, app_a), (engine_b, app_b) = workers
    path = defs / f"{KEY}.yaml"
    original = path.read_text(encoding="utf-8")
    v2 = original.replace("label: {zh: 入户调查, en: Home survey}", "label: {zh: 入户核查, en: Home check}", 1)
    v3 = v2.replace("label: {zh: 入户核查, en: Home check}", "label: {zh: 入户复核, en: Home review}", 1)
    v4 = v3.replace("label: {zh: 入户复核, en: Home review}", "label: {zh: 入户走访, en: Home visit}", 1)
    assert len({original, v2, v3, v4}) == 4

    a, b = Browser(app_a, "admin"), Browser(app_b, "admin")
    assert _publish(a, v2, 1).status_code == 302
    assert path.read_text(encoding="utf-8") == v2
    engine_b.refresh_versions(max_age=0)            # what worker B does within 5 s anyway
    assert engine_b.current(KEY)[2] == 2
    response = _publish(b, v3, 2)                    # B publishes over A's version
    assert response.status_code == 302
    assert engine_b.current(KEY)[2] == 3
    assert path.read_text(encoding="utf-8") == v3, "B's publish did not reach the file"
    engine_a.refresh_versions(max_age=0)
    assert _publish(a, v4, 3).status_code == 302      # and back to A
    assert path.read_text(encoding="utf-8") == v4
    # each worker still names the file in its messages and pages
    assert engine_a.processes[KEY].path == engine_b.processes[KEY].path == str(path)
