"""The endpoints of the JSON API (interfaces.md, "HTTP API").

Thin handlers: parse (schemas), call :class:`WorkflowService` / :class:`CaseQueries`
(or :mod:`hexie.workflows.webhooks`), dump (schemas). No rule is decided here; every
refusal is the engine's, translated once by the blueprint's error handlers.
"""
from __future__ import annotations

from typing import Any

from flask import Response, g, request
from sqlalchemy import select

from hexie.models import Attachment, Case, Task, User
from hexie.models.db import database_unavailable
from hexie.workflows import webhooks
from hexie.workflows.errors import BadRequest, Invalid, NotFound
from hexie.workflows.ledger import fund_labels
from hexie.workflows.queries import task_row

from ..forms import check_upload
from ..views.files import store_uploads
from . import bp
from .auth import issue_token
from .present import locale_of, process_detail, process_summary
from .routing import hexie, json_response, operation
from .schemas import (
    ActionSchema, AttachmentSchema, CaseListQuery, CaseSchema, CaseStartSchema, CaseSummarySchema, EmptySchema,
    HandoverSchema, HistoryEventSchema, LedgerEntrySchema, LedgerListQuery, LedgerSummaryQuery,
    LedgerSummarySchema, ProcessSchema, ProcessSummarySchema, TaskDoneSchema, TaskListQuery, TaskSchema,
    TokenRequestSchema, TokenSchema, WebhookCreateSchema, WebhookSchema,
)

ERR = None  # responses documented with the error schema (see openapi.py)
CASE_ID = {"case_id": "integer"}
TASK_ID = {"task_id": "integer"}


def _paged(page: Any, schema: Any) -> Response:
    """A list answer: the items as a JSON array, the paging in headers."""
    headers = {"X-Total-Count": str(page.total), "X-Page": str(page.page), "X-Per-Page": str(page.per_page),
               "X-Pages": str(page.pages)}
    return json_response(schema(many=True).dump(page.items), headers=headers)


# ------------------------------------------------------------------ sign-in
@operation(bp, "/token", "POST", summary="Get an API token / 获取令牌", tag="auth", auth=False,
           body=TokenRequestSchema, body_required=True,
           responses={200: ("a token for the Authorization: Bearer header", TokenSchema),
                      400: ("malformed body", ERR), 401: ("wrong username or password", ERR),
                      429: ("too many wrong passwords for this username: wait a minute", ERR)})
def create_token(body: dict[str, Any]) -> Response:
    """Exchange a username and password for a signed, time-limited token."""
    return json_response(TokenSchema().dump(issue_token(body["username"], body["password"])))


# ---------------------------------------------------------------- processes
@operation(bp, "/processes", "GET", summary="List processes / 流程列表", tag="processes",
           responses={200: ("the current version of every process", ProcessSummarySchema(many=True))})
def list_processes() -> Response:
    """Every process definition, at its current version."""
    engine, locale = hexie()["engine"], locale_of(g.actor)
    items = []
    for key in sorted(engine.processes):
        spec, _, version = engine.current(key)
        items.append(process_summary(spec, version, locale))
    return json_response(ProcessSummarySchema(many=True).dump(items))


@operation(bp, "/processes/<process>", "GET", summary="One process definition / 流程定义", tag="processes",
           path_params={"process": "string"},
           responses={200: ("states, transitions and fields, with their labels", ProcessSchema),
                      404: ("no such process", ERR)})
def get_process(process: str) -> Response:
    """The current definition of a process: its states, transitions and fields."""
    spec, _, version = hexie()["engine"].current(process)
    return json_response(ProcessSchema().dump(process_detail(spec, version, locale_of(g.actor))))


# -------------------------------------------------------------------- cases
@operation(bp, "/cases", "POST", summary="Start a case / 发起案件", tag="cases", body=CaseStartSchema,
           body_required=True,
           responses={201: ("the new case", CaseSchema), 403: ("may not start it at this unit", ERR),
                      404: ("no such process", ERR), 422: ("form or unit invalid; details per field", ERR)})
def start_case(body: dict[str, Any]) -> Response:
    """Open a case of ``process`` at ``org_unit`` with the first form filled."""
    state = hexie()
    case_id = state["service"].start_case(g.actor, body["process"], body["org_unit"], body["data"],
                                          comment=body["comment"])
    try:
        case = state["queries"].case(g.actor, case_id)
    except NotFound:  # a confidential case its starter does not work on: she may not read it back
        case = {"id": case_id, "process": body["process"]}
    return json_response(CaseSchema().dump(case), 201, {"Location": f"{request.base_url}/{case_id}"})


