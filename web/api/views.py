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
from hexie.workflows import external, notifications, webhooks
from hexie.workflows.errors import BadRequest, Invalid, NotFound
from hexie.workflows.ledger import fund_labels, record_receipt
from hexie.workflows.people import People
from hexie.workflows.consent import Protection
from hexie.workflows.protection import case_code
from hexie.workflows.queries import Page, task_row
from hexie.workflows.saved_views import SavedViews

from ..forms import check_upload
from ..views.consent import page_read as _read   # this request as a read for the access log
from ..views.files import store_uploads
from .blueprint import bp
from .auth import issue_token, revoke_request_token
from .present import locale_of, process_detail, process_summary
from .routing import hexie, json_response, operation
from .schemas import (
    AccessLogEntrySchema, AccessLogQuery, ConsentCreateSchema, ConsentOverrideSchema, ConsentSchema,
    ConsentWithdrawSchema, DeclineSchema,
    ActionSchema, AttachmentSchema, CommentSchema, CaseListQuery, CaseSchema, CaseStartSchema, CaseSummarySchema, EmptySchema,
    BalanceQuery, BalancesSchema, ReceiptCreateSchema,
    HandoverSchema, HistoryEventSchema, OwnerSchema, SuspendSchema, ResumeSchema, TaskSuspendSchema, NoteSchema,
    ConsultSchema, AwaySchema, AwayAnswerSchema, LedgerEntrySchema, LedgerListQuery, LedgerSummaryQuery,
    LedgerSummarySchema, ProcessSchema, ProcessSummarySchema, TaskDoneSchema, TaskListQuery, TaskSchema,
    SavedViewSchema, TokenRequestSchema, TokenRevokedSchema, TokenRevokeSchema, TokenSchema, UpcomingSchema,
    WebhookCreateSchema, WebhookSchema, ReportQuery, ReportSchema, CaseExportSchema,
    OrgUnitCreateSchema, OrgUnitListQuery, OrgUnitPatchSchema, OrgUnitSchema, UserCreateSchema, UserListQuery,
    UserPatchSchema, UserSchema,
    TokenRequestSchema, TokenSchema, WebhookCreateSchema, WebhookSchema,
    DeliveryListQuery, DeliverySchema, ExternalCompleteSchema, ExternalFailureSchema, ExternalLockSchema,
    ExternalRetriesSchema, ExternalTaskSchema, FetchAndLockSchema, NotificationListQuery, NotificationSchema, PreferencesSchema,
    PagingQuery,
)

ERR = None  # responses documented with the error schema (see openapi.py)
CASE_ID = {"case_id": "integer"}
TASK_ID = {"task_id": "integer"}


def _paged(page: Any, schema: Any) -> Response:
    """A list answer: the items as a JSON array, the paging in headers."""
    headers = {"X-Total-Count": str(page.total), "X-Page": str(page.page), "X-Per-Page": str(page.per_page),
               "X-Pages": str(page.pages)}
    return json_response(schema(many=True).dump(page.items), headers=headers)


def _paged_list(items: list[Any], query: dict[str, Any], schema: Any) -> Response:
    """A short list read whole (a person's views, a case's consents), paged like the others."""
    page, per_page = query["page"], query["per_page"]
    return _paged(Page(items[(page - 1) * per_page: page * per_page], len(items), page, per_page), schema)


# ------------------------------------------------------------------ sign-in
@operation(bp, "/token", "POST", summary="Get an API token / 获取令牌", tag="auth", auth=False,
           body=TokenRequestSchema, body_required=True,
           responses={200: ("a token for the Authorization: Bearer header", TokenSchema),
                      400: ("malformed body", ERR), 401: ("wrong username or password", ERR),
                      429: ("too many wrong passwords for this username: wait a minute", ERR)})
def create_token(body: dict[str, Any]) -> Response:
    """Exchange a username and password for a signed, time-limited, revocable token."""
    return json_response(TokenSchema().dump(issue_token(body["username"], body["password"])))


@operation(bp, "/token/revoke", "POST", summary="Revoke this token / 作废当前令牌", tag="auth",
           body=TokenRevokeSchema,
           responses={200: ("how many credentials were revoked", TokenRevokedSchema)})
def revoke_token(body: dict[str, Any]) -> Response:
    """Revoke the token of this request; with ``{"everywhere": true}`` every token and sign-in
    session of its user (sign out everywhere). The token is refused from then on."""
    return json_response(TokenRevokedSchema().dump({"revoked": revoke_request_token(body["everywhere"])}))


# ---------------------------------------------------------------- processes
@operation(bp, "/processes", "GET", summary="List processes / 流程列表", tag="processes", query=PagingQuery,
           responses={200: ("the current version of every process, by key; paging in X-Total-Count, X-Page, "
                            "X-Per-Page, X-Pages", ProcessSummarySchema(many=True))})
def list_processes(query: dict[str, Any]) -> Response:
    """Every process definition, at its current version."""
    engine, locale = hexie()["engine"], locale_of(g.actor)
    items = []
    for key in sorted(engine.processes):
        spec, _, version = engine.current(key)
        items.append(process_summary(spec, version, locale))
    return _paged_list(items, query, ProcessSummarySchema)


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
           responses={201: ("the new case", CaseSchema),
                      403: ("may not start it at this unit, or only the host starts it (starters: [system])", ERR),
                      404: ("no such process", ERR),
                      409: ("a case of this process already has this business_key", ERR),
                      422: ("form or unit invalid; details per field", ERR)})
