"""Channels: how a notification leaves Hexie (the ``hexie.channels`` entry-point group).

A channel is a class registered under the entry-point group ``hexie.channels`` (see
pyproject.toml), built with the configuration (the environment): ``factory(config)``
returns the channel, or ``None`` when it is not configured here (e-mail without
``HEXIE_SMTP_URL``). It has a ``name`` and two methods:

``address(user, preferences) -> str | None``
    where to reach her (``None``: not through this channel); called in the action's
    transaction, the answer is kept in the outbox row.
``send(message, commit) -> None``
    send one :class:`Message`. ``commit()`` records the outbox row as sent and returns
    ``False`` when the row is no longer this sender's (its lease ran out and another
    took it): a channel with a commit point of its own calls it there, before the point
    of no return, and gives up when it answers ``False``; otherwise the sender calls it
    after ``send`` returns. Raise :class:`Undelivered` when the message certainly did not
    go out (it is tried again later), anything else for "unknown".

Built in: ``in_app`` (the notification centre: written in the action's own
transaction, so there is nothing to send), ``email`` (SMTP) and, as an example of a
plug-in, ``wecom`` (a WeCom group robot's webhook). :func:`send_pending` is the worker's
round: it claims due rows from the outbox (``FOR UPDATE SKIP LOCKED`` on PostgreSQL),
sends each through its channel, and gathers a person's ``digest`` rows into one e-mail.

E-mail is never sent twice: the message is handed to the server up to the end of its
DATA, the outbox row is committed as sent, and only then the final ``.`` that makes the
server take it; its ``250`` confirms the row (``delivered_at``). A process killed before
the commit leaves a message the server discards (and a row sent again once its lease
runs out); killed between the commit and the ``250``, the row is left ``delivered``
without ``delivered_at``: in doubt (at most one row per killed process), never sent
again. Every message carries ``Message-ID: <hexie.outbox.ID@…>`` and ``X-Hexie-Outbox``.
"""
from __future__ import annotations

import html
import json
import logging
import os
import smtplib
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
import weakref
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable, Mapping, Protocol

from sqlalchemy import select, update

from . import outbox
from .outbox import OUTBOX, RetryPolicy

log = logging.getLogger(__name__)

GROUP = "hexie.channels"
NOTIFY_POLICY = RetryPolicy(max_attempts=10, base_delay=30.0, timeout=20.0)


class Undelivered(Exception):
    """The message certainly did not go out (refused, connection failed before sending)."""


@dataclass
class Message:
    """One notification (or a digest of several) for one person through one channel."""

    outbox_id: int
    kind: str
    to: str
    name: str
    username: str
    zh: str
    en: str
    link: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)   # a digest's notifications

    @property
    def is_digest(self) -> bool:
        return bool(self.items)


class Channel(Protocol):
    name: str

    def address(self, user: Any, preferences: Any) -> str | None: ...

    def send(self, message: Message, commit: Callable[[], bool]) -> None: ...


def base_url(config: Mapping[str, str]) -> str:
    """The site's address for links in messages (``$HEXIE_BASE_URL``)."""
    return (config.get("HEXIE_BASE_URL") or "http://127.0.0.1:5000").rstrip("/")