@operation(bp, "/cases", "GET", summary="List cases / 案件列表", tag="cases", query=CaseListQuery,
           responses={200: ("cases visible to the caller, newest first; paging in X-Total-Count, "
                            "X-Page, X-Per-Page, X-Pages", CaseSummarySchema(many=True))})
def list_cases(query: dict[str, Any]) -> Response:
    """Cases the caller may see, filtered by process, state and org unit (its subtree)."""
    _check_filters(query)
    page = hexie()["queries"].cases(g.actor, **query)
    return _paged(page, CaseSummarySchema)


@operation(bp, "/cases/<case_id>", "GET", summary="One case / 案件详情", tag="cases", path_params=CASE_ID,
           responses={200: ("the case; actions: the triggers the caller may fire now", CaseSchema),
                      404: ("no such case, or not visible to the caller", ERR)})
def get_case(case_id: int) -> Response:
    """A case with its data (sensitive fields masked unless the caller works it), open tasks and actions."""
    return json_response(CaseSchema().dump(hexie()["queries"].case(g.actor, case_id)))


@operation(bp, "/cases/<case_id>/actions/<trigger>", "POST", summary="Fire an action / 执行操作", tag="cases",
           path_params={**CASE_ID, "trigger": "string"}, body=ActionSchema,
           responses={200: ("the case after the action (for a quorum vote that does not yet move it: "
                            "the case, with outcome.outcome = voted)", CaseSchema),
                      403: ("may see the case but not do this", ERR),
                      404: ("no such case or action, or not visible", ERR),
                      409: ("stale lock_version, task taken by someone else, case moved on, "
                            "already voted", ERR),
                      422: ("not allowed now: guard failed, comment missing, form invalid; "
                            "details per field", ERR)})
def fire_action(case_id: int, trigger: str, body: dict[str, Any]) -> Response:
    """Fire ``trigger`` on the case, with the form ``data``, a ``comment`` and the ``lock_version`` read.

    An ``Idempotency-Key`` header (any 1 to 100 printable characters the client chooses) makes
    a retry safe: sent again once the action is committed (after a 503, a lost answer), it
    gets the same answer with ``outcome.repeated`` true, and nothing is done twice.
    """
    state = hexie()
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 100 and key.isascii() and key.isprintable()):
        raise BadRequest("Idempotency-Key 无效", "Idempotency-Key must be 1 to 100 printable ASCII characters",
                         {"Idempotency-Key": "invalid"})
    result = state["service"].fire(g.actor, case_id, trigger, data=body["data"], comment=body["comment"],
                                   lock_version=body["lock_version"], request_key=key)
    outcome = {k: result[k] for k in ("outcome", "state", "votes", "quorum", "repeated") if k in result}
    try:
        case = state["queries"].case(g.actor, case_id)
    except NotFound:  # the action took the case out of the caller's sight: say only what she did
        case = {"id": case_id, "state": result.get("state")}
    except Exception as err:  # committed, but the database went away before we could read it back
        if not database_unavailable(err):
            raise
        case = {"id": case_id, "state": result.get("state")}
    return json_response(CaseSchema().dump({**case, "outcome": outcome}))


@operation(bp, "/cases/<case_id>/history", "GET", summary="A case's history / 办理记录", tag="cases",
           path_params=CASE_ID,
           responses={200: ("the audit events, oldest first", HistoryEventSchema(many=True)),
                      404: ("no such case, or not visible", ERR)})
def case_history(case_id: int) -> Response:
    """Who did what and when: every audit event of the case, oldest first."""
    return json_response(HistoryEventSchema(many=True).dump(hexie()["queries"].history(g.actor, case_id)))


@operation(bp, "/cases/<case_id>/attachments", "POST", summary="Attach a file / 上传附件", tag="cases",
           path_params=CASE_ID,
           description="multipart/form-data with `field` (a file field of the case's process) and `file` "
                       "(PDF, JPEG, PNG, ...; at most 10 MiB, its leading bytes must match its type). Only to a file "
                       "field of a form the caller may submit now (an action she may fire, a parallel task she may "
                       "mark done). The answer's `id` goes into the field's value when the form "
                       "is submitted: `data: {FIELD: id}` (a list of ids for `multiple`).",
           responses={201: ("the stored attachment", AttachmentSchema),
                      400: ("no field or no file in the multipart body", ERR),
                      403: ("may see the case, but the field is in no form she may submit now", ERR),
                      404: ("no such case, or not visible", ERR),
                      422: ("not a file field of the process, or a refused file (type, content, size)", ERR)})
