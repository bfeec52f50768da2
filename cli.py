"""The ``hexie`` command line (interfaces.md): a face at the edge, beside the web.

It drives the engine (:mod:`hexie.workflows`) as the web does, and reaches the web layer
only to serve it; the engine imports neither. Engine errors become exit status 1 here.
"""
from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import click

from hexie.workflows.errors import HexieError


def _definitions(path: str | None) -> Path:
    from hexie.workflows.loader import default_definitions_dir
    return Path(path) if path else default_definitions_dir()


def build_engine(definitions: str | None = None, upgrade: bool = True):
    """The engine over $HEXIE_DATABASE_URL, schema upgraded, definitions synced."""
    from hexie.workflows.engine import create_engine
    from hexie.workflows.loader import DefinitionError

    try:
        return create_engine(None, _definitions(definitions), upgrade=upgrade)
    except DefinitionError as err:
        raise click.ClickException(f"定义有误 / definitions have errors:\n{err}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Hexie (和谐): 工作流与审批引擎 / workflow and approval engine."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
def check(paths: tuple[str, ...]) -> None:
    """检查流程定义 / Check process definitions (default: definitions/)."""
    from hexie.workflows.check import check_paths
    sys.exit(check_paths(list(paths) or [str(_definitions(None))]))


@main.command()
@click.argument("process")
@click.option("--definitions", type=click.Path(exists=True, file_okay=False), default=None)
@click.option("--locale", default="zh", type=click.Choice(["zh", "en"]))
def graph(process: str, definitions: str | None, locale: str) -> None:
    """以 Mermaid 输出流程状态机 / Print a process's state machine as Mermaid."""
    from hexie.workflows.loader import DefinitionError, load_definitions_strict
    from hexie.workflows.machine import compile_process
    try:
        registry = load_definitions_strict(_definitions(definitions))
    except DefinitionError as err:
        raise click.ClickException(str(err)) from None
    spec = registry.processes.get(process)
    if spec is None:
        raise click.ClickException(f"没有这个流程 / no process {process!r} "
                                   f"(known: {', '.join(sorted(registry.processes))})")
    click.echo(compile_process(spec).mermaid(locale=locale), nl=False)


@main.group()
def db() -> None:
    """数据库 / Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """创建或迁移数据库结构 / Create or migrate the schema (Alembic)."""
    from hexie.models import database_url, upgrade
    upgrade(database_url())
    click.echo("数据库已是最新 / schema is up to date")


@main.group()
def org() -> None:
    """组织与人员 / Org units and people."""


@org.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--prune", is_flag=True,
              help="停用文件中未列出的用户 / deactivate the users the file no longer lists")
def org_load(file: str, prune: bool) -> None:
    """从 YAML 导入单位和用户（可重复执行）/ Create or update units and users from YAML (idempotent)."""
    from hexie.workflows.org import OrgFileError, load_org_file
    engine = build_engine()
    roles = engine.registry.roles
    with engine.transaction() as s:
        try:
            result = load_org_file(s, file, roles=list(roles.roles), levels=list(roles.levels), prune=prune,
                                   now=engine.clock())
        except OrgFileError as err:
            raise click.ClickException(str(err)) from None
    line = (f"单位 / units: {len(result.created_units)} 新建 created, {len(result.updated_units)} 更新 updated; "
            f"用户 / users: {len(result.created_users)} 新建 created, {len(result.updated_users)} 更新 updated")
    if prune:
        line += f", {len(result.pruned_users)} 停用 deactivated"
    click.echo(line)


@main.command()
@click.argument("username")
@click.option("--app", "app_path", default=None, metavar="MODULE:APP",
              help="宿主应用（用其配置和引擎）/ a host's Flask app (its key and engine), e.g. host:app")
def token(username: str, app_path: str | None) -> None:
    """输出该用户的 API 令牌 / Print an API token for a user.

    签名密钥为 $HEXIE_SECRET_KEY（否则为实例目录中的密钥）；宿主应用中请让其
    HEXIE_SECRET_KEY（或 SECRET_KEY）与之相同，或用 --app 指定宿主应用。Signed with
    $HEXIE_SECRET_KEY (else the instance folder's key): a host accepts it when its
    app.config["HEXIE_SECRET_KEY"] (else its SECRET_KEY) is the same key, on the same
    database. With --app, the host's own app is loaded and its key and engine are used.
    """
    from hexie.workflows.config import secret_key
    from hexie.workflows.tokens import issue_token
    try:
        if app_path:
            app = _load_app(app_path)
            with app.app_context():
                click.echo(issue_token(username, origin="cli"))
            return
        engine = build_engine()
        click.echo(issue_token(username, engine=engine, secret=secret_key(), origin="cli"))
    except HexieError as err:
        raise click.ClickException(err.message) from None


def _load_app(path: str):
    """``module:attribute`` (an app, or a factory called without arguments), as Flask's --app."""
    import importlib
    module_name, _, attribute = path.partition(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise click.ClickException(f"无法导入 / cannot import {module_name!r}: {err}") from None
    app = getattr(module, attribute or "app", None)
    if app is not None and not hasattr(app, "app_context") and callable(app):
        app = app()
    if app is None or "hexie" not in getattr(app, "extensions", {}):
        raise click.ClickException(f"{path!r} 不是挂载了 Hexie 的 Flask 应用 / is not a Flask app with Hexie mounted")
    return app


@main.command()
@click.option("--cases/--no-cases", default=True, help="also start sample cases")
def demo(cases: bool) -> None:
    """载入演示县、人员和示例案件 / Load the demo county, its people and sample cases."""
    from hexie.workflows.demo import load_demo
    engine = build_engine()
    summary = load_demo(engine, with_cases=cases)
    click.echo(summary)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--debug", is_flag=True)
def serve(host: str, port: int, debug: bool) -> None:
    """运行网页应用 / Run the web app (loads definitions, upgrades the schema first)."""
    from hexie.web import create_app
    from hexie.web.serving import RedactingRequestHandler
    app = create_app(engine=build_engine())
    click.echo(f"Hexie: http://{host}:{port}/")
    # the request log never carries a survivor's name searched for (?lookup=, protection.md)
    app.run(host=host, port=port, debug=debug, use_reloader=False, request_handler=RedactingRequestHandler)


@main.command()
@click.option("--once", is_flag=True, help="run what is due now and exit")
@click.option("--interval", default=30.0, show_default=True, help="seconds between rounds")
def worker(once: bool, interval: float) -> None:
    """执行到期定时器、升级、提醒，发送通知与推送 / Run due timers, escalations and reminders; send
    notifications and webhooks from the outbox; apply the definitions' retention once a day.

    Several workers may run at once, on several hosts. $HEXIE_OUTBOX_LEASE (seconds) is how
    long a claimed outbox row is left to its sender before another takes it again.
    """
    import os

    from hexie.workflows.channels import NOTIFY_POLICY, send_pending
    from hexie.workflows.notifications import notify_due
    from hexie.workflows.outbox import DEFAULT_POLICY
    from hexie.workflows.retention import run_retention
    from hexie.workflows.service import WorkflowService
    from hexie.workflows.tokens import prune as prune_credentials
    from hexie.workflows.webhooks import deliver_pending
    engine = build_engine()   # every action writes its messages to the outbox itself: the worker sends them
    service = WorkflowService(engine)
    lease = float(os.environ["HEXIE_OUTBOX_LEASE"]) if os.environ.get("HEXIE_OUTBOX_LEASE") else None
    webhook_policy, notify_policy = DEFAULT_POLICY.with_lease(lease), NOTIFY_POLICY.with_lease(lease)
    click.echo("工作进程已启动 / worker started")
    retention_day = None
    while True:
        with engine.transaction() as s:    # tokens and sessions revoked or expired long ago
            prune_credentials(s, engine.clock())
        if engine.today() != retention_day:    # the definitions' retention: once a day (and on start)
            retention_day = engine.today()
            summary = run_retention(engine, upload_dir=_upload_dir())
            if summary.cases or summary.skipped:
                for line in summary.lines():
                    click.echo(line)
        resumed = service.resume_due_holds()   # holds with an end: resumed first, so their clocks move on
        fired = service.run_due_timers()
        escalated = service.escalate_overdue()
        reminded = notify_due(engine)
        sent = send_pending(engine, notify_policy)
        delivered = deliver_pending(engine, webhook_policy)
        click.echo(f"定时器 / timers fired: {fired}; 升级 / escalated: {escalated}; 提醒 / reminders: {reminded}; "
                   f"通知 / notifications sent: {sent}; 推送 / webhooks delivered: {delivered}")
        if once:
            return
        if not (resumed or fired or escalated or reminded or sent or delivered):
            time.sleep(interval)


@main.group()
def audit() -> None:
    """审计记录 / The audit trail."""


@audit.command("verify")
@click.option("--case", "case_id", type=int, default=None)
@click.option("--anchor", "anchor_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="与此前的锚点核对 / also check against an anchor written by 'hexie audit anchor'")
def audit_verify(case_id: int | None, anchor_file: str | None) -> None:
    """校验审计哈希链 / Verify the audit hash chain; exit 1 when tampered.

    With --anchor, also finds what was rewritten, inserted or deleted since the anchor was
    written, whole cases included, even by someone who could write to the database.
    """
    import json

    from hexie.workflows.audit import verify_anchor, verify_chain
    anchor = None
    if anchor_file:
        try:
            anchor = json.loads(Path(anchor_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise click.ClickException(f"锚点文件无法读取 / cannot read the anchor: {err}") from None
    with build_engine().session_factory() as s:
        problems = verify_chain(s, case_id)
        if anchor is not None:
            problems += verify_anchor(s, anchor)
    _verdict(problems, "审计链被篡改 / audit chain broken", "审计链完整 / audit chain intact")


@audit.command("anchor")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="写入此文件（默认标准输出）/ write to this file (default: standard output)")
def audit_anchor(output: str | None) -> None:
    """写出所有审计链的签名锚点 / Write the signed heads of every audit chain, for safe keeping."""
    import json

    from hexie.workflows.audit import make_anchor
    with build_engine().session_factory() as s:
        text = json.dumps(make_anchor(s), ensure_ascii=False, indent=1)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
        click.echo(f"已写出锚点 / anchor written: {output}", err=True)
    else:
        click.echo(text)


def _verdict(problems: list[str], broken: str, intact: str) -> None:
    """Print each problem, then the verdict; exit 1 when there is any."""
    for p in problems:
        click.echo(f"error: {p}")
    if problems:
        click.echo(f"{broken}: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(intact)


def _upload_dir() -> Path:
    """Where attachments are kept: $HEXIE_UPLOAD_DIR, else the instance folder's uploads."""
    import os

    from hexie.workflows.config import instance_dir
    return Path(os.environ["HEXIE_UPLOAD_DIR"]) if os.environ.get("HEXIE_UPLOAD_DIR") else instance_dir() / "uploads"


@main.group()
def retention() -> None:
    """保留期限 / Retention of closed cases (retention: {anonymise_after: P5Y})."""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="只列出到期案件 / only list the cases due")
def retention_run(dry_run: bool) -> None:
    """匿名化超过保留期限的已结案件 / Anonymise the closed cases past their retention.

    Every sensitive value (in the data and the history) and every attachment (its file deleted)
    becomes a tombstone; the audit chain still verifies. The run is recorded in the audit trail.
    Files are looked for in $HEXIE_UPLOAD_DIR, else the instance folder's uploads.
    """
    from hexie.workflows.retention import run_retention
    summary = run_retention(build_engine(), upload_dir=_upload_dir(), dry_run=dry_run)
    for line in summary.lines():
        click.echo(line)
    if dry_run and summary.cases:
        click.echo("  " + ", ".join(str(c) for c in summary.cases))
    if summary.skipped:
        sys.exit(1)


@main.group()
def search() -> None:
    """按姓名查找（盲索引）/ The blind index for finding a survivor's case."""


@search.command("reindex")
@click.argument("process", required=False)
def search_reindex(process: str | None) -> None:
    """为已有案件建立盲索引 / Index the searchable fields of existing cases (after marking a field searchable)."""
    from hexie.workflows.protection import reindex
    click.echo(f"已建立索引 / indexed: {reindex(build_engine(), process)} 件 cases")


@main.group()
def ledger() -> None:
    """资金台账 / The ledger of earmarked funds."""


@ledger.command("verify")
def ledger_verify() -> None:
    """核对台账与审计记录 / Reconcile the ledger with the audit trail; exit 1 on any difference."""
    from hexie.workflows.audit import verify_chain
    from hexie.workflows.ledger import verify_ledger
    with build_engine().session_factory() as s:
        problems = verify_chain(s) + verify_ledger(s)
    _verdict(problems, "台账与审计记录不符 / ledger does not reconcile",
             "台账与审计记录相符 / ledger reconciles with the audit trail")


@main.group()
def cases() -> None:
    """案件 / Cases."""


@cases.command("migrate")
@click.argument("process")
@click.argument("from_version", type=int)
@click.option("--map", "mapping", multiple=True, help="OLD=NEW state mapping")
def cases_migrate(process: str, from_version: int, mapping: tuple[str, ...]) -> None:
    """把运行中的案件迁到当前版本 / Move running cases of a version to the current one."""
    from hexie.workflows.access import SYSTEM
    from hexie.workflows.service import WorkflowService
    state_map = dict(m.split("=", 1) for m in mapping)
    try:
        moved = WorkflowService(build_engine()).migrate(SYSTEM, process, from_version, state_map)
    except HexieError as err:
        raise click.ClickException(err.message) from None
    click.echo(f"已迁移 / migrated: {moved}")


class _ImportProgress:
    """A progress bar on a terminal (stderr): checking the rows, then writing them; nothing
    when the output is a file or a pipe."""

    LABELS = {"check": "检查 / checking", "write": "导入 / importing"}

    def __init__(self, path: str) -> None:
        self.path, self.bar, self.phase, self.total = path, None, None, 0
        self.on = sys.stderr.isatty()

    def __enter__(self):
        if self.on:
            from hexie.workflows.bulk import count_rows
            self.total = count_rows(self.path)
        return self if self.on else None

    def __call__(self, phase: str, n: int) -> None:
        if phase != self.phase:
            self._close()
            self.phase = phase
            self.bar = click.progressbar(length=max(self.total, 1), label=self.LABELS.get(phase, phase),
                                         file=sys.stderr, show_pos=True,
                                         update_min_steps=max(self.total // 200, 1))
            self.bar.__enter__()
        self.bar.update(n)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __exit__(self, *exc) -> None:
        self._close()


@cases.command("import")
@click.argument("process")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--as", "username", default=None, help="以该用户身份立案（默认系统）/ start as this user (default: system)")
@click.option("--batch", default=2000, show_default=True, type=click.IntRange(min=1),
              help="每个事务的行数 / rows per transaction")
@click.option("--resume", is_flag=True,
              help="续传中断的导入，跳过已导入的行 / carry on an interrupted import of this file, "
                   "skipping the rows it already imported")
def cases_import(process: str, file: str, username: str | None, batch: int, resume: bool) -> None:
    """从 CSV 或 Excel（.xlsx）批量立案，每行一案 / Start one case per row of a CSV or .xlsx file.

    表头为首个表单的字段名加 org_unit 列（单位代码）；任一行有误则不导入任何行。
    The header names the first form's fields plus an org_unit column (unit codes); when
    any row has an error nothing is imported. Rows are numbered as in a spreadsheet
    (the header is row 1). An optional business_key column gives each case its
    business key (unique per process: a key twice in the file or already taken is a row error)
    and is recorded with each row.
    A run that was killed or aborted part-way is carried on with --resume (each row is
    imported once); without it, the command refuses to start that file afresh.
    """
    from hexie.workflows.access import SYSTEM
    from hexie.workflows.bulk import ImportAborted, import_cases, interrupted_run
    engine = build_engine()
    # What is loaded now (definitions, SQLAlchemy, the engine) lives as long as the command: the
    # garbage collector's full passes stop scanning it again and again (~10 % of a large import).
    gc.freeze()
    began = time.perf_counter()
    if not resume and interrupted_run(engine, process, file) is not None:
        click.echo("此文件的上次导入中断了：请加 --resume 续传（已导入的行不会重复）/ an earlier import of this "
                   "file was interrupted: add --resume to carry on (rows already imported are skipped)", err=True)
        sys.exit(1)
    try:
        actor = engine.actor(username) if username else SYSTEM
        with _ImportProgress(file) as progress:
            result = import_cases(engine, actor, process, file, batch_size=batch, resume=resume,
                                  progress=progress)
    except HexieError as err:
        raise click.ClickException(err.message) from None
    except ImportAborted as err:
        raise click.ClickException(f"导入中止 / import aborted: {err}") from None
    for line in result.errors:
        click.echo(f"error: {line}", err=True)
    if result.errors:
        click.echo(f"未导入任何案件 / nothing imported: {result.error_rows} of {result.rows} rows have errors",
                   err=True)
        sys.exit(1)
    skipped = f", 跳过 / skipped: {result.skipped}" if resume else ""
    click.echo(f"已立案 / started: {result.started}{skipped} ({time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":  # pragma: no cover
    main()
