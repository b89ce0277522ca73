"""The HTTP ceiling: the same endpoint shape with no storage at all, seats in a Python dict.

Not a design anyone should ship (nothing is durable); it measures what FastAPI + uvicorn + the
load generator can do on this machine for `POST /api/v1/bookings` with the same request model,
the same JWT check and the same answers, so the other designs' figures can be read against it.
Async endpoint and dependency (no thread-pool hop), no middleware.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import uuid4

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from bench.baselines.seed_style import Credentials, principal
from bench.common import PRICE_CENTS, Layout
from commands.models import BookingRequest
from domain.errors import (
    CapacityExceededError,
    DomainError,
    SeatsUnavailableError,
    UnknownSeatsError,
)
from http_shell.problems import response_for
from infra.tokens import InvalidTokenError, Principal, TokenService


class InMemorySeats:
    def __init__(self, layout: Layout) -> None:
        self.order = layout.seat_ids()
        self.known = set(self.order)
        self.holder: dict[str, str] = {}
        self.next_free = 0
        self.bookings: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def book(self, seats: list[str] | None, quantity: int | None) -> dict[str, Any]:
        booking_id = str(uuid4())
        with self._lock:
            if seats is not None:
                unknown = [s for s in seats if s not in self.known]
                if unknown:
                    raise UnknownSeatsError(unknown)
                taken = [s for s in seats if s in self.holder]
                if taken:
                    raise SeatsUnavailableError(taken)
                got = list(seats)
            else:
                assert quantity is not None
                got = []
                i = self.next_free
                while len(got) < quantity and i < len(self.order):
                    if self.order[i] not in self.holder:
                        got.append(self.order[i])
                    i += 1
                if len(got) < quantity:
                    raise CapacityExceededError(None, quantity, len(self.order) - len(self.holder))
                while self.next_free < len(self.order) and self.order[self.next_free] in (
                    self.holder
                ):
                    self.next_free += 1
            for seat in got:
                self.holder[seat] = booking_id
            self.bookings[booking_id] = got
        until = datetime.now(UTC) + timedelta(minutes=60)
        return {
            "booking_id": booking_id,
            "status": "held",
            "seats": got,
            "general": {},
            "amount_cents": PRICE_CENTS * len(got),
            "currency": "EUR",
            "hold_expires_at": until.isoformat(),
            "position": 0,
        }


async def _principal(request: Request, credentials: Credentials) -> Principal:
    return principal(request, credentials)  # async: no thread-pool hop


CustomerDep = Annotated[Principal, Depends(_principal)]


async def _place_booking(
    body: BookingRequest, customer: CustomerDep, request: Request
) -> JSONResponse:
    seats: InMemorySeats = request.app.state.seats[str(body.show_id)]
    try:
        held = seats.book(body.seats, body.quantity)
    except DomainError as error:
        return response_for(error)
    held["show_id"] = str(body.show_id)
    return JSONResponse(held, status_code=201)


async def _health() -> dict[str, str]:
    return {"status": "ok"}


async def _unauthorized(_: Request, error: Exception) -> JSONResponse:
    return response_for(error)


def create_in_memory_app(tokens: TokenService) -> FastAPI:
    app = FastAPI(title="in-memory ceiling")
    app.state.tokens = tokens
    app.state.seats = {}
    app.add_api_route("/api/v1/bookings", _place_booking, methods=["POST"], status_code=201)
    app.add_api_route("/health", _health, methods=["GET"])
    app.add_exception_handler(InvalidTokenError, _unauthorized)
    return app


def add_show(app: FastAPI, show_id: str, layout: Layout) -> InMemorySeats:
    seats = InMemorySeats(layout)
    app.state.seats[show_id] = seats
    return seats
