"""Schemathesis fuzzes every operation of the OpenAPI document: no 5xx, answers as documented."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 20


@pytest.fixture(scope="session")
def api_schema(base_url: str):
    return schemathesis.openapi.from_url(base_url.removesuffix("/api/v1") + "/openapi.json")


@pytest.fixture(scope="session")
def tokens(api: Api) -> dict[str, dict[str, str]]:
    return {
        "admin": api.admin(),
        "customer": {"Authorization": api.new_customer()["Authorization"]},
    }


def test_every_operation_answers_as_documented(api_schema, tokens):
    """Admin routes are called as an admin, the rest as a customer, so the fuzzing gets past
    authentication into validation and the domain rules."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        role = "admin" if operation.path.startswith("/api/v1/shows") else "customer"
        check_operation(operation, tokens[role])


def check_operation(operation, headers: dict[str, str]) -> None:

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def answers_as_documented(case) -> None:
        case.call_and_validate(
            headers=headers,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )

    answers_as_documented()