def start_case(body: dict[str, Any]) -> Response:
    """Open a case of ``process`` at ``org_unit`` with the first form filled."""
    state = hexie()
    case_id = state["service"].start_case(g.actor, body["process"], body["org_unit"], body["data"],
                                          comment=body["comment"], business_key=body["business_key"])
    try:
        case = state["queries"].case(g.actor, case_id)
    except NotFound:  # a confidential case its starter does not work on: she may not read it back
        case = {"id": case_id, "process": body["process"]}
    return json_response(CaseSchema().dump(case), 201, {"Location": f"{request.base_url}/{case_id}"})


@operation(bp, "/cases", "GET", summary="List cases / 案件列表", tag="cases", query=CaseListQuery,
           responses={200: ("cases visible to the caller, newest first; paging in X-Total-Count, "
                            "X-Page, X-Per-Page, X-Pages", CaseSummarySchema(many=True))})
def list_cases(query: dict[str, Any]) -> Response:
    """Cases the caller may see, filtered by process, state, org unit (its subtree) and business key."""
    _check_filters(query)
    page = hexie()["queries"].cases(g.actor, **query, read=_read("search"))   # a lookup's log: from where
    return _paged(page, CaseSummarySchema)


@operation(bp, "/cases/<case_id>", "GET", summary="One case / 案件详情", tag="cases", path_params=CASE_ID,
           responses={200: ("the case; actions: the triggers the caller may fire now", CaseSchema),
                      404: ("no such case, or not visible to the caller", ERR)})
def get_case(case_id: int) -> Response:
    """A case with its data (sensitive fields masked unless the caller works it), open tasks and actions.

    A confidential case's read is recorded in its access log."""
    return json_response(CaseSchema().dump(hexie()["queries"].case(g.actor, case_id, read=_read("case"))))


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


@operation(bp, "/cases/<case_id>/actions/<trigger>/withdraw-vote", "POST",
           summary="Withdraw my vote / 撤回投票", tag="cases", path_params={**CASE_ID, "trigger": "string"},
           body=CommentSchema, body_required=False,
           responses={200: ("the case, with outcome.outcome = vote_withdrawn and the votes left", CaseSchema),
                      404: ("no such case, or not visible", ERR),
                      409: ("no vote of yours to withdraw (the quorum was reached, or you did not vote)", ERR)})
def withdraw_vote(case_id: int, trigger: str, body: dict[str, Any]) -> Response:
    """Take back the caller's vote for ``trigger`` while the quorum is not reached."""
    state = hexie()
    result = state["service"].withdraw_vote(g.actor, case_id, trigger, body.get("comment"))
    outcome = {k: result[k] for k in ("outcome", "votes")}
    return json_response(CaseSchema().dump({**state["queries"].case(g.actor, case_id), "outcome": outcome}))


@operation(bp, "/cases/<case_id>/owner", "POST", summary="Hand a case over / 移交案件", tag="cases",
           path_params=CASE_ID, body=OwnerSchema, body_required=True,
           responses={200: ("the case, with its new owner", CaseSchema),
                      403: ("neither the owner nor a manager of the case's area", ERR),
                      404: ("no such case, or not visible", ERR), 409: ("the case is closed", ERR),
                      422: ("no such person, or she holds no role of the process there", ERR)})
def hand_over_case(case_id: int, body: dict[str, Any]) -> Response:
    """The owner, or a manager of the area, hands the case over; the old owner's open tasks of it go along."""
    state = hexie()
    state["service"].hand_over_case(g.actor, case_id, body["to"], body.get("comment"))
    return _case_answer(case_id)


@operation(bp, "/cases/<case_id>/suspend", "POST", summary="Hold a case / 暂停案件", tag="cases",
           path_params=CASE_ID, body=SuspendSchema, body_required=True,
           responses={200: ("the case, with suspended", CaseSchema),
                      403: ("neither the owner nor a manager of the case's area", ERR),
                      404: ("no such case, or not visible", ERR), 409: ("already held, or closed", ERR),
                      422: ("no reason, or until not in the future", ERR)})
def suspend_case(case_id: int, body: dict[str, Any]) -> Response:
    """Hold the case: no action until resumed (409), timers and due dates stand still, nothing escalates."""
    from hexie.workflows.workday import parse_until
    state = hexie()
    until = parse_until(body.get("until"), state["engine"].timezone)
    state["service"].suspend_case(g.actor, case_id, body["comment"], until)
    return _case_answer(case_id)


@operation(bp, "/cases/<case_id>/resume", "POST", summary="Resume a case / 恢复案件", tag="cases",
           path_params=CASE_ID, body=ResumeSchema,
           responses={200: ("the case; its timers and due dates moved on by the time held", CaseSchema),
                      403: ("neither the owner nor a manager of the case's area", ERR),
                      404: ("no such case, or not visible", ERR), 409: ("not on hold", ERR)})
def resume_case(case_id: int, body: dict[str, Any]) -> Response:
    """End the hold."""
    hexie()["service"].resume_case(g.actor, case_id, body.get("comment"))
    return _case_answer(case_id)


@operation(bp, "/cases/<case_id>/notes", "POST", summary="Add a note / 添加备注", tag="cases",
           path_params=CASE_ID, body=NoteSchema, body_required=True,
           responses={201: ("the history event (kind note)", HistoryEventSchema),
                      404: ("no such case, or not visible", ERR),
                      422: ("no text, or a mention of someone who may not see the case", ERR)})
