"""The federation's five programmes, each run from start to a final state through the
service layer, with real users and roles, on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from hexie.models import Case, Task
from hexie.workflows.protection import case_code
from hexie.workflows.access import SYSTEM
from hexie.workflows.audit import verify_chain
from hexie.workflows.errors import Forbidden, Invalid, NotFound

from .engine_helpers import DEFINITIONS, make_env


@pytest.fixture
def env(session_factory):
    return make_env(session_factory, definitions=DEFINITIONS)


class Runner:
    """Fires actions as named people and checks where the case lands."""

    def __init__(self, env, case_id):
        self.env, self.case_id = env, case_id

    def __call__(self, who, trigger, data=None, comment=None, expect=None):
        out = self.env.service.fire(self.env.actor(who), self.case_id, trigger, data, comment)
        if expect:
            assert self.state == expect, (trigger, self.state)
        return out

    @property
    def state(self):
        return self.env.queries.case(SYSTEM, self.case_id)["state"]

    def open_tasks(self):
        with self.env.engine.session_factory() as s:
            return s.scalars(select(Task).where(Task.case_id == self.case_id,
                                                Task.status.in_(("offered", "allocated")))).all()

    def timers(self, **advance):
        self.env.clock.advance(**advance)
        return self.env.service.run_due_timers()


def child_of(env, case_id):
    """The open case a calling state of ``case_id`` waits for."""
    with env.engine.session_factory() as s:
        return s.scalar(select(Case.id).where(Case.parent_case_id == case_id, Case.closed_at.is_(None)))


def pair(env, case_id, mentor="申承秀", kind="skilled_woman"):
    """Work the mentor pairing a micro-loan calls (mentor_pairing.yaml): propose, introduce, agree."""
    child = child_of(env, case_id)
    pairing = Runner(env, child)
    assert pairing.state == "proposal"
    pairing("chair", "propose", {"mentor_kind": kind, "mentor": mentor, "mentor_phone": "13962700188"},
            expect="introduction")
    pairing("rep", "agree", {"meeting_notes": "双方见面，约定每月走访一次", "pairing_date": "2026-03-08",
                             "mentoring_support": ["technique", "marketing"]}, expect="paired")
    return child


def _finish(env, run, final):
    assert run.state == final
    assert run.open_tasks() == []
    with env.engine.session_factory() as s:
        assert verify_chain(s, run.case_id) == []


def test_poor_mother_aid(env):
    rep = env.actor("rep")
    case_id = env.service.start_case(rep, "poor_mother_aid", "t01v01", {
        "applicant_name": "王桂兰", "id_number": "320123198507121247", "household_size": 4,
        "declared_annual_income": "6800", "hardships": ["illness", "single_mother"], "self_reliant": True})
    run = Runner(env, case_id)
    run("rep", "submit", expect="home_survey")
    with pytest.raises(Forbidden):        # the applicant's rep may not survey (wrong role)
        run("rep", "surveyed")
    run("cadre2", "surveyed", {"survey_date": "2026-03-05", "verified_annual_income": "7200", "household_size": 4,
                               "survey_findings": "丈夫病故，两个孩子上学", "aid_programme": "project"},
        expect="approval")
    assert run("mgr1", "approve", comment="同意")["outcome"] == "voted"
    run("mgr2", "approve", expect="disbursement")
    run("fin", "disburse", {"fund": "donations_round1", "aid_kind": "piglets", "approved_amount": "800",
                            "livestock_count": 2, "disbursed_on": "2026-03-10", "voucher_number": "JZ-2026-031"},
        expect="agreement")
    with pytest.raises(Invalid) as info:   # the agreement file is required
        run("chair", "sign", {"agreement_signed_on": "2026-03-12", "responsible_town_chair": "chair",
                              "responsible_village_rep": "rep", "year_end_visit_date": "2026-12-15"})
    assert "agreement_file" in info.value.details
    attachment = _attach(env, case_id, "agreement_file")
    run("chair", "sign", {"agreement_signed_on": "2026-03-12", "responsible_town_chair": "chair",
                          "responsible_village_rep": "rep", "year_end_visit_date": "2026-12-15",
                          "agreement_file": attachment}, expect="awaiting_mid_year_visit")
    assert run.timers(days=181) == 1
    assert run.state == "mid_year_visit"
    (visit,) = run.open_tasks()
    assert visit.assignee_id == env.actor("cadre2").user_id      # retain familiar: the surveyor
    run("cadre2", "record_mid_year", {"mid_year_visit_notes": "两头猪长势良好", "livestock_on_hand": 2},
        expect="awaiting_year_end_visit")
    assert run.timers(days=110) == 1                              # at: year_end_visit_date
    run("cadre2", "close", {"year_end_visit_notes": "已出栏一头，收入增加"}, expect="closed")
    _finish(env, run, "closed")


def test_dv_complaint(env):
    ccadre = env.actor("ccadre")
    case_id = env.service.start_case(ccadre, "dv_complaint", "t01v01", {
        "channel": "hotline", "received_at": "2026-03-02T20:15", "victim_name": "某女士",
        "victim_phone": "13812345678", "incident_description": "丈夫酒后殴打"})
    run = Runner(env, case_id)
    for outsider in ("rep", "chair", "police", "admin"):
        with pytest.raises(NotFound):
            env.queries.case(env.actor(outsider), case_id)
    with pytest.raises(Invalid):          # no referral without the victim's consent
        run("ccadre", "refer", {"abuser_relation": "spouse", "violence_kinds": ["physical"], "risk_level": "high",
                                "consent_to_share": False, "intake_assessment": "需转介"})
    # referred only to the agencies she agrees to: the police and the court, not legal aid
    run("ccadre", "refer", {"abuser_relation": "spouse", "violence_kinds": ["physical"], "risk_level": "high",
                            "consent_to_share": True, "referred_to": ["police", "court"],
                            "intake_assessment": "需转介"}, expect="referral")
    tasks = {t.name: t for t in run.open_tasks()}
    assert {n: t.role for n, t in tasks.items()} == {"police": "police_liaison", "court": "court_liaison"}
    with pytest.raises(NotFound):         # legal aid has no referral, so never sees the case
        env.queries.case(env.actor("legal"), case_id)
    env.service.done(env.actor("police"), tasks["police"].id, {"police_action": "出警并告诫"})
    with pytest.raises(Invalid):          # the court's referral still open
        run("ccadre", "referral_done")
    env.service.done(env.actor("court"), tasks["court"].id, {"court_notes": "受理人身安全保护令申请"})
    assert env.queries.case(env.actor("police"), case_id)["state"] == "referral"   # she worked it now
    run("ccadre", "referral_done", expect="adjudication")
    run("mgr1", "decide", {"decision": "police_caution", "decision_date": "2026-03-20"}, comment="告诫书已送达",
        expect="follow_up")
    (follow,) = run.open_tasks()
    assert follow.assignee_id == ccadre.user_id                     # same_as intake
    run("ccadre", "close", {"follow_up_notes": "回访：未再发生", "safety_status": "safe"}, expect="closed")
    _finish(env, run, "closed")


def test_microloan(env):
    rep = env.actor("rep")
    case_id = env.service.start_case(rep, "microloan", "t01v01", {
        "applicant_name": "孙秀芳", "id_number": "320123198803051226", "phone": "13912345678",
        "applicant_age": 38, "business_kind": "farming", "business_plan": "扩大蔬菜大棚",
        "loan_amount": "80000", "term_months": 24, "guarantee": "joint_guarantee"})
    run = Runner(env, case_id)
    run("rep", "submit", expect="eligibility_check")
    run("cadre2", "eligible", {"local_resident": True, "credit_record": "good", "applicant_age": 38,
                               "eligibility_notes": "信用良好"}, expect="mentor_pairing")
    with pytest.raises(Forbidden):        # the pairing is its own process: its end moves the loan
        run("chair", "paired")
    child = pair(env, case_id)            # 姐妹同行结对创业, with its own steps and people
    assert run.state == "coop_referral"
    view = env.queries.case(env.actor("ccadre"), case_id)
    assert view["data"]["mentor"] == "申承秀" and view["data"]["pairing_date"] == "2026-03-08"
    assert [c["id"] for c in view["children"]] == [child]
    assert env.queries.case(SYSTEM, child)["data"]["mentee_name"] == "孙秀芳"
    run("ccadre", "referred", {"coop_branch": "县信用联社城关分社", "coop_assessment": "favourable",
                               "loan_amount": "80000"}, expect="approval")
    assert run("mgr1", "approve")["outcome"] == "voted"             # above 50,000: two approvers
    run("mgr2", "approve", expect="disbursement")
    run("fin", "disburse", {"disbursed_amount": "80000", "loan_contract_number": "XD-2026-0815",
                            "disbursed_on": "2026-03-15", "maturity_date": "2028-03-15"}, expect="repaying")
    assert run.timers(days=91) == 1
    assert run.state == "repayment_check"
    run("cadre2", "on_track", {"repayment_status": "on_schedule", "outstanding_amount": "60000",
                               "business_status": "大棚投产"}, expect="repaying")
    run("fin", "report_repaid", comment="提前还清", expect="repaid")
    _finish(env, run, "repaid")


def test_spring_bud(env):
    rep = env.actor("rep")
    case_id = env.service.start_case(rep, "spring_bud", "t01v01", {
        "student_name": "李小红", "birth_date": "2014-09-01", "school": "城关中心小学", "grade": "primary_5",
        "class_name": "春蕾班", "guardian_name": "李大山", "family_hardships": ["single_parent", "low_income"],
        "nomination_reason": "父亲残疾，家庭困难"})
    run = Runner(env, case_id)
    run("rep", "nominate", expect="family_verification")
    run("cadre2", "verified", {"household_size": 3, "household_annual_income": "5400",
                               "verification_notes": "情况属实"}, expect="approval")
    run("mgr1", "approve", expect="sponsor_matching")
    run("ccadre", "matched", {"sponsor_name": "县建设银行", "sponsor_kind": "enterprise", "annual_grant": "1200"},
        expect="disbursement")
    run("fin", "disburse", {"fund": "spring_bud_sponsors", "school_year": "2026-2027", "disbursed_amount": "1200",
                            "disbursed_on": "2026-03-20", "voucher_number": "CL-2026-007"}, expect="sponsored")
    assert run.timers(days=366) == 1                                # yearly renewal by timer
    assert run.state == "renewal" and run.open_tasks() == []
    review = Runner(env, child_of(env, case_id))                    # this pupil's renewal: its own case
    (task,) = review.open_tasks()
    assert (task.role, env.queries.case(SYSTEM, review.case_id)["data"]["student_name"]) == ("town_cadre", "李小红")
    with pytest.raises(Invalid):                                    # no longer in need: not renewed
        review("cadre2", "renew", {"still_in_school": True, "family_still_in_need": False, "grade": "primary_6",
                                   "school": "城关中心小学", "renewal_notes": "家庭已脱贫"})
    review("cadre2", "renew", {"still_in_school": True, "family_still_in_need": True, "grade": "primary_6",
                               "school": "城关中心小学", "renewal_notes": "继续资助"}, expect="renewed")
    assert run.state == "disbursement"
    assert env.queries.case(SYSTEM, case_id)["data"]["grade"] == "primary_6"   # the review's result
    run("fin", "disburse", {"fund": "spring_bud_sponsors", "school_year": "2027-2028", "disbursed_amount": "1200",
                            "disbursed_on": "2027-03-20", "voucher_number": "CL-2027-003"}, expect="sponsored")
    run("cadre2", "graduate", expect="graduated")
    _finish(env, run, "graduated")


def test_elder_support(env):
    rep = env.actor("rep")
    case_id = env.service.start_case(rep, "elder_support", "t01v01", {
        "household_head": "赵德厚", "household_address": "东村3组12号", "elder_names": "赵德厚、钱秀英",
        "elder_count": 2, "youngest_elder_age": 72, "children_count": 3, "children_names": "赵一、赵二、赵三",
        "living_arrangement": "rotating"})
    run = Runner(env, case_id)
    run("rep", "register", expect="persuasion")
    with pytest.raises(Invalid):   # women cadres must take part before the family can agree
        run("rep", "agree", {"visit_date": "2026-03-06", "visitors": ["party_branch"],
                             "visit_notes": "三个子女同意", "willingness": "agreed"})
    run("rep", "agree", {"visit_date": "2026-03-06", "visitors": ["party_branch", "women_cadres"],
                         "visit_notes": "三个子女同意轮流赡养", "willingness": "agreed"}, expect="signing")
    run("rep", "sign", {"signed_on": "2026-03-09", "support_terms": "每人每月300元，轮流照料",
                        "monthly_allowance": "900", "agreement_file": _attach(env, case_id, "agreement_file")},
        expect="archiving")
    run("cadre2", "archive", {"archive_number": "SY-T01-0001", "archived_on": "2026-03-10"}, expect="archived")
    _finish(env, run, "archived")


def _attach(env, case_id, field):
    """Record an uploaded file for the case, as the web layer does after storing it."""
    from hexie.models import Attachment
    with env.engine.transaction() as s:
        row = Attachment(case_id=case_id, field=field, filename="agreement.pdf", content_type="application/pdf",
                         size=1234, storage_key="test-key", uploaded_by_id=env.actor("rep").user_id,
                         created_at=env.clock())
        s.add(row)
        s.flush()
        return [row.id]


def test_a_confidential_case_stays_visible_to_whoever_filed_it(env):
    police = env.actor("police")
    case_id = env.service.start_case(police, "dv_complaint", "t01v01", {
        "channel": "police_station", "received_at": "2026-03-02T08:00", "victim_name": "某女士",
        "incident_description": "邻居报警"})
    assert env.queries.case(police, case_id)["data"]["victim_name"] == "某女士"
    assert env.queries.cases(police, process="dv_complaint").total == 1
    with pytest.raises(NotFound):
        env.queries.case(env.actor("legal"), case_id)
    # the intake is offered to county cadres: listed for them, masked, claimable
    (row,) = env.queries.tasks(env.actor("ccadre"), "available").items
    assert row["subject"] == case_code(case_id)   # confidential: the case code, never a name
    env.service.claim(env.actor("ccadre"), row["id"])
    assert env.queries.case(env.actor("ccadre"), case_id)["state"] == "intake"


def test_the_quorum_shown_is_the_one_the_case_needs(env):
    rep = env.actor("rep")
    base = {"applicant_name": "孙秀芳", "id_number": "320123198803051226", "phone": "13912345678",
            "applicant_age": 38, "business_kind": "farming", "business_plan": "扩大蔬菜大棚",
            "term_months": 24, "guarantee": "joint_guarantee"}
    needs = {}
    for amount in ("80000", "10000"):
        case_id = env.service.start_case(rep, "microloan", "t01v01", {**base, "loan_amount": amount})
        run = Runner(env, case_id)
        run("rep", "submit")
        run("cadre2", "eligible", {"local_resident": True, "credit_record": "good", "applicant_age": 38,
                                   "eligibility_notes": "信用良好"})
        pair(env, case_id, kind="cadre")
        run("ccadre", "referred", {"coop_branch": "城关分社", "coop_assessment": "favourable",
                                   "loan_amount": amount}, expect="approval")
        needs[amount] = env.queries.case(env.actor("mgr1"), case_id)["action_quorums"]["approve"]
    assert needs == {"80000": 2, "10000": 1}


# ------------------------------------------------------------------ cases started on earlier versions

BEFORE = DEFINITIONS.parent / "tests" / "fixtures" / "runtime" / "before"   # the programmes before issue 15


def _upgraded(env):
    """The same database, now running the current definitions (a new version of each changed one)."""
    from hexie.workflows.engine import Engine
    from hexie.workflows.loader import load_definitions_strict
    from hexie.workflows.service import WorkflowService
    from hexie.workflows.queries import CaseQueries
    engine = Engine(env.engine.session_factory, load_definitions_strict(DEFINITIONS), clock=env.clock)
    versions = engine.sync_definitions()
    return type(env)(engine, WorkflowService(engine), CaseQueries(engine), env.clock), versions


def test_open_complaints_on_the_fixed_referrals_migrate(session_factory):
    """A complaint referred to the fixed police / legal aid / court tasks keeps its work when moved to
    the version that refers to the agencies chosen: done stays done, the optional court is dropped."""
    old = make_env(session_factory, definitions=BEFORE)
    ccadre = old.actor("ccadre")
    case_id = old.service.start_case(ccadre, "dv_complaint", "t01v01", {
        "channel": "hotline", "received_at": "2026-03-02T20:15", "victim_name": "某女士",
        "incident_description": "丈夫酒后殴打"})
    old.service.fire(ccadre, case_id, "refer", {"abuser_relation": "spouse", "violence_kinds": ["physical"],
                                                "risk_level": "high", "consent_to_share": True,
                                                "intake_assessment": "需转介"})
    tasks = {t.name: t for t in Runner(old, case_id).open_tasks()}
    old.service.done(old.actor("police"), tasks["police"].id, {"police_action": "出警并告诫"})
    new, versions = _upgraded(old)
    assert versions["dv_complaint"] == 2 and versions["mentor_pairing"] == 1
    assert new.service.migrate(new.actor("admin"), "dv_complaint", 1) == 1
    run = Runner(new, case_id)
    view = new.queries.case(ccadre, case_id)
    assert (view["version"], view["state"], view["data"]["referred_to"]) == (2, "referral", ["police", "legal_aid"])
    with new.engine.session_factory() as s:
        ended = dict(s.execute(select(Task.name, Task.status).where(Task.case_id == case_id,
                                                                     Task.state == "referral")).all())
    assert ended == {"police": "completed", "legal_aid": "offered", "court": "cancelled"}
    (legal,) = run.open_tasks()
    assert legal.id == tasks["legal_aid"].id                         # the same work item, not a new one
    new.service.done(new.actor("legal"), legal.id, {"legal_aid_notes": "提供法律咨询"})
    run("ccadre", "referral_done", expect="adjudication")


def test_open_loans_waiting_for_a_pairing_migrate_to_the_called_process(session_factory):
    old = make_env(session_factory, definitions=BEFORE)
    rep = old.actor("rep")
    case_id = old.service.start_case(rep, "microloan", "t01v01", {
        "applicant_name": "孙秀芳", "id_number": "320123198803051226", "phone": "13912345678",
        "applicant_age": 38, "business_kind": "farming", "business_plan": "扩大蔬菜大棚",
        "loan_amount": "10000", "term_months": 24, "guarantee": "joint_guarantee"})
    run = Runner(old, case_id)
    run("rep", "submit")
    run("cadre2", "eligible", {"local_resident": True, "credit_record": "good", "applicant_age": 38,
                               "eligibility_notes": "信用良好"}, expect="mentor_pairing")
    new, _ = _upgraded(old)
    assert new.service.migrate(new.actor("admin"), "microloan", 1) == 1
    assert child_of(new, case_id) is not None                        # the pairing is now a case of its own
    pair(new, case_id)
    assert Runner(new, case_id).state == "coop_referral"


def test_open_renewals_migrate_to_a_renewal_case_of_their_own(session_factory):
    old = make_env(session_factory, definitions=BEFORE)
    rep = old.actor("rep")
    case_id = old.service.start_case(rep, "spring_bud", "t01v01", {
        "student_name": "李小红", "birth_date": "2014-09-01", "school": "城关中心小学", "grade": "primary_5",
        "class_name": "春蕾班", "guardian_name": "李大山", "family_hardships": ["low_income"],
        "nomination_reason": "家庭困难"})
    run = Runner(old, case_id)
    run("rep", "nominate")
    run("cadre2", "verified", {"household_size": 3, "household_annual_income": "5400", "verification_notes": "属实"})
    run("mgr1", "approve")
    run("ccadre", "matched", {"sponsor_name": "县建设银行", "sponsor_kind": "enterprise", "annual_grant": "1200"})
    run("fin", "disburse", {"fund": "spring_bud_sponsors", "school_year": "2026-2027", "disbursed_amount": "1200",
                            "disbursed_on": "2026-03-20", "voucher_number": "CL-2026-007"})
    assert run.timers(days=366) == 1 and run.state == "renewal"      # the old single renewal task
    new, _ = _upgraded(old)
    assert new.service.migrate(new.actor("admin"), "spring_bud", 1) == 1
    review = Runner(new, child_of(new, case_id))
    assert [t.role for t in review.open_tasks()] == ["town_cadre"] and Runner(new, case_id).open_tasks() == []
    review("cadre2", "graduate", expect="graduated")
    assert Runner(new, case_id).state == "graduated"
