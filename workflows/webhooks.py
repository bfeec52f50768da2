"""Outbound events: signed webhooks to outside systems, retried until delivered.

The engine's actions emit ``case_started``, ``state_changed``, ``task_created`` and
``case_closed``; each is written to the outbox (:mod:`hexie.workflows.outbox`) in the
action's own transaction, one row per active subscription listing it. The payload
carries ``seq`` (one more for each event of the case: receivers put events back in
order by it and see a gap when one is missing), ``business_key`` and ``occurred_at``.
After the commit, :class:`WebhookDispatcher` sends the transaction's rows in a small
thread pool, in order, so the person acting never waits for an outside server;
:func:`deliver_pending` (the worker) sends whatever is due, so deliveries survive a
restart or a kill of any process. Each POST carries the JSON body, ``X-Hexie-Event``,
``X-Hexie-Delivery`` (the row's id: the same for every retry and redelivery, so a
receiver can drop what it already has: delivery is at least once) and
``X-Hexie-Signature: sha256=<hex HMAC-SHA256 of the body keyed with the subscription's
secret>``. A failure is retried with exponential backoff (``attempts``,
``next_attempt_at``, ``last_error``) until delivered or, after ``max_attempts``, marked
``failed``; :func:`redeliver` sends one again on request.
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
from typing import Any, Iterable, Mapping

from sqlalchemy import delete, select, update

from hexie.models import WebhookDelivery, WebhookSubscription

from . import outbox
from .access import Actor, is_admin
from .engine import EVENT_KINDS, Engine
from .errors import Forbidden, Invalid, NotFound
from .outbox import DEFAULT_POLICY, OUTBOX, RetryPolicy

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hexie-Signature"
EVENT_HEADER = "X-Hexie-Event"
DELIVERY_HEADER = "X-Hexie-Delivery"
USER_AGENT = "Hexie-Webhooks/1"

__all__ = ["RetryPolicy", "DEFAULT_POLICY", "WebhookDispatcher", "ensure_dispatcher", "deliver", "deliver_pending",
           "due_deliveries", "redeliver", "list_deliveries", "sign", "verify_signature", "body_bytes"]


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


# ------------------------------------------------------------- sending
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


FINISH_EVERY = 20   # deliveries recorded per transaction (a sender killed before recording resends those)


def _send_claimed(engine: Engine, rows: list[Any], policy: RetryPolicy) -> dict[int, str | None]:
    """POST claimed webhook rows one after another (their order is the events' order).

    Outcomes are recorded a few at a time, each batch in one transaction: a sender killed
    before recording a batch leaves those rows to be sent again (at least once).
    """
    if not rows:
        return {}
    with engine.session_factory() as s:
        subs = {sub.id: sub for sub in s.execute(
            select(WebhookSubscription.id, WebhookSubscription.url, WebhookSubscription.secret,
                   WebhookSubscription.active)
            .where(WebhookSubscription.id.in_({r.subscription_id for r in rows}))).all()}
    statuses: dict[int, str | None] = {}
    outcomes: list[tuple[Any, str | None]] = []

    def record() -> None:
        if outcomes:   # one transaction (on PostgreSQL one round trip)
            statuses.update(outbox.finish_many(engine, list(outcomes), policy))
            outcomes.clear()

    for row in rows:
        sub = subs.get(row.subscription_id)
        if sub is None:          # deleted meanwhile (its rows went with it)
            statuses[row.id] = None
            continue
        if not sub.active:       # switched off meanwhile: nothing more to send
            outbox.give_up(engine, row.id, "subscription inactive")
            statuses[row.id] = "failed"
            continue
        outcomes.append((row, _post(sub.url, sub.secret, row.event, row.id, row.payload, policy.timeout)))
        if len(outcomes) >= FINISH_EVERY:
            record()
    record()
    return statuses


def _webhook_rows(*where: Any) -> tuple[Any, ...]:
    return (OUTBOX.c.kind == "webhook", *where)


def deliver(engine: Engine, delivery_id: int, policy: RetryPolicy = DEFAULT_POLICY) -> str | None:
    """Try one delivery now if it is due; returns its status afterwards (None: not sent by us)."""
    rows = outbox.claim(engine, *_webhook_rows(OUTBOX.c.id == delivery_id), lease=policy.lease, limit=1)
    return _send_claimed(engine, rows, policy).get(delivery_id)


def deliver_many(engine: Engine, delivery_ids: list[int], policy: RetryPolicy = DEFAULT_POLICY) -> dict[int, str | None]:
    """Try these deliveries now (those due and not held by another sender), in id order."""
    rows = outbox.claim(engine, *_webhook_rows(OUTBOX.c.id.in_(delivery_ids)), lease=policy.lease,
                        limit=len(delivery_ids))
    return _send_claimed(engine, rows, policy)


def due_deliveries(engine: Engine, limit: int = 100) -> list[int]:
    """Ids of pending deliveries whose next attempt is due, oldest first."""
    with engine.session_factory() as s:
        return list(s.scalars(select(WebhookDelivery.id)
                              .where(WebhookDelivery.status == "pending",
                                     WebhookDelivery.next_attempt_at <= engine.clock())
                              .order_by(WebhookDelivery.id).limit(limit)))


def deliver_pending(engine: Engine, policy: RetryPolicy = DEFAULT_POLICY, limit: int = 100) -> int:
    """Send every due delivery once (the worker's round); returns how many were delivered.

    Several workers may run this at once: each claims its own rows (``SKIP LOCKED``).
    """
    delivered = 0
    while True:
        rows = outbox.claim(engine, *_webhook_rows(), lease=policy.lease, limit=limit)
        if not rows:
            return delivered
        delivered += sum(status == "delivered" for status in _send_claimed(engine, rows, policy).values())
        if len(rows) < limit:
            return delivered


# --------------------------------------------------------------- dispatcher
class WebhookDispatcher:
    """Subscribes to an engine's events and delivers them in background threads.

    One per engine per process (see :func:`ensure_dispatcher`). It listens to the
    engine's outbox (:meth:`Engine.on_outbox`): the rows exist before it hears of them.
    ``close()`` stops the pool; undelivered rows stay pending for :func:`deliver_pending`.
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
            engine.on_outbox(self.handle)

    @property
    def engine(self) -> Engine:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the engine of this webhook dispatcher is gone")
        return engine

    def handle(self, written: Mapping[str, list[int]]) -> None:
        """The engine's outbox listener: send a committed transaction's deliveries off the caller's thread."""
        ids = list(written.get("webhook", ()))
        if ids and not self._closed:
            self._submit(ids)

    def _submit(self, delivery_ids: list[int]) -> None:
        with self._lock:
            if self._closed:
                return
            self._pool.submit(self._run, delivery_ids)

    def _run(self, delivery_ids: list[int]) -> None:
        if self._engine() is None:
            return
        try:
            statuses = deliver_many(self.engine, delivery_ids, self.policy)
        except Exception:  # a broken database or receiver must not kill the pool thread
            log.exception("webhook deliveries %s failed", delivery_ids)
            return
        for delivery_id, status in statuses.items():
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
        self._submit([delivery_id])

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


def _delivery_view(row: WebhookDelivery) -> dict[str, Any]:
    return {"id": row.id, "event": row.event, "seq": row.seq, "case_id": row.case_id, "status": row.status,
            "attempts": row.attempts, "last_error": row.last_error, "created_at": row.created_at,
            "delivered_at": row.delivered_at}


def list_deliveries(engine: Engine, actor: Actor, subscription_id: int, *, page: int = 1,
                    per_page: int = 50, status: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """A subscription's deliveries, newest first, and how many there are; administrators only."""
    from .queries import paging
    _require_admin(engine, actor)
    with engine.session_factory() as s:
        if s.get(WebhookSubscription, subscription_id) is None:
            raise NotFound("没有这个 Webhook", f"no webhook {subscription_id}")
        stmt = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
        if status:
            stmt = stmt.where(WebhookDelivery.status == status)
        total = engine.count(s, stmt)
        page, per_page = paging(page, per_page)
        rows = s.scalars(stmt.order_by(WebhookDelivery.id.desc()).offset((page - 1) * per_page).limit(per_page)).all()
        return [_delivery_view(r) for r in rows], total


def redeliver(engine: Engine, actor: Actor, subscription_id: int, delivery_id: int,
              policy: RetryPolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """Send one delivery again now (delivered, failed or waiting for its next try); returns it afterwards.

    It keeps its id, so the receiver sees the same ``X-Hexie-Delivery`` again.
    """
    _require_admin(engine, actor)
    with engine.session_factory() as s, s.begin():
        row = s.get(WebhookDelivery, delivery_id)
        if row is None or row.subscription_id != subscription_id:
            raise NotFound("没有这次推送", f"no delivery {delivery_id} of webhook {subscription_id}")
        # due now, and a fresh round of tries (attempts go on counting; the next failure backs off anew)
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                  .values(status="pending", next_attempt_at=engine.clock()))
    deliver(engine, delivery_id, RetryPolicy(max_attempts=10**6, base_delay=policy.base_delay,
                                             factor=policy.factor, max_delay=policy.max_delay,
                                             timeout=policy.timeout))
    with engine.session_factory() as s:
        return _delivery_view(s.get(WebhookDelivery, delivery_id))
