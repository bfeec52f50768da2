"""The notification centre (``/notifications``) and the notification settings page."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from hexie.workflows import channels, notifications
from hexie.workflows.errors import Invalid, NotFound
from hexie.workflows.queries import Page

from ..state import current_actor, hexie_state
from ..i18n import error_text, get_locale, t
from .blueprint import bp
from .common import page_arg

PER_PAGE = 25


@bp.route("/notifications", endpoint="notifications")
def notifications_page():
    """Her notifications, newest first (``?unread=1``: only the unread ones)."""
    actor = current_actor()
    unread = request.args.get("unread") == "1"
    page = page_arg()
    items, total = notifications.list_notifications(hexie_state().engine, actor, unread=unread, page=page,
                                                    per_page=PER_PAGE)
    locale = get_locale()
    for item in items:
        item["shown"] = item["text_en"] if locale == "en" else item["text_zh"]
    return render_template("notifications.html", items=items, page=Page(items, total, page, PER_PAGE),
                           unread=unread)


@bp.route("/notifications/<int:notification_id>/read", methods=["POST"])
def notification_read(notification_id: int):
    """Mark one read; with ``open``, go on to the case it is about."""
    actor = current_actor()
    engine = hexie_state().engine
    try:
        notifications.mark_read(engine, actor, notification_id)
    except NotFound:
        abort(404)
    target = request.form.get("open")
    if target and target.startswith("/cases/"):
        return redirect(request.script_root + target)
    return redirect(url_for("hexie.notifications", unread=request.form.get("unread") or None))


@bp.route("/notifications/read-all", methods=["POST"])
def notifications_read_all():
    notifications.mark_all_read(hexie_state().engine, current_actor())
    flash(t("notices.marked_all"), "success")
    return redirect(url_for("hexie.notifications"))


@bp.route("/notifications/preferences", methods=["GET", "POST"])
def notification_preferences():
    """Her address, her daily digest time, and the channels of each kind."""
    actor = current_actor()
    engine = hexie_state().engine
    configured = channels.channels_of(engine)
    names = ["in_app", "email"] + [n for n in channels.channel_names() if n not in ("in_app", "email") and n in configured]
    errors: dict[str, str] = {}
    prefs = notifications.get_preferences(engine, actor)
    if request.method == "POST":
        body = {"email": request.form.get("email", "").strip() or None,
                "digest": request.form.get("digest", "").strip() or None,
                "channels": {kind: [n for n in names if request.form.get(f"{kind}:{n}")]
                             for kind in notifications.KINDS}}
        try:
            notifications.set_preferences(engine, actor, body)
        except Invalid as err:
            errors = {k: str(v) for k, v in err.details.items()}
            flash(error_text(err), "error")
            prefs = {**prefs, "email": body["email"], "digest": body["digest"]}
        else:
            flash(t("prefs.saved"), "success")
            return redirect(url_for("hexie.notification_preferences"))
    kinds = [(kind, notifications.KIND_LABELS[kind][1 if get_locale() == "en" else 0]) for kind in notifications.KINDS]
    return render_template("notification_preferences.html", prefs=prefs, kinds=kinds, names=names, errors=errors)