def upload_attachment(case_id: int) -> Response:
    """Store one file for a ``file`` field of the case, outside the web root."""
    field, storage = request.form.get("field", ""), request.files.get("file")
    missing = {name: "必填 / required" for name, value in (("field", field), ("file", storage)) if not value}
    if missing:
        raise BadRequest("请以 multipart/form-data 提交 field 和 file", "send field and file as multipart/form-data",
                         missing)
    problem = check_upload(storage)
    if problem:
        raise Invalid("文件不被接受", "the file is refused", {"file": problem})
    ((_, attachment_id),) = store_uploads(g.actor, case_id, [(field, storage)])
    with hexie()["engine"].session_factory() as s:
        row = s.get(Attachment, attachment_id)
        return json_response(AttachmentSchema().dump(row), 201)


# -------------------------------------------------------------------- tasks
@operation(bp, "/tasks", "GET", summary="Task inbox / 待办", tag="tasks", query=TaskListQuery,
           responses={200: ("view=mine: allocated to me; available: offered to my roles in my area; overdue; "
                            "escalated. Paging in X-Total-Count, X-Page, X-Per-Page, X-Pages",
                            TaskSchema(many=True))})
def list_tasks(query: dict[str, Any]) -> Response:
    """The caller's work items."""
    _check_filters(query)
    view = query.pop("view")
    return _paged(hexie()["queries"].tasks(g.actor, view, **query), TaskSchema)


def _task_op(rule: str, summary: str, body: Any = EmptySchema, extra: dict[int, tuple[str, Any]] | None = None):
    return operation(bp, rule, "POST", summary=summary, tag="tasks", path_params=TASK_ID, body=body,
                     body_required=body is not EmptySchema,
                     responses={200: ("the task", TaskSchema), 403: ("not allowed to do this", ERR),
                                404: ("no such task, or not visible", ERR),
                                409: ("taken by someone else, or already closed", ERR), **(extra or {})})


@_task_op("/tasks/<task_id>/claim", "Claim a task / 领取任务")
def claim_task(task_id: int, body: dict[str, Any]) -> Response:
    """Take an offered task: it becomes the caller's alone."""
    return _task_answer(hexie()["service"].claim(g.actor, task_id))


@_task_op("/tasks/<task_id>/release", "Release a task / 退回任务池")
def release_task(task_id: int, body: dict[str, Any]) -> Response:
    """Give the caller's task back to the pool."""
    return _task_answer(hexie()["service"].release(g.actor, task_id))


@_task_op("/tasks/<task_id>/done", "Mark a parallel task done / 完成并行任务", TaskDoneSchema,
          {422: ("not a parallel task, or its form is invalid; details per field", ERR)})
def task_done(task_id: int, body: dict[str, Any]) -> Response:
    """Mark one parallel task done, saving its form ``data``."""
    return _task_answer(hexie()["service"].done(g.actor, task_id, body["data"]))


@_task_op("/tasks/<task_id>/delegate", "Delegate a task / 转交任务", HandoverSchema,
          {422: ("no such user, or she may not take this task", ERR)})
def delegate_task(task_id: int, body: dict[str, Any]) -> Response:
    """Hand the caller's task to a colleague who may take it."""
    return _task_answer(hexie()["service"].delegate(g.actor, task_id, body["to"]))


@_task_op("/tasks/<task_id>/reassign", "Reassign a task (managers) / 改派任务", HandoverSchema,
          {422: ("no such user, or she may not take this task", ERR)})
def reassign_task(task_id: int, body: dict[str, Any]) -> Response:
    """A manager of the area gives the task to someone else."""
    return _task_answer(hexie()["service"].reassign(g.actor, task_id, body["to"]))


def _task_answer(task_id: int) -> Response:
    """The task as it is after the caller's verb.

    Read by id, not through the case: the verb just succeeded, and after a delegation
    of a confidential case the caller may no longer see the case itself.
    """
    engine = hexie()["engine"]
    with engine.session_factory() as s:
        task = s.get(Task, task_id)
        case = s.get(Case, task.case_id)
        ids = [i for i in (task.assignee_id,) if i is not None]
        people = dict(s.execute(select(User.id, User.username).where(User.id.in_(ids))).all()) if ids else {}
        row = task_row(task, people, engine.clock())
        row["subject"] = None if case.confidential else case.subject
    return json_response(TaskSchema().dump(row))


