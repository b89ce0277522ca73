"""The query API: FastAPI routers for reads under /api/v1, over the read models only."""

from __future__ import annotations

from fastapi import APIRouter

from read_api import (
    accounts,
    admin_streams,
    bookings,
    checkins,
    my_tickets,
    operations,
    posters,
    recommendations,
    reports,
    shows,
    ticket_documents,
    tickets,
    waitlist,
)

API_PREFIX = "/api/v1"


def query_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(shows.router)
    router.include_router(posters.router)  # images from the blob store
    router.include_router(bookings.router)
    router.include_router(tickets.router)  # a booking's tickets and their secrets
    router.include_router(my_tickets.router)  # the caller's tickets, bought or given
    router.include_router(ticket_documents.router)  # QR codes and ticket PDFs
    router.include_router(reports.router)  # organiser reports
    router.include_router(checkins.router)  # door figures and the offline kit
    router.include_router(operations.router)
    router.include_router(accounts.router)  # the admin's account list (read model)
    router.include_router(admin_streams.router)  # from the event log itself (audit/)
    router.include_router(recommendations.router)  # the `rec` read model (recommender/)
    router.include_router(waitlist.router)  # the caller's entries, a show's list (organiser)
    return router
