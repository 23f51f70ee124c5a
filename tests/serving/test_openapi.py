"""The OpenAPI document, and schemathesis against a live server: no 5xx, no schema violations."""

from __future__ import annotations

import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from conveyor.serving.openapi import openapi_document


def test_the_document_describes_every_route(served):
    doc = requests.get(f"{served.url}/openapi.json", timeout=10).json()
    assert doc == openapi_document(["cancer"], doc["info"]["version"])
    app_paths = {
        route.path
        for route in served.app.routes  # type: ignore[attr-defined]
    }
    assert app_paths == set(doc["paths"])
    infer = doc["paths"]["/v2/models/{model}/infer"]["post"]
    assert "inputs" in infer["requestBody"]["content"]["application/json"]["schema"]["required"]
    assert "422" in infer["responses"]


def test_schemathesis_finds_no_5xx_and_no_schema_violation(served):
    """Every operation, 15 generated cases each (schemathesis' pytest plugin predates pytest 9,
    so the cases are drawn here with hypothesis)."""
    from hypothesis import given

    api = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in api.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert {"POST /v2/models/{model}/infer", "POST /invocations", "GET /metrics"} <= labels
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=served.url, checks=checks, timeout=10)

        call()
    metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    answered = sum(
        int(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("conveyor_requests_total{")
    )
    assert answered >= 5 * len(operations)  # the cases really reached the server
