"""marshmallow schemas of every body the JSON API takes in or gives out.

Input schemas reject unknown fields and wrong types (the API answers 400); the
engine judges the values themselves (422). Output schemas fix the shape of every
answer and feed the OpenAPI document (:mod:`hexie.web.api.openapi`). Datetimes go out as
ISO 8601 with an explicit UTC offset (they are stored as naive UTC).
"""
from __future__ import annotations

from datetime import timezone
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from hexie.workflows.engine import EVENT_KINDS
from hexie.workflows.queries import TASK_SORTS, TASK_VIEWS  # one list of inbox views and orders

MAX_PAGE = 1_000_000


class UTCDateTime(fields.DateTime):
    """A naive-UTC datetime written as ISO 8601 with its ``+00:00`` offset."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):  # already text (a stored JSON value)
            return value
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()


def _text(**kw: Any) -> fields.String:
    """A string output field that may be null."""
    return fields.String(allow_none=True, **kw)


# ------------------------------------------------------------------- errors
class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"description": "machine-readable code: bad_request, "
                                                  "unauthorized, forbidden, not_found, method_not_allowed, "
                                                  "conflict, invalid, internal_error"})
    message = fields.String(required=True, metadata={"description": "中文 / English"})
    details = fields.Dict(keys=fields.String(), values=fields.Raw(), required=True,
                          metadata={"description": "field name -> what is wrong with it"})


class ErrorSchema(Schema):
    """Every refusal: ``{"error": {"code", "message", "details"}}``."""

    error = fields.Nested(ErrorBodySchema, required=True)


# ----------------------------------------------------------------- sign-in
class TokenRequestSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=200))
    password = fields.String(required=True, validate=validate.Length(max=1000))


class TokenSchema(Schema):
    token = fields.String(required=True)
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(metadata={"description": "seconds"})


class TokenRevokeSchema(Schema):
    everywhere = fields.Boolean(load_default=False, metadata={
        "description": "also every other token and sign-in session of the user (sign out everywhere)"})


class TokenRevokedSchema(Schema):
    revoked = fields.Integer(required=True, metadata={"description": "how many tokens and sessions were revoked"})


# -------------------------------------------------------------- processes
class LabelSchema(Schema):
    """A text in both languages."""

    zh = fields.String(required=True)
    en = fields.String(required=True)


class ProcessSummarySchema(Schema):
    process = fields.String(required=True)
    version = fields.Integer(required=True)
    title = fields.String(required=True, metadata={"description": "in the caller's language"})
    title_i18n = fields.Nested(LabelSchema)
    confidential = fields.Boolean()


class ChoiceSchema(Schema):
    key = fields.String(required=True)
    label = fields.String(required=True)
    label_i18n = fields.Nested(LabelSchema)


class FieldDefSchema(Schema):
    name = fields.String(required=True)
    type = fields.String(required=True)
    label = fields.String(required=True)
    label_i18n = fields.Nested(LabelSchema)
    help = _text()
    required = fields.Boolean()
    default = fields.Raw(allow_none=True)
    min = fields.Raw(allow_none=True)
    max = fields.Raw(allow_none=True)
    max_length = fields.Integer(allow_none=True)
    pattern = _text()
    sensitive = fields.Boolean()
    multiple = fields.Boolean()
    choices = fields.List(fields.Nested(ChoiceSchema))


class FormEntrySchema(Schema):
    field = fields.String(required=True)
    required = fields.Boolean(required=True)


class EscalationSchema(Schema):
    after = fields.String(required=True, metadata={"description": "ISO 8601 duration"})
    to = fields.String(required=True)


class TaskDefSchema(Schema):
    name = fields.String(required=True)
    role = fields.String(required=True)
    label = fields.String()
    at = _text()
    form = fields.List(fields.Nested(FormEntrySchema))
    due = _text(metadata={"description": "ISO 8601 duration"})
    escalate = fields.Nested(EscalationSchema, allow_none=True)
    separate_from = fields.List(fields.String())
    same_as = _text()
    priority = fields.String()
    optional = fields.Boolean()


class TimerDefSchema(Schema):
    trigger = fields.String(required=True)
    after = _text(metadata={"description": "ISO 8601 duration"})
    at = _text(metadata={"description": "a date or datetime field of the case"})


class ForEachDefSchema(Schema):
    field = fields.String(required=True, metadata={"description": "the multichoice field: one task per value"})
    complete = fields.Raw(required=True, metadata={"description": "all, any, or how many must be done"})


class CallDefSchema(Schema):
    process = fields.String(required=True)
    data = fields.Dict(keys=fields.String(), values=fields.String(), metadata={"description": "child field: field"})
    result = fields.Dict(keys=fields.String(), values=fields.String(), metadata={"description": "field: child field"})
    on_end = fields.Dict(keys=fields.String(), values=fields.String(),
                         metadata={"description": "the child's end state: the trigger fired here"})


class StateDefSchema(Schema):
    name = fields.String(required=True)
    label = fields.String(required=True)
    label_i18n = fields.Nested(LabelSchema)
    initial = fields.Boolean()
    final = fields.Boolean()
    parallel = fields.Boolean()
    tasks = fields.List(fields.Nested(TaskDefSchema))
    timers = fields.List(fields.Nested(TimerDefSchema))
    for_each = fields.Nested(ForEachDefSchema, allow_none=True, metadata={
        "description": "the tasks are one per value of a field (tasks lists every possible one)"})
    call = fields.Nested(CallDefSchema, allow_none=True, metadata={
        "description": "entering the state starts a case of another process and waits for it"})
    order = _text(metadata={"description": "any_one_at_a_time: the tasks one at a time"})
    end_when_idle = fields.Boolean()


class LedgerDefSchema(Schema):
    fund = fields.String(required=True)
    amount = fields.String(required=True)
    kind = fields.String(required=True)
    voucher = fields.String(allow_none=True, metadata={"description": "the field holding the voucher number"})


class TransitionDefSchema(Schema):
    trigger = fields.String(required=True)
    source = fields.Raw(required=True, metadata={"description": "a state, or a list of states, as in the language "
                                                                 "('*' expanded)"})
    sources = fields.List(fields.String(), required=True)
    dest = fields.String(required=True)
    label = fields.String(required=True)
    label_i18n = fields.Nested(LabelSchema)
    roles = fields.List(fields.String(), allow_none=True,
                        metadata={"description": "null: whoever may take the source state's task"})
    when = _text(metadata={"description": "the guard expression"})
    comment = fields.String(validate=validate.OneOf(("required", "optional", "none")))
    form = fields.List(fields.Nested(FormEntrySchema))
    interrupt = fields.Boolean()
    quorum = fields.Integer()
    ledger = fields.Nested(LedgerDefSchema, allow_none=True,
                           metadata={"description": "the fund posting this action makes (ledger: in the definition)"})
    auto = fields.Boolean(metadata={"description": "fired by the engine once the state's tasks are done"})


class ProcessSchema(ProcessSummarySchema):
    """A whole definition: states, transitions and fields (keyed by name)."""

    description = _text()
    description_i18n = fields.Nested(LabelSchema, allow_none=True)
    org_level = fields.String()
    starters = fields.List(fields.String())
    initial_state = fields.String()
    # (not named ``fields``: that would hide the marshmallow module in this class body)
    field_defs = fields.Dict(keys=fields.String(), values=fields.Nested(FieldDefSchema), required=True,
                             attribute="fields", data_key="fields", metadata={"description": "by name"})
    states = fields.List(fields.Nested(StateDefSchema), required=True)
    transitions = fields.List(fields.Nested(TransitionDefSchema), required=True)


# ------------------------------------------------------------ cases, tasks
class TaskSchema(Schema):
    """A work item, as inboxes and task actions show it."""

    id = fields.Integer(required=True)
    case_id = fields.Integer(required=True)
    process = fields.String(required=True)
    state = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(
        ("offered", "allocated", "completed", "cancelled", "skipped", "waiting", "declined")),
        metadata={"description": "waiting: held back until the survivor's consent for its agency is recorded; "
                                 "declined: a referral its agency declined"})
    assignee = _text(required=True)
    due_at = UTCDateTime(allow_none=True, required=True)
    overdue = fields.Boolean(required=True)
    escalated = fields.Boolean(required=True)
    priority = fields.String()
    subject = _text(metadata={"description": "the case code for confidential cases"})
    created_at = UTCDateTime(allow_none=True)
    kind = fields.String(validate=validate.OneOf(("work", "consult")), metadata={
        "description": "work (a step of the process) or consult (advice asked of the assignee; answer it with "
                       "POST /tasks/{id}/done {comment})"})
    suspended = fields.Boolean(metadata={"description": "on hold (the task or its case): its clock stands still"})
    flagged = fields.Boolean(metadata={"description": "could not go to the person the definition named "
                                                      "(assign: {user: FIELD}): offered to the role instead"})
    consult_of = fields.Integer(allow_none=True, metadata={"description": "for a consult: the task it was asked from"})
    acceptance = fields.Boolean(metadata={"description": "a referral (acceptance: true): accept or decline it first"})
    accepted = fields.Boolean(metadata={"description": "the referral has been accepted"})


class SuspensionSchema(Schema):
    since = UTCDateTime(required=True)
    until = UTCDateTime(allow_none=True, required=True)
    comment = _text(required=True)
    by = _text(required=True)


class TimerRowSchema(Schema):
    trigger = fields.String(required=True)
    due_at = UTCDateTime(required=True)


class ReferralSchema(TaskSchema):
    """A referral task of the case's current state (consent: or acceptance: in the definition), whatever
    its status: waiting for consent, offered, accepted, declined (with why), done."""

    agency = _text(metadata={"description": "the agency whose consent it needs (null: none)"})
    note = _text(metadata={"description": "why it was declined, or an overseer's reason for opening it "
                                          "without consent"})
    accepted_by = _text()
    accepted_at = UTCDateTime(allow_none=True)
    completed_at = UTCDateTime(allow_none=True)
    completed_by = _text()


class ConsentSchema(Schema):
    """One statement of the survivor's consent for an agency."""

    id = fields.Integer()
    agency = fields.String(required=True)
    scope = fields.String(required=True, validate=validate.OneOf(("services", "statistics")))
    given = fields.Boolean(required=True, metadata={"description": "false: withdrawn (or refused)"})
    override = fields.Boolean(required=True, metadata={
        "description": "an overseer opened the referral without consent; note: why"})
    note = _text()
    recorded_by = fields.String(required=True)
    recorded_at = UTCDateTime(required=True)


