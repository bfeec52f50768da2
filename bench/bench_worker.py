"""The worker's send rate: outbox rows per second out to an SMTP server and a webhook receiver.

Both servers run in this process on 127.0.0.1 (an ``aiosmtpd`` controller that accepts and
drops every message, a threaded ``http.server`` that answers 200 to every POST). The rows are
what real steps write: each round first runs ``bench/definitions/approval.yaml`` steps through
``WorkflowService.fire`` with e-mail configured, every person with an address and one webhook
subscription to every event (not timed), then times the worker's two senders until the outbox
is empty: ``channels.send_pending`` (claim, compose the bilingual mail, the SMTP transaction
with the outbox's commit point inside it, confirm) and ``webhooks.deliver_pending`` (claim,
sign, POST, record a batch of outcomes).

**Baseline:** a bare loop doing the same I/O for the same number of messages, no database:
the same SMTP conversation on one connection (NOOP, MAIL, RCPT, DATA of an already composed
message of the same size) and the same signed POST with urllib. Rounds alternate; figures
are medians.

    .venv/bin/python bench/bench_worker.py                  # both databases, ~1 min each
    .venv/bin/python bench/bench_worker.py --db postgres --steps 600 --rounds 5
"""
from __future__ import annotations

import argparse
import smtplib
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from common import bench_org, fresh_pg, fresh_sqlite, make_bench_engine, median, table, write_result

from bench_step import STEPS, hexie_round, start_cases


# --- the two local servers ---------------------------------------------------------------

class _Sink:
    async def handle_DATA(self, server, session, envelope):   # noqa: ANN001, N802 (aiosmtpd's protocol)
        return "250 OK"


class Receiver(BaseHTTPRequestHandler):
    """Answers 200 to every POST (and counts them)."""

    count = 0

    def do_POST(self) -> None:   # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.count += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def start_servers() -> tuple[Any, ThreadingHTTPServer, int, int]:
    import socket
    from aiosmtpd.controller import Controller
    with socket.socket() as probe:          # a free port (aiosmtpd checks its own by connecting)
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(_Sink(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return smtp, http, smtp_port, http.server_address[1]


# --- Hexie's worker ------------------------------------------------------------------------

def setup(engine, smtp_port: int, http_port: int) -> None:
    from sqlalchemy import select
    from hexie.models import User, WebhookSubscription
    from hexie.workflows import channels
    channels.configure(engine, {"HEXIE_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
                                "HEXIE_MAIL_FROM": "hexie@example.org"})
    with engine.transaction() as s:
        for user in s.scalars(select(User)):
            user.email = f"{user.username}@example.org"
        s.add(WebhookSubscription(url=f"http://127.0.0.1:{http_port}/hook", secret="bench-secret",
                                  events=None, active=True))


def pending(engine) -> dict[str, int]:
    from sqlalchemy import func, select
    from hexie.models import OutboxMessage
    with engine.session_factory() as s:
        return dict(s.execute(select(OutboxMessage.kind, func.count()).where(OutboxMessage.status == "pending")
                              .group_by(OutboxMessage.kind)).all())


def hexie_send(engine) -> tuple[int, float]:
    """(rows sent, seconds) for the worker's senders until the outbox is empty."""
    from hexie.workflows import channels, webhooks
    start = time.perf_counter()
    sent = channels.send_pending(engine) + webhooks.deliver_pending(engine)
    return sent, time.perf_counter() - start


def sample_rows(engine, limit: int = 5) -> tuple[Any, Any]:
    """One pending e-mail row and one webhook row as they are (for the bare loop's messages)."""
    from sqlalchemy import select
    from hexie.models import OutboxMessage
    with engine.session_factory() as s:
        mail = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "notification",
                                                     OutboxMessage.status == "pending").limit(1)).first()
        hook = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "webhook",
                                                     OutboxMessage.status == "pending").limit(1)).first()
        return (mail.id, dict(mail.payload)), (hook.id, hook.event, dict(hook.payload))


# --- the bare loop --------------------------------------------------------------------------

