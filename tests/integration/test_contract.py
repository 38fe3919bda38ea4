"""The published OpenAPI documents match the code, and the running jobs API honours its document."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from shared.jobs.openapi import agent_openapi, dumps, jobs_openapi
from shared.tools.devstack import DevStack
from tests.stack_reset import StackReset

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def stack(session_stack: DevStack, stack_reset: StackReset) -> DevStack:
    """Reset once for this module, not per test: the last test reads what the fuzzing cases left behind."""
    stack_reset()
    return session_stack


@pytest.mark.parametrize(("name", "build"), [("openapi.json", jobs_openapi), ("agent-openapi.json", agent_openapi)])
def test_stored_documents_match_the_code(name: str, build: object) -> None:
    stored = (DOCS / name).read_text()
    assert stored == dumps(build()), f"docs/{name} is stale: run `.venv/bin/python -m shared.jobs.openapi`"  # type: ignore[operator]


def test_the_api_serves_its_document(stack: DevStack) -> None:
    served = httpx.get(f"{stack.url}/v1/openapi.json").json()
    assert served == json.loads(dumps(jobs_openapi()))


schema = schemathesis.openapi.from_dict(jobs_openapi())


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_every_response_matches_the_document(case: schemathesis.Case, stack: DevStack) -> None:
    if case.path == "/v1/jobs/{job_id}/stream":
        case.path_parameters = {"job_id": "job_none"}  # an unknown job: answered at once, never a long stream
    # Every check but "schema-valid requests are accepted": the API has rules beyond JSON Schema (the
    # Idempotency-Key header must agree with the body's key, callback hosts must not be private, a reused
    # key with another body is 409); each answers a documented 4xx, which the other checks verify.
    # A body past the size limit is refused with 413 (documented) before the schema is looked at: a
    # rejection too, which the negative-data check does not count as one.
    response = case.call(base_url=stack.url, headers={"Authorization": f"Bearer {stack.api_key}"})
    excluded = [positive_data_acceptance, *([negative_data_rejection] if response.status_code == 413 else [])]
    case.validate_response(response, excluded_checks=excluded)


def test_nothing_the_fuzzing_sent_crashed_a_function(stack: DevStack) -> None:
    """Runs after the schemathesis cases: background work they caused (deliveries) did not crash either."""
    log = (stack.log_dir / "functions.log").read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]