class ConsentCreateSchema(Schema):
    agency = fields.String(required=True, validate=validate.Length(min=1, max=64),
                           metadata={"description": "one of the process's agencies"})
    given = fields.Boolean(load_default=True, truthy={True}, falsy={False},
                           metadata={"description": "false: she withdraws it"})
    scope = fields.String(load_default="services", validate=validate.Length(min=1, max=16),
                          metadata={"description": "services (may be shared with that agency to help her) or "
                                                   "statistics (may be counted in reports by code)"})
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=10000))


class ConsentWithdrawSchema(Schema):
    agency = fields.String(required=True, validate=validate.Length(min=1, max=64))
    scope = fields.String(load_default="services", validate=validate.Length(min=1, max=16))
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=10000))


class ConsentOverrideSchema(Schema):
    agency = fields.String(required=True, validate=validate.Length(min=1, max=64))
    reason = fields.String(required=True, validate=validate.Length(max=10000),
                           metadata={"description": "why the referral cannot wait for her consent "
                                                    "(immediate danger)"})


class DeclineSchema(Schema):
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=10000),
                            metadata={"description": "why the agency declines (required: 422 without)"})


class AccessLogEntrySchema(Schema):
    id = fields.Integer(required=True)
    at = UTCDateTime(required=True)
    username = fields.String(required=True)
    what = fields.String(required=True, metadata={
        "description": "page, case, history, print, export, attachment, access_log"})
    detail = _text()
    remote_addr = _text()


