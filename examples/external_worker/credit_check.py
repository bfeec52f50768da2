"""The county credit cooperative's eligibility check, as an external worker of Hexie.

It polls ``POST /api/v1/external-tasks/fetch-and-lock`` for the topic ``credit_check``
(examples/external_worker/loan_precheck.yaml), decides on the task's variables and
completes the task with ``eligible`` or ``not_eligible``; when its own systems fail it
reports a failure, with one retry fewer and a pause before the next try.

    HEXIE_API=http://127.0.0.1:5000/api/v1 HEXIE_TOKEN=$(hexie token coop) \\
        python examples/external_worker/credit_check.py

Run several, on several hosts: each task is locked to one worker at a time.
"""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any, Callable

TOPIC = "credit_check"
LOCK_MS = 60_000
Post = Callable[[str, dict[str, Any]], tuple[int, Any]]


def decide(variables: dict[str, Any]) -> tuple[str, str]:
    """The cooperative's rule: 18 to 60 years old, at most 50,000 yuan (a sketch of the real check)."""
    age = variables.get("applicant_age")
    amount = Decimal(str(variables.get("loan_amount") or "0"))
    if age is None:
        raise ValueError("applicant_age is missing")
    if 18 <= int(age) <= 60 and amount <= Decimal("50000"):
        return "eligible", f"信用良好，可贷 {amount} 元 / good standing, {amount} yuan"
    return "not_eligible", "不符合信用社贷款条件 / outside the cooperative's lending rules"


def run_once(post: Post, worker_id: str, max_tasks: int = 10) -> int:
    """Fetch, decide and complete one batch; returns how many tasks were completed."""
    status, tasks = post("/external-tasks/fetch-and-lock", {
        "worker_id": worker_id, "max_tasks": max_tasks, "topics": [{"name": TOPIC, "lock_duration_ms": LOCK_MS}]})
    if status != 200:
        raise RuntimeError(f"fetch-and-lock answered {status}: {tasks}")
    done = 0
    for task in tasks:
        try:
            trigger, notes = decide(task["data"])
        except Exception as err:   # our side failed: one retry fewer, try again in a minute
            post(f"/external-tasks/{task['id']}/failure", {
                "worker_id": worker_id, "error": str(err), "retries": max(0, task["retries"] - 1),
                "retry_timeout_ms": 60_000})
            continue
        status, _ = post(f"/external-tasks/{task['id']}/complete", {
            "worker_id": worker_id, "trigger": trigger, "data": {"eligibility_notes": notes}})
        done += status == 200   # 409: our lock ran out and another worker has it
    return done


def http_post(base: str, token: str) -> Post:
    def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")
    return post


def main() -> None:
    post = http_post(os.environ.get("HEXIE_API", "http://127.0.0.1:5000/api/v1"), os.environ["HEXIE_TOKEN"])
    worker_id = f"credit-check@{socket.gethostname()}:{os.getpid()}"
    while True:
        if not run_once(post, worker_id):
            time.sleep(5)


if __name__ == "__main__":
    main()