def add_note(case_id: int, body: dict[str, Any]) -> Response:
    """A note in the history without firing an action; the people mentioned are told (kind mention)."""
    event = hexie()["service"].add_note(g.actor, case_id, body["text"], body["mentions"])
    return json_response(HistoryEventSchema().dump(event), 201)


def _case_answer(case_id: int) -> Response:
    try:
        case = hexie()["queries"].case(g.actor, case_id)
    except NotFound:   # handed over a confidential case: she may no longer see it
        case = {"id": case_id}
    return json_response(CaseSchema().dump(case))


@operation(bp, "/cases/<case_id>/history", "GET", summary="A case's history / 办理记录", tag="cases",
           path_params=CASE_ID, query=PagingQuery,
           responses={200: ("the audit events, oldest first; paging in X-Total-Count, X-Page, X-Per-Page, "
                            "X-Pages", HistoryEventSchema(many=True)),
                      404: ("no such case, or not visible", ERR)})
def case_history(case_id: int, query: dict[str, Any]) -> Response:
    """Who did what and when: every audit event of the case, oldest first (a confidential case's
    read is recorded in its access log)."""
    return _paged_list(hexie()["queries"].history(g.actor, case_id, read=_read("history")), query,
                       HistoryEventSchema)


# ---------------------------------------------------------- data protection
@operation(bp, "/cases/<case_id>/consents", "GET", summary="Consent per agency / 当事人同意记录", tag="protection",
           path_params=CASE_ID, query=PagingQuery,
           responses={200: ("every statement of the survivor's consent, oldest first; paging in X-Total-Count, "
                            "X-Page, X-Per-Page, X-Pages", ConsentSchema(many=True)),
                      404: ("no such case, or not visible", ERR)})
def list_consents(case_id: int, query: dict[str, Any]) -> Response:
    """The survivor's consent for each receiving agency: given, withdrawn, overridden, by whom and when."""
    return _paged_list(Protection(hexie()["engine"]).consents(g.actor, case_id), query, ConsentSchema)


@operation(bp, "/cases/<case_id>/consents", "POST", summary="Record consent / 记录当事人同意", tag="protection",
           path_params=CASE_ID, body=ConsentCreateSchema, body_required=True,
           responses={201: ("the statement recorded; the agency's referral waiting for it opens (given, "
                            "services), or its open referral is cancelled (given: false)", ConsentSchema),
                      403: ("not working the case, not an overseer", ERR),
                      404: ("no such case, or not visible", ERR), 409: ("the case is closed", ERR),
                      422: ("unknown agency or scope; details per field", ERR)})
def record_consent(case_id: int, body: dict[str, Any]) -> Response:
    """Record the survivor's consent for one agency (``given: false`` withdraws it)."""
    row = Protection(hexie()["engine"]).record_consent(g.actor, case_id, body["agency"], body["scope"],
                                                       body["given"], body["note"])
    return json_response(ConsentSchema().dump(row), 201)


@operation(bp, "/cases/<case_id>/consents/withdraw", "POST", summary="Withdraw consent / 撤回同意",
           tag="protection", path_params=CASE_ID, body=ConsentWithdrawSchema, body_required=True,
           responses={201: ("the withdrawal recorded; the agency's open referral task is cancelled",
                            ConsentSchema),
                      403: ("not working the case, not an overseer", ERR),
                      404: ("no such case, or not visible", ERR), 409: ("the case is closed", ERR),
                      422: ("unknown agency or scope", ERR)})
def withdraw_consent(case_id: int, body: dict[str, Any]) -> Response:
    """She takes her consent for one agency back (the same as POST /consents with given: false)."""
    row = Protection(hexie()["engine"]).withdraw_consent(g.actor, case_id, body["agency"], body["scope"],
                                                         body["note"])
    return json_response(ConsentSchema().dump(row), 201)


@operation(bp, "/cases/<case_id>/consents/override", "POST", summary="Refer without consent (overseers) / "
           "紧急情况下未经同意转介", tag="protection", path_params=CASE_ID, body=ConsentOverrideSchema,
           body_required=True,
           responses={201: ("the override recorded (its own audit event); the agency's waiting referral opens",
                            ConsentSchema),
                      403: ("not an overseer of the case's unit", ERR),
                      404: ("no such case, or not visible", ERR), 409: ("the case is closed", ERR),
                      422: ("no reason, unknown agency", ERR)})
def override_consent(case_id: int, body: dict[str, Any]) -> Response:
    """An overseer opens a referral that waits for consent, for a written reason (immediate danger)."""
    row = Protection(hexie()["engine"]).override_consent(g.actor, case_id, body["agency"], body["reason"])
    return json_response(ConsentSchema().dump(row), 201)


@operation(bp, "/cases/<case_id>/access-log", "GET", summary="Who read the case / 查阅记录", tag="protection",
           path_params=CASE_ID, query=AccessLogQuery,
           responses={200: ("reads of the confidential case, newest first (this one included). Paging in "
                            "X-Total-Count, X-Page, X-Per-Page, X-Pages", AccessLogEntrySchema(many=True)),
                      404: ("no such case, or not its owner, someone working it or an overseer", ERR)})
