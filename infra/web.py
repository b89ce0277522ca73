"""The HTTP application: the command API, the query API, or both on one port."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from infra.bootstrap import Container
from infra.metrics import install_metrics
from infra.openapi import document_problems
from read_api.app import query_router
from write_api.app import command_router
from write_api.problems import install_problem_handlers, problem

MAX_BODY_BYTES = 256 * 1024
APIS = ("write", "read")


def create_app(container: Container, apis: tuple[str, ...] = APIS) -> FastAPI:
    """Nothing connects here: the container was built (and will be closed) by the caller.
    `apis` picks the command API ("write"), the query API ("read") or both."""
    app = FastAPI(
        title="TicketBlitz",
        version="0.1.0",
        description=f"Event-sourced ticketing under /api/v1: {' and '.join(apis)} API.",
    )
    app.state.container = container
    install_problem_handlers(app)
    document_problems(app)
    if "write" in apis:
        app.include_router(command_router())
    if "read" in apis:
        app.include_router(query_router())

    @app.middleware("http")
    async def limit_body_size(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return problem(
                413, "payload-too-large", f"bodies are limited to {MAX_BODY_BYTES} bytes"
            )
        return await call_next(request)

    install_metrics(app, container)

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, object]:
        return {"status": "ok", "position": container.store.head_position()}

    return app
