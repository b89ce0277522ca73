"""The command API: FastAPI routers for writes under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from write_api import auth, bookings, payments, shows

API_PREFIX = "/api/v1"


def command_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(auth.router)
    router.include_router(shows.router)
    router.include_router(bookings.router)
    router.include_router(payments.router)
    return router