# ------------------------------------------------------------------ built in
class InAppChannel:
    """The notification centre: the notification row is the message (nothing to send)."""

    name = "in_app"

    def __init__(self, config: Mapping[str, str] | None = None) -> None:
        pass

    def address(self, user: Any, preferences: Any) -> str | None:
        return None

    def send(self, message: Message, commit: Callable[[], bool]) -> None:  # pragma: no cover (never queued)
        commit()


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: bool
    user: str | None
    password: str | None
    sender: str

    @classmethod
    def parse(cls, url: str, sender: str | None) -> "SmtpSettings":
        """``smtp://[user:password@]host:port`` (``smtps://`` for TLS)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"HEXIE_SMTP_URL must be smtp://[user:password@]host:port or smtps://…, not {url!r}")
        return cls(host=parts.hostname, port=parts.port or (465 if parts.scheme == "smtps" else 25),
                   tls=parts.scheme == "smtps",
                   user=urllib.parse.unquote(parts.username) if parts.username else None,
                   password=urllib.parse.unquote(parts.password) if parts.password else None,
                   sender=sender or f"hexie@{parts.hostname}")


class EmailChannel:
    """E-mail through ``$HEXIE_SMTP_URL`` from ``$HEXIE_MAIL_FROM``: bilingual plain text and HTML."""

    name = "email"

    def __new__(cls, config: Mapping[str, str] | None = None) -> "EmailChannel | None":  # type: ignore[misc]
        url = (config or {}).get("HEXIE_SMTP_URL")
        if not url:
            return None
        return super().__new__(cls)

    def __init__(self, config: Mapping[str, str] | None = None) -> None:
        config = config or {}
        self.settings = SmtpSettings.parse(config["HEXIE_SMTP_URL"], config.get("HEXIE_MAIL_FROM"))
        self.base_url = base_url(config)
        self.timeout = float(config.get("HEXIE_SMTP_TIMEOUT") or 20)

    def address(self, user: Any, preferences: Any) -> str | None:
        return getattr(preferences, "email", None) or None

    # -- the message
    def compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.settings.sender
        mail["To"] = message.to
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = f"<hexie.outbox.{message.outbox_id}@{self.settings.host}>"
        mail["X-Hexie-Outbox"] = str(message.outbox_id)
        prefs = self._link("/notifications/preferences")
        footer_text = (f"\n---\n您收到这封邮件，是因为您在和谐系统中有待办或提醒。更改通知方式：{prefs}\n"
                       f"You receive this because you have work or reminders in Hexie. Change how you are told: {prefs}\n")
        if message.is_digest:
            mail["Subject"] = f"和谐 · 今日通知 {len(message.items)} 条 / Hexie · {len(message.items)} notifications today"
            lines_zh = [f"- {i['zh']}\n  {self._link(i.get('link'))}" for i in message.items]
            lines_en = [f"- {i['en']}\n  {self._link(i.get('link'))}" for i in message.items]
            text = (f"{message.name}，您好：\n\n" + "\n".join(lines_zh)
                    + f"\n\n---\nHello {message.name},\n\n" + "\n".join(lines_en) + "\n")
            items = "".join(f'<li style="margin:0 0 10px"><a href="{html.escape(self._link(i.get("link")))}">'
                            f'{html.escape(i["zh"])}</a><br><span lang="en" style="color:#555">'
                            f'{html.escape(i["en"])}</span></li>' for i in message.items)
            body = (f"<p>{html.escape(message.name)}，您好 / Hello {html.escape(message.name)},</p>"
                    f'<ul style="padding-left:18px">{items}</ul>')
        else:
            link = self._link(message.link)
            mail["Subject"] = f"和谐 · {message.zh} / Hexie · {message.en}"
            text = (f"{message.name}，您好：\n\n{message.zh}\n查看：{link}\n\n---\n"
                    f"Hello {message.name},\n\n{message.en}\nOpen: {link}\n")
            button = ('<p><a href="{href}" style="display:inline-block;padding:8px 16px;background:#b0274b;'
                      'color:#fff;text-decoration:none;border-radius:4px">{label}</a></p>')
            body = (f"<p>{html.escape(message.name)}，您好：</p><p>{html.escape(message.zh)}</p>"
                    + button.format(href=html.escape(link), label="查看任务")
                    + '<hr style="border:0;border-top:1px solid #ddd">'
                    f'<div lang="en"><p>Hello {html.escape(message.name)},</p><p>{html.escape(message.en)}</p>'
                    + button.format(href=html.escape(link), label="Open the task") + "</div>")
        text += footer_text
        footer = (f'<p style="color:#777;font-size:12px;border-top:1px solid #ddd;padding-top:8px">'
                  f'您收到这封邮件，是因为您在和谐系统中有待办或提醒。<a href="{html.escape(prefs)}">更改通知方式</a><br>'
                  f'<span lang="en">You receive this because you have work or reminders in Hexie. '
                  f'<a href="{html.escape(prefs)}">Change how you are told</a></span></p>')
        mail.set_content(text)
        mail.add_alternative(
            '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"></head>'
            '<body style="font-family:sans-serif;color:#222;max-width:600px;margin:0 auto;padding:12px">'
            '<p style="font-weight:bold;color:#b0274b;font-size:16px">和谐 Hexie</p>'
            f"{body}{footer}</body></html>", subtype="html")
        return mail

    def _link(self, path: str | None) -> str:
        return self.base_url + (path or "/")

    # -- sending, with the outbox's commit inside the SMTP transaction
    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        try:
            if settings.tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, settings.port, timeout=self.timeout,
                                                      context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(settings.host, settings.port, timeout=self.timeout)
            # The message goes in two writes with the outbox's commit between them (see send):
            # without TCP_NODELAY the final "." waits for the server's delayed ACK of the data
            # (about 40 ms a message on Linux: Nagle's algorithm).
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if settings.user:
                smtp.login(settings.user, settings.password or "")
        except (OSError, smtplib.SMTPException) as err:
            raise Undelivered(f"SMTP connect: {err}") from None
        return smtp

    def send(self, message: Message, commit: Callable[[], bool]) -> None:
        """One SMTP transaction on the round's connection (opened on first use, see :meth:`close`)."""
        mail = self.compose(message)
        smtp = getattr(self, "_smtp", None)
        if smtp is not None:
            try:
                if smtp.noop()[0] != 250:
                    raise smtplib.SMTPException("not ready")
            except (OSError, smtplib.SMTPException):
                self.close()
                smtp = None
        if smtp is None:
            smtp = self._smtp = self._connect()
        try:
            try:
                code, reply = smtp.mail(self.settings.sender)
                if code != 250:
                    raise Undelivered(f"MAIL FROM: {code} {reply!r}")
                code, reply = smtp.rcpt(message.to)
                if code not in (250, 251):
                    raise Undelivered(f"RCPT TO: {code} {reply!r}")
                code, reply = smtp.docmd("DATA")
                if code != 354:
                    raise Undelivered(f"DATA: {code} {reply!r}")
                data = smtplib._quote_periods(mail.as_bytes(policy=mail.policy.clone(linesep="\r\n")))  # type: ignore[attr-defined]
                if not data.endswith(b"\r\n"):
                    data += b"\r\n"
                smtp.send(data)                      # everything but the final ".": not taken yet
            except (OSError, smtplib.SMTPException) as err:
                raise Undelivered(f"SMTP: {err}") from None
            if not commit():                         # no longer ours: drop the connection, nothing is taken
                self.close()
                return
            smtp.send(b".\r\n")                      # the point of no return
            code, reply = smtp.getreply()
            if code != 250:
                raise Undelivered(f"end of DATA: {code} {reply!r}")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End the round's SMTP connection."""
        smtp, self._smtp = getattr(self, "_smtp", None), None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            smtp.close()


