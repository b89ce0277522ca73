"""Request ids: every request has one, every log line of it carries it, every answer names it.

An incoming `X-Request-ID` is kept when it is a plain token (`[A-Za-z0-9._-]{1,64}`: a proxy's
or a client's id, safe to log and to echo); anything else (too long, spaces, control or
non-ASCII characters, several values) is hostile or broken input and replaced by a new id. The
answer's `X-Request-ID` header says which id the request was logged under. The show or booking
the path names is put in the log context too (infra/logs.py).
"""

from __future__ import annotations

import itertools
import os
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.logs import log_context

HEADER = "X-Request-ID"
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_UUID = r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
_SHOW_IN_PATH = re.compile(r"/shows/" + _UUID + r"(?:/|$)")
_BOOKING_IN_PATH = re.compile(r"/bookings/" + _UUID + r"(?:/|$)")


# A new id is this process's random 64-bit prefix and a counter: unique like a uuid4 (32 hex
# digits) without a system call for randomness per request (a seat-map 304 costs ~100 us).
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):016x}"


def request_id_for(scope: Scope) -> str:
    """The client's id when there is exactly one valid one, else a new one."""
    values = [v for k, v in scope.get("headers", ()) if k.lower() == b"x-request-id"]
    if len(values) == 1:
        try:
            given = bytes(values[0]).decode("ascii")
        except UnicodeDecodeError:
            return new_request_id()
        if VALID_REQUEST_ID.fullmatch(given):
            return given
    return new_request_id()


def ids_in_path(path: str) -> tuple[str | None, str | None]:
    """The show id and the booking id a request's path names, if any (lower case)."""
    show = _SHOW_IN_PATH.search(path)
    booking = _BOOKING_IN_PATH.search(path)
    return (
        show.group(1).lower() if show else None,
        booking.group(1).lower() if booking else None,
    )


class RequestIds:
    """ASGI middleware (outermost, so that even refused bodies are answered with the id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_for(scope)
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id
        show_id, booking_id = ids_in_path(str(scope.get("path", "")))

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        with log_context(request_id=request_id, show_id=show_id, booking_id=booking_id):
            await self.app(scope, receive, sending)