def case_access_log(case_id: int, query: dict[str, Any]) -> Response:
    """Every read of a confidential case (page, API, history, print, export, attachment): who, when,
    what, from where. For the owner, the people working the case and overseers; reading it is logged."""
    page = hexie()["queries"].access_log(g.actor, case_id, page=query["page"], per_page=query["per_page"],
                                         read=_read("access_log"))
    return _paged(page, AccessLogEntrySchema)


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
                            "escalated; team (managers: the open work of their area); upcoming (the work "
                            "timers and follow-ups will open in the next `days`, rows {case_id, process, "
                            "state, trigger, due_at, role, assignee}). Paging in X-Total-Count, X-Page, "
                            "X-Per-Page, X-Pages",
                            TaskSchema(many=True))})
def list_tasks(query: dict[str, Any]) -> Response:
    """The caller's work items."""
    _check_filters(query)
    view, days = query.pop("view"), query.pop("days")
    if view == "upcoming":   # what timers and follow-ups will open: rows of their own shape
        return _paged(hexie()["queries"].upcoming(g.actor, days, process=query.get("process"),
                                                  page=query["page"], per_page=query["per_page"]), UpcomingSchema)
    return _paged(hexie()["queries"].tasks(g.actor, view, **query), TaskSchema)


# ------------------------------------------------------------------ saved views
@operation(bp, "/me/views", "GET", summary="My saved views / 我的视图", tag="me", query=PagingQuery,
           responses={200: ("the caller's saved inbox views, by name; paging in X-Total-Count, X-Page, "
                            "X-Per-Page, X-Pages", SavedViewSchema(many=True))})
def list_views(query: dict[str, Any]) -> Response:
    """Saved inbox views: a name and the query string of GET /tasks."""
    return _paged_list(SavedViews(hexie()["engine"]).list(g.actor), query, SavedViewSchema)


@operation(bp, "/me/views", "POST", summary="Save a view / 保存视图", tag="me", body=SavedViewSchema,
           body_required=True, responses={201: ("the view", SavedViewSchema),
                                          409: ("a view of that name exists", ERR),
                                          422: ("a key or value GET /tasks does not take", ERR)})
def create_view(body: dict[str, Any]) -> Response:
    """Keep a query of GET /tasks under a name (checked as the list would check it)."""
    view = SavedViews(hexie()["engine"]).create(g.actor, body["name"], body["query"])
    return json_response(SavedViewSchema().dump(view), status=201)


@operation(bp, "/me/away", "PUT", summary="I am away / 我要外出", tag="me", body=AwaySchema, body_required=True,
           responses={200: ("the person: until, delegate, and the tasks handed over", AwayAnswerSchema),
                      422: ("a day in the past, or no such delegate", ERR)})
def put_my_away(body: dict[str, Any]) -> Response:
    """While away, work allocated to her goes to the delegate and her open tasks are handed over."""
    return _away(g.actor.username, body)


@operation(bp, "/users/<username>/away", "PUT", summary="Mark someone away (managers, admins) / 设置外出",
           tag="people", path_params={"username": "string"}, body=AwaySchema, body_required=True,
           responses={200: ("the person: until, delegate, and the tasks handed over", AwayAnswerSchema),
                      403: ("the caller manages no area and is no administrator", ERR),
                      404: ("no such person, or not in the caller's area", ERR),
                      422: ("a day in the past, or no such delegate", ERR)})
def put_user_away(username: str, body: dict[str, Any]) -> Response:
    """A manager of her area or an administrator marks her away (or back)."""
    return _away(username, body)


def _away(username: str, body: dict[str, Any]) -> Response:
    from hexie.workflows.workday import end_of_local_day
    state = hexie()
    until = body["until"]
    ends = end_of_local_day(until, state["engine"].timezone) if until else None
    result = state["service"].set_away(g.actor, username, until, body.get("delegate"), ends_at=ends)
    return json_response(AwayAnswerSchema().dump(result))


@operation(bp, "/me/views/<view_id>", "DELETE", summary="Delete a view / 删除视图", tag="me",
           path_params={"view_id": "int32"}, responses={204: ("deleted", None), 404: ("no such view of yours", ERR)})
def delete_view(view_id: int) -> Response:
    SavedViews(hexie()["engine"]).delete(g.actor, view_id)
    return Response(status=204)


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


@_task_op("/tasks/<task_id>/accept", "Accept a referral / 接受转介",
          extra={422: ("not a referral (acceptance: true)", ERR)})
def accept_task(task_id: int, body: dict[str, Any]) -> Response:
    """Accept a referral task: it becomes the caller's (the first who takes it accepts or declines)."""
    return _task_answer(Protection(hexie()["engine"]).accept(g.actor, task_id))


@_task_op("/tasks/<task_id>/decline", "Decline a referral / 拒绝转介", DeclineSchema,
          {422: ("no reason given, or not a referral", ERR)})
def decline_task(task_id: int, body: dict[str, Any]) -> Response:
    """Decline a referral with a reason: the task ends declined and the work returns to the case owner."""
    return _task_answer(Protection(hexie()["engine"]).decline(g.actor, task_id, body["comment"]))


@_task_op("/tasks/<task_id>/release", "Release a task / 退回任务池")
def release_task(task_id: int, body: dict[str, Any]) -> Response:
    """Give the caller's task back to the pool."""
    return _task_answer(hexie()["service"].release(g.actor, task_id))


@_task_op("/tasks/<task_id>/done", "Mark a parallel task done / 完成并行任务", TaskDoneSchema,
          {422: ("not a parallel task, or its form is invalid; details per field; a consult without its "
                 "answer (comment)", ERR)})
def task_done(task_id: int, body: dict[str, Any]) -> Response:
    """Mark one parallel task done, saving its form ``data``; a consult is answered with ``comment``."""
    return _task_answer(hexie()["service"].done(g.actor, task_id, body["data"], comment=body.get("comment")))