class AccessLogQuery(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class ActionOutcomeSchema(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(("moved", "voted", "vote_withdrawn")))
    state = fields.String()
    votes = fields.Integer()
    quorum = fields.Integer()
    repeated = fields.Boolean(metadata={"description": "the answer to a retry (same Idempotency-Key) of an action "
                                                       "already committed: nothing was done again"})


class BlockedActionSchema(Schema):
    """An action her roles allow that the case does not allow yet."""

    trigger = fields.String(required=True)
    reason_zh = fields.String(required=True)
    reason_en = fields.String(required=True)


class AttachmentSchema(Schema):
    id = fields.Integer(required=True, metadata={"description": "put it in the file field's value: "
                                                               "data: {FIELD: id} (or [id, ...] for multiple)"})
    case_id = fields.Integer(required=True)
    field = fields.String(required=True)
    filename = fields.String(required=True)
    content_type = fields.String(required=True)
    size = fields.Integer(required=True)


class LinkedCaseSchema(Schema):
    """A case linked by ``call:``: the parent that started this one, or a child it started."""

    id = fields.Integer(required=True)
    process = fields.String(required=True)
    state = fields.String(required=True)
    version = fields.Integer()
    closed_at = UTCDateTime(allow_none=True)


class CaseSchema(Schema):
    """One case as the caller may see it (sensitive fields masked unless she works it).

    Only ``id`` is certain: after an action that takes the case out of the caller's
    sight, the answer is ``{id, state, outcome}`` alone.
    """

    id = fields.Integer(required=True)
    process = fields.String()
    version = fields.Integer()
    state = fields.String()
    org_unit = fields.String()
    org_unit_name = fields.String()
    data = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    masked = fields.Boolean()
    subject = _text()
    created_at = UTCDateTime(allow_none=True)
    updated_at = UTCDateTime(allow_none=True)
    closed_at = UTCDateTime(allow_none=True)
    created_by = _text()
    business_key = _text(metadata={"description": "the outside record the case is about (unique per process)"})
    host_fields = fields.List(fields.String(), metadata={
        "description": "fields a host record owns: Hexie's forms never edit them (422 if sent)"})
    lock_version = fields.Integer()
    tasks = fields.List(fields.Nested(TaskSchema), metadata={"description": "open tasks"})
    actions = fields.List(fields.String(), metadata={"description": "triggers the caller may fire now"})
    blocked_actions = fields.List(fields.Nested(BlockedActionSchema), metadata={
        "description": "triggers the caller's roles allow that are not possible now, with why"})
    action_quorums = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "for each trigger in actions, how many people must fire it as the case stands"})
    outcome = fields.Nested(ActionOutcomeSchema, metadata={
        "description": "only in the answer to an action: moved, or a quorum vote recorded"})
    confidential = fields.Boolean()
    consents = fields.List(fields.Nested(ConsentSchema), metadata={
        "description": "every statement of the survivor's consent, oldest first (the latest per agency "
                       "and scope holds)"})
    referrals = fields.List(fields.Nested(ReferralSchema), metadata={
        "description": "the referral tasks of the current state, whatever their status"})
    parent = fields.List(fields.Nested(LinkedCaseSchema), metadata={
        "description": "the case whose call: started this one (if she may see it)"})
    children = fields.List(fields.Nested(LinkedCaseSchema), metadata={
        "description": "the cases this one's call: states started (those she may see)"})
    owner = _text(metadata={"description": "the username who answers for the case (the starter until handed over)"})
    suspended = fields.Nested(SuspensionSchema, allow_none=True, metadata={
        "description": "null, or the hold: since, until (null: until resumed), comment, by"})
    timers = fields.List(fields.Nested(TimerRowSchema), metadata={"description": "pending timers"})


