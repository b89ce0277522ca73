"""The HTTP application: the command API (and the query API as it arrives) on one app."""

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


def create_app(container: Container) -> FastAPI:
    """Nothing connects here: the container was built (and will be closed) by the caller."""
    app = FastAPI(
        title="TicketBlitz",
        version="0.1.0",
        description="Event-sourced ticketing: command API under /api/v1.",
    )
    app.state.container = container
    install_problem_handlers(app)
    document_problems(app)
    app.include_router(command_router())
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
