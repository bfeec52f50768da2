"""Notifications and the outbox (interfaces.md, "Notifications" and "Webhooks"): written in the
action's own transaction, shown in the notification centre, sent by e-mail to a real SMTP server
on loopback (aiosmtpd), through a WeCom robot (a local HTTP server), and as webhooks with ``seq``.
Runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

import http.server
import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from hexie.models import Notification, NotificationDelivery, OutboxMessage, User, WebhookDelivery
from hexie.workflows import channels, notifications
from hexie.workflows.webhooks import deliver_pending

from .api_support import AID_SURVEY, PASSWORD, ApiEnv, api_env, error_of
from .outbox_support import SmtpServer
from .test_api import Receiver

MAIL = {"cadre1": "cadre1@t01.example.cn", "chair1": "chair1@t01.example.cn", "manager": "manager@example.cn",
        "vrep1": "vrep1@example.cn", "police1": "police1@example.cn", "court": "court@example.cn"}


@pytest.fixture
def smtp():
    server = SmtpServer()
    yield server
    server.close()


@pytest.fixture
def env(engine, smtp) -> ApiEnv:
    env = api_env(engine)
    channels.configure(env.engine, {"HEXIE_SMTP_URL": smtp.url, "HEXIE_MAIL_FROM": "hexie@fulian.example.cn",
                                    "HEXIE_BASE_URL": "https://hexie.example.cn"})
    return env


def _put(env: ApiEnv, user: str, body: dict[str, Any]):
    return env.as_(user).call("PUT", "/me/preferences", json=body)


def _addresses(env: ApiEnv, *users: str) -> None:
    for user in users:
        assert _put(env, user, {"email": MAIL[user]}).status_code == 200


def _mine(env: ApiEnv, user: str, **query: Any) -> list[dict[str, Any]]:
    r = env.as_(user).get("/me/notifications", query_string=query)
    assert r.status_code == 200
    return r.get_json()


# ------------------------------------------------------------ the done-when
def test_a_task_offered_to_a_town_cadre_reaches_her_centre_and_her_mailbox(env: ApiEnv, smtp) -> None:
    _addresses(env, "cadre1")
    case_id = env.start_aid()
    assert env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {}).status_code == 200
    task_id = env.open_task(case_id)

    # the notification centre: hers, unread, bilingual, naming the task
    (note,) = _mine(env, "cadre1")
    assert note["kind"] == "task_offered" and note["case_id"] == case_id and note["task_id"] == task_id
    assert not note["read"] and "入户调查" in note["text"] and "Home survey" in note["text"]
    assert _mine(env, "cadre1", unread=1) == [note]
    assert [n["kind"] for n in _mine(env, "cadre1b")] == ["task_offered"]     # same role, same town: in-app only
    assert _mine(env, "vrep1") == [] and _mine(env, "cadre2") == []          # the actor; another town

    # nothing is sent before the worker's round, then exactly one e-mail: only cadre1 has an address
    assert smtp.mailbox.messages == []
    assert channels.send_pending(env.engine) == 1
    (mail,) = smtp.mailbox.wait_for(1)
    assert mail["To"] == MAIL["cadre1"] and mail["From"] == "hexie@fulian.example.cn"
    assert "入户调查" in mail["Subject"] and "Home survey" in mail["Subject"]
    text, html = smtp.mailbox.text_of(mail), smtp.mailbox.html_of(mail)
    link = f"https://hexie.example.cn/cases/{case_id}#task-{task_id}"
    assert link in text and f'href="{link}"' in html
    assert "您好" in text and "Hello" in text
    prefs = "https://hexie.example.cn/notifications/preferences"        # why she got it, how to change it
    assert prefs in text and f'href="{prefs}"' in html and "更改通知方式" in html and "Change how you are told" in html
    with env.engine.session_factory() as s:
        (row,) = s.scalars(select(NotificationDelivery)).all()
    assert row.status == "delivered" and row.attempts == 1 and row.channel == "email"
    assert mail["Message-ID"] == f"<hexie.outbox.{row.id}@127.0.0.1>"
    assert channels.send_pending(env.engine) == 0                            # sent once
    assert len(smtp.mailbox.messages) == 1


def test_mark_read_and_read_all(env: ApiEnv) -> None:
    first = env.start_aid()
    env.as_("vrep1").post(f"/cases/{first}/actions/submit", {})
    second = env.start_aid()
    env.as_("vrep1").post(f"/cases/{second}/actions/submit", {})
    notes = _mine(env, "cadre1")
    assert len(notes) == 2 and notes[0]["case_id"] == second                # newest first
    api = env.as_("cadre1")
    assert api.post(f"/me/notifications/{notes[1]['id']}/read").status_code == 204
    assert [n["id"] for n in _mine(env, "cadre1", unread=1)] == [notes[0]["id"]]
    # someone else's notification is not found, and stays unread
    theirs = _mine(env, "cadre1b")[0]["id"]
    r = api.post(f"/me/notifications/{theirs}/read")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    assert len(_mine(env, "cadre1b", unread=1)) == 2
    assert api.post("/me/notifications/read-all").status_code == 204
    assert _mine(env, "cadre1", unread=1) == [] and all(n["read"] for n in _mine(env, "cadre1"))
    assert notifications.unread_count(env.engine, env.actor("cadre1b")) == 2


def test_preferences_choose_channels_and_are_checked(env: ApiEnv, smtp) -> None:
    api = env.as_("cadre1")
    got = api.get("/me/preferences").get_json()
    assert got == {"email": None, "digest": None,
                   "channels": {k: ["in_app", "email"] for k in notifications.KINDS}}
    r = _put(env, "cadre1", {"email": MAIL["cadre1"], "channels": {"task_offered": ["email"]}})
    assert r.status_code == 200
    assert r.get_json()["channels"]["task_offered"] == ["email"] and r.get_json()["email"] == MAIL["cadre1"]
    assert api.get("/me/preferences").get_json() == r.get_json()
    for body, field in (({"email": "not an address"}, "email"), ({"digest": "25:00"}, "digest"),
                        ({"channels": {"task_offered": ["carrier_pigeon"]}}, "channels.task_offered"),
                        ({"channels": {"birthday": ["email"]}}, "channels.birthday")):
        r = _put(env, "cadre1", body)
        assert r.status_code == 422 and field in error_of(r)["details"], body
    assert _put(env, "cadre1", {"channels": "email"}).status_code == 400
    assert api.get("/me/preferences").get_json()["channels"]["task_offered"] == ["email"]   # refused: unchanged

    case_id = env.start_aid()
    env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {})
    assert _mine(env, "cadre1") == []                   # not in the centre: she chose e-mail only
    assert channels.send_pending(env.engine) == 1
    assert smtp.mailbox.wait_for(1)[0]["To"] == MAIL["cadre1"]


def test_a_refused_action_writes_no_notification_and_no_outbox_row(env: ApiEnv) -> None:
    env.as_("admin").post("/webhooks", {"url": "http://127.0.0.1:9/hook"})
    case_id = env.start_aid()
    with env.engine.session_factory() as s:
        before = (s.scalar(select(func.count()).select_from(Notification)),
                  s.scalar(select(func.count()).select_from(OutboxMessage)))
    assert env.as_("cadre1").post(f"/cases/{case_id}/actions/submit", {}).status_code == 403
    assert env.as_("vrep1").post(f"/cases/{case_id}/actions/withdraw", {}).status_code == 422
    with pytest.raises(RuntimeError):        # an action failing after its events: none of them stays
        with env.engine.transaction() as s:
            env.service._fire(s, env.actor("vrep1"), case_id, "submit", {}, None, None)
            raise RuntimeError("crash before the commit")
    with env.engine.session_factory() as s:
        after = (s.scalar(select(func.count()).select_from(Notification)),
                 s.scalar(select(func.count()).select_from(OutboxMessage)))
    assert after == before and env.state_of(case_id) == "application"


def test_a_confidential_case_names_no_survivor_and_reaches_only_its_people(env: ApiEnv, smtp) -> None:
    _addresses(env, "police1", "court")
    case_id = env.start_dv()
    # referred to all three agencies she agreed to (dv_complaint's referred_to)
    r = env.as_("ccadre").post(f"/cases/{case_id}/actions/refer",
                               {"data": {"referred_to": ["police", "legal_aid", "court"]}})
    assert r.status_code == 200, r.get_json()
    people = {u: _mine(env, u) for u in ("police1", "legal", "court", "police2", "cadre1", "chair1", "manager")}
    assert {u for u, notes in people.items() if notes} == {"police1", "legal", "court"}
    texts = [n["text"] for notes in people.values() for n in notes]
    assert all(f"#{case_id}" in t for t in texts)
    channels.send_pending(env.engine)
    mails = smtp.mailbox.wait_for(2)
    assert len(mails) == 2
    survivor = "某女士"
    for text in texts + [m["Subject"] + smtp.mailbox.text_of(m) + smtp.mailbox.html_of(m) for m in mails]:
        assert survivor not in text


def test_a_message_queued_for_someone_who_lost_the_case_is_dropped_not_sent(env: ApiEnv, smtp) -> None:
    _addresses(env, "police1", "court")
    case_id = env.start_dv()
    r = env.as_("ccadre").post(f"/cases/{case_id}/actions/refer", {"data": {"referred_to": ["police", "court"]}})
    assert r.status_code == 200, r.get_json()
    # she withdraws her consent to the police before the worker's round: the police may no longer see it
    r = env.as_("ccadre").post(f"/cases/{case_id}/consents/withdraw", {"agency": "police", "note": "她改变主意"})
    assert r.status_code in (200, 201), r.get_json()
    assert env.as_("police1").get(f"/cases/{case_id}").status_code == 404
    assert channels.send_pending(env.engine) == 1
    (mail,) = smtp.mailbox.wait_for(1)
    assert mail["To"] == MAIL["court"]
    police1 = _user_id(env, "police1")
    with env.engine.session_factory() as s:
        rows = s.execute(select(OutboxMessage.status, OutboxMessage.last_error, OutboxMessage.attempts)
                         .where(OutboxMessage.recipient_id == police1, OutboxMessage.case_id == case_id)).all()
    assert rows == [("dropped", channels.UNSEEN, 0)]
    assert "收件人已无权查看此案件" in channels.UNSEEN and "may no longer see this case" in channels.UNSEEN
    # never sent later either
    assert channels.send_pending(env.engine) == 0
    smtp.mailbox.wait_for(1)
    assert len(smtp.mailbox.messages) == 1


def _user_id(env: ApiEnv, username: str) -> int:
    with env.engine.session_factory() as s:
        return s.scalar(select(User.id).where(User.username == username))


def test_allocation_return_escalation_and_closing_are_told(env: ApiEnv) -> None:
    case_id = env.start_aid()
    env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {})
    task = env.open_task(case_id)
    assert env.as_("chair1").post(f"/tasks/{task}/reassign", {"to": "cadre1b"}).status_code == 200
    assert [n["kind"] for n in _mine(env, "cadre1b")] == ["task_allocated", "task_offered"]
    assert [n["kind"] for n in _mine(env, "chair1")] == []     # she did it herself
    env.service.fire(env.actor("cadre1b"), case_id, "surveyed", data=AID_SURVEY)
    assert {n["kind"] for n in _mine(env, "manager")} == {"task_offered"}
    env.service.fire(env.actor("manager"), case_id, "return", comment="请补充照片")
    returned = [n for n in _mine(env, "cadre1b") if n["kind"] == "task_returned"]
    assert len(returned) == 1 and returned[0]["case_id"] == case_id
    # escalation: three days past the survey's due date, the town chair is told
    env.clock.advance(days=11)
    assert env.service.escalate_overdue() == 1
    assert [n["kind"] for n in _mine(env, "chair1")] == ["task_escalated"]
    assert _mine(env, "chair2") == []


def test_due_soon_and_overdue_are_told_once(env: ApiEnv) -> None:
    case_id = env.start_aid()
    env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {})
    env.as_("cadre1").post(f"/tasks/{env.open_task(case_id)}/claim")
    assert notifications.notify_due(env.engine) == 0           # due in 7 days
    env.clock.advance(days=6, hours=1)
    assert notifications.notify_due(env.engine) == 1
    assert notifications.notify_due(env.engine) == 0
    env.clock.advance(days=1)
    assert notifications.notify_due(env.engine) == 1
    assert notifications.notify_due(env.engine) == 0
    kinds = [n["kind"] for n in _mine(env, "cadre1")]
    assert kinds[:2] == ["overdue", "due_soon"]
    assert _mine(env, "cadre1b")[0]["kind"] == "task_offered"     # the holder is told, not the pool


def test_daily_digest_is_one_mail_at_the_chosen_time(env: ApiEnv, smtp) -> None:
    # 09:00 UTC is 17:00 in Beijing: a digest at 18:00 is due an hour later
    assert _put(env, "cadre1", {"email": MAIL["cadre1"], "digest": "18:00"}).status_code == 200
    for _ in range(3):
        case_id = env.start_aid()
        env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {})
    assert channels.send_pending(env.engine) == 0 and smtp.mailbox.messages == []
    assert len(_mine(env, "cadre1")) == 3                       # the centre does not wait
    env.clock.advance(minutes=61)
    assert channels.send_pending(env.engine) == 1
    (mail,) = smtp.mailbox.wait_for(1)
    text = smtp.mailbox.text_of(mail)
    assert "3" in mail["Subject"] and text.count("入户调查") == 3 and text.count("Home survey") == 3
    assert channels.send_pending(env.engine) == 0


def test_due_times_and_digests_follow_the_configured_time_zone(env: ApiEnv, smtp) -> None:
    """``HEXIE_TIMEZONE`` as the app (or a host's ``app.config``, host.md) sets it, not the
    process's environment: a due time in a text, and a digest's hour, are the office's."""
    from datetime import timezone as tz
    from hexie.models import Task
    env.engine.set_timezone("Asia/Urumqi")            # UTC+6 all year; the default is Asia/Shanghai
    assert _put(env, "cadre1", {"email": MAIL["cadre1"], "digest": "18:00"}).status_code == 200
    case_id = env.start_aid()
    env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {})
    task_id = env.open_task(case_id)
    env.clock.advance(minutes=61)                     # 18:00 in Beijing, 16:00 in Urumqi
    assert channels.send_pending(env.engine) == 0 and smtp.mailbox.messages == []
    env.clock.advance(minutes=120)                    # 18:01 in Urumqi
    assert channels.send_pending(env.engine) == 1

    env.as_("cadre1").post(f"/tasks/{task_id}/claim")
    env.clock.advance(days=6, hours=1)
    assert notifications.notify_due(env.engine) == 1
    with env.engine.session_factory() as s:
        due = s.get(Task, task_id).due_at
    local = (due.replace(tzinfo=tz.utc) + timedelta(hours=6)).strftime("%Y-%m-%d %H:%M")
    beijing = (due + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    (note,) = [n for n in _mine(env, "cadre1") if n["kind"] == "due_soon"]
    assert local in note["text"] and beijing not in note["text"]


def test_next_digest_is_the_next_local_time() -> None:
    from datetime import datetime, timezone as tz
    beijing = tz(timedelta(hours=8))
    assert notifications.next_digest("18:00", datetime(2026, 3, 2, 9, 0), beijing) == datetime(2026, 3, 2, 10, 0)
    assert notifications.next_digest("08:30", datetime(2026, 3, 2, 9, 0), beijing) == datetime(2026, 3, 3, 0, 30)


class WeComRobot:
    """A WeCom group robot's webhook, on 127.0.0.1."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        robot = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                robot.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                body = b'{"errcode":0,"errmsg":"ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cgi-bin/webhook/send?key=test"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_wecom_robot_channel(env: ApiEnv) -> None:
    robot = WeComRobot()
    try:
        channels.configure(env.engine, {"HEXIE_WECOM_WEBHOOK_URL": robot.url})
        assert "wecom" in channels.channel_names()
        assert _put(env, "cadre1", {"channels": {"task_offered": ["in_app", "wecom"]}}).status_code == 200
        case_id = env.start_aid()
        env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {})
        assert channels.send_pending(env.engine) == 1
        (message,) = robot.received
        assert message["msgtype"] == "text" and message["text"]["mentioned_list"] == ["cadre1"]
        assert "入户调查" in message["text"]["content"] and f"/cases/{case_id}" in message["text"]["content"]
    finally:
        robot.close()


def test_unreachable_smtp_is_retried_with_backoff(env: ApiEnv, smtp) -> None:
    _addresses(env, "cadre1")
    port = smtp.port
    smtp.close()
    case_id = env.start_aid()
    env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {})
    assert channels.send_pending(env.engine) == 0
    with env.engine.session_factory() as s:
        (row,) = s.scalars(select(NotificationDelivery)).all()
    assert row.status == "pending" and row.attempts == 1 and "SMTP" in row.last_error
    assert row.next_attempt_at - env.clock() == timedelta(seconds=channels.NOTIFY_POLICY.base_delay)
    again = SmtpServer(port)                     # the server comes back on the same port
    try:
        assert channels.send_pending(env.engine) == 0          # not due yet
        env.clock.advance(seconds=31)
        assert channels.send_pending(env.engine) == 1
        assert again.mailbox.wait_for(1)[0]["To"] == MAIL["cadre1"]
    finally:
        again.close()


def test_the_smtp_connection_sends_the_end_of_data_without_waiting(smtp) -> None:
    """The message's data and its final "." are two writes with the outbox's commit between
    them: the connection is TCP_NODELAY, or every mail waits about 40 ms for the server's
    delayed ACK (the worker sent 60 mails a second on loopback before)."""
    import socket
    channel = channels.EmailChannel({"HEXIE_SMTP_URL": smtp.url, "HEXIE_MAIL_FROM": "hexie@fulian.example.cn"})
    connection = channel._connect()
    try:
        assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        connection.quit()


# ------------------------------------------------------------------ webhooks
def test_webhook_events_carry_seq_in_order_and_can_be_listed_and_redelivered(env: ApiEnv) -> None:
    receiver = Receiver()
    try:
        admin = env.as_("admin")
        sub = admin.post("/webhooks", {"url": receiver.url}).get_json()
        seen: list[dict[str, Any]] = []
        env.engine.subscribe(seen.append)                         # in-process subscribers still hear of it
        case_id = env.start_aid()
        env.service.fire(env.actor("vrep1"), case_id, "withdraw", comment="不再需要")
        assert deliver_pending(env.engine) == 4
        events = [json.loads(body) for _, body in receiver.received]
        assert [(e["event"], e["seq"]) for e in events] == [
            ("case_started", 1), ("task_created", 2), ("state_changed", 3), ("case_closed", 4)]
        assert all(e["case_id"] == case_id and "business_key" in e for e in events)
        assert [e["event"] for e in seen] == [e["event"] for e in events] and seen[0]["seq"] == 1
        ids = [int(h["X-Hexie-Delivery"]) for h, _ in receiver.received]

        r = admin.get(f"/webhooks/{sub['id']}/deliveries")
        assert r.status_code == 200 and r.headers["X-Total-Count"] == "4"
        listed = r.get_json()
        assert [d["id"] for d in listed] == ids[::-1]
        assert set(listed[0]) >= {"id", "event", "seq", "status", "attempts", "last_error", "delivered_at"}
        assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in listed)
        assert env.as_("cadre1").get(f"/webhooks/{sub['id']}/deliveries").status_code == 403
        assert admin.get("/webhooks/999/deliveries").status_code == 404

        r = admin.post(f"/webhooks/{sub['id']}/deliveries/{ids[0]}/redeliver")
        assert r.status_code == 200 and r.get_json()["attempts"] == 2 and r.get_json()["status"] == "delivered"
        assert len(receiver.received) == 5
        headers, body = receiver.received[-1]
        assert int(headers["X-Hexie-Delivery"]) == ids[0] and json.loads(body)["seq"] == 1
        assert admin.post(f"/webhooks/{sub['id']}/deliveries/999999/redeliver").status_code == 404
    finally:
        receiver.close()


def test_mention_and_consult_are_for_features_to_come(env: ApiEnv) -> None:
    case_id = env.start_aid()
    from hexie.models import Case
    from hexie.workflows.service import records
    with env.engine.transaction() as s:
        (case,) = records(s, select(Case.__table__).where(Case.id == case_id))
        ids = {u: s.scalar(select(User.id).where(User.username == u)) for u in ("cadre1", "cadre2", "vrep1")}
        made = notifications.notify(s, env.engine, "mention", ids.values(), case, actor=env.actor("vrep1"),
                                    note="请看一下")
    assert len(made) == 1                                   # cadre2 (another town) may not see it; vrep1 wrote it
    (note,) = _mine(env, "cadre1")
    assert note["kind"] == "mention" and "请看一下" in note["text"]


# ------------------------------------------------------------------ the pages
def test_the_bell_counts_unread_and_the_centre_marks_them_read(env: ApiEnv) -> None:
    import re
    from .web_helpers import login
    for _ in range(2):
        case_id = env.start_aid()
        env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {})
    client = env.app.test_client()
    login(client, "cadre1", PASSWORD, follow=True)
    page = client.get("/").get_data(as_text=True)
    assert re.search(r'class="bell".*?<span class="badge badge-alert"[^>]*>2</span>', page, re.S)
    page = client.get("/notifications").get_data(as_text=True)
    assert page.count('class="notice-unread"') == 2 and "入户调查" in page
    client.post("/lang/en")
    page = client.get("/notifications").get_data(as_text=True)
    assert "Home survey" in page and "Mark all read" in page
    first = _mine(env, "cadre1")[0]
    r = client.post(f"/notifications/{first['id']}/read", data={"open": first["link"]})
    assert r.status_code == 302 and r.headers["Location"].endswith(first["link"])
    assert len(_mine(env, "cadre1", unread=1)) == 1
    other = _mine(env, "cadre1b")[0]["id"]
    assert client.post(f"/notifications/{other}/read").status_code == 404
    assert client.post("/notifications/read-all").status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "badge" not in page[page.index('class="bell"'):page.index('class="who"')]


def test_the_preferences_page_saves_channels_digest_and_address(env: ApiEnv) -> None:
    from .web_helpers import login
    client = env.app.test_client()
    login(client, "cadre1", PASSWORD, follow=True)
    page = client.get("/notifications/preferences").get_data(as_text=True)
    assert 'name="task_offered:email"' in page and "通知设置" in page
    form = {f"{k}:in_app": "1" for k in notifications.KINDS}
    form.update({"email": MAIL["cadre1"], "digest": "18:30", "overdue:email": "1"})
    assert client.post("/notifications/preferences", data=form).status_code == 302
    prefs = env.as_("cadre1").get("/me/preferences").get_json()
    assert prefs["email"] == MAIL["cadre1"] and prefs["digest"] == "18:30"
    assert prefs["channels"]["overdue"] == ["in_app", "email"] and prefs["channels"]["task_offered"] == ["in_app"]
    r = client.post("/notifications/preferences", data={"email": "nonsense", "digest": ""})
    assert r.status_code == 200 and "nonsense" in r.get_data(as_text=True)
    assert env.as_("cadre1").get("/me/preferences").get_json() == prefs


def test_the_channels_are_the_hexie_channels_entry_points() -> None:
    from importlib.metadata import entry_points
    names = {ep.name for ep in entry_points(group="hexie.channels")}
    assert {"in_app", "email", "wecom"} <= names
    assert set(channels.channel_names()) >= names
    assert channels.EmailChannel({}) is None                    # not configured: in-app only
    email = channels.EmailChannel({"HEXIE_SMTP_URL": "smtps://hexie%40x:p%3Ass@mail.example.cn:465"})
    assert (email.settings.tls, email.settings.user, email.settings.password, email.settings.port) == \
        (True, "hexie@x", "p:ss", 465)