class CaseSummarySchema(Schema):
    id = fields.Integer(required=True)
    process = fields.String(required=True)
    state = fields.String(required=True)
    org_unit = fields.String(required=True)
    subject = _text()
    business_key = _text()
    created_at = UTCDateTime(allow_none=True)
    updated_at = UTCDateTime(allow_none=True)
    closed_at = UTCDateTime(allow_none=True)
    lock_version = fields.Integer()


class HistoryEventSchema(Schema):
    at = UTCDateTime(required=True)
    actor = _text(required=True)
    kind = fields.String(required=True)
    trigger = _text(required=True)
    from_state = _text(required=True)
    to_state = _text(required=True)
    comment = _text(required=True)
    changes = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), allow_none=True,
                          required=True, metadata={"description": "field -> [old, new]"})


# ------------------------------------------------------------------ ledger
class Money(fields.String):
    """An amount of yuan as decimal text with two places ("800.00"), like every money value of the API."""

    def __init__(self, **kw: Any) -> None:
        metadata = {"example": "800.00", "pattern": r"^-?[0-9]+\.[0-9]{2}$", **kw.pop("metadata", {})}
        super().__init__(metadata=metadata, **kw)

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return f"{Decimal(str(value)).quantize(Decimal('0.01')):.2f}"


class LedgerEntrySchema(Schema):
    """One posting to a fund: what a disbursement (or a refund) wrote, with its case; or money
    received into the fund (kind ``receipt``: no case, with donor, day received and voucher)."""

    id = fields.Integer(required=True)
    at = UTCDateTime(required=True, metadata={"description": "when it was posted"})
    case_id = fields.Integer(required=True, allow_none=True, metadata={"description": "null for a receipt"})
    process = fields.String(required=True)
    trigger = fields.String(required=True, metadata={"description": "the action that posted it"})
    fund = fields.String(required=True, metadata={"description": "the fund's key (a choice of the process)"})
    kind = fields.String(required=True, validate=validate.OneOf(("payment", "refund", "receipt")))
    amount = Money(required=True, metadata={"description": "always above zero; kind says which way"})
    audit_seq = fields.Integer(required=True, metadata={
        "description": "the case's audit event that records the same posting"})
    org_unit = fields.String(required=True)
    org_unit_name = fields.String(required=True)
    state = fields.String(required=True, allow_none=True, metadata={"description": "the case's state now "
                                                                                    "(null for a receipt)"})
    subject = _text(required=True, metadata={"description": "the case code for confidential cases"})
    voucher = fields.String(required=True, allow_none=True, metadata={"description": "the voucher number (凭证号)"})
    donor = fields.String(required=True, allow_none=True, metadata={"description": "a receipt's donor"})
    received_on = fields.Date(required=True, allow_none=True, metadata={"description": "the day a receipt arrived"})


