"""HEAD wherever GET works (RFC 9110 9.3.2): the GET's status and headers, no body.

FastAPI routes answer only the methods they name, so a HEAD (what CDNs and link checkers send)
got 405. This middleware lets the GET route answer it and drops the body on the way out; the
headers (`Content-Length`, `ETag`, `Cache-Control`) stay those of the GET. Event streams are
left out: their GET never ends."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STREAM_SUFFIXES = ("/events",)


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "HEAD"
            or scope["path"].endswith(STREAM_SUFFIXES)
        ):
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
