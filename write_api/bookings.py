"""Customer commands on bookings: place a hold, cancel."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Header, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from commands.bookings import HoldPlaced
from commands.models import BookingRequest, CancelBooking, PlaceHold
from domain.ids import booking_id_for_request
from http_shell.admission_gate import QUEUE_REQUIRED, require_admission
from http_shell.deps import ContainerDep, CurrentUser, CustomerUser, enforce_rate_limit
from write_api.idempotency import Outcome, check_key, fingerprint, run_idempotently
from write_api.waiting import outcome_of

router = APIRouter(prefix="/bookings", tags=["bookings"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


class BookingHeld(BaseModel):
    booking_id: UUID
    show_id: UUID
    status: str
    seats: list[str]
    general: dict[str, int]
    amount_cents: int
    currency: str
    hold_expires_at: datetime
    position: int


class BookingCancelled(BaseModel):
    booking_id: UUID
    status: str
    position: int


def _held(placed: HoldPlaced) -> BookingHeld:
    return BookingHeld(
        booking_id=placed.booking_id,
        show_id=placed.show_id,
        status=placed.status,
        seats=placed.seats,
        general=placed.general,
        amount_cents=placed.amount_cents,
        currency=placed.currency,
        hold_expires_at=placed.hold_expires_at,
        position=placed.position,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BookingHeld,
    responses={409: {"description": "seats no longer available"}, **QUEUE_REQUIRED},
)
async def place_booking(
    body: BookingRequest,
    customer: CustomerUser,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    check_key(idempotency_key)
    enforce_rate_limit(
        container,
        f"booking:{customer.account_id}",
        container.settings.rate_limit_booking_per_minute,
    )
    # Before the idempotent run: a 403 is not remembered, a retry with an admission may pass.
    await require_admission(container, customer.account_id, body.show_id, body.admission)
    keyed = idempotency_key is not None
    booking_id = (
        booking_id_for_request(customer.account_id, idempotency_key)
        if idempotency_key is not None
        else uuid4()
    )
    command = PlaceHold(
        request=body, customer_id=customer.account_id, booking_id=booking_id, replayable=keyed
    )

    async def run() -> Outcome:
        async with asyncio.timeout(container.settings.command_timeout_seconds):
            placed = await container.bookings.place_hold_async(command)
        held = _held(placed)
        # A retry that found its booking answers as the first request did.
        return status.HTTP_201_CREATED, held.model_dump(mode="json")

    return await run_idempotently(
        container,
        customer,
        "bookings",
        idempotency_key,
        # The admission is renewed as the fan polls: a retry with a newer one is the same body.
        fingerprint(body.model_dump_json(exclude={"admission"})),
        run,
    )


@router.post(
    "/{booking_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BookingCancelled,
)
async def cancel_booking(
    booking_id: UUID,
    user: CurrentUser,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    check_key(idempotency_key)
    command = CancelBooking(
        booking_id=booking_id, actor_id=user.account_id, actor_is_admin=user.is_admin
    )

    async def run() -> Outcome:
        future = await run_in_threadpool(container.bookings.cancel_booking, command)
        position = await outcome_of(future, container.settings.command_timeout_seconds)
        body = BookingCancelled(booking_id=booking_id, status="cancelled", position=position)
        return status.HTTP_202_ACCEPTED, body.model_dump(mode="json")

    return await run_idempotently(
        container, user, f"cancel:{booking_id}", idempotency_key, fingerprint(""), run
    )
