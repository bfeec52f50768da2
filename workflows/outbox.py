"""The outbox: everything that leaves Hexie, written in the action's own transaction.

An action never talks to the outside world. What it has to tell (webhook events,
notifications for e-mail and other channels) becomes rows of ``hexie_outbox`` in the
same transaction as the change itself, so a message exists exactly when the change
was committed. ``hexie worker`` (and, for webhooks, the web process's dispatcher) sends
them afterwards:

1. :func:`claim` takes due rows in one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
   LOCKED) RETURNING …`` (PostgreSQL; on SQLite the statement itself takes the write
   lock): each claim gives the row a new ``claim_token`` and leases it (``next_attempt_at``
   moves past the lease), so no other sender takes it meanwhile;
2. the sender sends it;
3. :func:`finish` marks it ``delivered`` (or schedules the next try with exponential
   backoff, or gives up as ``failed``) and counts the try in ``attempts``, but only if the
   row is still held by that claim (same ``claim_token``): a sender whose lease ran out never overwrites its successor.

A notification is checked again before 2: if its recipient may no longer see its case,
:func:`drop` marks it ``dropped`` (the reason in ``last_error``) and it is never sent.

A process killed after 1 leaves the row to be taken again once the lease expires: nothing
is lost. Webhooks are therefore delivered at least once (receivers deduplicate by the
``X-Hexie-Delivery`` id). A channel that can hold a message back until its own commit
point (SMTP: the final ``.`` of DATA, see :mod:`hexie.workflows.channels`) is marked
``delivered`` before that point, so it is sent once.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from hexie.models import OutboxMessage, WebhookSubscription, fast

EVENT_KINDS = ("case_started", "state_changed", "task_created", "case_closed")

OUTBOX = OutboxMessage.__table__
_INSERT = insert(OUTBOX).returning(OUTBOX.c.id, sort_by_parameter_order=True)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: delays grow ``base_delay * factor**(attempt-1)``, capped at ``max_delay``."""

    max_attempts: int = 8
    base_delay: float = 10.0      # seconds before the first retry
    factor: float = 2.0
    max_delay: float = 6 * 3600.0
    timeout: float = 10.0         # seconds to wait for the receiving server
    lease_seconds: float | None = None   # how long a claim holds a row (default: timeout + 30 s)

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed try."""
        return min(self.max_delay, self.base_delay * self.factor ** max(0, attempts - 1))

    @property
    def lease(self) -> timedelta:
        """How long a claimed row is left alone by other senders (then a crashed sender's row is taken again)."""
        return timedelta(seconds=self.lease_seconds if self.lease_seconds is not None else self.timeout + 30)

    def with_lease(self, seconds: float | None) -> "RetryPolicy":
        from dataclasses import replace
        return self if seconds is None else replace(self, lease_seconds=seconds)


DEFAULT_POLICY = RetryPolicy()


# --------------------------------------------------------------- writing
def pending(session: Session) -> dict[str, list[int]]:
    """The outbox rows this transaction wrote, by kind (told to listeners after the commit)."""
    return session.info.setdefault("outbox", {})


_F_INSERT = fast.Statement(insert(OUTBOX))
_F_INSERT_ID = fast.Statement(insert(OUTBOX).returning(OUTBOX.c.id))


def add_rows(session: Session, rows: list[dict[str, Any]], ids: list[int] | None = None) -> list[int]:
    """Insert outbox rows in the session's transaction; returns their ids in order.

    ``ids``: taken from the table's sequence beforehand (PostgreSQL): the rows are then written
    with the transaction's next round trip (:func:`hexie.models.fast.defer`)."""
    if not rows:
        return []
    if ids is not None:
        for row, row_id in zip(rows, ids):
            fast.defer(session, _F_INSERT, {"id": row_id, **row}, insert=True)
    else:
        ids = [fast.run(session, _F_INSERT_ID, row, insert=True).scalar() for row in rows]
    for row, row_id in zip(rows, ids):
        pending(session).setdefault(row["kind"], []).append(row_id)
    return ids


def row_values(kind: str, channel: str, event: str, payload: Mapping[str, Any], now: datetime,
               **columns: Any) -> dict[str, Any]:
    """The columns of a new pending outbox row."""
    return {"kind": kind, "channel": channel, "event": event, "payload": dict(payload), "status": "pending",
            "digest": False, "attempts": 0, "next_attempt_at": now, "created_at": now, "subscription_id": None,
            "claim_token": None,
            "notification_id": None, "recipient_id": None, "case_id": None, "seq": None, "last_error": None,
            "delivered_at": None, **columns}


def _webhook_rows(dialect: str) -> Any:
    """One statement writes the rows of all the transaction's events for every active
    subscription that lists them (no read of the subscriptions first, however many events).

    The events travel as one JSON array (``:events``): on PostgreSQL each element is the row's
    payload (``json_array_elements`` keeps an element's text verbatim), on SQLite the payload's
    text as a JSON string (``json_each`` would write an object minified). One literal to quote,
    where a text array of payloads cost psycopg a regular-expression escape of every quote in
    every payload, and on SQLite one statement instead of a read of the subscriptions and an
    insert per row."""
    from sqlalchemy import DateTime, bindparam, text
    subs = WebhookSubscription.__table__.name
    if dialect == "postgresql":
        source = "json_array_elements(CAST(:events AS json)) WITH ORDINALITY AS e(doc, n)"
        event, case_id, seq, order = "e.doc->>'event'", "CAST(e.doc->>'case_id' AS bigint)", \
            "CAST(e.doc->>'seq' AS integer)", "e.n"
        listed = ("CAST(s.events AS jsonb) IN ('[]'::jsonb, 'null'::jsonb) "
                  f"OR jsonb_exists(CAST(s.events AS jsonb), {event})")
    else:
        source = "json_each(:events) AS e"
        event, case_id, seq, order = "json_extract(e.value, '$.event')", "json_extract(e.value, '$.case_id')", \
            "json_extract(e.value, '$.seq')", "e.key"
        listed = (f"s.events IN ('[]', 'null') OR EXISTS (SELECT 1 FROM json_each(s.events) AS k "
                  f"WHERE k.value = {event})")
    payload = "e.doc" if dialect == "postgresql" else "e.value"
    sql = text(f"""
        INSERT INTO {OUTBOX.name} (kind, channel, event, payload, status, digest, attempts, next_attempt_at,
                                   created_at, subscription_id, case_id, seq)
        SELECT 'webhook', 'webhook', {event}, {payload}, 'pending', false, 0, :now, :now, s.id, {case_id}, {seq}
        FROM {source}
        JOIN {subs} s ON s.active IS true AND (s.events IS NULL OR {listed})   -- none listed: every kind
        ORDER BY {order}, s.id
        RETURNING id""").bindparams(bindparam("now", type_=DateTime())).columns(OUTBOX.c.id)
    return fast.Statement(sql)


_WEBHOOK_ROWS: dict[str, Any] = {}
_HANDLES = "hexie_outbox_handles"


def resolve_pending(session: Session) -> None:
    """After the commit: the ids of the webhook rows written with it join :func:`pending`."""
    for item in session.info.pop(_HANDLES, ()):
        ids = sorted(row[0] for row in item.rows or ())   # the order written (SQLite returns any order)
        if ids:
            pending(session).setdefault("webhook", []).extend(ids)


def write_events(session: Session, events: Iterable[dict[str, Any]], now: datetime) -> None:
    """One webhook row per (event, active subscription listing it), oldest event first.

    The rows are written by one statement (on PostgreSQL it travels with the COMMIT); their
    ids join :func:`pending` after the commit (:func:`resolve_pending`).
    """
    events = [e for e in events if e.get("event") in EVENT_KINDS]
    if not events:
        return
    dialect = session.get_bind().dialect.name
    stmt = _WEBHOOK_ROWS.get(dialect)
    if stmt is None:
        stmt = _WEBHOOK_ROWS[dialect] = _webhook_rows(dialect)
    from hexie.models.db import json_dumps
    payloads = [json_dumps(e) for e in events]
    session.info.setdefault(_HANDLES, []).append(fast.defer(session, stmt, {
        "now": now, "events": "[" + ", ".join(payloads) + "]" if dialect == "postgresql" else json_dumps(payloads)}))


# --------------------------------------------------------------- sending
def claim(engine: Any, *where: Any, lease: timedelta, limit: int = 100) -> list[Row]:
    """Take up to ``limit`` due pending rows matching ``where`` for sending (whole rows, by id).

    Rows another sender holds (locked now, or leased) are skipped, never waited for.
    """
    now = engine.clock()
    due = (select(OUTBOX.c.id).where(OUTBOX.c.status == "pending", OUTBOX.c.next_attempt_at <= now, *where)
           .order_by(OUTBOX.c.id).limit(limit).with_for_update(skip_locked=True))
    stmt = (update(OUTBOX).where(OUTBOX.c.id.in_(due.scalar_subquery()))
            .values(claim_token=secrets.token_hex(16), next_attempt_at=now + lease)
            .returning(*OUTBOX.c))
    with engine.session_factory() as s, s.begin():
        rows = s.connection().execute(stmt).all()
    return sorted(rows, key=lambda r: r.id)


def _finish_values(engine: Any, row: Row, error: str | None, policy: RetryPolicy,
                   confirmed: bool) -> dict[str, Any]:
    now = engine.clock()
    attempts = row.attempts + 1
    if error is None:
        values: dict[str, Any] = {"status": "delivered", "delivered_at": now if confirmed else None,
                                  "last_error": None}
    elif attempts >= policy.max_attempts:
        values = {"status": "failed", "last_error": error[:2000]}
    else:
        values = {"last_error": error[:2000], "next_attempt_at": now + timedelta(seconds=policy.delay(attempts))}
    return {"attempts": attempts, **values}


_FINISH: dict[tuple[tuple[str, ...], bool], fast.Statement] = {}


def _finish_statement(columns: tuple[str, ...], checked: bool = False) -> fast.Statement:
    """``UPDATE outbox SET … WHERE id = ? AND claim_token = ? AND status = 'pending'`` for these
    columns, built once (``checked``: the server refuses it when the row is no longer ours)."""
    from sqlalchemy import bindparam
    found = _FINISH.get((columns, checked))
    if found is None:
        stmt = (update(OUTBOX).where(OUTBOX.c.id == bindparam("b_id"), OUTBOX.c.claim_token == bindparam("b_token"),
                                     OUTBOX.c.status == "pending")
                .values(**{c: bindparam(f"v_{c}", type_=OUTBOX.c[c].type) for c in columns}))
        found = _FINISH[(columns, checked)] = fast.Statement(stmt, checked=checked)
    return found


def _finish_params(row: Row, values: Mapping[str, Any]) -> dict[str, Any]:
    return {"b_id": row.id, "b_token": row.claim_token, **{f"v_{k}": v for k, v in values.items()}}


class _NotOurs(Exception):
    """A claimed row was taken over by another sender meanwhile (its lease ran out)."""


def finish(engine: Any, row: Row, error: str | None, policy: RetryPolicy, *,
           session: Session | None = None, confirmed: bool = True) -> str | None:
    """Record how sending a claimed row went; returns its status (None: no longer ours).

    ``row`` is as :func:`claim` returned it. With ``session``, the update joins that
    session's transaction (the caller commits). ``confirmed=False``: recorded as sent
    before the receiver confirmed it (a channel's commit point), ``delivered_at`` is set by
    :func:`confirm` once it has; a row left ``delivered`` without it is in doubt.
    """
    if session is not None:
        values = _finish_values(engine, row, error, policy, confirmed)
        done = fast.run(session, _finish_statement(tuple(values)), _finish_params(row, values)).rowcount
        return values.get("status", "pending") if done == 1 else None
    return finish_many(engine, [(row, error)], policy, confirmed=confirmed)[row.id]


def finish_many(engine: Any, outcomes: list[tuple[Row, str | None]], policy: RetryPolicy, *,
                confirmed: bool = True) -> dict[int, str | None]:
    """Record several sendings in one transaction (on PostgreSQL: the updates and the COMMIT in
    one round trip); row id -> its status (None: no longer ours, nothing written for it)."""
    out: dict[int, str | None] = {}
    written = []
    with engine.session_factory() as s:
        for row, error in outcomes:
            values = _finish_values(engine, row, error, policy, confirmed)
            item = fast.defer(s, _finish_statement(tuple(values)), _finish_params(row, values))
            written.append((row, values, item))
        fast.commit(s)
        s.commit()
    for row, values, item in written:
        out[row.id] = values.get("status", "pending") if item.rowcount == 1 else None
    return out


def finish_sent(engine: Any, rows: list[Row], policy: RetryPolicy, *, confirmed: bool) -> bool:
    """Record rows as sent, all or none of them: False (nothing written) when one of them is no
    longer ours. On PostgreSQL the updates travel with the COMMIT and the server checks them."""
    values = _finish_values(engine, rows[0], None, policy, confirmed)
    statement = _finish_statement(tuple(values), checked=True)
    try:
        with engine.session_factory() as s:
            for row in rows:
                fast.defer(s, statement, _finish_params(row, {**values, "attempts": row.attempts + 1}),
                           conflict=_NotOurs)
            fast.commit(s)
            s.commit()
    except _NotOurs:
        return False
    return True


_CONFIRM = None


def confirm(engine: Any, row_ids: list[int]) -> None:
    """The receiver confirmed rows recorded as sent at a commit point: they are no longer in doubt."""
    global _CONFIRM
    from sqlalchemy import bindparam
    if _CONFIRM is None:
        _CONFIRM = fast.Statement(update(OUTBOX).where(OUTBOX.c.id == bindparam("b_id"),
                                                       OUTBOX.c.status == "delivered",
                                                       OUTBOX.c.delivered_at.is_(None))
                                  .values(delivered_at=bindparam("v_at", type_=OUTBOX.c.delivered_at.type)))
    now = engine.clock()
    with engine.session_factory() as s:   # on PostgreSQL: the updates and the COMMIT in one round trip
        for row_id in row_ids:
            fast.defer(s, _CONFIRM, {"b_id": row_id, "v_at": now})
        fast.commit(s)
        s.commit()


def drop(engine: Any, rows: list[Row], reason: str) -> None:
    """Never send these claimed rows: they become ``dropped``, ``reason`` in ``last_error``, no
    try counted (a notification whose recipient may no longer see its case). One transaction; a
    row no longer ours (its lease ran out) is left to its new sender, which checks it again."""
    if not rows:
        return
    statement = _finish_statement(("status", "last_error"))
    with engine.session_factory() as s:
        for row in rows:
            fast.defer(s, statement, _finish_params(row, {"status": "dropped", "last_error": reason}))
        fast.commit(s)
        s.commit()


def give_up(engine: Any, row_id: int, error: str) -> None:
    """Mark a row failed without another try (its subscription was switched off, ...)."""
    with engine.session_factory() as s, s.begin():
        s.execute(update(OUTBOX).where(OUTBOX.c.id == row_id, OUTBOX.c.status == "pending")
                  .values(status="failed", last_error=error))
