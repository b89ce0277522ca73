"""The OpenAPI document shows a working example body for every operation that takes JSON: each
is valid for its schema, and the examples of a show and a booking work as they are."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def document(api: Api) -> dict[str, Any]:
    answer = httpx.get(api.server_url + "/openapi.json", timeout=30)
    assert answer.status_code == 200
    spec: dict[str, Any] = answer.json()
    return spec


def json_bodies(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation["requestBody"]["content"]["application/json"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


def test_every_json_body_has_examples_valid_for_its_schema(document: dict[str, Any]):
    bodies = json_bodies(document)
    assert len(bodies) >= 19
    for method, path, body in bodies:
        examples = body.get("examples")
        assert examples, f"{method} {path} has no example"
        # The body's schema, with the document's components beside it for its $refs.
        schema = {**body["schema"], "components": document["components"]}
        validator = Draft202012Validator(schema)
        for name, example in examples.items():
            errors = [e.message for e in validator.iter_errors(example["value"])]
            assert errors == [], (method, path, name, errors)
            assert example["summary"]


def example(document: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    content = document["paths"]["/api/v1" + path][method]["requestBody"]["content"]
    value: dict[str, Any] = content["application/json"]["examples"][name]["value"]
    return value


def test_the_show_and_booking_examples_work_as_they_are(api: Api, document: dict[str, Any]):
    organiser = {"Authorization": api.new_account("organizer")["Authorization"]}
    created = api.http.post(
        "/shows", json=example(document, "post", "/shows", "example"), headers=organiser
    )
    assert created.status_code == 201, created.text
    show_id = created.json()["show_id"]
    opened = api.http.post(f"/shows/{show_id}/open-sale", headers=organiser)
    assert opened.status_code == 200, opened.text

    fan = {"Authorization": api.new_customer()["Authorization"]}
    for name in ("best_available", "chosen_seats"):
        body = {**example(document, "post", "/bookings", name), "show_id": show_id}
        booked = api.http.post("/bookings", json=body, headers=fan)
        assert booked.status_code == 201, (name, booked.text)
