"""The demo county: its org tree, its people and a few dozen sample cases.

``hexie demo`` calls :func:`load_demo`. The org (``demo_org.yaml`` next to this
module: 某县, 14 towns, 3–5 villages each, people in every role, one password
:data:`DEMO_PASSWORD`) goes through :func:`hexie.workflows.org.load_org`, so loading it
again changes nothing. The sample cases are made only through
:class:`hexie.workflows.service.WorkflowService`, by the demo people themselves (start,
claim, fire with realistic data, two managers voting, the parallel referral tasks of
a complaint marked done), so every case has a real, hash-chained history.

Cases are spread over the last months: while they are made, the engine's clock is
set back (``engine.clock`` is swapped for a shifted one and restored afterwards), so
the older ones have overdue tasks exactly as they would in real life, and the
escalation pass at the end flags the ones overdue past their escalation. Cases are
made only when the database has none, so a second run adds none.

The figures follow the federation's report (seed/000_55eb41f5ca1fb49c.txt): project
aid of at most 800 yuan of piglets or goats, consolation visits of about 200 yuan,
micro-loans of about 15,000 yuan, Spring Bud grants of about 420 yuan a year.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from sqlalchemy import func, select

from hexie.models import Attachment, Case, Task, User

from .access import SYSTEM, Actor
from .auth import hash_password
from .engine import Engine
from .org import load_org
from .consent import Protection
from .service import WorkflowService

#: The one password of every demo user (documented in docs/demo-users.md).
DEMO_PASSWORD = "hexie-demo-2026"
ORG_FILE = Path(__file__).with_name("demo_org.yaml")
OPEN = ("offered", "allocated")


def demo_org() -> dict[str, Any]:
    """The demo org file's content (units and users), as :func:`load_org` takes it."""
    return yaml.safe_load(ORG_FILE.read_text(encoding="utf-8"))


def load_demo(engine: Engine, with_cases: bool = True) -> str:
    """Load the demo county and its people, and (once) the sample cases; returns a summary.

    Idempotent: people and units are declared, not added (a second run restores their
    names and roles but leaves passwords alone); sample cases are made only when the
    database holds no case at all.
    """
    data = demo_org()
    roles = engine.registry.roles
    # Argon2 is slow on purpose (a third of a second here): hashing, or verifying, the
    # same public password for 67 people on every run would take half a minute. New
    # demo users get one hash of it instead; existing users keep their password.
    passwords = {u["username"]: u.pop("password", None) for u in data["users"]}
    with engine.transaction() as s:
        result = load_org(s, data, roles=list(roles.roles), levels=list(roles.levels))
        if result.created_users:
            shared = hash_password(DEMO_PASSWORD)
            for user in s.scalars(select(User).where(User.username.in_(result.created_users))):
                user.password_hash = shared if passwords.get(user.username) == DEMO_PASSWORD \
                    else hash_password(passwords[user.username])
    towns = sum(1 for u in data["units"] if u["level"] == "town")
    villages = sum(1 for u in data["units"] if u["level"] == "village")
    people = len(data["users"])
    zh = (f"演示县“某县”已就绪：{towns} 个镇、{villages} 个村、{people} 名演示用户"
          f"（本次新建 {len(result.created_users)} 名，更新 {len(result.updated_users)} 名），"
          f"统一密码 {DEMO_PASSWORD}，管理员 admin，县妇联主席 zhuxi、副主席 fuzhuxi。")
    en = (f"The demo county 某县 is ready: {towns} towns, {villages} villages, {people} demo users "
          f"({len(result.created_users)} created, {len(result.updated_users)} updated now), all with "
          f"the password {DEMO_PASSWORD}; administrator admin, county chair zhuxi and vice-chair fuzhuxi.")
    if with_cases:
        with engine.session_factory() as s:
            existing = s.scalar(select(func.count()).select_from(Case)) or 0
        if existing:
            zh += f"数据库中已有 {existing} 件案件，未再添加示例案件。"
            en += f" The database already holds {existing} cases, so no sample cases were added."
        else:
            made = DemoCases(engine).run()
            by_process = ", ".join(f"{k} {v}" for k, v in sorted(made.items()))
            total = sum(made.values())
            zh += (f"已按真实办理流程创建示例案件 {total} 件（{by_process}），分布在申请、调查、"
                   f"待审批（含待第二人审批）、发放与回访、结案、驳回等各环节，其中部分任务已逾期。")
            en += (f" {total} sample cases were worked through the real steps ({by_process}): "
                   "applications, surveys, approvals (some waiting for the second vote), payments and "
                   "follow-up visits, closed and rejected cases, and a few overdue tasks.")
    return f"{zh} / {en}"


def demo_pdf(line: str) -> bytes:
    """A valid one-page PDF showing ``line`` (ASCII), to stand in for a scanned agreement."""
    text = line.encode("ascii", "replace").replace(b"\\", b"").replace(b"(", b"").replace(b")", b"")
    stream = b"BT /F1 14 Tf 60 760 Td (" + text + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += str(number).encode() + b" 0 obj\n" + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# ---------------------------------------------------------------------------------
# The sample cases
# ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Town:
    """The people of one demo town who work its cases."""

    code: str
    chair: str
    cadre: str

    def village(self, n: int) -> str:
        return f"{self.code}v{n:02d}"

    def rep(self, n: int) -> str:
        return f"rep{self.code[1:]}{n:02d}"


TOWNS = [Town(f"t{i:02d}", f"chair{i:02d}", f"cadre{i:02d}") for i in range(1, 15)]
# Keys of a demo complaint that script later steps rather than fill the intake form.
DV_SCRIPT_KEYS = ("cadre", "police", "legal", "court", "decision", "decision_comment", "legal_declines")


