"""The command API: FastAPI routers for writes under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from http_shell.openapi import API_PREFIX as API_PREFIX
from write_api import (
    accounts,
    auth,
    bookings,
    checkins,
    payments,
    posters,
    presale_codes,
    queue,
    seat_blocks,
    shows,
    transfers,
    waitlist,
)


def command_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(auth.router)
    router.include_router(accounts.router)  # /me and the admin's account commands
    router.include_router(shows.router)
    router.include_router(seat_blocks.router)
    router.include_router(posters.router)
    router.include_router(bookings.router)
    router.include_router(payments.router)
    router.include_router(checkins.router)  # scans at the door
    router.include_router(transfers.router)  # tickets given to others
    router.include_router(presale_codes.router)  # a show's presale codes
    router.include_router(waitlist.router)  # waiting lists of sold-out shows
    router.include_router(queue.router)  # waiting rooms of announced on-sales
    return router