def _check_filters(query: dict[str, Any]) -> None:
    """Filters naming no process or state are malformed requests, not empty results."""
    processes = hexie()["engine"].processes
    if query.get("process") and query["process"] not in processes:
        raise BadRequest("没有这个流程", f"unknown process {query['process']!r}", {"process": "unknown"})
    if query.get("state"):
        specs = [processes[query["process"]]] if query.get("process") else processes.values()
        if not any(s.name == query["state"] for spec in specs for s in spec.states):
            raise BadRequest("没有这个环节", f"unknown state {query['state']!r}", {"state": "unknown"})


# ------------------------------------------------------------------- ledger
@operation(bp, "/ledger", "GET", summary="Ledger entries / 资金明细", tag="ledger", query=LedgerListQuery,
           responses={200: ("the postings to earmarked funds of the cases visible to the caller, newest first; "
                            "paging in X-Total-Count, X-Page, X-Per-Page, X-Pages", LedgerEntrySchema(many=True))})
def list_ledger(query: dict[str, Any]) -> Response:
    """Every disbursement (and refund) posted to a fund, filtered by process and fund."""
    _check_ledger_filters(query)
    return _paged(hexie()["ledger"].entries(g.actor, **query), LedgerEntrySchema)


@operation(bp, "/ledger/summary", "GET", summary="Money by fund / 资金统计", tag="ledger", query=LedgerSummaryQuery,
           responses={200: ("totals per fund, net per town and fund, and per month posted, "
                            "of the cases visible to the caller", LedgerSummarySchema)})
def ledger_summary(query: dict[str, Any]) -> Response:
    """Paid, refunded and net per fund, town and month: what an auditor reconciles."""
    labels = _check_ledger_filters(query)
    summary = hexie()["ledger"].summary(g.actor, **query)
    locale = locale_of(g.actor)
    funds = []
    for row in summary["funds"]:
        text = labels.get((row["process"], row["fund"]))
        funds.append({**row, "label": text.get(locale) if text is not None else row["fund"],
                      "label_i18n": {"zh": text.zh, "en": text.en} if text is not None else None})
    towns = [{**town, "net": {f"{key}/{fund}": amount for (key, fund), amount in town["net"].items()}}
             for town in summary["towns"]]
    return json_response(LedgerSummarySchema().dump({**summary, "funds": funds, "towns": towns}))


def _check_ledger_filters(query: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """As for cases: a process or fund that no definition has is a malformed request (400).

    Returns every fund's label, keyed by (process, fund).
    """
    _check_filters(query)
    labels = fund_labels(spec for _, spec in sorted(hexie()["engine"].processes.items()))
    fund = query.get("fund")
    if fund and not any(f == fund and query.get("process") in (None, p) for p, f in labels):
        raise BadRequest("没有这个资金来源", f"unknown fund {fund!r}", {"fund": "unknown"})
    return labels


# ----------------------------------------------------------------- webhooks
@operation(bp, "/webhooks", "GET", summary="List webhooks (admin) / Webhook 列表", tag="webhooks",
           responses={200: ("every subscription (secrets not shown)", WebhookSchema(many=True)),
                      403: ("administrators only", ERR)})
def list_webhooks() -> Response:
    """The outside URLs told about events."""
    return json_response(WebhookSchema(many=True).dump(webhooks.list_subscriptions(hexie()["engine"], g.actor)))


@operation(bp, "/webhooks", "POST", summary="Subscribe a URL (admin) / 新增 Webhook", tag="webhooks",
           body=WebhookCreateSchema, body_required=True,
           responses={201: ("the subscription, with its secret (shown this once)", WebhookSchema),
                      403: ("administrators only", ERR), 422: ("invalid events or url", ERR)})
def create_webhook(body: dict[str, Any]) -> Response:
    """POSTs of case_started, state_changed, task_created, case_closed, signed with the secret."""
    sub = webhooks.create_subscription(hexie()["engine"], g.actor, body["url"], body["events"], body["secret"],
                                       body["active"])
    return json_response(WebhookSchema().dump(sub), 201, {"Location": f"{request.base_url}/{sub['id']}"})


@operation(bp, "/webhooks/<webhook_id>", "DELETE", summary="Remove a webhook (admin) / 删除 Webhook",
           tag="webhooks", path_params={"webhook_id": "int32"},
           responses={204: ("removed", None), 403: ("administrators only", ERR), 404: ("no such webhook", ERR)})
def delete_webhook(webhook_id: int) -> Response:
    """Remove the subscription and its pending deliveries."""
    webhooks.delete_subscription(hexie()["engine"], g.actor, webhook_id)
    return Response(status=204)
