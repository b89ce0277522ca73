"""What-if experiments: the same benchmark with one thing changed in this process only, to measure
what a proposed change to the write path would buy before anyone makes it. Nothing here edits
the project's code; each experiment reaches into objects of this run (documented, reversible).

- async-deps: FastAPI `dependency_overrides` with `async def` twins of http_shell.deps'
  `get_container`, `current_principal` and `require_customer` (same checks): no thread-pool hop
  per sync dependency.
- no-body-middleware: drop the `@app.middleware("http")` body-size check (a BaseHTTPMiddleware,
  which runs the rest of the app in a task group with memory streams per request).
- no-snapshots: the show writers take no inventory snapshots (`snapshot_every` = infinity).
- uvicorn-standard: serve with uvicorn's C parts (`http="httptools"`, `loop="uvloop"`, i.e.
  `uvicorn[standard]`) instead of h11 + asyncio (bench/whatif_ab.py only; needs httptools and
  uvloop importable, e.g. `pip install --target /tmp/tb-extra httptools uvloop` and
  `PYTHONPATH=/tmp/tb-extra`, so the shared venv is left alone).
- snapshot-every-N: snapshots every N events instead of 1,000.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.middleware.base import BaseHTTPMiddleware

from http_shell import deps
from http_shell.container import Container
from http_shell.problems import ProblemError
from infra.tokens import InvalidTokenError, Principal

KNOWN = ("async-deps", "no-body-middleware", "no-snapshots", "uvicorn-standard", "snapshot-every-N")

_bearer = HTTPBearer(auto_error=False)


async def _container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidTokenError("no bearer token")
    container: Container = request.app.state.container
    return container.tokens.verify(credentials.credentials)


async def _customer(user: Annotated[Principal, Depends(deps.current_principal)]) -> Principal:
    if user.role != "customer":
        raise ProblemError(403, "forbidden", "only customers can book")
    return user


def apply_to_container(container: Container, names: list[str]) -> list[str]:
    applied = []
    for name in names:
        every: int | None = None
        if name == "no-snapshots":
            every = 10**12
        elif name.startswith("snapshot-every-"):
            every = int(name.rsplit("-", 1)[1])
        if every is not None:
            container.writers._snapshot_every = every  # new writers only: set before the shows
            applied.append(name)
    return applied


def apply_to_app(app: FastAPI, names: list[str]) -> list[str]:
    applied = []
    if "async-deps" in names:
        overrides: dict[Any, Any] = app.dependency_overrides
        overrides[deps.get_container] = _container
        overrides[deps.current_principal] = _principal
        overrides[deps.require_customer] = _customer
        applied.append("async-deps")
    if "no-body-middleware" in names:
        before = len(app.user_middleware)
        app.user_middleware = [
            m
            for m in app.user_middleware
            if m.cls is not BaseHTTPMiddleware  # type: ignore[comparison-overlap]
        ]
        if len(app.user_middleware) < before:
            applied.append("no-body-middleware")
    return applied


def check(names: list[str]) -> None:
    for name in names:
        if name not in KNOWN[:4] and not name.startswith("snapshot-every-"):
            raise SystemExit(f"unknown what-if {name!r}; known: {', '.join(KNOWN)}")
