"""Run by test_outbox_kill.py in a subprocess (killed with SIGKILL at random moments): starts aid
cases and submits them for ever, so that every committed action leaves events and notifications
in the outbox. Usage: python outbox_producer.py DATABASE_URL DEFINITIONS_DIR"""
from __future__ import annotations

import sys
import time

from hexie.workflows.engine import Engine
from hexie.workflows.service import WorkflowService

APPLICATION = {"applicant_name": "王秀英", "id_number": "110101199003071234", "household_size": 4,
               "declared_annual_income": "6000.00", "hardships": ["illness"], "self_reliant": False}


def main(url: str, definitions: str) -> None:
    engine = Engine.from_config(url, definitions)
    engine.sync_definitions()
    service = WorkflowService(engine)
    vrep = engine.actor("vrep1")
    print("ready", flush=True)
    while True:
        case_id = service.start_case(vrep, "poor_mother_aid", "t01v01", APPLICATION)
        service.fire(vrep, case_id, "submit")
        time.sleep(0.1)   # a busy office, not a benchmark: the worker keeps up (on SQLite too)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
