"""Chinese first, English second: a small dict-based catalog, no compiled .mo files.

``t(key)`` returns the text for the current locale; ``label(Label)`` does the same for
texts that come from process definitions. The locale is the session's choice
(``/lang/zh``, ``/lang/en``), else the user's stored preference, else Chinese.
"""
from __future__ import annotations

from typing import Any

from flask import g, has_request_context, session

LOCALES = ("zh", "en")
DEFAULT_LOCALE = "zh"

#: key -> (zh, en). Keys are stable names, never shown.
CATALOG: dict[str, tuple[str, str]] = {
    # --- application and navigation
    "app.name": ("和谐", "Hexie"),
    "app.tagline": ("县妇联业务办理系统", "County Women's Federation casework"),
    "nav.inbox": ("待办", "Inbox"),
    "nav.start": ("发起申请", "New case"),
    "nav.cases": ("案件查询", "Cases"),
    "nav.admin": ("管理", "Admin"),
    "nav.away": ("外出委托", "Away"),
    "nav.logout": ("退出", "Sign out"),
    "nav.login": ("登录", "Sign in"),
    "nav.language": ("English", "中文"),
    "nav.skip": ("跳到正文", "Skip to content"),
    "nav.menu": ("菜单", "Menu"),
    # --- sign in
    "login.title": ("登录", "Sign in"),
    "login.username": ("用户名", "Username"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Sign in"),
    "login.failed": ("用户名或密码不正确。", "Wrong username or password."),
    "login.throttled": ("登录失败次数过多，请一分钟后再试。",
                        "Too many failed attempts. Please wait a minute and try again."),
    "login.required": ("请先登录。", "Please sign in first."),
    "login.welcome": ("欢迎，{name}。", "Welcome, {name}."),
    "logout.done": ("您已退出。", "You have signed out."),
    "logout.title": ("退出登录", "Sign out"),
    "logout.confirm": ("确定要退出吗？", "Do you want to sign out?"),
    # --- inbox
    "inbox.title": ("我的待办", "My inbox"),
    "tab.mine": ("我的任务", "Mine"),
    "tab.available": ("可领取", "Available"),
    "tab.overdue": ("已逾期", "Overdue"),
    "tab.escalated": ("已升级", "Escalated"),
    "inbox.empty.mine": ("您手上没有任务。可到“可领取”里领取新任务。",
                         "Nothing is allocated to you. Take one from “Available”."),
    "inbox.empty.available": ("暂时没有可领取的任务。", "No tasks are waiting to be taken."),
    "inbox.empty.overdue": ("没有逾期的任务。", "Nothing is overdue."),
    "inbox.empty.escalated": ("没有升级的任务。", "Nothing has been escalated."),
    "col.case": ("案件", "Case"),
    "col.subject": ("申请人/事由", "Applicant / subject"),
    "col.process": ("业务", "Programme"),
    "col.state": ("环节", "Step"),
    "col.task": ("任务", "Task"),
    "col.role": ("办理岗位", "Role"),
    "col.assignee": ("办理人", "Assigned to"),
    "col.due": ("办理期限", "Due"),
    "col.unit": ("单位", "Unit"),
    "col.created": ("立案时间", "Opened"),
    "col.updated": ("最近更新", "Updated"),
    "col.status": ("状态", "Status"),
    "col.action": ("操作", "Action"),
    "filter.process": ("业务", "Programme"),
    "filter.state": ("环节", "Step"),
    "filter.unit": ("地区", "Area"),
    "filter.search": ("搜索申请人", "Search applicant"),
    "filter.search.placeholder": ("姓名或事由", "Name or subject"),
    "filter.all": ("全部", "All"),
    "filter.apply": ("筛选", "Filter"),
    "filter.clear": ("清除", "Clear"),
    "page.prev": ("上一页", "Previous"),
    "page.next": ("下一页", "Next"),
    "page.of": ("第 {page} / {pages} 页，共 {total} 条", "Page {page} of {pages}, {total} in all"),
    "flag.overdue": ("逾期", "Overdue"),
    "flag.escalated": ("已升级", "Escalated"),
    "flag.high": ("紧急", "Urgent"),
    "flag.low": ("低", "Low"),
    "flag.confidential": ("保密", "Confidential"),
    "flag.closed": ("已办结", "Closed"),
    "flag.open": ("办理中", "Open"),
    "due.in_days": ("{n} 天后到期", "due in {n} days"),
    "due.today": ("今天到期", "due today"),
    "due.in_hours": ("{n} 小时后到期", "due in {n} hours"),
    "due.late_days": ("逾期 {n} 天", "{n} days late"),
    "due.late_hours": ("逾期 {n} 小时", "{n} hours late"),
    "cases.empty": ("没有符合条件的案件。", "No cases match."),
    "subject.hidden": ("（保密案件）", "(confidential)"),
    "subject.none": ("（未填写）", "(none)"),
    # --- tasks
    "task.claim": ("领取", "Take"),
    "task.release": ("退回待领", "Give back"),
    "task.done": ("完成此项", "Mark done"),
    "task.claimed": ("已领取任务。", "Task taken."),
    "task.released": ("任务已退回，其他同事可以领取。", "Task given back for colleagues to take."),
    "task.done_ok": ("已完成此项任务。", "Task done."),
    "task.status.offered": ("待领取", "Waiting to be taken"),
    "task.status.allocated": ("办理中", "In hand"),
    "task.yours": ("您的任务", "Yours"),
    "task.nobody": ("尚无人领取", "Not taken yet"),
    # --- case page
    "case.title": ("案件 #{id}", "Case #{id}"),
    "case.data": ("案件信息", "Case details"),
    "case.no_data": ("尚未填写信息。", "Nothing filled in yet."),
    "case.masked": ("部分敏感信息已隐藏：只有经办人员可以查看。",
                    "Some sensitive details are hidden: only the people working the case see them."),
    "case.tasks": ("当前任务", "Current tasks"),
    "case.no_tasks": ("当前没有待办任务。", "No open tasks."),
    "case.actions": ("办理", "Act on this case"),
    "case.no_actions": ("您现在不需要对此案件操作。", "There is nothing for you to do on this case now."),
    "case.blocked": ("暂不能执行", "Not possible yet"),
    "nav.reports": ("统计报表", "Reports"),
    "report.show": ("查看", "Show"),
    "report.total": ("您可查看的案件共 {n} 件。", "{n} cases you may see."),
    "report.all": ("合计", "Total"),
    "report.open_tasks": ("在办任务", "Open tasks"),
    "report.overdue": ("逾期", "Overdue"),
    "report.by_month": ("按立案月份", "By month opened"),
    "report.month": ("月份", "Month"),
    "report.opened": ("立案数", "Opened"),
    "report.empty": ("没有可统计的案件。", "No cases to count."),
    "report.tabs": ("报表类别", "Kinds of report"),
    "report.tab.cases": ("案件统计", "Cases"),
    "report.tab.money": ("资金统计", "Money by fund"),
    "report.tab.ledger": ("资金明细", "Ledger entries"),
    # --- money: earmarked funds and their ledger
    "money.title": ("资金统计", "Money by fund"),
    "money.fund": ("资金来源", "Fund"),
    "money.entries": ("笔数", "Entries"),
    "money.paid": ("支出", "Paid out"),
    "money.refunded": ("退回", "Refunded"),
    "money.net": ("净支出", "Net"),
    "money.total": ("合计", "Total"),
    "money.by_fund": ("按资金来源", "By fund"),
    "money.by_town": ("各镇净支出（按资金来源）", "Net by town and fund"),
    "money.by_month": ("按记账月份", "By month posted"),
    "money.month": ("月份", "Month"),
    "money.town": ("镇", "Town"),
    "money.summary": ("您可查看的记账共 {n} 笔，净支出 {net}。", "{n} ledger entries you may see, {net} net."),
    "money.empty": ("没有可统计的资金记录。", "No ledger entries to count."),
    "money.csv": ("下载 CSV", "Download CSV"),
    "money.to_ledger": ("查看明细", "See the entries"),
    "ledger.title": ("资金明细", "Ledger entries"),
    "ledger.empty": ("没有符合条件的记账。", "No ledger entries match."),
    "ledger.kind.payment": ("支出", "Payment"),
    "ledger.kind.refund": ("退回", "Refund"),
    "ledger.col.id": ("记账号", "Entry"),
    "ledger.col.date": ("日期", "Date"),
    "ledger.col.time": ("记账时间", "Posted at"),
    "ledger.col.case": ("案件", "Case"),
    "ledger.col.place": ("镇/村", "Town / village"),
    "ledger.col.unit_code": ("单位代码", "Unit code"),
    "ledger.col.process": ("业务", "Programme"),
    "ledger.col.fund": ("资金来源", "Fund"),
    "ledger.col.fund_code": ("资金代码", "Fund code"),
    "ledger.col.kind": ("类型", "Kind"),
    "ledger.col.amount": ("金额（元）", "Amount (yuan)"),
    "ledger.col.subject": ("申请人/事由", "Applicant / subject"),
    "ledger.col.trigger": ("操作", "Action"),
    "ledger.col.audit_seq": ("办理记录序号", "Audit event no."),
    "case.claim_first": ("请先领取任务，再办理。", "Take the task first, then act on it."),
    "case.history": ("办理记录", "History"),
    "case.diagram": ("流程图", "Process map"),
    "case.diagram.note": ("红色为当前环节。", "The current step is shown in red."),
    "case.unit": ("所属单位", "Unit"),
    "case.process": ("业务", "Programme"),
    "case.state": ("当前环节", "Current step"),
    "case.version": ("流程版本", "Version"),
    "case.created": ("立案", "Opened"),
    "case.created_by": ("立案人", "Opened by"),
    "case.closed": ("办结", "Closed"),
    "case.attachments": ("附件", "Attachments"),
    "case.comment": ("意见", "Comment"),
    "case.comment.required": ("必须填写意见", "A comment is required"),
    "case.comment.none": ("此操作不填写意见", "No comment for this action"),
    "case.moved": ("案件 #{id} 已转到“{state}”。", "Case #{id} moved to “{state}”."),
    "case.voted": ("已记录您的意见（{votes}/{quorum}），还需其他人确认。",
                   "Your vote is recorded ({votes}/{quorum}); others must confirm."),
    "case.back_inbox": ("返回待办", "Back to inbox"),
    "case.confirm": ("确定要执行“{action}”吗？", "Really “{action}”?"),
    "case.you_voted": ("您已投票", "You voted"),
    "case.votes_note": ("需要 {n} 人同意", "needs {n} approvals"),
    "case.stale": ("此案件已被他人修改，页面已刷新，请核对后重新提交。",
                   "Someone changed this case meanwhile; the page is refreshed, please check and submit again."),
    "case.fix_errors": ("表单有误，请按提示修改。", "The form has errors; please correct them."),
    # --- history
    "history.empty": ("暂无记录。", "No entries yet."),
    "history.system": ("系统", "System"),
    "history.changes": ("修改内容", "Changes"),
    "history.files": ("{n} 个文件", "{n} file(s)"),
    "history.task": ("任务", "Task"),
    "kind.started": ("立案", "Opened"),
    "kind.fired": ("办理", "Action"),
    "kind.vote": ("投票", "Vote"),
    "kind.claimed": ("领取任务", "Took the task"),
    "kind.released": ("退回任务", "Gave the task back"),
    "kind.delegated": ("转交任务", "Delegated the task"),
    "kind.reassigned": ("改派任务", "Reassigned the task"),
    "kind.task_done": ("完成任务", "Task done"),
    "kind.escalated": ("逾期升级", "Escalated (overdue)"),
    "kind.migrated": ("迁移流程版本", "Moved to a new version"),
    "kind.attached": ("上传附件", "Attached a file"),
    # --- start
    "start.title": ("发起申请", "Start a case"),
    "start.choose": ("请选择要办理的业务：", "Choose the programme:"),
    "start.none": ("您没有可以发起的业务。", "There is no programme you may start."),
    "start.unit": ("所属单位", "Unit"),
    "start.unit.help": ("案件归属的镇或村", "The town or village the case belongs to"),
    "start.comment": ("备注", "Note"),
    "start.submit": ("提交", "Submit"),
    "start.done": ("已立案：案件 #{id}。", "Case #{id} opened."),
    "start.no_units": ("您所在地区没有可以立案的单位。", "There is no unit in your area where this can be filed."),
    # --- forms
    "form.required": ("必填", "required"),
    "form.choose": ("— 请选择 —", "— choose —"),
    "form.yes": ("是", "Yes"),
    "form.no": ("否", "No"),
    "form.cancel": ("取消", "Cancel"),
    "form.error.required": ("此项必填", "This is required"),
    "form.error.integer": ("请填写整数", "Enter a whole number"),
    "form.error.number": ("请填写数字", "Enter a number"),
    "form.error.number_range": ("不是有效的数字（不接受 NaN、无穷大或绝对值超过 10^15 的数）",
                                "Not a usable number (NaN, infinity and numbers beyond 10^15 are refused)"),
    "form.error.money": ("请填写金额，最多两位小数", "Enter an amount with at most two decimals"),
    "form.error.date": ("请填写日期（年-月-日）", "Enter a date (YYYY-MM-DD)"),
    "form.error.datetime": ("请填写日期和时间", "Enter a date and time"),
    "form.error.choice": ("请从列表中选择", "Choose from the list"),
    "form.error.min": ("不能小于 {min}", "Must be at least {min}"),
    "form.error.max": ("不能大于 {max}", "Must be at most {max}"),
    "form.error.length": ("最多 {max} 个字符", "At most {max} characters"),
    "form.error.pattern": ("格式不正确", "The format is not right"),
    "form.file.types": ("可上传 PDF、JPG、PNG、Word、Excel，单个不超过 10 MB",
                        "PDF, JPG, PNG, Word or Excel, at most 10 MB each"),
    "form.file.keep": ("不选择文件则保留原有附件", "Leave empty to keep the files already attached"),
    "form.file.bad_type": ("不支持的文件类型：{name}", "File type not allowed: {name}"),
    "form.file.too_big": ("文件过大（超过 10 MB）：{name}", "File too large (over 10 MB): {name}"),
    "form.file.one": ("只能上传一个文件", "Only one file is allowed"),
    "form.user.help": ("填写用户名", "Enter a username"),
    # --- errors
    "error.title": ("出错了", "Something went wrong"),
    "error.400": ("请求无效。", "The request is not valid."),
    "error.400.csrf": ("页面已过期或来源不明，请刷新页面后重试。",
                       "The page has expired or did not come from this site; reload it and try again."),
    "error.401": ("请先登录。", "Please sign in."),
    "error.403": ("您无权执行此操作。", "You may not do this."),
    "error.404": ("没有找到该页面或案件。", "Not found: no such page or case."),
    "error.405": ("不支持该请求方式。", "This request method is not allowed."),
    "error.409": ("操作冲突，请刷新后重试。", "Conflict: reload and try again."),
    "error.413": ("上传的文件过大（合计不超过 10 MB）。", "The upload is too large (10 MB in all)."),
    "error.422": ("无法执行该操作。", "This action is not possible."),
    "error.500": ("系统出现错误，已记录。请稍后再试。", "An error occurred and was logged. Please try again later."),
    "error.503": ("数据库暂时不可用，请稍等几秒后重试。您刚才的操作如已完成，重试时不会重复办理。",
                  "The database is briefly unavailable: please try again in a few seconds. "
                  "If what you just did went through, trying again will not do it twice."),
    "error.home": ("返回首页", "Back to the inbox"),
    # --- misc
    "lang.switched": ("已切换为中文。", "Switched to English."),
    "sep": ("：", ": "),
    "yes": ("是", "Yes"),
    "no": ("否", "No"),
    "none": ("—", "—"),
    "more": ("更多操作", "More actions"),
}


def get_locale() -> str:
    """The current request's locale: session choice, else the user's preference, else zh."""
    if not has_request_context():
        return DEFAULT_LOCALE
    cached = g.get("hexie_locale")
    if cached:
        return cached
    locale = session.get("lang")
    if locale not in LOCALES:
        locale = None
        try:
            from .extension import current_actor
            actor = current_actor()
        except Exception:  # no extension (e.g. a bare error page): stay with the default
            actor = None
        if actor is not None and getattr(actor, "locale", None) in LOCALES:
            locale = actor.locale
    g.hexie_locale = locale or DEFAULT_LOCALE
    return g.hexie_locale


def t(key: str, **params: Any) -> str:
    """The catalog text for ``key`` in the current locale, formatted with ``params``."""
    pair = CATALOG.get(key)
    if pair is None:
        return key  # a missing key shows itself, so it is noticed and added
    text = pair[1] if get_locale() == "en" else pair[0]
    return text.format(**params) if params else text


def both(key: str, **params: Any) -> str:
    """"中文 / English" for a catalog key, for messages that must carry both (logs, flashes)."""
    zh, en = CATALOG[key]
    return f"{zh.format(**params)} / {en.format(**params)}"


def label(value: Any, fallback: str = "") -> str:
    """A definition text (``hexie.workflows.spec.Label`` or a plain string) in the current locale."""
    if value is None:
        return fallback
    getter = getattr(value, "get", None)
    if callable(getter) and hasattr(value, "zh"):
        return value.get(get_locale())
    return str(value)


def error_text(err: Any) -> str:
    """A HexieError's message in the current locale (``.zh`` or ``.en``)."""
    return err.en if get_locale() == "en" else err.zh


def detail_text(message: Any) -> str:
    """One field error from the engine ("中文 / English") in the current locale."""
    text = str(message)
    if " / " in text:
        zh, _, en = text.partition(" / ")
        return en if get_locale() == "en" else zh
    return text
