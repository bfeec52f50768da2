"""``hexie serve``'s request log (found in the walk of 2 Dec): the blind-index search of the API,
``GET /api/v1/cases?lookup=NAME``, wrote the survivor's name in clear into the server's log, where
protection.md keeps it from everything else (the audit event never records the value). The real
command, over real HTTP, on both databases."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from hexie.web.serving import REDACTED, redact_path

from .api_support import DEFINITIONS, PASSWORD, api_env

NAME = "某女士"
ID_NUMBER = "11010519900307002X"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redact_path_hides_only_the_lookup_value():
    assert redact_path("/api/v1/cases?lookup=%E6%9F%90&page=2") == f"/api/v1/cases?lookup={REDACTED}&page=2"
    assert redact_path("/api/v1/cases?page=2&LOOKUP=x#y") == f"/api/v1/cases?page=2&LOOKUP={REDACTED}#y"
    assert redact_path("/api/v1/cases?%6Cookup=x") == f"/api/v1/cases?%6Cookup={REDACTED}"
    assert redact_path("/cases?q=abc") == "/cases?q=abc" and redact_path("/cases") == "/cases"


def test_the_server_log_never_carries_the_name_searched_for(engine, db_url, tmp_path):
    api = api_env(engine)                          # the people of the tests, and one complaint
    api.start_dv()
    port = _free_port()
    env = {**os.environ, "HEXIE_DATABASE_URL": db_url, "HEXIE_DEFINITIONS": str(DEFINITIONS),
           "HEXIE_INSTANCE": str(tmp_path / "instance"), "HEXIE_UPLOAD_DIR": str(tmp_path / "uploads")}
    env.pop("HEXIE_SMTP_URL", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "hexie.cli", "serve", "--port", str(port)],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/login", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None:
                    raise AssertionError(log.read_text(errors="replace"))
                time.sleep(0.1)
        request = urllib.request.Request(base + "/api/v1/token", method="POST",
                                         data=json.dumps({"username": "ccadre", "password": PASSWORD}).encode(),
                                         headers={"Content-Type": "application/json"})
        token = json.load(urllib.request.urlopen(request, timeout=10))["token"]
        for value in (NAME, ID_NUMBER):
            query = urllib.parse.urlencode({"lookup": value, "page": 1})
            found = urllib.request.Request(f"{base}/api/v1/cases?{query}",
                                           headers={"Authorization": f"Bearer {token}"})
            assert urllib.request.urlopen(found, timeout=10).status == 200
    finally:
        server.terminate()
        server.wait(timeout=20)
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if "/api/v1/cases?" in line]
    assert len(lines) == 2, text
    assert all(f"lookup={REDACTED}&page=1" in line and " 200 " in line for line in lines), lines
    for secret in (NAME, ID_NUMBER, urllib.parse.quote(NAME), ID_NUMBER.lower()):
        assert secret not in text