class WeComChannel:
    """A WeCom (企业微信) group robot: ``$HEXIE_WECOM_WEBHOOK_URL``; her username is @-mentioned."""

    name = "wecom"

    def __new__(cls, config: Mapping[str, str] | None = None) -> "WeComChannel | None":  # type: ignore[misc]
        if not (config or {}).get("HEXIE_WECOM_WEBHOOK_URL"):
            return None
        return super().__new__(cls)

    def __init__(self, config: Mapping[str, str] | None = None) -> None:
        config = config or {}
        self.url = config["HEXIE_WECOM_WEBHOOK_URL"]
        self.base_url = base_url(config)

    def address(self, user: Any, preferences: Any) -> str | None:
        return self.url

    def send(self, message: Message, commit: Callable[[], bool]) -> None:
        items = message.items or [{"zh": message.zh, "en": message.en, "link": message.link}]
        content = "\n".join(f"{i['zh']} / {i['en']}\n{self.base_url}{i.get('link') or '/'}" for i in items)
        body = json.dumps({"msgtype": "text", "text": {"content": f"{message.name}：{content}",
                                                       "mentioned_list": [message.username]}},
                          ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(message.to, data=body, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            raise Undelivered(f"HTTP {err.code}") from None
        except (urllib.error.URLError, OSError) as err:
            raise Undelivered(f"{type(err).__name__}: {getattr(err, 'reason', err)}") from None
        except ValueError:
            raise RuntimeError("WeCom answered something that is not JSON") from None
        if answer.get("errcode", 0) != 0:
            raise Undelivered(f"WeCom errcode {answer.get('errcode')}: {answer.get('errmsg')}")


BUILTIN: dict[str, Callable[..., Any]] = {"in_app": InAppChannel, "email": EmailChannel, "wecom": WeComChannel}


# --------------------------------------------------------------- the registry
def factories() -> dict[str, Callable[..., Any]]:
    """Every channel factory: the built-in ones, and those of the ``hexie.channels`` entry points."""
    found = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        if ep.name in found and ep.value.startswith("hexie.workflows.channels:"):
            continue
        try:
            found[ep.name] = ep.load()
        except Exception:  # a broken plug-in must not stop the others
            log.exception("channel plug-in %s does not load", ep.name)
    return found


def channel_names() -> list[str]:
    """The channels a person may choose (whether or not they are configured here)."""
    return sorted(factories())


_configured: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def configure(engine: Any, config: Mapping[str, str] | None = None,
              channels: Iterable[Any] | None = None) -> dict[str, Any]:
    """Build (or set) the engine's channels from ``config`` (default: the environment)."""
    if channels is None:
        config = dict(os.environ if config is None else config)
        built = {}
        for name, factory in factories().items():
            try:
                channel = factory(config)
            except Exception:
                log.exception("channel %s is misconfigured", name)
                continue
            if channel is not None:
                built[name] = channel
        channels = built.values()
    with _lock:
        _configured[engine] = {c.name: c for c in channels}
        return _configured[engine]


def channels_of(engine: Any) -> dict[str, Any]:
    """The engine's configured channels (from the environment on first use)."""
    with _lock:
        found = _configured.get(engine)
    return found if found is not None else configure(engine)


def writable_channels(engine: Any) -> dict[str, Any]:
    """The configured channels that go through the outbox (all but in_app)."""
    return {n: c for n, c in channels_of(engine).items() if n != "in_app"}


# ------------------------------------------------------------------ sending
def _message(row: Any, items: list[dict[str, Any]] | None = None) -> Message:
    p = row.payload
    return Message(outbox_id=row.id, kind=p.get("kind", row.event), to=p["to"], name=p.get("name", ""),
                   username=p.get("username", ""), zh=p.get("zh", ""), en=p.get("en", ""), link=p.get("link"),
                   items=items or [])


def _send(engine: Any, channel: Any, message: Message, rows: list[Any], policy: RetryPolicy) -> bool:
    """Send one message standing for ``rows`` (one, or a digest's); True when it went out.

    A channel that calls ``commit()`` at its commit point gets its rows recorded as sent
    there, and confirmed (``delivered_at``) once ``send`` returns: a process killed in
    between leaves them ``delivered`` without ``delivered_at`` (in doubt, never sent
    again). For a channel that does not, the rows are recorded after ``send`` returns
    (a process killed in between sends them again: at least once).
    """
    committed = called = False

    def commit(confirmed: bool = False) -> bool:
        nonlocal committed, called
        called = True
        if not committed:
            # all or none: a row no longer ours (its lease ran out) means none of them is sent by us
            if not outbox.finish_sent(engine, rows, policy, confirmed=confirmed):
                return False
            committed = True
        return committed

    try:
        channel.send(message, commit)
    except Undelivered as err:
        error = str(err)[:2000]
        if committed:   # recorded as sent before the server refused at its commit point: not sent after all
            _reopen(engine, rows, error, policy)
        else:
            for row in rows:
                outbox.finish(engine, row, error, policy)
        log.warning("%s to %s not delivered: %s", channel.name, message.to, error)
        return False
    except Exception as err:  # unknown whether it went out: never send twice, keep the error
        error = f"{type(err).__name__}: {err}"[:2000]
        log.exception("%s to %s failed", channel.name, message.to)
        if not committed:
            for row in rows:
                outbox.finish(engine, row, error, policy)
        else:
            with engine.session_factory() as s, s.begin():
                s.execute(update(OUTBOX).where(OUTBOX.c.id.in_([r.id for r in rows])).values(last_error=error))
        return False
    if not called:
        return commit(confirmed=True)
    if committed:
        outbox.confirm(engine, [r.id for r in rows])
    return committed


def _reopen(engine: Any, rows: list[Any], error: str, policy: RetryPolicy) -> None:
    now = engine.clock()
    with engine.session_factory() as s, s.begin():
        for row in rows:
            attempts = row.attempts + 1
            s.execute(update(OUTBOX).where(OUTBOX.c.id == row.id, OUTBOX.c.status == "delivered").values(
                status="failed" if attempts >= policy.max_attempts else "pending", delivered_at=None,
                last_error=error, next_attempt_at=now + timedelta(seconds=policy.delay(attempts))))


def send_pending(engine: Any, policy: RetryPolicy = NOTIFY_POLICY, limit: int = 100) -> int:
    """Send every due notification row through its channel; returns how many messages went out.

    A person's due ``digest`` rows of one channel go out as one message.
    """
    channels = writable_channels(engine)
    if not channels:
        return 0
    try:
        return _send_rounds(engine, channels, policy, limit)
    finally:
        for channel in channels.values():
            closing = getattr(channel, "close", None)
            if closing is not None:
                closing()


#: why a claimed notification was not sent (``last_error`` of a ``dropped`` row)
UNSEEN = "收件人已无权查看此案件，未发送 / the recipient may no longer see this case: not sent"


def still_seen(engine: Any, rows: list[Any]) -> list[Any]:
    """The claimed notification rows whose recipient may still see their case, by the case
    page's rule (:func:`hexie.workflows.queries.can_see`), asked at sending: the others (a
    referral whose consent was withdrawn, a role taken away, an account switched off, a case
    erased since the action) are marked ``dropped`` (:data:`UNSEEN`) and never sent. One
    question per recipient and case."""
    from hexie.models import Case
    from .notifications import _actors, _people
    from .queries import can_see
    checked = [r for r in rows if r.case_id is not None and r.recipient_id is not None]
    if not checked:
        return rows
    seen: dict[tuple[int, int], bool] = {}
    with engine.session_factory() as s:
        people = _people(s, sorted({r.recipient_id for r in checked}))
        actors = _actors(s, people.values())
        cases = {c.id: c for c in s.scalars(select(Case).where(Case.id.in_(sorted({r.case_id for r in checked}))))}
        for r in checked:
            key = (r.recipient_id, r.case_id)
            if key not in seen:
                actor, case = actors.get(r.recipient_id), cases.get(r.case_id)
                seen[key] = actor is not None and case is not None and can_see(s, engine, actor, case)
    dropped = {r.id for r in checked if not seen[(r.recipient_id, r.case_id)]}
    if dropped:
        outbox.drop(engine, [r for r in rows if r.id in dropped], UNSEEN)
        log.info("not sent, the recipient may no longer see the case: outbox rows %s", sorted(dropped))
    return [r for r in rows if r.id not in dropped]


def _send_rounds(engine: Any, channels: Mapping[str, Any], policy: RetryPolicy, limit: int) -> int:
    sent = 0
    while True:
        claimed = outbox.claim(engine, OUTBOX.c.kind == "notification", OUTBOX.c.channel.in_(list(channels)),
                               lease=policy.lease, limit=limit)
        if not claimed:
            return sent
        rows = still_seen(engine, claimed)
        digests: dict[tuple[str, int | None, str], list[Any]] = {}
        for row in rows:
            if row.digest:
                digests.setdefault((row.channel, row.recipient_id, row.payload.get("to")), []).append(row)
                continue
            sent += _send(engine, channels[row.channel], _message(row), [row], policy)
        for (channel, _, _), group in digests.items():
            items = [{"kind": r.payload.get("kind"), "zh": r.payload.get("zh"), "en": r.payload.get("en"),
                      "link": r.payload.get("link")} for r in group]
            sent += _send(engine, channels[channel], _message(group[0], items), group, policy)
        if len(claimed) < limit:
            return sent
