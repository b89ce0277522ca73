"""Idempotency-Key handling: the same key with the same body gets the first answer again."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.responses import JSONResponse

from http_shell.container import Container
from http_shell.problems import ProblemError, response_for
from infra.redis_guard import StoredResponse
from infra.tokens import Principal

MAX_KEY_LENGTH = 200
# Answers worth replaying: successes and deterministic refusals, not transient failures.
_NOT_REMEMBERED = {429, 500, 502, 503, 504}

Outcome = tuple[int, dict[str, Any]]


def check_key(key: str | None) -> None:
    if key is not None and not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ProblemError(
            422, "invalid-idempotency-key", f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} chars"
        )


def fingerprint(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


async def run_idempotently(
    container: Container,
    principal: Principal,
    route: str,
    key: str | None,
    body_fingerprint: str,
    run: Callable[[], Awaitable[Outcome]],
) -> JSONResponse:
    records = container.idempotency
    if key is None or records is None:
        status, body = await run()
        return JSONResponse(body, status_code=status)
    record_key = f"{principal.account_id}:{route}:{key}"
    found = await asyncio.to_thread(records.find, record_key)
    if found is not None:
        if found.fingerprint != body_fingerprint:
            raise ProblemError(
                422, "idempotency-key-reused", "this Idempotency-Key was used with another body"
            )
        return _replayed(found)
    try:
        status, body = await run()
        response = JSONResponse(body, status_code=status)
    except Exception as error:
        response = response_for(error)
        status, body = response.status_code, _json_body(response)
    if status not in _NOT_REMEMBERED:
        stored = StoredResponse(body_fingerprint, status, body)
        await asyncio.to_thread(records.remember, record_key, stored)
    return response


def _replayed(found: StoredResponse) -> JSONResponse:
    media = "application/problem+json" if found.status >= 400 else "application/json"
    return JSONResponse(
        found.body,
        status_code=found.status,
        media_type=media,
        headers={"Idempotent-Replayed": "true"},
    )


def _json_body(response: JSONResponse) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(bytes(response.body))
    return body
