"""The web pages: server-rendered HTML for fans, organisers and the door, beside the query API.

`install_web(app)` is what the app factory calls: the pages' routes (`web_router()`), the
static files under /static and the handlers that turn a page's errors into HTML pages (a
login redirect, a 403 or 404 page) rather than the API's problem+json."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from web.auth_pages import router as auth_router
from web.bookings_pages import router as bookings_router
from web.door import router as door_router
from web.fan import router as fan_router
from web.live import router as live_router
from web.organizer import router as organizer_router
from web.queue_pages import router as queue_router
from web.render import STATIC, redirect, render
from web.session import LoginRequired, PageError, login_url


def web_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    router.include_router(auth_router)
    router.include_router(fan_router)
    router.include_router(queue_router)
    router.include_router(bookings_router)
    router.include_router(live_router)
    router.include_router(organizer_router)
    router.include_router(door_router)
    return router


def install_web(app: FastAPI) -> None:
    app.include_router(web_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    async def on_page_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, PageError)
        return await render(
            request,
            "error.html",
            status_code=error.status,
            title=error.title,
            message=error.message,
        )

    async def on_login_required(request: Request, error: Exception) -> Response:
        assert isinstance(error, LoginRequired)
        return redirect(request, login_url(error.next_url))

    app.add_exception_handler(PageError, on_page_error)
    app.add_exception_handler(LoginRequired, on_login_required)
