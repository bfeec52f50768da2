"""Outbound events: signed webhooks to outside systems, retried until delivered.

The engine publishes ``case_started``, ``state_changed``, ``task_created`` and
``case_closed`` to its subscribers after each commit (:meth:`Engine.subscribe`).
:class:`WebhookDispatcher` is such a subscriber: for every active subscription that
lists the event it writes a ``webhook_deliveries`` row (the durable to-do), then
hands the row to a small thread pool, so the person acting never waits for an
outside server. Each POST carries the JSON body, ``X-Hexie-Event``,
``X-Hexie-Delivery`` and ``X-Hexie-Signature: sha256=<hex HMAC-SHA256 of the body
keyed with the subscription's secret>``. A failure is retried with exponential
backoff (``attempts``, ``next_attempt_at``, ``last_error``) until delivered or, after
``max_attempts``, marked ``failed``. :func:`deliver_pending` sends whatever is due:
the worker calls it, so deliveries survive a restart of the web process.

Several processes may send at once (web workers, timer workers): a delivery is
claimed by moving its ``next_attempt_at`` forward in one conditional UPDATE, so only
one of them sends it at a time.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import urllib.error
import urllib.request
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, Mapping

from sqlalchemy import delete, select, update

from hexie.models import WebhookDelivery, WebhookSubscription

from .access import Actor, is_admin
from .engine import EVENT_KINDS, Engine
from .errors import Forbidden, Invalid, NotFound

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hexie-Signature"
EVENT_HEADER = "X-Hexie-Event"
DELIVERY_HEADER = "X-Hexie-Delivery"
USER_AGENT = "Hexie-Webhooks/1"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: delays grow ``base_delay * factor**(attempt-1)``, capped at ``max_delay``."""

    max_attempts: int = 8
    base_delay: float = 10.0      # seconds before the first retry
    factor: float = 2.0
    max_delay: float = 6 * 3600.0
    timeout: float = 10.0         # seconds to wait for the receiving server

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed try."""
        return min(self.max_delay, self.base_delay * self.factor ** max(0, attempts - 1))

    @property
    def lease(self) -> timedelta:
        """How long a claimed delivery is left alone by other senders."""
        return timedelta(seconds=self.timeout + 30)


DEFAULT_POLICY = RetryPolicy()


# ----------------------------------------------------------------- signing
def body_bytes(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): canonical JSON, UTF-8."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      default=str).encode("utf-8")


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hexie-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """For receivers (and tests): does ``header`` sign ``body`` with ``secret``?"""
    return bool(header) and hmac.compare_digest(sign(secret, body), header)


# ------------------------------------------------------------- the outbox
def enqueue(engine: Engine, event: Mapping[str, Any]) -> list[int]:
    """Write one pending delivery per active subscription listing ``event``; return their ids."""
    kind = event.get("event")
    if kind not in EVENT_KINDS:
        return []
    now = engine.clock()
    payload = {**event, "occurred_at": now.isoformat() + "Z"}
    with engine.session_factory() as s, s.begin():
        subscriptions = [sub for sub in s.scalars(select(WebhookSubscription)
                                                  .where(WebhookSubscription.active.is_(True)))
                         if kind in (sub.events or EVENT_KINDS)]
        rows = [WebhookDelivery(subscription_id=sub.id, event=kind, payload=payload, status="pending",
                                attempts=0, next_attempt_at=now, created_at=now) for sub in subscriptions]
        s.add_all(rows)
        s.flush()
        return [row.id for row in rows]


def _claim(engine: Engine, delivery_id: int, policy: RetryPolicy) -> tuple[str, str, str, dict] | None:
    """Take a due delivery for sending: (url, secret, event, payload), or None when not ours to send."""
    now = engine.clock()
    with engine.session_factory() as s, s.begin():
        taken = s.execute(update(WebhookDelivery)
                          .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
                                 WebhookDelivery.next_attempt_at <= now)
                          .values(next_attempt_at=now + policy.lease)
                          .execution_options(synchronize_session=False))
        if taken.rowcount != 1:
            return None
        row = s.execute(select(WebhookSubscription.url, WebhookSubscription.secret, WebhookSubscription.active,
                               WebhookDelivery.event, WebhookDelivery.payload)
                        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
                        .where(WebhookDelivery.id == delivery_id)).first()
        if row is None:
            return None
        if not row.active:  # switched off meanwhile: nothing more to send
            s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                      .values(status="failed", last_error="subscription inactive"))
            return None
        return row.url, row.secret, row.event, dict(row.payload)


def _post(url: str, secret: str, event: str, delivery_id: int, payload: Mapping[str, Any],
          timeout: float) -> str | None:
    """POST one delivery; None when the receiver answered 2xx, else what went wrong."""
    body = body_bytes(payload)
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
        EVENT_HEADER: event, DELIVERY_HEADER: str(delivery_id), SIGNATURE_HEADER: sign(secret, body)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https only)
            status = response.status
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"{type(err).__name__}: {getattr(err, 'reason', err)}"[:1000]
    return None if 200 <= status < 300 else f"HTTP {status}"


def deliver(engine: Engine, delivery_id: int, policy: RetryPolicy = DEFAULT_POLICY) -> str | None:
    """Try one delivery now if it is due; returns its status afterwards (None: not sent by us)."""
    claimed = _claim(engine, delivery_id, policy)
    if claimed is None:
        return None
    url, secret, event, payload = claimed
    error = _post(url, secret, event, delivery_id, payload, policy.timeout)
    now = engine.clock()
    with engine.session_factory() as s, s.begin():
        row = s.get(WebhookDelivery, delivery_id)
        if row is None:  # the subscription was deleted meanwhile
            return None
        row.attempts = (row.attempts or 0) + 1
        if error is None:
            row.status, row.delivered_at, row.last_error = "delivered", now, None
        else:
            row.last_error = error
            if row.attempts >= policy.max_attempts:
                row.status = "failed"
            else:
                row.next_attempt_at = now + timedelta(seconds=policy.delay(row.attempts))
        return row.status


def due_deliveries(engine: Engine, limit: int = 100) -> list[int]:
    """Ids of pending deliveries whose next attempt is due, oldest first."""
    with engine.session_factory() as s:
        return list(s.scalars(select(WebhookDelivery.id)
                              .where(WebhookDelivery.status == "pending",
                                     WebhookDelivery.next_attempt_at <= engine.clock())
                              .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)))


def deliver_pending(engine: Engine, policy: RetryPolicy = DEFAULT_POLICY, limit: int = 100) -> int:
    """Send every due delivery once (the worker's round); returns how many were delivered."""
    return sum(deliver(engine, delivery_id, policy) == "delivered"
               for delivery_id in due_deliveries(engine, limit))


# --------------------------------------------------------------- dispatcher
class WebhookDispatcher:
    """Subscribes to an engine's events and delivers them in background threads.

    One per engine per process (see :func:`ensure_dispatcher`). ``close()`` stops
    the pool; undelivered rows stay pending for :func:`deliver_pending`.
    """

    def __init__(self, engine: Engine, policy: RetryPolicy = DEFAULT_POLICY, max_workers: int = 4,
                 subscribe: bool = True) -> None:
        # A weak reference: the engine holds the dispatcher (as a subscriber), not the reverse,
        # so that an engine and its dispatcher go away together.
        self._engine = weakref.ref(engine)
        self.policy = policy
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hexie-webhook")
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False
        if subscribe:
            engine.subscribe(self.handle)

    @property
    def engine(self) -> Engine:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the engine of this webhook dispatcher is gone")
        return engine

    def handle(self, event: Mapping[str, Any]) -> None:
        """The engine's subscriber: record the deliveries, then send them off the caller's thread."""
        if self._closed:
            return
        for delivery_id in enqueue(self.engine, event):
            self._submit(delivery_id)

    def _submit(self, delivery_id: int) -> None:
        with self._lock:
            if self._closed:
                return
            self._pool.submit(self._run, delivery_id)

    def _run(self, delivery_id: int) -> None:
        if self._engine() is None:
            return
        try:
            status = deliver(self.engine, delivery_id, self.policy)
        except Exception:  # a broken database or receiver must not kill the pool thread
            log.exception("webhook delivery %s failed", delivery_id)
            return
        if status == "pending":
            self._retry_later(delivery_id)

    def _retry_later(self, delivery_id: int) -> None:
        with self.engine.session_factory() as s:
            row = s.get(WebhookDelivery, delivery_id)
            if row is None or row.status != "pending":
                return
            wait = max(0.0, (row.next_attempt_at - self.engine.clock()).total_seconds()) + 0.05
        timer = threading.Timer(wait, self._fire_timer, args=(delivery_id,))
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.add(timer)
        timer.start()

    def _fire_timer(self, delivery_id: int) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
        self._submit(delivery_id)

    def close(self, wait: bool = True) -> None:
        """Stop sending: cancel scheduled retries and shut the pool down."""
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()
        self._pool.shutdown(wait=wait)


_dispatchers: "weakref.WeakKeyDictionary[Engine, WebhookDispatcher]" = weakref.WeakKeyDictionary()
_dispatchers_lock = threading.Lock()


def ensure_dispatcher(engine: Engine, **kw: Any) -> WebhookDispatcher:
    """The engine's dispatcher, created (and subscribed) on first call; safe to call repeatedly."""
    with _dispatchers_lock:
        dispatcher = _dispatchers.get(engine)
        if dispatcher is None or dispatcher._closed:
            dispatcher = _dispatchers[engine] = WebhookDispatcher(engine, **kw)
        return dispatcher


# ------------------------------------------------------ managing subscriptions
def _require_admin(engine: Engine, actor: Actor) -> None:
    if not is_admin(actor, engine.registry.roles):
        raise Forbidden("只有管理员可以管理 Webhook", "only an administrator may manage webhooks")


def _view(sub: WebhookSubscription, with_secret: bool = False) -> dict[str, Any]:
    out = {"id": sub.id, "url": sub.url, "events": list(sub.events or EVENT_KINDS), "active": sub.active,
           "created_at": sub.created_at}
    if with_secret:
        out["secret"] = sub.secret
    return out


def list_subscriptions(engine: Engine, actor: Actor) -> list[dict[str, Any]]:
    """Every subscription (secrets left out); administrators only."""
    _require_admin(engine, actor)
    with engine.session_factory() as s:
        return [_view(sub) for sub in s.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id))]


