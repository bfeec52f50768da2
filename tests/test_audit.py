"""The audit trail: hash chain per case, and detection of tampering."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from hexie.models import AuditEvent, Case, User
from tests.test_models import new_case
from hexie.workflows.audit import SYSTEM_ACTOR, append_event, canonical_json, event_hash, verify_chain


def english(problems: list[str]) -> list[str]:
    """The English half of each problem (they read ``案件 7：… / case 7: …``, Chinese first)."""
    assert all(" / " in p for p in problems), problems
    return [p.split(" / ", 1)[1] for p in problems]



@pytest.fixture
def actor(session) -> User:
    user = User(username="wangmin", name="王敏", password_hash="!")
    session.add(user)
    session.flush()
    return user


def record_history(session, case: Case, actor: User) -> list[AuditEvent]:
    """A plausible history of five events, changing the case as the engine would."""
    events = [append_event(session, case, kind="started", actor=actor, to_state="application",
                           changes={"applicant_name": [None, "李芳"]})]
    for trigger, source, dest, comment in [("submit", "application", "survey", None),
                                           ("surveyed", "survey", "approval", "走访属实"),
                                           ("approve", "approval", "disbursement", "同意")]:
        case.state = dest
        events.append(append_event(session, case, kind="fired", actor=actor, trigger=trigger,
                                   from_state=source, to_state=dest, comment=comment))
    events.append(append_event(session, case, kind="timer", actor=None,
                               changes={"approved_amount": [None, Decimal("800.00")],
                                        "visit_on": [None, datetime(2026, 6, 1, 9, 30)]}))
    session.commit()
    return events


def test_a_chain_of_events_verifies(session, actor):
    case = new_case(session)
    events = record_history(session, case, actor)

    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash is None
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(events, events[1:]))
    assert case.audit_head == events[-1].hash
    assert verify_chain(session) == []
    assert verify_chain(session, case.id) == []


def test_events_are_stored_as_hashed(session_factory):
    with session_factory() as session:
        user = User(username="lifang", name="李芳", password_hash="!")
        session.add(user)
        case = new_case(session)
        event = append_event(session, case, kind="fired", actor=user, trigger="submit",
                             from_state="application", to_state="survey", comment="已核实",
                             changes={"monthly_income": ["450", Decimal("500.50")]},
                             at=datetime(2026, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=8))))
        session.commit()
        event_id, case_id = event.id, case.id
    with session_factory() as session:
        stored = session.get(AuditEvent, event_id)
        assert (stored.actor, stored.actor_id, stored.kind) == ("lifang", user.id, "fired")
        assert stored.at == datetime(2026, 3, 1, 0, 0)  # naive UTC
        assert stored.changes == {"monthly_income": ["450", "500.50"]}  # JSON-safe, as hashed
        assert stored.hash == event_hash(
            prev_hash=None, case_id=case_id, seq=1, at=stored.at, actor="lifang", kind="fired",
            trigger="submit", from_state="application", to_state="survey", comment="已核实",
            changes={"monthly_income": ["450", "500.50"]})
        assert session.get(Case, case_id).audit_head == stored.hash


def test_the_engine_is_the_system_actor(session):
    case = new_case(session)
    event = append_event(session, case, kind="timer", actor=None, trigger="visit_due")
    assert (event.actor, event.actor_id) == (SYSTEM_ACTOR, None)


def test_canonical_json_is_stable():
    assert canonical_json({"b": Decimal("1.50"), "a": [datetime(2026, 1, 2, 3, 4, 5)], "c": "县"}) \
        == '{"a":["2026-01-02T03:04:05"],"b":"1.50","c":"县"}'


def test_the_event_is_written_with_the_case_update(session_factory):
    with session_factory() as session:
        case = new_case(session)
        session.commit()
        assert case.lock_version == 1
        case.state = "survey"
        append_event(session, case, kind="fired", actor=None, trigger="submit",
                     from_state="application", to_state="survey")
        session.commit()
        assert case.lock_version == 2  # one UPDATE of the case carries state and audit head


def test_each_case_has_its_own_chain(session, actor):
    first, second = new_case(session), new_case(session)
    a1 = append_event(session, first, kind="started", actor=actor)
    b1 = append_event(session, second, kind="started", actor=actor)
    a2 = append_event(session, first, kind="fired", actor=actor, trigger="submit")
    session.commit()
    assert (a1.seq, a2.seq, b1.seq) == (1, 2, 1)
    assert a2.prev_hash == a1.hash and b1.prev_hash is None
    assert verify_chain(session) == []


def test_events_without_a_case_form_their_own_chain(session, actor):
    first = append_event(session, None, kind="org_loaded", actor=actor, comment="org.yaml")
    second = append_event(session, None, kind="org_loaded", actor=actor)
    session.commit()
    assert (first.seq, second.seq, second.prev_hash) == (1, 2, first.hash)
    assert verify_chain(session) == []
    session.execute(text("UPDATE hexie_audit_events SET comment = 'other.yaml' WHERE case_id IS NULL AND seq = 1"))
    session.commit()
    assert english(verify_chain(session)) == ["events without a case: event 1 was altered (hash mismatch)"]


def test_a_case_new_in_this_transaction_gets_its_id_first(session):
    existing = new_case(session)
    case = Case(process_version_id=existing.process_version_id, process_key="aid", state="application",
                data={}, org_unit_id=existing.org_unit_id, org_path=existing.org_path)
    session.add(case)
    event = append_event(session, case, kind="started", actor=None)
    assert case.id is not None and event.case_id == case.id
    session.commit()
    assert verify_chain(session) == []


# --- tampering -----------------------------------------------------------------------

def tamper(session, sql: str, **params) -> None:
    session.execute(text(sql), params)
    session.commit()
    session.expire_all()


def test_editing_a_comment_is_detected(session, actor):
    case = new_case(session)
    record_history(session, case, actor)
    tamper(session, "UPDATE hexie_audit_events SET comment = '不同意' WHERE case_id = :c AND seq = 4", c=case.id)
    assert english(verify_chain(session)) == [f"case {case.id}: event 4 was altered (hash mismatch)"]
    assert english(verify_chain(session, case.id)) == [f"case {case.id}: event 4 was altered (hash mismatch)"]
    assert verify_chain(session) == [f"案件 {case.id}：第 4 条事件被改动（哈希不符） / "
                                     f"case {case.id}: event 4 was altered (hash mismatch)"]   # Chinese first


def test_editing_changes_actor_or_time_is_detected(session, actor):
    case = new_case(session)
    record_history(session, case, actor)
    tamper(session, "UPDATE hexie_audit_events SET changes = :v WHERE case_id = :c AND seq = 1",
           v='{"applicant_name": [null, "王某"]}', c=case.id)
    tamper(session, "UPDATE hexie_audit_events SET actor = 'someone' WHERE case_id = :c AND seq = 2", c=case.id)
    tamper(session, "UPDATE hexie_audit_events SET at = :at WHERE case_id = :c AND seq = 3",
           at=datetime(2020, 1, 1), c=case.id)
    assert english(verify_chain(session)) == [f"case {case.id}: event {n} was altered (hash mismatch)" for n in (1, 2, 3)]


def test_rehashing_an_edited_event_still_breaks_the_next_link(session, actor):
    case = new_case(session)
    events = record_history(session, case, actor)
    forged = event_hash(prev_hash=events[1].prev_hash, case_id=case.id, seq=2, at=events[1].at,
                        actor=events[1].actor, kind="fired", trigger="submit", from_state="application",
                        to_state="survey", comment="伪造", changes=None)
    tamper(session, "UPDATE hexie_audit_events SET comment = '伪造', hash = :h WHERE case_id = :c AND seq = 2",
           h=forged, c=case.id)
    assert english(verify_chain(session)) == [f"case {case.id}: event 3 does not link to the event before it"]


def test_deleting_the_last_event_is_detected(session, actor):
    case = new_case(session)
    record_history(session, case, actor)
    tamper(session, "DELETE FROM hexie_audit_events WHERE case_id = :c AND seq = 5", c=case.id)
    assert english(verify_chain(session)) == [
        f"case {case.id}: the case's audit head is not its last event 4 "
        "(later events were removed, or the head was changed)"]


def test_deleting_a_middle_event_is_detected(session, actor):
    case = new_case(session)
    record_history(session, case, actor)
    tamper(session, "DELETE FROM hexie_audit_events WHERE case_id = :c AND seq = 3", c=case.id)
    assert english(verify_chain(session)) == [
        f"case {case.id}: event 3 is missing (found 4)",
        f"case {case.id}: event 4 does not link to the event before it"]


def test_deleting_the_first_event_is_detected(session, actor):
    case = new_case(session)
    record_history(session, case, actor)
    tamper(session, "DELETE FROM hexie_audit_events WHERE case_id = :c AND seq = 1", c=case.id)
    assert english(verify_chain(session)) == [
        f"case {case.id}: event 1 is missing (found 2)",
        f"case {case.id}: event 2 does not link to the event before it"]


def test_deleting_every_event_is_detected(session, actor):
    case = new_case(session)
    record_history(session, case, actor)
    tamper(session, "DELETE FROM hexie_audit_events WHERE case_id = :c", c=case.id)
    expected = [f"case {case.id}: every event is missing (the case has an audit head)"]
    assert english(verify_chain(session)) == expected
    assert english(verify_chain(session, case.id)) == expected


def test_tampering_with_one_case_does_not_implicate_another(session, actor):
    tampered, intact = new_case(session), new_case(session)
    record_history(session, tampered, actor)
    record_history(session, intact, actor)
    tamper(session, "DELETE FROM hexie_audit_events WHERE case_id = :c AND seq = 2", c=tampered.id)
    assert verify_chain(session, intact.id) == []
    assert len(english(verify_chain(session))) == 2
    assert all(p.startswith(f"case {tampered.id}:") for p in english(verify_chain(session)))


def test_verification_streams_in_batches(session, actor):
    cases = [new_case(session) for _ in range(4)]
    for case in cases:
        for n in range(7):
            append_event(session, case, kind="fired", actor=actor, trigger=f"t{n}")
    session.commit()
    assert verify_chain(session, batch_size=3) == []
    tamper(session, "UPDATE hexie_audit_events SET trigger = 'x' WHERE case_id = :c AND seq = 6", c=cases[2].id)
    assert english(verify_chain(session, batch_size=3)) == [f"case {cases[2].id}: event 6 was altered (hash mismatch)"]


def test_verification_leaves_the_session_alone(session, actor):
    case = new_case(session)
    events = record_history(session, case, actor)
    loaded = [session.get(AuditEvent, e.id) for e in events]
    verify_chain(session)
    assert case in session and all(e in session for e in loaded)
    assert session.scalar(select(AuditEvent).where(AuditEvent.seq == 1)) is loaded[0]
