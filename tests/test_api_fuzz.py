"""Fuzzing the API from its own OpenAPI document (schemathesis + hypothesis).

For every operation, requests generated from the document (valid ones and,
deliberately, invalid ones) must never get a 5xx, and every answer must conform to
the document: a documented status code, the declared content type, the declared
body schema (the error schema included) and headers. Bounded to ~50 examples per
operation, without deadlines, so that the suite stays quick; on SQLite and
PostgreSQL alike (NUL characters and out-of-range ids are what PostgreSQL refuses).
"""
from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings, strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance, response_headers_conformance, response_schema_conformance,
    status_code_conformance,
)

from hexie.web.api.openapi import build_spec  # noqa: E402

from .api_support import ApiEnv, api_env  # noqa: E402

MAX_EXAMPLES = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
OPERATIONS = [(path, method) for path, ops in build_spec()["paths"].items() for method in ops]


@pytest.fixture
def fuzz_env(engine) -> tuple[ApiEnv, dict[str, int]]:
    """Some real cases and tasks for generated ids to hit now and then (ids 1, 2, 3 ...)."""
    env = api_env(engine)
    aid = env.start_aid()
    env.to_approval(aid)
    dv = env.start_dv()
    env.service.fire(env.actor("ccadre"), dv, "refer")
    env.start_aid("vrep2", "t02v01")
    return env, {"aid": aid, "dv": dv}


@pytest.mark.parametrize("path, method", OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_no_server_error_and_answers_conform(fuzz_env: tuple[ApiEnv, dict[str, int]], path: str,
                                             method: str) -> None:
    env, _ = fuzz_env
    # a county manager sees and may act on most cases (confidential ones too); webhooks need admin
    user = "admin" if path.startswith("/webhooks") else "manager"
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", env.app)
    operation = schema[path][method.upper()]
    token = env.as_(user).token
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))
    failures: list[str] = []

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        # the generated (random) bearer token would make nearly every answer a 401
        headers = {"Authorization": f"Bearer {token}"} if operation.security else {}
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as err:  # collect, so that one run reports every distinct finding
            text = f"{case.method} {case.formatted_path} -> {response.status_code}: {str(err)[:600]}"
            if response.status_code >= 500 or len(failures) < 5:
                failures.append(text)

    run()
    assert not failures, "\n\n".join(failures)
