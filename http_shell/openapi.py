"""The OpenAPI document tells the truth about errors: every operation may answer problem+json."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from http_shell.examples import add_request_examples

API_PREFIX = "/api/v1"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "additionalProperties": True,
}

# Statuses any operation can answer with a problem (auth, limits, validation, outages).
PROBLEM_STATUSES = {
    "400": "Bad request",
    "401": "Missing or invalid access token",
    "402": "Payment declined",
    "403": "Not allowed for this account",
    "404": "Not found",
    "409": "Conflicts with the current state",
    "413": "Body too large",
    "422": "Invalid request",
    "429": "Rate limited, or too many lapsed holds (see Retry-After)",
    "500": "Internal error (nothing leaked)",
    "503": "Temporarily unavailable (see Retry-After)",
}


# FastAPI's own descriptions, which say nothing a client can act on.
GENERIC_DESCRIPTIONS = frozenset({"Validation Error", "Successful Response", "Additional Response"})


def document_problems(app: FastAPI) -> None:
    """Replace FastAPI's default 422 schema and add the problem answers to every operation;
    an operation's own description of a status (its `responses=`, naming the problem types
    it answers) is kept, the general one fills in the rest."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        problem_ref = {"$ref": "#/components/schemas/Problem"}
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                for status, general in PROBLEM_STATUSES.items():
                    own = responses.get(status, {}).get("description")
                    keep = own is not None and own not in GENERIC_DESCRIPTIONS
                    responses[status] = {
                        "description": own if keep else general,
                        "content": {"application/problem+json": {"schema": problem_ref}},
                    }
        for unused in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(unused, None)
        add_request_examples(schema, API_PREFIX)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