class DemoCases:
    """Works the sample cases through the service, on a clock set back in time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.service = WorkflowService(engine)
        self.real_clock: Callable[[], datetime] = engine.clock
        self.days_ago = 0.0
        self.made: dict[str, int] = {}
        self._actors: dict[str, Actor] = {}

    # -- the shifted clock -------------------------------------------------------
    def now(self) -> datetime:
        return self.real_clock() - timedelta(days=self.days_ago)

    def at(self, days_ago: float) -> None:
        """Act as if it were ``days_ago`` days before now."""
        self.days_ago = max(0.0, days_ago)

    def later(self, days: float) -> None:
        """Move the clock forward (never past the real now)."""
        self.at(self.days_ago - days)

    def local_date(self) -> date:
        """The shifted clock's date in the office's time zone (HEXIE_TIMEZONE)."""
        return self.now().replace(tzinfo=timezone.utc).astimezone(self.engine.timezone).date()

    def today(self, plus_days: int = 0) -> str:
        return (self.local_date() + timedelta(days=plus_days)).isoformat()

    def run(self) -> dict[str, int]:
        """Make every sample case; returns how many per process."""
        self.engine.clock = self.now  # the service reads the clock at every call
        try:
            self._receipts()
            self._poor_mother_cases()
            self._dv_cases()
            self._microloan_cases()
            self._spring_bud_cases()
            self._elder_cases()
        finally:
            self.engine.clock = self.real_clock
        self.service.escalate_overdue()
        return dict(self.made)

    # -- money into the funds ------------------------------------------------------
    #: The report's own figures: of the 366,600 yuan raised in the first round, 277,800 went on
    #: 1,389 consolation visits and 44,800 on the 56 project mothers' piglets and goats, so
    #: 44,000 is brought forward; the second round collected 159,215 yuan; the Spring Bud
    #: sponsors give 370,000 yuan a year. Without them every fund would read overdrawn.
    RECEIPTS = (
        (364, "poor_mother_aid", "donations_round1", "44000.00", "收-结转-0001",
         "首轮“奉献你的爱心 救助贫困母亲”捐款结余（募集 366,600 元，慰问 277,800 元，项目帮扶 44,800 元）"),
        (364, "spring_bud", "spring_bud_sponsors", "370000.00", "春蕾收-0001", "春蕾班各资助方年度资助款"),
        (230, "poor_mother_aid", "donations_round2", "159215.00", "收-捐款-0002",
         "第二轮“奉献你的爱心 救助贫困母亲”集中捐款"),
    )

    def _receipts(self) -> None:
        from .ledger import record_receipt
        for days_ago, process, fund, amount, voucher, donor in self.RECEIPTS:
            if process not in self.engine.processes:
                continue
            self.at(days_ago)
            record_receipt(self.engine, self.actor("caiwu"), {
                "process": process, "fund": fund, "amount": amount, "donor": donor,
                "received_on": self.today(), "voucher": voucher, "org_unit": "county"})

    # -- acting as the demo people -------------------------------------------------
    def actor(self, username: str) -> Actor:
        if username not in self._actors:
            self._actors[username] = self.engine.actor(username)
        return self._actors[username]

    def start(self, username: str, process: str, unit: str, data: Mapping[str, Any]) -> int:
        case_id = self.service.start_case(self.actor(username), process, unit, data)
        self.made[process] = self.made.get(process, 0) + 1
        return case_id

    def fire(self, username: str, case_id: int, trigger: str, data: Mapping[str, Any] | None = None,
             comment: str | None = None) -> dict[str, Any]:
        return self.service.fire(self.actor(username), case_id, trigger, data, comment)

    def open_task(self, case_id: int, name: str | None = None) -> int:
        with self.engine.session_factory() as s:
            query = select(Task.id).where(Task.case_id == case_id, Task.status.in_(OPEN))
            if name is not None:
                query = query.where(Task.name == name)
            task_id = s.scalar(query.order_by(Task.id).limit(1))
        if task_id is None:
            raise LookupError(f"demo: case {case_id} has no open task {name or ''}")
        return task_id

    def child(self, case_id: int) -> int:
        """The open case a calling state of ``case_id`` waits for (``call:``)."""
        with self.engine.session_factory() as s:
            child = s.scalar(select(Case.id).where(Case.parent_case_id == case_id, Case.closed_at.is_(None)))
        if child is None:
            raise LookupError(f"demo: case {case_id} waits for no child case")
        return child

    def claim(self, username: str, case_id: int) -> None:
        self.service.claim(self.actor(username), self.open_task(case_id))

    def attach(self, case_id: int, field: str, filename: str, username: str) -> int:
        """Store a stand-in scan of a signed document, as an upload would, and return its id.

        The file (a one-page PDF saying it is a demo document) goes where the web app keeps
        uploads by default, ``<instance>/uploads``; when that folder cannot be written the
        row is still made, and the download link answers "not found".
        """
        key = f"demo-case-{case_id}-{field}.pdf"
        content = demo_pdf(f"Hexie demo document: case {case_id}, {field}")
        try:
            from .config import instance_dir
            folder = instance_dir() / "uploads"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / key).write_bytes(content)
        except OSError:
            pass
        with self.engine.transaction() as s:
            row = Attachment(case_id=case_id, field=field, filename=filename, content_type="application/pdf",
                             size=len(content), storage_key=key, uploaded_by_id=self.actor(username).user_id,
                             created_at=self.now())
            s.add(row)
            s.flush()
            return row.id

    # -- 救助贫困母亲 / aid to poor mothers ------------------------------------------
    # The state each stage leaves the case in; "paid" is `agreement` for project aid and
    # `closed` for consolation aid, "support" is awaiting_mid_year_visit.
    POOR_MOTHER_STAGES = ("application", "home_survey", "claimed", "approval", "voted", "disbursement",
                          "paid", "support", "mid_year_visit")

    def poor_mother(self, town: Town, village: int, start_days_ago: float, upto: str,
                    mother: Mapping[str, Any], programme: str = "project", ending: str | None = None) -> int:
        """One application, worked up to stage ``upto`` (or to an ``ending``)."""
        stages = self.POOR_MOTHER_STAGES
        reached = stages.index(upto)
        rep, cadre = town.rep(village), town.cadre
        self.at(start_days_ago)
        data = {"applicant_name": mother["name"], "id_number": mother["id"], "phone": mother["phone"],
                "address": mother["address"], "household_size": mother["size"],
                "declared_annual_income": mother["income"], "hardships": mother["hardships"],
                "self_reliant": programme == "project"}
        case = self.start(rep, "poor_mother_aid", town.village(village), data)
        if ending == "withdrawn":
            # Withdrawn before the survey: withdrawing from home_survey would need the
            # survey form filled (the engine asks the state's task form of every action).
            self.later(2)
            self.fire(rep, case, "withdraw", comment="申请人已外出务工，家庭情况好转，本人要求撤回申请。")
            return case
        if reached < 1:
            return case
        self.later(1)
        self.fire(rep, case, "submit", comment="材料齐全，请镇妇联入户调查。")
        if reached < 2:
            return case
        self.later(1)
        self.claim(cadre, case)
        if reached < 3:
            return case
        self.later(3)
        verified = mother.get("verified_income", mother["income"])
        self.fire(cadre, case, "surveyed", {
            "survey_date": self.today(), "verified_annual_income": verified,
            "household_size": mother["size"], "aid_programme": programme,
            "self_reliant": programme == "project",
            "survey_findings": mother["findings"]})
        if ending == "rejected":
            self.later(2)
            self.fire("zhuxi", case, "reject", comment="经核实，家庭人均年收入超过4000元救助标准，不予批准；"
                                                       "建议镇妇联纳入“巾帼小老板”创业帮扶。")
            return case
        if reached < 4:
            return case
        self.later(1)
        self.fire("zhuxi", case, "approve", comment="情况属实，同意救助。")
        if reached < 5:
            return case
        self.later(1)
        self.fire("fuzhuxi", case, "approve", comment="同意。")
        if reached < 6:
            return case
        self.later(2)
        if programme == "project":
            kind, count = mother.get("aid_kind", "piglets"), mother.get("animals", 3)
            payment = {"fund": "donations_round2", "aid_kind": kind, "approved_amount": "800.00",
                       "livestock_count": count, "disbursed_on": self.today(),
                       "voucher_number": f"记-{self.now():%Y%m}-{case:04d}"}
        else:
            payment = {"fund": "donations_round1", "aid_kind": "consolation", "approved_amount": "200.00",
                       "disbursed_on": self.today(), "voucher_number": f"记-{self.now():%Y%m}-{case:04d}"}
        self.fire("caiwu", case, "disburse", payment)
        if programme != "project" or reached < 7:
            return case
        self.later(5)
        scan = self.attach(case, "agreement_file", "项目帮扶协议书.pdf", town.chair)
        self.fire(town.chair, case, "sign", {
            "agreement_signed_on": self.today(), "responsible_town_chair": town.chair,
            "responsible_village_rep": rep, "agreement_file": scan,
            "year_end_visit_date": self._year_end_visit()}, comment="协议一式三份，镇、村、本人各执一份。")
        if reached < 8:
            return case
        # Half a year on: the mid-year visit has just begun (the 180-day timer's work,
        # started by hand a few days early).
        self.at(min(self.days_ago, 5))
        self.fire(cadre, case, "visit_now", comment="结合走访提前开展年中回访。")
        return case

    def _year_end_visit(self) -> str:
        """The coming 20 December, at least two months away (the visit closes the aid year)."""
        today = self.local_date()
        visit = date(today.year, 12, 20)
        return (visit if (visit - today).days >= 60 else date(today.year + 1, 12, 20)).isoformat()

    def _poor_mother_cases(self) -> None:
        t1, t2, t3, t4, t5 = TOWNS[:5]
        mothers = [
            dict(name="朱桂兰", id="320623197803152226", phone="13962811452", address="城关镇西门村六组18号",
                 size=4, income="9600.00", hardships=["illness", "school_costs"], aid_kind="piglets", animals=3,
                 findings="丈夫患尿毒症常年透析，两个孩子在读初中，家中三亩承包地由本人耕种，有养猪经验。"),
            dict(name="陆秀英", id="320623198106027741", phone="15851302876", address="河口镇新河村三组7号",
                 size=3, income="7200.00", hardships=["single_mother"], aid_kind="goats", animals=3,
                 findings="离异后独自抚养女儿，靠打零工为生，住房为老旧平房，本人身体健康，愿意养羊。"),
            dict(name="季美华", id="320623197511184423", phone="13706278835", address="新店镇王庄村二组31号",
                 size=5, income="11000.00", hardships=["disability", "lack_of_labour"],
                 findings="公婆年迈多病，丈夫肢体残疾，家中缺少劳动力。"),
            dict(name="缪红霞", id="320623198402205627", phone="18206285513", address="石桥镇九龙村五组2号",
                 size=4, income="8800.00", hardships=["disaster"], aid_kind="goats", animals=4,
                 findings="去年夏季龙卷风损毁房屋，重建欠债两万余元，本人肯吃苦，有饲养山羊的意愿和场地。"),
            dict(name="冒凤英", id="320623196909113320", phone="13815211906", address="马塘镇友谊村一组12号",
                 size=2, income="4600.00", hardships=["illness"],
                 findings="本人患乳腺癌术后化疗，丈夫在外打零工，家庭收入微薄。"),
            dict(name="吉玉梅", id="320623198712064028", phone="15950861137", address="城关镇南园村四组9号",
                 size=3, income="6900.00", hardships=["single_mother", "school_costs"], aid_kind="piglets", animals=3,
                 findings="丈夫病故，独自抚养两个孩子，承包鱼塘一口，有一定自救能力。"),
            dict(name="丁春燕", id="320623197904238845", phone="13773629004", address="河口镇沿河村七组5号",
                 size=4, income="21000.00", verified_income="26400.00", hardships=["other"],
                 findings="家中开办小型来料加工点，丈夫在本地企业务工，家庭年收入核实为26400元。"),
            dict(name="严秀珍", id="320623197207159124", phone="18912260348", address="新店镇三里村八组16号",
                 size=3, income="5400.00", hardships=["illness", "lack_of_labour"],
                 findings="丈夫脑梗后瘫痪在床，本人照料丈夫无法外出务工。"),
            dict(name="曹金凤", id="320623198509307342", phone="13584638871", address="石桥镇卢庄村三组22号",
                 size=5, income="10500.00", hardships=["school_costs"], aid_kind="piglets", animals=4,
                 findings="三个孩子上学，丈夫在外地工地务工，本人在家务农并养猪。"),
            dict(name="杨素芹", id="320623198011026647", phone="15190847326", address="城关镇北坎村二组3号",
                 size=4, income="8000.00", hardships=["disability"],
                 findings="儿子先天听力残疾，需长期康复训练。"),
            dict(name="葛小梅", id="320623199003143325", phone="13338092215", address="马塘镇光明村六组11号",
                 size=3, income="6000.00", hardships=["single_mother"], findings=""),
            dict(name="沙凤琴", id="320623197610290868", phone="15062711459", address="河口镇河口村九组4号",
                 size=4, income="7600.00", hardships=["illness"], aid_kind="goats", animals=3,
                 findings="丈夫患肝病需长期服药，本人在家养羊有经验，门前有荒坡可放养。"),
        ]
        # Closed and followed-up cases started months ago; waiting ones are recent.
        self.poor_mother(t1, 2, 210, "mid_year_visit", mothers[0])            # project aid: mid-year visit due
        self.poor_mother(t2, 2, 160, "support", mothers[1])                   # project aid: under support
        self.poor_mother(t3, 2, 120, "paid", mothers[2], programme="consolation")   # paid, closed
        self.poor_mother(t4, 2, 95, "support", mothers[3])                    # project aid: under support
        self.poor_mother(t5, 2, 70, "paid", mothers[4], programme="consolation")    # paid, closed
        self.poor_mother(t1, 3, 40, "paid", mothers[5])                       # paid; agreement overdue
        self.poor_mother(t2, 3, 30, "approval", mothers[6], programme="consolation", ending="rejected")
        self.poor_mother(t3, 4, 16, "voted", mothers[7], programme="consolation")   # waits for the 2nd vote
        self.poor_mother(t4, 3, 12, "approval", mothers[8])                   # waits for both votes
        self.poor_mother(t1, 4, 9, "claimed", mothers[9], programme="consolation")  # survey overdue
        self.poor_mother(t5, 3, 2, "home_survey", mothers[10], programme="consolation")
        self.poor_mother(t2, 1, 1, "application", mothers[11])                # still at the village rep
        self.poor_mother(t3, 5, 20, "application", dict(mothers[10], name="钱小芬", id="320623198808086620",
                                                          phone="13921637750", address="新店镇桥头村一组6号"),
                         programme="consolation", ending="withdrawn")

    # -- 家庭暴力投诉 / domestic-violence complaints -----------------------------------
    DV_STAGES = ("intake", "referral", "adjudication", "follow_up", "closed")


    def dv_complaint(self, town: Town, start_days_ago: float, upto: str, complaint: Mapping[str, Any],
                     ending: str | None = None) -> int:
        """A complaint taken by a county cadre and worked up to ``upto``."""
        reached = self.DV_STAGES.index(upto)
        cadre = complaint.get("cadre", "ganbu1")
        self.at(start_days_ago)
        data = {k: v for k, v in complaint.items() if k not in DV_SCRIPT_KEYS}
        data["received_at"] = self.now().isoformat(timespec="minutes")
        case = self.start(cadre, "dv_complaint", town.code, data)
        if ending == "withdrawn":
            self.later(1)
            self.fire(cadre, case, "withdraw", comment="当事人经调解后表示夫妻已和好，书面要求撤回投诉；已告知如再遇暴力可随时求助。")
            return case
        if reached < 1:
            return case
        self.later(0.1)
        # her consent, agency by agency (protection.md): each referral waits for its own
        protection = Protection(self.engine)
        agencies = ["police", "legal_aid"] + (["court"] if complaint.get("court") else [])
        for agency in agencies:
            protection.record_consent(self.actor(cadre), case, agency, "services",
                                      note="当事人书面同意（同意书已存档）")
        protection.record_consent(self.actor(cadre), case, "police", "statistics")
        self.later(0.1)
        self.fire(cadre, case, "refer", {"referred_to": agencies},
                  comment="当事人书面同意转介派出所和“148”法律援助。" if not complaint.get("court")
                  else "当事人书面同意转介派出所、“148”法律援助和女子合议庭。")
        # The police desk and legal aid take their referrals from their inboxes; the
        # court panel is handed its one by the county chair (a manager's reassignment).
        self.later(0.1)
        protection.accept(self.actor("jingwu"), self.open_task(case, "police"))
        if complaint.get("legal_declines"):
            protection.decline(self.actor("falv"), self.open_task(case, "legal_aid"), complaint["legal_declines"])
        else:
            protection.accept(self.actor("falv"), self.open_task(case, "legal_aid"))
        if complaint.get("court"):
            self.service.reassign(self.actor("zhuxi"), self.open_task(case, "court"), "fayuan")
            protection.accept(self.actor("fayuan"), self.open_task(case, "court"))
        self.later(1)
        self.service.done(self.actor("jingwu"), self.open_task(case, "police"), complaint["police"])
        if ending == "emergency":
            self.later(0.5)
            self.fire("jingwu", case, "emergency", {"emergency_reason": "施暴人醉酒后持刀威胁，当事人深夜再次报警求助。"})
            return case
        if reached < 2:
            return case
        self.later(3)
        self.service.done(self.actor("falv"), self.open_task(case, "legal_aid"), complaint["legal"])
        if complaint.get("court"):
            self.later(10)
            self.service.done(self.actor("fayuan"), self.open_task(case, "court"), complaint["court"])
        self.later(1)
        self.fire(cadre, case, "referral_done", comment="派出所、法律援助处置情况已反馈，提请领导作出处理决定。")
        if reached < 3:
            return case
        self.later(2)
        self.fire("zhuxi", case, "decide", {"decision": complaint.get("decision", "police_caution"),
                                            "decision_date": self.today()},
                  comment=complaint.get("decision_comment", "同意派出所出具告诫书，由县妇联一个月后回访。"))
        if reached < 4:
            return case
        self.later(25)
        self.fire(cadre, case, "close", {"follow_up_notes": "电话及入户回访，当事人表示施暴行为已停止，夫妻关系缓和。",
                                         "safety_status": "safe"}, comment="回访正常，予以结案。")
        return case

    def _dv_cases(self) -> None:
        t1, t2, t3, t4, t5 = TOWNS[:5]
        base = {"abuser_relation": "spouse", "consent_to_share": True, "children_involved": False}
        police = {"police_action": "出警调查，对施暴人进行批评教育并制作笔录。", "police_caution_issued": True,
                  "police_record_number": f"公(城)警告字〔{self.real_clock().year}〕0412号"}
        legal = {"legal_aid_worker": "县妇女法律工作者协会 陶律师",
                 "legal_aid_notes": "已为当事人提供离婚及人身安全保护令法律咨询，协助收集伤情证据。"}
        self.dv_complaint(t1, 75, "closed", dict(
            base, channel="hotline", victim_name="刘某英", victim_phone="13912345678", victim_age=38,
            abuser_name="张某", violence_kinds=["physical", "psychological"],
            incident_description="丈夫酗酒后多次殴打当事人，致面部及手臂软组织挫伤，当事人不敢回家。",
            injuries=True, risk_level="medium", victim_wishes=["stop_violence", "legal_advice"],
            intake_assessment="有明显伤情，存在持续暴力风险，建议转介派出所出具告诫书并提供法律援助。",
            police=police, legal=legal))
        self.dv_complaint(t3, 40, "follow_up", dict(
            base, channel="police_station", victim_name="王某芳", victim_age=45, abuser_name="李某",
            violence_kinds=["psychological", "economic"], children_involved=True,
            incident_description="丈夫长期控制家庭收入，辱骂恐吓当事人及孩子，不给生活费。",
            risk_level="low", victim_wishes=["mediation", "legal_advice"],
            intake_assessment="以精神暴力和经济控制为主，暂无人身伤害，可先调解并告知法律权利。",
            police=dict(police, police_caution_issued=False, police_record_number="",
                        police_action="派出所民警上门训诫，施暴人承诺改正。"),
            legal=legal, decision="mediated", decision_comment="经调解双方达成协议，男方每月交付生活费，一个月后回访。"))
        self.dv_complaint(t2, 18, "adjudication", dict(
            base, channel="reception_day", victim_name="陈某娟", victim_phone="15251234567", victim_age=33,
            abuser_name="周某", violence_kinds=["physical"], injuries=True,
            incident_description="星期一领导接待日来访，称丈夫因琐事将其推倒致肋骨骨折，已住院治疗。",
            risk_level="high", victim_wishes=["divorce", "protection_order"],
            intake_assessment="伤情较重，当事人坚决要求离婚，需转介派出所、法律援助并提请女子合议庭审理。",
            police=police, legal=legal,
            court={"court_case_number": f"（{self.real_clock().year}）0623民初2176号", "court_notes": "女子合议庭已立案，拟先行调解。"}))
        self.dv_complaint(t4, 4, "referral", dict(
            base, channel="contact_card", victim_name="孙某红", victim_age=29, abuser_name="吴某",
            violence_kinds=["physical", "psychological"], injuries=False,
            incident_description="当事人按家庭暴力投诉联系卡来电，称丈夫近期多次推搡威胁。",
            risk_level="medium", victim_wishes=["stop_violence"],
            intake_assessment="存在升级风险，转介派出所上门处置，并提供法律咨询。",
            police=police, legal=legal, cadre="ganbu2",
            legal_declines="当事人已委托私人律师代理，本中心不再重复提供法律援助；如需可随时再转介。"))
        self.dv_complaint(t5, 6, "referral", dict(
            base, channel="hotline", victim_name="徐某梅", victim_age=41, abuser_name="钱某",
            violence_kinds=["physical"], injuries=True,
            incident_description="丈夫醉酒后殴打当事人，邻居报警。",
            risk_level="high", victim_wishes=["stop_violence", "shelter"],
            intake_assessment="高风险，立即转介派出所，必要时启动紧急庇护。",
            police=police, legal=legal), ending="emergency")
        self.dv_complaint(t1, 9, "intake", dict(
            base, channel="hotline", victim_name="赵某兰", victim_age=52, abuser_name="赵某",
            abuser_relation="child", violence_kinds=["neglect", "psychological"], consent_to_share=False,
            incident_description="儿子长期不给老人生活费并辱骂，当事人来电倾诉。",
            risk_level="low", victim_wishes=["mediation"],
            intake_assessment="当事人暂不同意转介，先由县妇联联系村妇代会主任上门调解。"), ending="withdrawn")
        self.dv_complaint(t2, 2.5, "intake", dict(
            base, channel="hotline", victim_name="马某霞", victim_age=36, abuser_name="朱某",
            violence_kinds=["physical"], consent_to_share=False, risk_level="medium",
            incident_description="夜间来电，称丈夫酒后动手，目前已回娘家暂住。",
            intake_assessment="待当事人确认是否同意转介后再作处理。", cadre="ganbu2"))

    # -- 小额贷款 / micro-loans ----------------------------------------------------------
    LOAN_STAGES = ("application", "claimed", "mentor_pairing", "coop_referral", "approval", "voted",
                   "disbursement", "repaying", "repaid")

    def microloan(self, town: Town, village: int, start_days_ago: float, upto: str,
                  woman: Mapping[str, Any], ending: str | None = None) -> int:
        reached = self.LOAN_STAGES.index(upto)
        rep, cadre = town.rep(village), town.cadre
        self.at(start_days_ago)
        case = self.start(rep, "microloan", town.village(village), {
            "applicant_name": woman["name"], "id_number": woman["id"], "phone": woman["phone"],
            "applicant_age": woman["age"], "business_kind": woman["kind"], "business_plan": woman["plan"],
            "loan_amount": woman["amount"], "term_months": woman.get("term", 24),
            "guarantee": woman.get("guarantee", "joint_guarantee")})
        if reached < 1:
            return case
        self.later(1)
        self.fire(rep, case, "submit")
        self.later(1)
        self.claim(cadre, case)
        if ending == "ineligible":
            self.later(2)
            self.fire(cadre, case, "ineligible", {
                "local_resident": True, "credit_record": "bad", "applicant_age": woman["age"],
                "eligibility_notes": "人民银行征信显示有两笔逾期未还贷款。"},
                comment="有不良信用记录，暂不符合贷款条件，建议结清欠款后再申请。")
            return case
        if reached < 2:
            return case
        self.later(3)
        self.fire(cadre, case, "eligible", {
            "local_resident": True, "credit_record": "good", "applicant_age": woman["age"],
            "eligibility_notes": "本县常住，信用良好，创业项目可行。"})
        if reached < 3:
            return case
        # 姐妹同行结对创业: a process of its own (mentor_pairing), called by the loan
        pairing = self.child(case)
        self.later(2)
        self.fire(town.chair, pairing, "propose", {
            "mentor_kind": woman.get("mentor_kind", "skilled_woman"), "mentor": woman.get("mentor", "孙秀芳（全国“巾帼建功”标兵）"),
            "mentor_phone": "13962700188"}, comment="姐妹同行结对创业。")
        self.later(2)
        self.fire(rep, pairing, "agree", {
            "meeting_notes": "村妇代会主任陪同上门见面，导师介绍经验，约定每月走访一次。", "pairing_date": self.today(),
            "mentoring_support": ["technique", "marketing"]})
        if reached < 4:
            return case
        self.later(6)
        self.fire("ganbu1", case, "referred", {
            "coop_branch": f"县农村信用合作联社{woman.get('branch', '城关')}分社", "coop_assessment": "favourable",
            "loan_amount": woman["amount"]}, comment="信用社已完成贷前调查，同意放款。")
        if reached < 5:
            return case
        self.later(1)
        big = float(woman["amount"]) > 50000
        self.fire("zhuxi", case, "approve", comment="同意推荐贷款。")
        if reached < 6 and big:
            return case
        if big:
            self.later(1)
            self.fire("fuzhuxi", case, "approve", comment="同意。")
        if reached < 7:
            return case
        self.later(5)
        paid_on = self.local_date()
        maturity = date(paid_on.year + woman.get("term", 24) // 12, paid_on.month, min(paid_on.day, 28))
        self.fire("caiwu", case, "disburse", {
            "disbursed_amount": woman["amount"], "loan_contract_number": f"信贷字{paid_on:%Y}第{case:05d}号",
            "disbursed_on": paid_on.isoformat(), "maturity_date": maturity.isoformat()})
        if reached < 8:
            return case
        self.later(30)
        self.fire("caiwu", case, "report_repaid", comment="借款人以来料加工收入提前一次性还清本息。")
        return case

    def _microloan_cases(self) -> None:
        t1, t2, t3, t4, t5 = TOWNS[:5]
        self.microloan(t1, 1, 200, "repaid", dict(
            name="贲友兰", id="320623197602113347", phone="13806281234", age=49, kind="crafts", amount="30000.00",
            plan="组织本村留守妇女从事绗缝被来料加工，购置缝纫设备8台。", term=12))
        self.microloan(t2, 2, 130, "repaying", dict(
            name="申承秀", id="320623198203157727", phone="13951300245", age=43, kind="agri_processing",
            amount="80000.00", plan="扩建农产品加工作坊，收购周边农户蔬菜加工成腌制品销售。", branch="河口",
            mentor_kind="enterprise", mentor="县巾帼农产品专业合作社"))
        self.microloan(t3, 3, 100, "repaying", dict(
            name="黄晓玲", id="320623199105226025", phone="15862910073", age=34, kind="farming", amount="15000.00",
            plan="承包水面10亩养殖河蟹。", branch="新店"))
        self.microloan(t4, 1, 45, "disbursement", dict(
            name="包丽萍", id="320623198710302148", phone="18751305516", age=38, kind="retail", amount="20000.00",
            plan="在镇区开设母婴用品小店。", branch="石桥"))
        self.microloan(t1, 2, 30, "voted", dict(
            name="邵红梅", id="320623198008079921", phone="13962740698", age=45, kind="crafts", amount="120000.00",
            plan="成立编结工艺品加工点，带动40名留守妇女在家就业，“无围墙工厂”模式。", term=36,
            guarantee="guarantor", mentor_kind="enterprise", mentor="县编结工艺品有限公司"))
        self.microloan(t5, 1, 20, "approval", dict(
            name="何美玲", id="320623199203064463", phone="15189221870", age=33, kind="services", amount="10000.00",
            plan="开办家政服务工作室。", branch="马塘"))
        self.microloan(t2, 1, 14, "coop_referral", dict(
            name="宋佳慧", id="320623199406157746", phone="13773688329", age=31, kind="crafts", amount="12000.00",
            plan="勾针工艺品网上销售。"))
        self.microloan(t3, 1, 8, "mentor_pairing", dict(
            name="姚春花", id="320623197911253369", phone="15996587702", age=46, kind="farming", amount="15000.00",
            plan="大棚草莓种植3亩。"))
        self.microloan(t4, 2, 6, "claimed", dict(
            name="范小燕", id="320623198612048828", phone="13584655421", age=39, kind="retail", amount="8000.00",
            plan="农村电商服务点代购代销。"))
        self.microloan(t1, 3, 25, "claimed", dict(
            name="许丽娟", id="320623198304172225", phone="18262817734", age=42, kind="services", amount="20000.00",
            plan="开办小餐馆。"), ending="ineligible")
        self.microloan(t3, 2, 1, "application", dict(
            name="任晓雯", id="320623199501201342", phone="13218735560", age=30, kind="crafts", amount="6000.00",
            plan="家庭编结加工。"))

    # -- 春蕾班 / Spring Bud classes ------------------------------------------------------
    BUD_STAGES = ("nomination", "family_verification", "claimed", "approval", "sponsor_matching",
                  "disbursement", "sponsored", "graduated", "renewal")

    def spring_bud(self, town: Town, village: int, start_days_ago: float, upto: str,
                   girl: Mapping[str, Any], ending: str | None = None) -> int:
        reached = self.BUD_STAGES.index(upto)
        rep, cadre = town.rep(village), town.cadre
        self.at(start_days_ago)
        case = self.start(rep, "spring_bud", town.village(village), {
            "student_name": girl["name"], "birth_date": girl["birth"], "school": girl["school"],
            "grade": girl["grade"], "class_name": girl.get("class", f"{girl['school']}春蕾班"),
            "guardian_name": girl["guardian"], "guardian_phone": girl.get("phone", "13862700451"),
            "family_hardships": girl["hardships"], "nomination_reason": girl["reason"]})
        if reached < 1:
            return case
        self.later(1)
        self.fire(rep, case, "nominate")
        if reached < 2:
            return case
        self.later(2)
        self.claim(cadre, case)
        if reached < 3:
            return case
        self.later(3)
        self.fire(cadre, case, "verified", {
            "household_size": girl["size"], "household_annual_income": girl["income"],
            "verification_notes": girl.get("verify", "入户核实，家庭情况与提名材料一致。")})
        if ending == "rejected":
            self.later(2)
            self.fire("fuzhuxi", case, "reject", comment="家庭人均年收入超过4000元资助标准，不予批准；"
                                                         "可推荐申请学校助学金。")
            return case
        if reached < 4:
            return case
        self.later(2)
        self.fire("fuzhuxi", case, "approve", comment="同意纳入春蕾班长期资助。")
        if reached < 5:
            return case
        self.later(8)
        self.fire("ganbu2", case, "matched", {
            "sponsor_name": girl.get("sponsor", "县农村商业银行"), "sponsor_kind": girl.get("sponsor_kind", "enterprise"),
            "annual_grant": "420.00"}, comment="资助方已签订结对资助协议。")
        if reached < 6:
            return case
        self.later(4)
        year = self.now().year if self.now().month >= 8 else self.now().year - 1
        self.fire("caiwu", case, "disburse", {
            "fund": "spring_bud_sponsors", "school_year": f"{year}-{year + 1}", "disbursed_amount": "420.00",
            "disbursed_on": self.today(), "voucher_number": f"春蕾-{self.now():%Y%m}-{case:04d}"})
        if reached < 7:
            return case
        if upto == "renewal":   # her year is up: the yearly timer opens her renewal, a case of its own
            self.at(1)
            self.service.fire(SYSTEM, case, "renewal_due")
            return case
        self.later(20)
        self.fire(cadre, case, "graduate", comment="已初中毕业并考入县职业教育中心，资助期满。")
        return case

    def _spring_bud_cases(self) -> None:
        t1, t2, t3, t4, t5 = TOWNS[:5]
        self.spring_bud(t1, 1, 330, "graduated", dict(
            name="顾小雨", birth="2010-04-12", school="城关初级中学", grade="junior_3", guardian="顾建华",
            hardships=["single_parent", "low_income"], reason="父亲病故，母亲打零工，成绩优良。",
            size=3, income="9000.00"))
        self.spring_bud(t2, 1, 150, "sponsored", dict(
            name="陆欣怡", birth="2013-09-03", school="河口小学", grade="primary_6", guardian="陆美兰",
            hardships=["illness", "low_income"], reason="母亲患尿毒症，家中负债，学习刻苦。",
            size=4, income="10800.00", sponsor="县供电公司", sponsor_kind="government_department"))
        self.spring_bud(t3, 1, 110, "sponsored", dict(
            name="季雨涵", birth="2012-01-21", school="新店初级中学", grade="junior_1", guardian="季国平",
            hardships=["disability"], reason="父亲残疾，母亲在家务农，家庭困难。",
            size=4, income="12000.00", sponsor="新店镇党委", sponsor_kind="town_party_committee"))
        self.spring_bud(t2, 3, 380, "renewal", dict(
            name="沙梓涵", birth="2013-03-17", school="河口小学", grade="primary_5", guardian="沙红霞",
            hardships=["single_parent", "low_income"], reason="父亲外出多年未归，母亲独自抚养两个孩子。",
            size=3, income="7800.00"))
        self.spring_bud(t4, 1, 60, "disbursement", dict(
            name="缪思琪", birth="2014-06-30", school="石桥小学", grade="primary_5", guardian="缪秀英",
            hardships=["orphan"], reason="父母双亡，随祖母生活。", size=2, income="5000.00"))
        self.spring_bud(t5, 1, 35, "sponsor_matching", dict(
            name="冒欣然", birth="2011-11-15", school="马塘初级中学", grade="junior_2", guardian="冒建军",
            hardships=["disaster", "low_income"], reason="家中房屋受灾，父亲受伤无法务工。",
            size=5, income="14000.00"))
        self.spring_bud(t1, 2, 15, "approval", dict(
            name="吉梦瑶", birth="2015-02-08", school="城关实验小学", grade="primary_4", guardian="吉海燕",
            hardships=["single_parent"], reason="父母离异，随母亲生活，母亲收入微薄。", size=2, income="6400.00"))
        self.spring_bud(t2, 2, 22, "approval", dict(
            name="丁一诺", birth="2012-08-19", school="河口初级中学", grade="junior_1", guardian="丁卫东",
            hardships=["low_income"], reason="家庭收入低。", size=3, income="18600.00",
            verify="父母均在本地企业务工，家庭年收入核实为18600元。"), ending="rejected")
        self.spring_bud(t3, 3, 11, "claimed", dict(
            name="严可欣", birth="2013-05-27", school="新店小学", grade="primary_6", guardian="严桂芳",
            hardships=["illness"], reason="父亲重病住院，家中无劳力。", size=4, income="7600.00"))
        self.spring_bud(t4, 3, 3, "family_verification", dict(
            name="曹诗雨", birth="2016-10-10", school="石桥小学", grade="primary_3", guardian="曹红",
            hardships=["single_parent", "low_income"], reason="单亲家庭，母亲务农。", size=2, income="5200.00"))
        self.spring_bud(t5, 2, 0.5, "nomination", dict(
            name="杨紫涵", birth="2014-03-16", school="马塘小学", grade="primary_5", guardian="杨春梅",
            hardships=["low_income"], reason="家庭困难，品学兼优。", size=4, income="9000.00"))

    # -- 家庭赡养协议 / elder-support agreements ----------------------------------------
    ELDER_STAGES = ("registration", "persuasion", "signing", "archiving", "archived")

    def elder(self, town: Town, village: int, start_days_ago: float, upto: str, household: Mapping[str, Any],
              ending: str | None = None) -> int:
        reached = self.ELDER_STAGES.index(upto)
        rep, cadre = town.rep(village), town.cadre
        self.at(start_days_ago)
        case = self.start(rep, "elder_support", town.village(village), {
            "household_head": household["head"], "household_address": household["address"],
            "elder_names": household["elders"], "elder_count": household.get("count", 2),
            "youngest_elder_age": household["age"], "children_count": household["children"],
            "children_names": household["children_names"],
            "living_arrangement": household.get("living", "alone")})
        if ending == "not_applicable":
            self.later(1)
            self.fire(rep, case, "mark_not_applicable", comment="经核实老人未满60周岁，暂不属登记范围，明年再登记。")
            return case
        if reached < 1:
            return case
        self.later(2)
        self.fire(rep, case, "register")
        visit = {"visit_date": self.today(), "visitors": ["party_branch", "village_committee", "women_cadres"],
                 "visit_notes": household.get("notes", "村党支部书记、村委会主任和村妇代会主任一同入户，讲解赡养义务，子女均表示愿意签订。"),
                 "willingness": "agreed"}
        if ending == "unsigned":
            self.later(7)
            self.fire(rep, case, "refuse", dict(visit, willingness="refused", visit_notes="三次入户做工作，"
                                                "长子以分家时财产分配不公为由拒绝签订。"),
                      comment="子女之间矛盾较深，拒绝签订；已建议村调委会继续调解。")
            return case
        if reached < 2:
            return case
        self.later(5)
        self.fire(rep, case, "agree", visit)
        if reached < 3:
            return case
        self.later(4)
        scan = self.attach(case, "agreement_file", "家庭赡养协议书.pdf", rep)
        self.fire(rep, case, "sign", {
            "signed_on": self.today(), "support_terms": household.get(
                "terms", "子女每人每月给付生活费300元，轮流照料，医疗费用按人数平均分担。"),
            "monthly_allowance": household.get("allowance", "600.00"), "witnesses": "村党支部书记、村委会主任",
            "agreement_file": scan}, comment="协议一式四份，已签字按印。")
        if reached < 4:
            return case
        self.later(6)
        self.claim(cadre, case)
        self.later(1)
        self.fire(cadre, case, "archive", {"archive_number": f"赡协-{town.code.upper()}-{self.now():%Y}-{case:04d}",
                                           "archived_on": self.today()})
        return case

    def _elder_cases(self) -> None:
        t1, t2, t3, t4, t5 = TOWNS[:5]
        self.elder(t1, 1, 180, "archived", dict(
            head="顾建国", address="城关镇东街社区12幢", elders="顾长林、王桂英", age=72, children=3,
            children_names="顾建国 13962711120；顾建芳 15851306632；顾建华 13706287741", living="rotating"))
        self.elder(t2, 3, 150, "archived", dict(
            head="陆永明", address="河口镇沿河村二组8号", elders="陆大海", count=1, age=81, children=2,
            children_names="陆永明、陆永红", living="with_children",
            terms="长子负责日常照料，次女每月给付生活费400元，医疗费两人平均分担。", allowance="400.00"))
        self.elder(t3, 2, 90, "archived", dict(
            head="季德才", address="新店镇王庄村五组14号", elders="季德才、缪秀兰", age=66, children=2,
            children_names="季春林、季春梅"))
        self.elder(t4, 4, 40, "archiving", dict(
            head="缪志强", address="石桥镇环镇村一组3号", elders="缪老根、陈凤英", age=75, children=4,
            children_names="缪志强、缪志刚、缪小燕、缪小红", living="alone"))
        self.elder(t5, 2, 20, "signing", dict(
            head="冒海军", address="马塘镇友谊村三组6号", elders="冒国庆", count=1, age=68, children=2,
            children_names="冒海军、冒海燕"))
        self.elder(t1, 3, 26, "persuasion", dict(
            head="吉长春", address="城关镇南园村七组2号", elders="吉老汉、周玉兰", age=79, children=3,
            children_names="吉长春、吉长明、吉小芳"))
        self.elder(t2, 1, 35, "persuasion", dict(
            head="丁建平", address="河口镇河口村四组19号", elders="丁福生、季秀英", age=77, children=2,
            children_names="丁建平、丁建军"), ending="unsigned")
        self.elder(t3, 4, 8, "registration", dict(
            head="严卫东", address="新店镇李庄村三组10号", elders="严国强、张秀珍", age=56, children=1,
            children_names="严卫东"), ending="not_applicable")
        self.elder(t4, 2, 1, "registration", dict(
            head="曹立新", address="石桥镇九龙村二组15号", elders="曹福林、沈桂兰", age=70, children=3,
            children_names="曹立新、曹立军、曹丽丽"))