class ReceiptCreateSchema(Schema):
    """Money received into a fund: a donation or an allocation."""

    process = fields.String(required=True, validate=validate.Length(1, 64))
    fund = fields.String(required=True, validate=validate.Length(1, 64))
    amount = fields.String(required=True, validate=validate.Length(1, 20), metadata={"example": "159215.00"})
    donor = fields.String(required=True, validate=validate.Length(1, 200))
    received_on = fields.Date(required=True)
    voucher = fields.String(required=True, validate=validate.Length(1, 64))
    org_unit = fields.String(required=True, validate=validate.Length(1, 64),
                             metadata={"description": "the unit whose fund received it (its code)"})


class BalancePeriodSchema(Schema):
    period = fields.String(required=True, metadata={"example": "2026-03"})
    received = Money(required=True)
    paid = Money(required=True)
    refunded = Money(required=True)
    change = Money(required=True, metadata={"description": "received - paid + refunded in the period"})
    balance = Money(required=True, metadata={"description": "the balance at the period's end"})


class BalanceFundSchema(Schema):
    process = fields.String(required=True)
    fund = fields.String(required=True)
    label = fields.String(required=True)
    received = Money(required=True)
    paid = Money(required=True)
    refunded = Money(required=True)
    balance = Money(required=True, metadata={"description": "received - paid + refunded"})
    periods = fields.List(fields.Nested(BalancePeriodSchema), required=True)


class BalanceTotalSchema(Schema):
    received = Money(required=True)
    paid = Money(required=True)
    refunded = Money(required=True)
    balance = Money(required=True)


class BalancesSchema(Schema):
    """Each fund's balance, by period."""

    period = fields.String(required=True)
    funds = fields.List(fields.Nested(BalanceFundSchema), required=True)
    total = fields.Nested(BalanceTotalSchema, required=True)


class LedgerTotalsSchema(Schema):
    entries = fields.Integer(required=True)
    paid = Money(required=True)
    refunded = Money(required=True)
    net = Money(required=True, metadata={"description": "paid - refunded"})


class LedgerFundSchema(LedgerTotalsSchema):
    process = fields.String(required=True)
    fund = fields.String(required=True)
    label = fields.String(required=True, metadata={"description": "the fund's name, in the caller's language"})
    label_i18n = fields.Nested(LabelSchema, allow_none=True)


class LedgerTownSchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    net = fields.Dict(keys=fields.String(), values=Money(), required=True,
                      metadata={"description": "\"process/fund\" -> net amount"})
    total = Money(required=True)


class LedgerMonthSchema(Schema):
    month = fields.String(required=True, metadata={"example": "2026-03"})
    paid = Money(required=True)
    refunded = Money(required=True)
    net = Money(required=True)


class LedgerSummarySchema(Schema):
    """Totals of the entries the caller may see: per fund, per town and fund, per month, overall."""

    funds = fields.List(fields.Nested(LedgerFundSchema), required=True)
    towns = fields.List(fields.Nested(LedgerTownSchema), required=True)
    months = fields.List(fields.Nested(LedgerMonthSchema), required=True)
    total = fields.Nested(LedgerTotalsSchema, required=True)


# ---------------------------------------------------------------- inputs
def _data_field(description: str) -> fields.Dict:
    return fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), load_default=dict,
                       metadata={"description": description})


class CaseStartSchema(Schema):
    process = fields.String(required=True, validate=validate.Length(min=1, max=64))
    org_unit = fields.String(required=True, validate=validate.Length(min=1, max=64))
    data = _data_field("the first state's form: field name -> value")
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=10000))
    business_key = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=200),
                                 metadata={"description": "the outside record the case is about; unique per "
                                                          "process (409 when taken)"})


class ActionSchema(Schema):
    data = _data_field("the action's form: field name -> value")
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=10000))
    lock_version = fields.Integer(strict=True, allow_none=True, load_default=None,
                                  metadata={"description": "the case's lock_version as you read it; "
                                                           "409 when it changed meanwhile"})


class CommentSchema(Schema):
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=10000))


class TaskDoneSchema(Schema):
    data = _data_field("the task's form: field name -> value")
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=4000),
                            metadata={"description": "a consult's answer (required for a consult)"})


class OwnerSchema(Schema):
    to = fields.String(required=True, validate=validate.Length(min=1, max=200),
                       metadata={"description": "the username who takes the case over"})
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=4000))


