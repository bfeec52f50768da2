"""Survivors' data protection on the case page (protection.md): consent per agency, the
referrals of the current step (accept, decline, waiting for consent), and the access log.

The case page (:mod:`.case`) builds :func:`protection_context` and includes
``_case_protection.html``; the POSTs below go to :class:`hexie.workflows.protection.Protection`
and come back to the case page, a refusal as a flash message in words.
"""
from __future__ import annotations

from typing import Any, Mapping

from flask import flash, redirect, request, url_for

from hexie.workflows.errors import Conflict, Forbidden, Invalid
from hexie.workflows.consent import Protection, Read
from hexie.workflows.spec import ProcessSpec

from ..auth import safe_next
from ..state import current_actor, hexie_state
from ..i18n import detail_text, error_text, label, t
from .blueprint import bp
from .common import display_names, role_label, task_label


def page_read(what: str = "page", detail: Any = None) -> Read:
    """This request as a read for the access log (who is the caller; from where is her address)."""
    return Read(what, request.remote_addr, None if detail is None else str(detail))


def protection_context(case_id: int, view: Mapping[str, Any], spec: ProcessSpec, names: Mapping[str, str]
                       ) -> dict[str, Any]:
    """What the page shows of consent, referrals and the access log."""
    key = view["process"]
    status = []
    for row in view.get("consent_status", ()):
        status.append({**row, "label": label(row["label"], row["agency"]),
                       "override_by": names.get((row["override"] or {}).get("recorded_by"),
                                                (row["override"] or {}).get("recorded_by"))})
    statements = [{**c, "agency_label": label(spec.agency_label(c["agency"]), c["agency"]),
                   "by": names.get(c["recorded_by"], c["recorded_by"])} for c in view.get("consents", ())]
    referrals = []
    for r in view.get("referrals", ()):
        referrals.append({**r, "label": task_label(key, r["state"], r["name"], spec),
                          "role_label": role_label(r["role"]),
                          "agency_label": label(spec.agency_label(r["agency"]), r["agency"]) if r["agency"] else "",
                          "accepted_by_name": names.get(r["accepted_by"], r["accepted_by"]),
                          "completed_by_name": names.get(r["completed_by"], r["completed_by"]),
                          "assignee_name": names.get(r["assignee"], r["assignee"])})
    log = None
    if view.get("may_read_access_log"):
        # the page's own read is already logged (as "page"): this is the same read, not another
        log = hexie_state().queries.access_log(current_actor(), case_id, per_page=20, read=None)
        who = display_names([e["username"] for e in log.items])
        for e in log.items:
            e["name"] = who.get(e["username"], e["username"])
    return {"agencies": [(k, label(lbl, k)) for k, lbl in spec.agencies], "consent_status": status,
            "consent_statements": statements, "referrals": referrals, "access_log": log,
            "may_record_consent": view.get("may_record_consent"),
            "may_override_consent": view.get("may_override_consent")}


def protection_names(view: Mapping[str, Any]) -> list[str | None]:
    """Usernames the protection sections show (for display names)."""
    out = [c["recorded_by"] for c in view.get("consents", ())]
    for r in view.get("referrals", ()):
        out += [r.get("accepted_by"), r.get("completed_by"), r.get("assignee")]
    return out


def _back(case_id: int):
    return redirect(safe_next(request.form.get("next"), url_for("hexie.case", case_id=case_id)))


def _refused(err: Exception) -> None:
    details = err.details if isinstance(err, Invalid) else {}
    extra = "；".join(detail_text(v) for v in details.values() if isinstance(v, str))
    flash(error_text(err) + (f"{t('sep')}{extra}" if extra else ""), "error")


@bp.route("/cases/<int:case_id>/consents", methods=["POST"])
def record_consent(case_id: int):
    """Record (``given=1``) or withdraw (``given=0``) her consent for one agency."""
    given = request.form.get("given", "1") not in ("0", "false", "")
    try:
        Protection(hexie_state().engine).record_consent(
            current_actor(), case_id, request.form.get("agency", ""), request.form.get("scope", "services"),
            given, request.form.get("note"))
    except (Conflict, Forbidden, Invalid) as err:
        _refused(err)
    else:
        flash({"text": t("consent.recorded" if given else "consent.withdrawn_ok"), "case_id": case_id}, "success")
    return _back(case_id)


@bp.route("/cases/<int:case_id>/consents/override", methods=["POST"])
def override_consent(case_id: int):
    """An overseer opens a referral without consent, with a written reason."""
    try:
        Protection(hexie_state().engine).override_consent(current_actor(), case_id,
                                                          request.form.get("agency", ""), request.form.get("reason"))
    except (Conflict, Forbidden, Invalid) as err:
        _refused(err)
    else:
        flash({"text": t("consent.overridden_ok"), "case_id": case_id}, "success")
    return _back(case_id)


@bp.route("/tasks/<int:task_id>/accept", methods=["POST"])
def accept(task_id: int):
    """Accept a referral: it becomes mine."""
    return _referral_call(task_id, lambda p, actor: p.accept(actor, task_id), t("referral.accepted_ok"))


@bp.route("/tasks/<int:task_id>/decline", methods=["POST"])
def decline(task_id: int):
    """Decline a referral with a reason: the work goes back to the case owner."""
    return _referral_call(task_id, lambda p, actor: p.decline(actor, task_id, request.form.get("comment")),
                          t("referral.declined_ok"))


def _referral_call(task_id: int, call, done_message: str):
    try:
        call(Protection(hexie_state().engine), current_actor())
    except (Conflict, Forbidden, Invalid) as err:
        _refused(err)
    else:
        flash(done_message, "success")
    return redirect(safe_next(request.form.get("next"), url_for("hexie.inbox")))
