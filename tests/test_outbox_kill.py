"""Kill -9: the outbox loses nothing and sends each notification once (architecture.md, interfaces.md).

A producer process (actions: start and submit aid cases) and a ``hexie worker`` process are both
killed with SIGKILL at random moments and restarted, while a real SMTP server (aiosmtpd) and an
HTTP receiver on loopback take what is sent. Afterwards a last worker runs until the outbox is
empty, and then: every committed case has its events numbered 1..n with nothing missing, every
webhook row was received at least once (by its ``X-Hexie-Delivery`` id), every offered task's
people have their one notification each, and the mailbox holds one e-mail per (notification,
e-mail) row, never two: only a row whose sender was killed between recording it sent and the
SMTP server's ``250`` may be missing, and it is flagged (in doubt: no ``delivered_at``). Runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from hexie.models import Case, Notification, NotificationDelivery, Task, WebhookDelivery, make_engine
from hexie.workflows import channels

from .api_support import DEFINITIONS, build_engine
from .outbox_support import SmtpServer
from .test_api import Receiver

HERE = Path(__file__).resolve().parent
WORKER_KILLS, PRODUCER_KILLS = 3, 1


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a process writing its output to ``log`` (emptied first)."""
    with open(log, "wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_started(log: Path, timeout: float = 15.0) -> None:
    """Until the process has said something (the producer "ready", the worker its first round)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and log.stat().st_size == 0:
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_9_of_producer_and_worker_loses_and_doubles_nothing(db_url: str, tmp_path: Path) -> None:
    sa_engine = make_engine(db_url)
    engine = build_engine(sa_engine)
    smtp, receiver = SmtpServer(), Receiver()
    try:
        channels.configure(engine, {"HEXIE_SMTP_URL": smtp.url})
        admin = engine.actor("admin")
        from hexie.workflows import notifications, webhooks
        webhooks.create_subscription(engine, admin, receiver.url)
        for user in ("cadre1", "cadre1b"):
            notifications.set_preferences(engine, engine.actor(user), {"email": f"{user}@t01.example.cn"})
        env = {**os.environ, "HEXIE_DATABASE_URL": db_url, "HEXIE_DEFINITIONS": str(DEFINITIONS),
               "HEXIE_SMTP_URL": smtp.url, "HEXIE_OUTBOX_LEASE": "1", "HEXIE_BASE_URL": "http://hexie.test"}
        producer_cmd = [sys.executable, str(HERE / "outbox_producer.py"), db_url, str(DEFINITIONS)]
        worker_cmd = [sys.executable, "-m", "hexie.cli", "worker", "--interval", "0.05"]
        rng = random.Random(int(os.environ.get("HEXIE_KILL_SEED", "0")) or None)
        logs = {"producer": tmp_path / "producer.log", "worker": tmp_path / "worker.log"}
        commands = {"producer": producer_cmd, "worker": worker_cmd}
        procs = {name: _spawn(cmd, env, logs[name]) for name, cmd in commands.items()}
        for name in procs:
            _wait_started(logs[name])
        schedule = ["worker"] * WORKER_KILLS + ["producer"] * PRODUCER_KILLS
        rng.shuffle(schedule)
        kills = Counter()
        for victim in schedule:
            # at a random moment of its work (the worker: mostly while it sends)
            time.sleep(rng.uniform(0.05, 0.8))
            _kill(procs[victim])
            kills[victim] += 1
            procs[victim] = _spawn(commands[victim], env, logs[victim])
            _wait_started(logs[victim])
        time.sleep(rng.uniform(0.3, 0.8))
        for name, proc in procs.items():   # and once more each, at the end
            _kill(proc)
            kills[name] += 1
        time.sleep(1.1)   # the leases of the killed worker's claims run out
        done = subprocess.run([*worker_cmd[:-2], "--once"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

        with engine.session_factory() as s:
            cases = s.execute(select(Case.id, Case.event_seq)).all()
            hooks = s.execute(select(WebhookDelivery.id, WebhookDelivery.case_id, WebhookDelivery.seq,
                                     WebhookDelivery.status)).all()
            mails = s.execute(select(NotificationDelivery.id, NotificationDelivery.status,
                                     NotificationDelivery.delivered_at, NotificationDelivery.last_error,
                                     NotificationDelivery.attempts)).all()
            surveys = s.scalars(select(Task.id).where(Task.state == "home_survey")).all()
            notes = Counter(s.execute(select(Notification.task_id, Notification.user_id)
                                      .where(Notification.kind == "task_offered")).all())
        assert len(cases) >= 5, (kills, len(cases))
        # every committed action left all its events, numbered without a gap
        by_case: dict[int, list[int]] = {}
        for _, case_id, seq, _ in hooks:
            by_case.setdefault(case_id, []).append(seq)
        for case_id, event_seq in cases:
            assert sorted(by_case.get(case_id, [])) == list(range(1, event_seq + 1)), case_id
        # webhooks: all delivered, each received at least once, by its delivery id
        assert {status for *_, status in hooks} == {"delivered"}
        received = Counter(int(h["X-Hexie-Delivery"]) for h, _ in receiver.received)
        assert set(received) == {h.id for h in hooks}
        for headers, body in receiver.received:
            payload = json.loads(body)
            assert payload["seq"] >= 1 and payload["case_id"] in dict(cases)
        # notifications: one per person and offered task; one e-mail per row, never two
        assert set(notes.values()) == {1} and len(notes) == 2 * len(surveys)
        assert len(mails) == 2 * len(surveys) and {row.status for row in mails} == {"delivered"}
        messages = smtp.mailbox.wait_for(len(mails), timeout=3)
        ids = Counter(int(m["X-Hexie-Outbox"]) for m in messages)
        assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]        # never twice
        confirmed = {row.id for row in mails if row.delivered_at is not None}
        in_doubt = {row.id for row in mails} - confirmed
        assert confirmed <= set(ids) and set(ids) <= confirmed | in_doubt
        # in doubt: killed between recording it sent and the server's 250, at most one per kill
        assert len(in_doubt) <= kills["worker"], (kills, [(r.id, r.id in ids, r.attempts, r.last_error)
                                                          for r in mails if r.id in in_doubt])
    finally:
        smtp.close()
        receiver.close()
        sa_engine.dispose()