@_task_op("/tasks/<task_id>/suspend", "Hold a task / 暂停任务", TaskSuspendSchema,
          {422: ("no reason given", ERR)})
def suspend_task(task_id: int, body: dict[str, Any]) -> Response:
    """Its holder or a manager holds the task: its due date and escalation stand still."""
    return _task_answer(hexie()["service"].suspend_task(g.actor, task_id, body["comment"]))


@_task_op("/tasks/<task_id>/resume", "Resume a task / 恢复任务", ResumeSchema)
def resume_task(task_id: int, body: dict[str, Any]) -> Response:
    """End the task's hold: its due date and escalation move on by the time held."""
    return _task_answer(hexie()["service"].resume_task(g.actor, task_id, body.get("comment")))


@operation(bp, "/tasks/<task_id>/consult", "POST", summary="Consult a colleague / 征求意见", tag="tasks",
           path_params=TASK_ID, body=ConsultSchema, body_required=True,
           responses={201: ("the consult work item (kind consult), allocated to `to`", TaskSchema),
                      403: ("not the task's holder", ERR), 404: ("no such task, or not visible", ERR),
                      409: ("the task is closed, or she has an unanswered consult on it", ERR),
                      422: ("no such colleague, or no question", ERR)})
def consult_task(task_id: int, body: dict[str, Any]) -> Response:
    """Ask a colleague's advice on the caller's task; she answers with POST /tasks/{id}/done {comment}."""
    consult_id = hexie()["service"].consult(g.actor, task_id, body["to"], body["comment"])
    answer = _task_answer(consult_id)
    answer.status_code = 201
    return answer


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
        row = task_row(task, people, engine.clock(), case_held=case.suspended_at is not None)
        row["subject"] = case_code(case.id) if case.confidential else case.subject
    return json_response(TaskSchema().dump(row))


def _check_filters(query: dict[str, Any]) -> None:
    """Filters naming no process or state are malformed requests, not empty results."""
    processes = hexie()["engine"].processes
    if query.get("process") and query["process"] not in processes:
        raise BadRequest("没有这个流程", f"unknown process {query['process']!r}", {"process": "不存在 / unknown"})
    if query.get("state"):
        specs = [processes[query["process"]]] if query.get("process") else processes.values()
        if not any(s.name == query["state"] for spec in specs for s in spec.states):
            raise BadRequest("没有这个环节", f"unknown state {query['state']!r}", {"state": "不存在 / unknown"})


# ------------------------------------------------------------------ reports
@operation(bp, "/reports/<process>", "GET", summary="Cases by unit, state and month / 统计报表", tag="reports",
           path_params={"process": "string"}, query=ReportQuery,
           responses={200: ("the report over the cases visible to the caller; over a confidential process "
                            "counts below 5 (and sums that would give them back) read \"<5\"", ReportSchema)})
def get_report(process: str, query: dict[str, Any]) -> Response:
    """The report of the reports page, with the same small-count suppression."""
    if process not in hexie()["engine"].processes:
        raise NotFound("没有这个流程", f"no process {process!r}")
    report = hexie()["queries"].report(g.actor, process, **query)
    return json_response(ReportSchema().dump(report))


@operation(bp, "/cases/<case_id>/export", "POST", summary="Encrypted case file / 加密导出案卷", tag="cases",
           path_params=CASE_ID, body=CaseExportSchema, body_required=True,
           responses={200: ("application/zip: case.json and case.csv (and any other part), AES-256 encrypted "
                            "with the password", None),
                      404: ("no such case, or not visible to the caller", ERR)})
