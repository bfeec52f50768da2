"""Security finding 7: a database blip must not turn a committed change into a 500.

The blip is real: the app reaches PostgreSQL through a TCP relay on loopback that the
test cuts (every connection closed, new ones refused) and restores. Connection-level
failures answer a bilingual 503 with ``Retry-After`` (pages and API); an action whose
commit went through answers from what it committed; and the retry of one's own
committed vote or action is recognised (no "already voted").
"""
from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url

from hexie.models import Vote, make_engine
from hexie.models.db import database_unavailable
from hexie.workflows.errors import Conflict

from .api_support import AID_SURVEY, ApiEnv, Clock, build_engine, error_of, make_app


class Relay:
    """A TCP relay to PostgreSQL that can be cut and restored (a network blip)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.up = False
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sockets.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def relayed(pg_url):
    url = make_url(pg_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    sa_engine = make_engine(url.set(host="127.0.0.1", port=relay.port), pool_timeout=2,
                            connect_args={"connect_timeout": 2})
    clock = Clock()
    engine = build_engine(sa_engine, clock)
    app = make_app(engine)
    state = app.extensions["hexie"]
    env = ApiEnv(engine, app, state["service"], state["queries"], clock)
    yield env, relay
    relay.close()
    sa_engine.dispose()


def _to_approval(env: ApiEnv) -> int:
    case_id = env.start_aid()
    env.to_approval(case_id)
    return case_id


def test_an_unreachable_database_is_a_bilingual_503_with_retry_after(relayed):
    env, relay = relayed
    case_id = _to_approval(env)
    manager = env.as_("manager")          # her token is issued while the database answers
    relay.cut()
    r = manager.get(f"/cases/{case_id}")
    assert r.status_code == 503, r.get_data(as_text=True)
    assert r.headers.get("Retry-After", "").isdigit()
    error = error_of(r)
    assert error["code"] == "unavailable" and " / " in error["message"]
    r = manager.post(f"/cases/{case_id}/actions/approve", {"comment": "同意"})
    assert r.status_code == 503 and r.headers.get("Retry-After")
    # the pages too (signed in before the blip)
    client = env.app.test_client()
    relay.restore()
    from .web_helpers import login
    login(client, "manager", "s3cret-pass")
    relay.cut()
    page = client.get(f"/cases/{case_id}")
    assert page.status_code == 503 and page.headers.get("Retry-After")
    assert "数据库" in page.get_data(as_text=True)
    relay.restore()
    assert env.as_("manager").get(f"/cases/{case_id}").status_code == 200    # and back to work


def test_a_vote_committed_before_the_blip_answers_from_its_commit_and_its_retry_is_recognised(relayed):
    env, relay = relayed
    case_id = _to_approval(env)

    manager = env.as_("manager")          # her token's own commit must not be the one that cuts
    armed = [True]

    def cut_once(session):
        if armed.pop() if armed else False:
            relay.cut()                  # the vote is committed; the read that follows fails
    event.listen(env.engine.session_factory, "after_commit", cut_once)
    key = {"Idempotency-Key": "vote-approve-1"}
    r = manager.post(f"/cases/{case_id}/actions/approve", {"comment": "同意"}, headers=key)
    assert r.status_code in (200, 503), r.get_data(as_text=True)
    if r.status_code == 200:
        assert r.get_json()["outcome"]["outcome"] == "voted"
    relay.restore()
    with env.engine.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Vote).where(Vote.case_id == case_id)) == 1
    retry = manager.post(f"/cases/{case_id}/actions/approve", {"comment": "同意"}, headers=key)
    assert retry.status_code == 200, retry.get_data(as_text=True)
    outcome = retry.get_json()["outcome"]
    assert outcome["outcome"] == "voted" and outcome["votes"] == 1 and outcome["repeated"] is True
    with env.engine.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Vote).where(Vote.case_id == case_id)) == 1
    # the same vote sent again without the key is still "already voted"
    again = manager.post(f"/cases/{case_id}/actions/approve", {"comment": "同意"})
    assert again.status_code == 409


def test_the_retry_of_a_committed_action_is_answered_not_refused(engine):
    from .api_support import api_env
    env = api_env(engine)
    case_id = env.start_aid()
    lock = env.queries.case(env.actor("vrep1"), case_id)["lock_version"]
    key = {"Idempotency-Key": "submit-7f3a"}
    first = env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {"lock_version": lock}, headers=key)
    assert first.status_code == 200
    events = len(env.queries.history(env.actor("vrep1"), case_id))
    retry = env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {"lock_version": lock}, headers=key)
    assert retry.status_code == 200, retry.get_json()
    assert retry.get_json()["outcome"] == {"outcome": "moved", "state": "home_survey", "repeated": True}
    assert len(env.queries.history(env.actor("vrep1"), case_id)) == events      # nothing done twice
    # without the key, or with another one, the stale lock_version is the conflict it always was
    assert env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {"lock_version": lock}).status_code == 409
    # a key is the sender's own, and names one case
    other = env.start_aid()
    assert env.as_("vrep1").post(f"/cases/{other}/actions/submit", {}, headers=key).status_code == 409
    assert env.as_("vrep1").post(f"/cases/{other}/actions/submit", {},
                                 headers={"Idempotency-Key": "x" * 101}).status_code == 400


def test_a_page_sent_twice_is_answered_once(session_factory, tmp_path: Path):
    import re
    from .web_helpers import make_web_env
    env = make_web_env(session_factory, tmp_path)
    vr1 = env.actor("vr1")
    from .api_support import AID_APPLICATION
    case_id = env.service.start_case(vr1, "poor_mother_aid", "t01v01", {**AID_APPLICATION, "self_reliant": True})
    client = env.client("vr1")
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    form = page[page.index(f'/cases/{case_id}/actions/submit'):]
    key = re.search(r'name="request_key" value="([^"]+)"', form).group(1)
    lock = re.search(r'name="lock_version" value="(\d+)"', form).group(1)
    data = {"lock_version": lock, "request_key": key}
    assert client.post(f"/cases/{case_id}/actions/submit", data=data).status_code == 302
    assert client.post(f"/cases/{case_id}/actions/submit", data=data).status_code in (302, 303)
    assert env.queries.case(vr1, case_id)["state"] == "home_survey"
    assert [e["trigger"] for e in env.queries.history(vr1, case_id)].count("submit") == 1


def test_database_unavailable_knows_connection_failures(tmp_path: Path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    for url in (f"postgresql+psycopg://postgres@127.0.0.1:{port}/x",
                f"sqlite:///{tmp_path}/no/such/folder/x.db"):
        probe = create_engine(url)
        with pytest.raises(Exception) as info:
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
        assert database_unavailable(info.value), url
        probe.dispose()
    assert not database_unavailable(ValueError("x"))