def create_subscription(engine: Engine, actor: Actor, url: str, events: Iterable[str] | None = None,
                        secret: str | None = None, active: bool = True) -> dict[str, Any]:
    """Subscribe ``url`` to ``events`` (default: all); the answer is the only place the secret is shown."""
    _require_admin(engine, actor)
    events = list(dict.fromkeys(events if events is not None else EVENT_KINDS))
    unknown = [e for e in events if e not in EVENT_KINDS]
    if unknown or not events:
        raise Invalid("未知的事件", f"events must be among {', '.join(EVENT_KINDS)}",
                      {"events": unknown or "empty"})
    if not url.lower().startswith(("http://", "https://")):
        raise Invalid("网址须为 http 或 https", "the url must be http or https", {"url": "scheme"})
    with engine.session_factory() as s, s.begin():
        sub = WebhookSubscription(url=url, secret=secret or secrets.token_hex(32), events=events,
                                  active=active, created_at=engine.clock())
        s.add(sub)
        s.flush()
        return _view(sub, with_secret=True)


def delete_subscription(engine: Engine, actor: Actor, subscription_id: int) -> None:
    """Remove a subscription and its deliveries."""
    _require_admin(engine, actor)
    with engine.session_factory() as s, s.begin():
        sub = s.get(WebhookSubscription, subscription_id)
        if sub is None:
            raise NotFound("没有这个 Webhook", f"no webhook {subscription_id}")
        s.execute(delete(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id))
        s.delete(sub)