def bare_send(engine, mails: int, hooks: int, smtp_port: int, http_port: int, mail_row, hook_row) -> tuple[int, float]:
    """The same I/O without a database: ``mails`` SMTP transactions on one connection, ``hooks`` POSTs."""
    from hexie.workflows import channels
    from hexie.workflows.webhooks import (DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, USER_AGENT, body_bytes,
                                          sign)
    channel = channels.writable_channels(engine)["email"]
    from types import SimpleNamespace
    row = SimpleNamespace(id=mail_row[0], payload=mail_row[1], event="task_offered")
    message = channels._message(row)
    data = channel.compose(message).as_bytes()
    body = body_bytes(hook_row[2])
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
               EVENT_HEADER: hook_row[1], DELIVERY_HEADER: str(hook_row[0]), SIGNATURE_HEADER: sign("bench-secret", body)}
    url = f"http://127.0.0.1:{http_port}/hook"
    start = time.perf_counter()
    smtp = smtplib.SMTP("127.0.0.1", smtp_port, timeout=20)
    smtp.ehlo()
    for _ in range(mails):
        smtp.noop()
        smtp.mail("hexie@example.org")
        smtp.rcpt(message.to)
        smtp.data(data)
    smtp.quit()
    for _ in range(hooks):
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:   # noqa: S310 (loopback)
            assert 200 <= response.status < 300
    return mails + hooks, time.perf_counter() - start


def bench_db(kind: str, args, smtp_port: int, http_port: int) -> dict[str, Any]:
    url = fresh_sqlite("worker") if kind == "sqlite" else fresh_pg("hexie_bench_worker")
    engine, service, _ = make_bench_engine(url, org=bench_org(2, 2))
    setup(engine, smtp_port, http_port)
    per_round = args.steps // len(STEPS)
    rounds = []
    hexie_round(engine, service, start_cases(engine, service, 10))     # warm-up, and rows to look at
    mail_row, hook_row = sample_rows(engine)
    hexie_send(engine)
    for r in range(args.rounds):
        hexie_round(engine, service, start_cases(engine, service, per_round))   # the rows to send (not timed)
        waiting = pending(engine)
        mails, hooks = waiting.get("notification", 0), waiting.get("webhook", 0)
        bare_n, bare_s = bare_send(engine, mails, hooks, smtp_port, http_port, mail_row, hook_row)
        sent, seconds = hexie_send(engine)
        left = pending(engine)
        row = {"email_rows": mails, "webhook_rows": hooks, "hexie_sent": sent, "left": left,
               "hexie_rows_per_s": sent / seconds, "bare_per_s": bare_n / bare_s}
        row["ratio"] = row["hexie_rows_per_s"] / row["bare_per_s"]
        rounds.append(row)
        print(f"[{kind}] round {r + 1}: {mails} e-mails + {hooks} webhooks: hexie {row['hexie_rows_per_s']:,.0f} rows/s"
              f"  bare loop {row['bare_per_s']:,.0f}/s  ratio {row['ratio']:.2f}", flush=True)
    engine.session_factory.kw["bind"].dispose()
    return {"url": url.split("@")[-1], "rounds": rounds,
            "hexie_rows_per_s": median([r["hexie_rows_per_s"] for r in rounds]),
            "bare_per_s": median([r["bare_per_s"] for r in rounds]),
            "ratio": median([r["ratio"] for r in rounds])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--steps", type=int, default=300, help="steps whose rows each round sends")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    smtp, http, smtp_port, http_port = start_servers()
    results = {}
    try:
        for kind in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
            results[kind] = bench_db(kind, args, smtp_port, http_port)
    finally:
        smtp.stop()
        http.shutdown()
    rows = [[k, f"{r['rounds'][0]['email_rows'] + r['rounds'][0]['webhook_rows']:,} rows/round",
             r["hexie_rows_per_s"], r["bare_per_s"], r["ratio"]] for k, r in results.items()]
    print()
    print(table(["database", "rows", "worker rows/s", "bare loop msgs/s", "ratio"], rows))
    path = write_result("worker", {"results": results, "smtp": "aiosmtpd on 127.0.0.1",
                                   "webhook_receiver": "http.server (threaded) on 127.0.0.1"})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