def export_case(case_id: int, body: dict[str, Any]) -> Response:
    """The case file for another agency, as the caller may see it, in an AES-encrypted zip."""
    from hexie.workflows.casefile import CaseFile, case_file_parts, encrypted_zip
    from hexie.workflows.protection import record_export
    state = hexie()
    view = state["queries"].case(g.actor, case_id)
    history = state["queries"].history(g.actor, case_id)
    with state["engine"].session_factory() as s:
        spec = state["engine"].spec_of(s, s.get(Case, case_id).process_version_id)
    case = CaseFile(view=view, history=history, spec=spec, deidentified=body["deidentified"])
    content = encrypted_zip(case_file_parts(case), body["password"])
    record_export(state["engine"], g.actor, "case.zip", [case_id], body["deidentified"])
    return Response(content, mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="case-{case.code}.zip"', "Cache-Control": "no-store"})


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


@operation(bp, "/ledger/receipts", "POST", summary="Record a receipt / 登记收款", tag="ledger",
           body=ReceiptCreateSchema, body_required=True,
           responses={201: ("the receipt's ledger entry (kind receipt), recorded with its audit event",
                            LedgerEntrySchema), 403: ("the caller may not record receipts of that programme there", ERR),
                      422: ("a field is wrong (details per field); nothing written", ERR)})
def create_receipt(body: dict[str, Any]) -> Response:
    """Money received into a fund (a donation, an allocation): who gave it, when, the voucher."""
    entry = record_receipt(hexie()["engine"], g.actor, body)
    return json_response(LedgerEntrySchema().dump(entry), status=201)


@operation(bp, "/ledger/balances", "GET", summary="Fund balances / 资金结余", tag="ledger", query=BalanceQuery,
           responses={200: ("each fund's balance (received - paid + refunded) by month or year, of the "
                            "entries visible to the caller", BalancesSchema)})
def ledger_balances(query: dict[str, Any]) -> Response:
    """What each fund received, paid out and got back, and what it holds, period by period."""
    labels = _check_ledger_filters({k: v for k, v in query.items() if k != "period"})
    result = hexie()["ledger"].balances(g.actor, **query)
    locale = locale_of(g.actor)
    funds = [{**row, "label": (labels[(row["process"], row["fund"])].get(locale)
                               if (row["process"], row["fund"]) in labels else row["fund"])}
             for row in result["funds"]]
    return json_response(BalancesSchema().dump({**result, "funds": funds}))


def _check_ledger_filters(query: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """As for cases: a process or fund that no definition has is a malformed request (400).

    Returns every fund's label, keyed by (process, fund).
    """
    _check_filters(query)
    labels = fund_labels(spec for _, spec in sorted(hexie()["engine"].processes.items()))
    fund = query.get("fund")
    if fund and not any(f == fund and query.get("process") in (None, p) for p, f in labels):
        raise BadRequest("没有这个资金来源", f"unknown fund {fund!r}", {"fund": "不存在 / unknown"})
    return labels


# ----------------------------------------------------------------- webhooks
@operation(bp, "/webhooks", "GET", summary="List webhooks (admin) / Webhook 列表", tag="webhooks",
           query=PagingQuery,
           responses={200: ("every subscription (secrets not shown); paging in X-Total-Count, X-Page, "
                            "X-Per-Page, X-Pages", WebhookSchema(many=True)),
                      403: ("administrators only", ERR)})
def list_webhooks(query: dict[str, Any]) -> Response:
    """The outside URLs told about events."""
    return _paged_list(webhooks.list_subscriptions(hexie()["engine"], g.actor), query, WebhookSchema)


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


# ------------------------------------------------------------------- people
def _people() -> People:
    state = hexie()
    return state.extra.setdefault("people", People(state["engine"])) if hasattr(state, "extra") \
        else People(state["engine"])


USERNAME = {"username": "string"}
UNIT_CODE = {"code": "string"}


@operation(bp, "/users", "GET", summary="List people (admins, managers) / 人员列表", tag="people",
           query=UserListQuery,
           responses={200: ("the people the caller may read (administrators: everyone; managers: those holding a "
                            "role in their area), by username; paging in X-Total-Count, X-Page, X-Per-Page, X-Pages",
                            UserSchema(many=True)),
                      403: ("neither an administrator nor a manager", ERR)})
def list_users(query: dict[str, Any]) -> Response:
    """People, filtered by a text in the username or name (``q``), ``active``, ``role`` and ``org_unit``
    (holding a role in its subtree)."""
    return _paged(_people().list_users(g.actor, **query), UserSchema)


@operation(bp, "/users", "POST", summary="Create a person (admins) / 新增人员", tag="people",
           body=UserCreateSchema, body_required=True,
           responses={201: ("the person", UserSchema), 403: ("administrators only", ERR),
                      409: ("the username is taken", ERR),
                      422: ("the org file's rules: unknown role or unit, bad e-mail, short password; "
                            "details per field", ERR)})
def create_user(body: dict[str, Any]) -> Response:
    """A new person with roles ``role@unit`` (the same rules as the org file)."""
    user = _people().create_user(g.actor, **body)
    return json_response(UserSchema().dump(user), 201, {"Location": f"{request.base_url}/{user['username']}"})


@operation(bp, "/users/<username>", "GET", summary="One person (admins, managers) / 人员详情", tag="people",
           path_params=USERNAME,
           responses={200: ("the person", UserSchema), 403: ("neither an administrator nor a manager", ERR),
                      404: ("no such person, or not in the caller's area", ERR)})
def get_user(username: str) -> Response:
    """A person: name, e-mail, active, language, capabilities and roles."""
    return json_response(UserSchema().dump(_people().get_user(g.actor, username)))


@operation(bp, "/users/<username>", "PATCH", summary="Change a person (admins) / 修改人员", tag="people",
           path_params=USERNAME, body=UserPatchSchema,
           responses={200: ("the person after the change", UserSchema), 403: ("administrators only", ERR),
                      404: ("no such person, or not in the caller's area", ERR),
                      409: ("would deactivate the caller or drop her own last admin role", ERR),
                      422: ("the org file's rules; details per field", ERR)})
def update_user(username: str, body: dict[str, Any]) -> Response:
    """Change what is given. ``active: false`` deactivates her: her API tokens and sign-in sessions are
    revoked (reactivating her does not revive them) and her tasks wait to be reassigned."""
    return json_response(UserSchema().dump(_people().update_user(g.actor, username, body)))


@operation(bp, "/org-units", "GET", summary="List org units (admins, managers) / 单位列表", tag="people",
           query=OrgUnitListQuery,
           responses={200: ("the units the caller may read, in tree order; paging in X-Total-Count, X-Page, "
                            "X-Per-Page, X-Pages", OrgUnitSchema(many=True)),
                      403: ("neither an administrator nor a manager", ERR)})
def list_org_units(query: dict[str, Any]) -> Response:
    """The org tree (administrators: all of it; managers: their area), parents before children."""
    return _paged(_people().list_units(g.actor, **query), OrgUnitSchema)


@operation(bp, "/org-units", "POST", summary="Create an org unit (admins) / 新增单位", tag="people",
           body=OrgUnitCreateSchema, body_required=True,
           responses={201: ("the unit", OrgUnitSchema), 403: ("administrators only", ERR),
                      409: ("the code is taken", ERR),
                      422: ("unknown level or parent, a level not below its parent's; details per field", ERR)})
def create_org_unit(body: dict[str, Any]) -> Response:
    """A new unit under ``parent`` (none: a root), at one of roles.yaml's levels."""
    unit = _people().create_unit(g.actor, **body)
    return json_response(OrgUnitSchema().dump(unit), 201, {"Location": f"{request.base_url}/{unit['code']}"})


@operation(bp, "/org-units/<code>", "PATCH", summary="Change an org unit (admins) / 修改单位", tag="people",
           path_params=UNIT_CODE, body=OrgUnitPatchSchema,
           responses={200: ("the unit after the change", OrgUnitSchema), 403: ("administrators only", ERR),
                      404: ("no such unit, or not in the caller's area", ERR),
                      422: ("unknown level or parent, a cycle; details per field", ERR)})
def update_org_unit(code: str, body: dict[str, Any]) -> Response:
    """Rename a unit, change its level, or move it (its subtree, cases and tasks follow)."""
    return json_response(OrgUnitSchema().dump(_people().update_unit(g.actor, code, body)))


@operation(bp, "/webhooks/<webhook_id>/deliveries", "GET", summary="A webhook's deliveries (admin) / 推送记录",
           tag="webhooks", path_params={"webhook_id": "int32"}, query=DeliveryListQuery,
           responses={200: ("newest first; paging in X-Total-Count, X-Page, X-Per-Page, X-Pages",
                            DeliverySchema(many=True)),
                      403: ("administrators only", ERR), 404: ("no such webhook", ERR)})
def list_webhook_deliveries(webhook_id: int, query: dict[str, Any]) -> Response:
    """Every event written to the outbox for this subscription, and how sending it went."""
    items, total = webhooks.list_deliveries(hexie()["engine"], g.actor, webhook_id, page=query["page"],
                                            per_page=query["per_page"], status=query.get("status"))
    return _paged(Page(items, total, query["page"], query["per_page"]), DeliverySchema)


@operation(bp, "/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver", "POST",
           summary="Send a delivery again now (admin) / 重新推送", tag="webhooks", body=EmptySchema,
           path_params={"webhook_id": "int32", "delivery_id": "integer"},
           responses={200: ("the delivery after the attempt", DeliverySchema),
                      403: ("administrators only", ERR), 404: ("no such webhook or delivery", ERR)})
def redeliver_webhook(webhook_id: int, delivery_id: int, body: dict[str, Any]) -> Response:
    """POST the event again (same X-Hexie-Delivery id), whatever its status."""
    return json_response(DeliverySchema().dump(
        webhooks.redeliver(hexie()["engine"], g.actor, webhook_id, delivery_id)))


# ----------------------------------------------------------- notifications
@operation(bp, "/me/notifications", "GET", summary="My notifications / 我的通知", tag="notifications",
           query=NotificationListQuery,
           responses={200: ("newest first; paging in X-Total-Count, X-Page, X-Per-Page, X-Pages",
                            NotificationSchema(many=True))})
def list_my_notifications(query: dict[str, Any]) -> Response:
    """The caller's notification centre (``unread=1``: only what she has not read)."""
    items, total = notifications.list_notifications(hexie()["engine"], g.actor, unread=query["unread"],
                                                    page=query["page"], per_page=query["per_page"])
    return _paged(Page(items, total, query["page"], query["per_page"]), NotificationSchema)


@operation(bp, "/me/notifications/<notification_id>/read", "POST", summary="Mark read / 标为已读",
           tag="notifications", path_params={"notification_id": "integer"}, body=EmptySchema,
           responses={204: ("read", None), 404: ("no such notification of hers", ERR)})
def read_my_notification(notification_id: int, body: dict[str, Any]) -> Response:
    """Mark one of the caller's notifications read."""
    notifications.mark_read(hexie()["engine"], g.actor, notification_id)
    return Response(status=204)


@operation(bp, "/me/notifications/read-all", "POST", summary="Mark all read / 全部标为已读", tag="notifications",
           body=EmptySchema, responses={204: ("all read", None)})
def read_all_my_notifications(body: dict[str, Any]) -> Response:
    """Mark every notification of the caller read."""
    notifications.mark_all_read(hexie()["engine"], g.actor)
    return Response(status=204)


@operation(bp, "/me/preferences", "GET", summary="My notification preferences / 通知设置", tag="notifications",
           responses={200: ("her address, the channels of each kind, the digest time", PreferencesSchema)})
def get_my_preferences() -> Response:
    """How the caller is told: e-mail address, channels per kind, daily digest."""
    return json_response(PreferencesSchema().dump(notifications.get_preferences(hexie()["engine"], g.actor)))


@operation(bp, "/me/preferences", "PUT", summary="Set my notification preferences / 修改通知设置",
           tag="notifications", body=PreferencesSchema, body_required=True,
           responses={200: ("the preferences", PreferencesSchema), 400: ("malformed body", ERR),
                      422: ("an invalid address, kind, channel or digest time", ERR)})
def put_my_preferences(body: dict[str, Any]) -> Response:
    """Replace the fields given (the others stay as they were)."""
    return json_response(PreferencesSchema().dump(
        notifications.set_preferences(hexie()["engine"], g.actor, body)))



# ----------------------------------------------------------- external tasks
EXT_ID = {"task_id": "integer"}
_NOT_HELD = (409, ("this worker does not hold the task's lock (never had it, or it expired), "
                   "or the task is closed", ERR))


@operation(bp, "/external-tasks/fetch-and-lock", "POST", summary="Fetch and lock external tasks / 领取外部任务",
           tag="external tasks", body=FetchAndLockSchema, body_required=True,
           responses={200: ("the tasks now locked to worker_id, with their variables", ExternalTaskSchema(many=True)),
                      400: ("malformed body", ERR), 422: ("max_tasks or a lock duration out of range", ERR)})
def fetch_and_lock(body: dict[str, Any]) -> Response:
    """Lock up to max_tasks free tasks of the topics to this worker (its token's user must hold the worker role)."""
    tasks = external.fetch_and_lock(hexie()["engine"], g.actor, body["worker_id"], body["max_tasks"], body["topics"])
    return json_response(ExternalTaskSchema(many=True).dump(tasks))


@operation(bp, "/external-tasks/<task_id>/complete", "POST", summary="Complete an external task / 完成外部任务",
           tag="external tasks", path_params=EXT_ID, body=ExternalCompleteSchema, body_required=True,
           responses={200: ("the case after the action", CaseSchema), 403: ("may not fire this", ERR),
                      404: ("no such external task, or not visible", ERR), 409: _NOT_HELD[1],
                      422: ("not allowed now: guard failed, form invalid", ERR)})
def complete_external(task_id: int, body: dict[str, Any]) -> Response:
    """Fire ``trigger`` on the task's case (as POST /cases/{id}/actions/{trigger}), if this worker holds the lock."""
    state = hexie()
    case_id = external.complete(state["engine"], state["service"], g.actor, task_id, body["worker_id"],
                                body["trigger"], body["data"])
    try:
        case = state["queries"].case(g.actor, case_id)
    except NotFound:
        case = {"id": case_id}
    return json_response(CaseSchema().dump({**case, "outcome": {"outcome": "moved", "state": case.get("state")}}))


@operation(bp, "/external-tasks/<task_id>/failure", "POST", summary="Report a failure / 报告外部任务失败",
           tag="external tasks", path_params=EXT_ID, body=ExternalFailureSchema, body_required=True,
           responses={200: ("the task (at 0 retries: an incident)", ExternalTaskSchema),
                      404: ("no such external task, or not visible", ERR), 409: _NOT_HELD[1],
                      422: ("retries or retry_timeout_ms out of range", ERR)})
def fail_external(task_id: int, body: dict[str, Any]) -> Response:
    """Unlock the task with ``retries`` tries left, fetchable again after ``retry_timeout_ms``."""
    return json_response(ExternalTaskSchema().dump(external.failure(
        hexie()["engine"], g.actor, task_id, body["worker_id"], body["error"], body["retries"],
        body["retry_timeout_ms"])))


@operation(bp, "/external-tasks/<task_id>/extend-lock", "POST", summary="Extend the lock / 延长锁定",
           tag="external tasks", path_params=EXT_ID, body=ExternalLockSchema, body_required=True,
           responses={200: ("the task", ExternalTaskSchema), 404: ("no such external task, or not visible", ERR),
                      409: _NOT_HELD[1], 422: ("new_duration_ms out of range", ERR)})
def extend_external_lock(task_id: int, body: dict[str, Any]) -> Response:
    """The lock now ends new_duration_ms from now."""
    return json_response(ExternalTaskSchema().dump(external.extend_lock(
        hexie()["engine"], g.actor, task_id, body["worker_id"], body["new_duration_ms"])))


@operation(bp, "/external-tasks/<task_id>/unlock", "POST", summary="Unlock / 释放外部任务",
           tag="external tasks", path_params=EXT_ID, body=ExternalLockSchema, body_required=True,
           responses={200: ("the task, free for any worker", ExternalTaskSchema),
                      404: ("no such external task, or not visible", ERR), 409: _NOT_HELD[1]})
def unlock_external(task_id: int, body: dict[str, Any]) -> Response:
    """Give the task back."""
    return json_response(ExternalTaskSchema().dump(external.unlock(hexie()["engine"], g.actor, task_id,
                                                                   body["worker_id"])))


@operation(bp, "/external-tasks/<task_id>/retries", "POST", summary="Set retries (admin) / 设置重试次数",
           tag="external tasks", path_params=EXT_ID, body=ExternalRetriesSchema, body_required=True,
           responses={200: ("the task (retries above 0: the incident is resolved)", ExternalTaskSchema),
                      403: ("administrators only", ERR), 404: ("no such external task", ERR),
                      409: ("the task is closed", ERR), 422: ("retries below 0", ERR)})
def set_external_retries(task_id: int, body: dict[str, Any]) -> Response:
    """Give the task more tries."""
    return json_response(ExternalTaskSchema().dump(external.set_retries(hexie()["engine"], g.actor, task_id,
                                                                        body["retries"])))


@operation(bp, "/external-tasks/incidents", "GET", summary="Incidents (admin) / 外部任务故障",
           tag="external tasks", query=PagingQuery,
           responses={200: ("open external tasks out of retries, newest first; paging in X-Total-Count, "
                            "X-Page, X-Per-Page, X-Pages", ExternalTaskSchema(many=True)),
                      403: ("administrators only", ERR)})
def list_external_incidents(query: dict[str, Any]) -> Response:
    """External tasks that ran out of retries and wait for an administrator."""
    page, per_page = query["page"], query["per_page"]
    items, total = external.incident_page(hexie()["engine"], g.actor, per_page, (page - 1) * per_page)
    return _paged(Page(items, total, page, per_page), ExternalTaskSchema)
