"""The HTTP application: the command API, the query API, or both on one port."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib.metadata import version as package_version

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from http_shell.container import Container
from http_shell.head_requests import HeadAsGet
from http_shell.health import install_health
from http_shell.metrics import install_metrics
from http_shell.openapi import document_problems
from http_shell.problems import install_problem_handlers, problem
from http_shell.request_ids import RequestIds
from infra.tracing import instrument_app
from read_api.app import query_router
from read_api.hot_reads import install_hot_reads
from read_api.shows import HOT_RESOURCES
from web.app import install_web
from web.organizer_show import POSTER_FORM_BYTES, POSTER_FORM_PATH
from write_api.app import API_PREFIX, command_router
from write_api.checkins import BATCH_PATH_PATTERN, CHECKIN_BATCH_BYTES
from write_api.posters import POSTER_PATH, POSTER_UPLOAD_BYTES

MAX_BODY_BYTES = 256 * 1024
APIS = ("write", "read")
IO_THREADS = 64
# Bodies that may be larger than MAX_BODY_BYTES: (method, path pattern, limit).
LARGER_BODIES = (
    ("PUT", re.compile(API_PREFIX + POSTER_PATH), POSTER_UPLOAD_BYTES),
    ("POST", re.compile(API_PREFIX + BATCH_PATH_PATTERN), CHECKIN_BATCH_BYTES),  # offline scans
    ("POST", re.compile(POSTER_FORM_PATH), POSTER_FORM_BYTES),  # the organiser page's upload
)


def body_limit(scope: Scope) -> int:
    for method, path, limit in LARGER_BODIES:
        if scope["method"] == method and path.fullmatch(scope["path"]):
            return limit
    return MAX_BODY_BYTES


@asynccontextmanager
async def io_threads(_: FastAPI) -> AsyncIterator[None]:
    """Threads for the blocking calls endpoints make with `asyncio.to_thread` (queries,
    Redis). asyncio's default executor has min(32, CPUs + 4) threads, six on two cores: fewer
    than the read pool's connections, and while PostgreSQL hangs, six slow queries would hold
    them all and even the command API's Redis lookups would queue behind them."""
    executor = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="api-io")
    asyncio.get_running_loop().set_default_executor(executor)
    try:
        yield
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


class BodyTooLargeError(StarletteHTTPException):
    """Raised from the receive channel as soon as a body passes MAX_BODY_BYTES; an
    HTTPException, so FastAPI's body parsing lets it through to the problem handlers."""

    def __init__(self, limit: int = MAX_BODY_BYTES) -> None:
        # Closing the connection: the rest of the body is never read, so it cannot be reused.
        detail = f"bodies are limited to {limit} bytes"
        super().__init__(413, detail, headers={"Connection": "close"})


class BodySizeLimit:
    """Refuse bodies over MAX_BODY_BYTES: at once when Content-Length says so, else (chunked,
    or a Content-Length that lies) by counting the bytes as the app receives them, so the
    rest of a large body is never read. A plain ASGI middleware: no per-request task and
    stream wrapping, unlike Starlette's BaseHTTPMiddleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(scope, receive, send, limit)
            return
        counted = _CountedBody(receive, send, limit)
        try:
            await self.app(scope, counted.receive, counted.send)
        except BodyTooLargeError:
            if counted.response_started:  # the app read its body after answering: too late
                raise
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        error = BodyTooLargeError(limit)
        response = problem(413, "payload-too-large", error.detail, dict(error.headers or {}))
        await response(scope, receive, send)


class _CountedBody:
    """The receive and send channels of one request, counting the body's bytes."""

    __slots__ = ("_limit", "_receive", "_send", "received", "response_started")

    def __init__(self, receive: Receive, send: Send, limit: int = MAX_BODY_BYTES) -> None:
        self._limit = limit
        self._receive = receive
        self._send = send
        self.received = 0
        self.response_started = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self._limit:
                raise BodyTooLargeError(self._limit)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)


def create_app(container: Container, apis: tuple[str, ...] = APIS) -> FastAPI:
    """Nothing connects here: the container was built (and will be closed) by the caller.
    `apis` picks the command API ("write"), the query API ("read") or both."""
    # Swagger UI (/docs) and ReDoc (/redoc) load their scripts from this process, not a CDN.
    app = FastAPIOffline(
        title="TicketBlitz",
        version=package_version("ticketblitz"),
        description=f"Event-sourced ticketing under /api/v1: {' and '.join(apis)} API.",
        lifespan=io_threads,
    )
    app.state.container = container
    install_problem_handlers(app)
    document_problems(app)
    if "write" in apis:
        app.include_router(command_router())
    if "read" in apis:
        app.include_router(query_router())
        # The pages (web/) read like the query API; their forms call the container's commands.
        install_web(app)

    app.add_middleware(BodySizeLimit)
    if "read" in apis:  # seat maps and show pages from memory, before the routing
        install_hot_reads(app, API_PREFIX + "/shows", HOT_RESOURCES)

    install_metrics(app, container)
    install_health(app, container)  # /healthz, /readyz
    app.add_middleware(HeadAsGet)  # HEAD wherever GET works
    app.add_middleware(RequestIds)  # outermost: every answer and log line has the request id
    instrument_app(app)  # traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set (infra/tracing.py)

    @app.get("/api", include_in_schema=False)
    def home() -> dict[str, str]:
        """Where to go from here (a newcomer's first request; `/` is the web's home page)."""
        return {
            "name": "TicketBlitz",
            "version": package_version("ticketblitz"),
            "apis": " and ".join(apis),
            "home": "/" if "read" in apis else "",
            "docs": "/docs",
            "redoc": "/redoc",
            "openapi": "/openapi.json",
            "api": "/api/v1",
            "health": "/health",
        }

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, object]:
        return {"status": "ok", "position": container.store.head_position()}

    return app