class SuspendSchema(Schema):
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=4000),
                            metadata={"description": "why it is held (required: 422 without)"})
    until = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=40), metadata={
        "description": "a day (YYYY-MM-DD: resumed at the end of that local day) or an ISO 8601 moment; "
                       "null: until resumed"})


class ResumeSchema(Schema):
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=4000))


class TaskSuspendSchema(Schema):
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=4000),
                            metadata={"description": "why it is held (required: 422 without)"})


class NoteSchema(Schema):
    text = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    mentions = fields.List(fields.String(validate=validate.Length(min=1, max=80)), load_default=list,
                           validate=validate.Length(max=20), metadata={
                               "description": "usernames to tell (kind mention); @username in the text counts too"})


class ConsultSchema(Schema):
    to = fields.String(required=True, validate=validate.Length(min=1, max=200),
                       metadata={"description": "the colleague whose advice is asked"})
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=4000),
                            metadata={"description": "the question (required: 422 without)"})


class AwaySchema(Schema):
    until = fields.Date(required=True, allow_none=True, metadata={
        "description": "the last day away (local); null: back now"})
    delegate = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=80),
                             metadata={"description": "the username who gets her work while she is away"})


class AwayAnswerSchema(Schema):
    username = fields.String(required=True)
    name = fields.String(required=True)
    away_until = fields.Date(allow_none=True, required=True)
    delegate = _text(required=True)
    moved = fields.List(fields.Integer(), metadata={"description": "ids of the tasks handed to the delegate"})
    kept = fields.List(fields.Integer(), metadata={"description": "ids of her tasks the delegate may not take"})


class EmptySchema(Schema):
    """No fields: an empty object (or no body at all)."""


class HandoverSchema(Schema):
    to = fields.String(required=True, validate=validate.Length(min=1, max=200),
                       metadata={"description": "the username who takes the task"})


class WebhookCreateSchema(Schema):
    url = fields.Url(required=True, require_tld=False, schemes={"http", "https"},
                     validate=validate.Length(max=1000))
    events = fields.List(fields.String(validate=validate.OneOf(EVENT_KINDS)),
                         load_default=lambda: list(EVENT_KINDS),
                         metadata={"description": "default: every event"})
    secret = fields.String(load_default=None, validate=validate.Length(min=16, max=128),
                           metadata={"description": "HMAC key; generated when not given"})
    active = fields.Boolean(load_default=True)

    @validates_schema
    def _some_events(self, data: dict[str, Any], **_: Any) -> None:
        if "events" in data and not data["events"]:
            raise ValidationError("至少一个事件 / at least one event", "events")


class WebhookSchema(Schema):
    id = fields.Integer(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    active = fields.Boolean(required=True)
    created_at = UTCDateTime(allow_none=True)
    secret = fields.String(metadata={"description": "only in the answer to POST /webhooks"})


# ------------------------------------------------------------------- people
_ROLE_TEXT = fields.String(validate=validate.Length(min=3, max=200), metadata={"example": "town_cadre@t01"})
_CAPABILITY = fields.String(validate=validate.Length(min=1, max=64), metadata={"example": "sign_language"})


class UserSchema(Schema):
    username = fields.String(required=True)
    name = fields.String(required=True)
    email = _text()
    active = fields.Boolean(required=True)
    locale = _text(metadata={"description": "zh or en; null: Accept-Language decides"})
    capabilities = fields.List(fields.String(), required=True,
                               metadata={"description": "words matched by a task's requires:"})
    roles = fields.List(fields.String(), required=True, metadata={"description": "role@unit, e.g. town_cadre@t01"})
    created_at = UTCDateTime(allow_none=True)


class UserCreateSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=80))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    email = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=254))
    password = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200),
                             metadata={"description": "none: no password sign-in (a host's user)"})
    roles = fields.List(_ROLE_TEXT, load_default=list, validate=validate.Length(max=100))
    capabilities = fields.List(_CAPABILITY, allow_none=True, load_default=None, validate=validate.Length(max=100))
    locale = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(("zh", "en")))
    active = fields.Boolean(load_default=True)


class UserPatchSchema(Schema):
    """Only the fields given change; ``roles`` and ``capabilities`` become exactly the lists given."""

    name = fields.String(validate=validate.Length(min=1, max=200))
    email = fields.String(allow_none=True, validate=validate.Length(max=254), metadata={"description": "null: none"})
    active = fields.Boolean(metadata={"description": "false: deactivated, her tokens and sessions revoked"})
    roles = fields.List(_ROLE_TEXT, validate=validate.Length(max=100))
    capabilities = fields.List(_CAPABILITY, allow_none=True, validate=validate.Length(max=100))
    locale = fields.String(validate=validate.OneOf(("zh", "en")))
    password = fields.String(validate=validate.Length(max=200),
                             metadata={"description": "a new password: her tokens and sessions are revoked"})


class OrgUnitSchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    level = fields.String(required=True)
    parent = _text(metadata={"description": "the parent's code; null for a root"})
    path = fields.String(required=True, metadata={"example": "/county/t01/"})


class OrgUnitCreateSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    level = fields.String(required=True, validate=validate.Length(min=1, max=32))
    parent = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=64))


class OrgUnitPatchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    level = fields.String(validate=validate.Length(min=1, max=32))
    parent = fields.String(allow_none=True, validate=validate.Length(min=1, max=64),
                           metadata={"description": "move under this unit (its subtree, cases and tasks follow); "
                                                    "null: a root"})


# ----------------------------------------------------------- query strings
def _filter(max_length: int = 64) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=max_length))


class _PagingQuery(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class PagingQuery(_PagingQuery):
    """Only the paging of a list (``page``, ``per_page``)."""


class CaseListQuery(_PagingQuery):
    process = _filter()
    state = _filter()
    org_unit = _filter()
    search = _filter(100)
    business_key = _filter(200)
    lookup = _filter(200)
    lookup.metadata["description"] = ("the survivor's full name or ID number, matched exactly through the "
                                      "blind index: only cases the caller works or oversees; every search is "
                                      "recorded (protection.md)")


class ReportQuery(Schema):
    by = fields.String(load_default="town", validate=validate.OneOf(("town", "village")))
    within = _filter()
    since = fields.Date()
    until = fields.Date()


class ReportUnitSchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Raw(),
                         metadata={"description": "state -> count, or \"<5\" (suppressed)"})
    total = fields.Raw(metadata={"description": "a count, or \"<5\""})
    rates = fields.Dict(keys=fields.String(), values=fields.List(fields.Raw()))
    open_tasks = fields.Raw()
    overdue = fields.Raw()


class ReportSchema(Schema):
    process = fields.String(required=True)
    by = fields.String(required=True)
    states = fields.List(fields.String())
    units = fields.List(fields.Nested(ReportUnitSchema))
    totals = fields.Dict(keys=fields.String(), values=fields.Raw())
    total_rates = fields.Dict(keys=fields.String(), values=fields.List(fields.Raw()))
    months = fields.List(fields.List(fields.Raw()), metadata={"description": "[month, count or \"<5\"]"})
    total = fields.Raw(metadata={"description": "a count, or \"<5\""})
    suppressed = fields.Boolean(metadata={"description": "small-count suppression applied (a confidential process)"})


class CaseExportSchema(Schema):
    password = fields.String(required=True, validate=validate.Length(min=10, max=200),
                             metadata={"description": "the zip's password (AES-256), at least 10 characters"})
    deidentified = fields.Boolean(load_default=False)


class TaskListQuery(_PagingQuery):
    view = fields.String(load_default="mine", validate=validate.OneOf((*TASK_VIEWS, "upcoming")))
    sort = fields.String(load_default=None, validate=validate.OneOf(TASK_SORTS),
                         metadata={"description": "due (default, then priority; undated last), -due, "
                                                  "priority (high first), -priority, created, -created"})
    days = fields.Integer(load_default=30, validate=validate.Range(1, 366),
                          metadata={"description": "view=upcoming: how many days ahead (default 30)"})
    process = _filter()
    state = _filter()
    org_unit = _filter()
    search = _filter(100)


class _Deidentified(Schema):
    deidentified = fields.Boolean(load_default=False, metadata={
        "description": "1: the case number, business key and subject become the case's stable code "
                       "(protection.md)"})
    # the list's query string may be passed as it is: every page is exported
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE),
                          metadata={"description": "ignored: every page is exported"})
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200),
                              metadata={"description": "ignored: every page is exported"})


class PrintQuery(Schema):
    """GET /cases/{id}/print.pdf and /documents/{name}.pdf."""
    deidentified = fields.Boolean(load_default=False, metadata={
        "description": "1: every sensitive value, in the data and the history, is the case's code (protection.md)"})


class CaseExportQuery(_Deidentified):
    """GET /cases.xlsx: the filters of GET /cases (every page)."""
    process = _filter()
    state = _filter()
    org_unit = _filter()
    search = _filter(100)
    business_key = _filter(200)


class TaskExportQuery(_Deidentified):
    """GET /tasks.xlsx: the filters of GET /tasks (every page; not view=upcoming)."""
    view = fields.String(load_default="mine", validate=validate.OneOf(TASK_VIEWS))
    sort = fields.String(load_default=None, validate=validate.OneOf(TASK_SORTS))
    process = _filter()
    state = _filter()
    org_unit = _filter()
    search = _filter(100)


class SavedViewSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    query = fields.String(required=True, validate=validate.Length(max=2000),
                          metadata={"description": "the query string of GET /tasks, e.g. view=overdue&sort=priority"})
    created_at = UTCDateTime(dump_only=True)


class UpcomingSchema(Schema):
    case_id = fields.Integer(required=True)
    process = fields.String(required=True)
    state = fields.String(required=True)
    trigger = fields.String(required=True)
    due_at = UTCDateTime(required=True)
    role = fields.String(required=True)
    assignee = fields.String(allow_none=True)


class LedgerListQuery(_PagingQuery):
    process = _filter()
    fund = _filter()
    kind = fields.String(load_default=None, validate=validate.OneOf(("payment", "refund", "receipt")))


class BalanceQuery(Schema):
    process = _filter()
    fund = _filter()
    period = fields.String(load_default="month", validate=validate.OneOf(("month", "year")))


class LedgerSummaryQuery(Schema):
    process = _filter()
    fund = _filter()


class UserListQuery(_PagingQuery):
    q = _filter(80)
    active = fields.Boolean()
    org_unit = _filter()
    role = _filter()


class OrgUnitListQuery(_PagingQuery):
    pass


# ------------------------------------------------------- notifications, deliveries
class NotificationSchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True, metadata={"description": "task_offered, task_allocated, task_returned, "
                                                                 "task_escalated, due_soon, overdue, mention, "
                                                                 "consult, case_closed"})
    case_id = fields.Integer(allow_none=True)
    task_id = fields.Integer(allow_none=True)
    text = fields.String(required=True, metadata={"description": "Chinese / English"})
    text_zh = fields.String()
    text_en = fields.String()
    link = _text(metadata={"description": "the path of the case page (the task's place on it)"})
    at = UTCDateTime(required=True)
    read = fields.Boolean(required=True)


class NotificationListQuery(_PagingQuery):
    unread = fields.Boolean(load_default=False, metadata={"description": "1: only the unread ones"})


class PreferencesSchema(Schema):
    email = fields.String(allow_none=True, validate=validate.Length(max=254))
    channels = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                           metadata={"description": "kind -> channels (in_app, email, and plug-ins such as wecom)"})
    digest = fields.String(allow_none=True, metadata={"description": "HH:MM: one e-mail a day at that time "
                                                                     "instead of one per notification; null: none"})


class DeliverySchema(Schema):
    id = fields.Integer(required=True, metadata={"description": "also the X-Hexie-Delivery header"})
    event = fields.String(required=True)
    seq = fields.Integer(allow_none=True)
    case_id = fields.Integer(allow_none=True)
    status = fields.String(required=True, metadata={"description": "pending, delivered or failed"})
    attempts = fields.Integer(required=True)
    last_error = _text()
    created_at = UTCDateTime(allow_none=True)
    delivered_at = UTCDateTime(allow_none=True)


class DeliveryListQuery(_PagingQuery):
    status = fields.String(validate=validate.OneOf(("pending", "delivered", "failed")))


# ------------------------------------------------------------- external tasks
class _Topic(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    lock_duration_ms = fields.Integer(strict=True, required=True)


class FetchAndLockSchema(Schema):
    worker_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    max_tasks = fields.Integer(strict=True, load_default=10)
    topics = fields.List(fields.Nested(_Topic), required=True)


class ExternalCompleteSchema(Schema):
    worker_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    trigger = fields.String(required=True, validate=validate.Length(min=1, max=64))
    data = _data_field("the action's form: field name -> value")


class ExternalFailureSchema(Schema):
    worker_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    error = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=4000))
    retries = fields.Integer(strict=True, required=True, metadata={"description": "tries left; 0: an incident"})
    retry_timeout_ms = fields.Integer(strict=True, load_default=0)


class ExternalLockSchema(Schema):
    worker_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    new_duration_ms = fields.Integer(strict=True, load_default=None)


class ExternalRetriesSchema(Schema):
    retries = fields.Integer(strict=True, required=True)


class ExternalTaskSchema(Schema):
    id = fields.Integer(required=True)
    topic = fields.String(required=True)
    case_id = fields.Integer(required=True)
    business_key = _text()
    process = fields.String(required=True)
    state = fields.String(required=True)
    data = fields.Dict(metadata={"description": "the task's variables"})
    retries = fields.Integer(required=True)
    worker_id = _text()
    lock_expires_at = UTCDateTime(allow_none=True)
    error_message = _text()
    incident = fields.Boolean()
    incident_at = UTCDateTime(allow_none=True)
    retry_at = UTCDateTime(allow_none=True)
    status = fields.String()
