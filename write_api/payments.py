"""Payments: the customer pays for a held booking; Stripe reports results by webhook."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from commands.models import PayBooking, PaymentMethodId
from http_shell.deps import ContainerDep, CurrentUser
from write_api.idempotency import Outcome, check_key, fingerprint, run_idempotently

router = APIRouter(tags=["payments"])

# Stripe's events are a few KiB; the same limit as every other body (ticketblitz/web.py).
WEBHOOK_MAX_BYTES = 256 * 1024

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
StripeSignature = Annotated[str | None, Header(alias="Stripe-Signature")]


class PaymentCreate(BaseModel):
    payment_method: PaymentMethodId


class PaymentPublic(BaseModel):
    booking_id: UUID
    status: str
    position: int


class WebhookReceived(BaseModel):
    received: bool = True


@router.post(
    "/bookings/{booking_id}/pay",
    response_model=PaymentPublic,
    responses={
        402: {"description": "card declined: the booking was cancelled and its seats released"},
        422: {
            "description": "`unknown-payment-method`: the payment provider does not know it; "
            "nothing charged, the booking as it was (pay with another method); or an "
            "invalid body"
        },
        409: {
            "description": "the booking cannot be paid for (any more): `illegal-transition`, "
            "nothing charged; or `payment-refunded`: charged while the booking was cancelled "
            "(e.g. its show was cancelled meanwhile), so not confirmed and refunded in full"
        },
        503: {"description": "payment provider unreachable, or payment not ready yet"},
    },
)
async def pay_booking(
    booking_id: UUID,
    body: PaymentCreate,
    user: CurrentUser,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Charge the booking's payment intent; `status` is `confirmed` when the charge succeeded."""
    check_key(idempotency_key)
    command = PayBooking(
        booking_id=booking_id,
        payment_method=body.payment_method,
        actor_id=user.account_id,
        actor_is_admin=user.is_admin,
    )

    async def run() -> Outcome:
        step = await run_in_threadpool(container.payments.pay, command)
        paid = PaymentPublic(booking_id=booking_id, status=step.status, position=step.position)
        return status.HTTP_200_OK, paid.model_dump(mode="json")

    return await run_idempotently(
        container,
        user,
        f"pay:{booking_id}",
        idempotency_key,
        fingerprint(body.model_dump_json()),
        run,
    )


@router.post(
    "/payments/stripe/webhook",
    response_model=WebhookReceived,
    responses={
        400: {"description": "missing or invalid Stripe-Signature, or a malformed event"},
        413: {"description": "body over 256 KiB (refused while it is read)"},
    },
)
async def stripe_webhook(
    request: Request, container: ContainerDep, signature: StripeSignature = None
) -> WebhookReceived:
    """Stripe's notifications, verified by signature and timestamp, validated; each only names a
    payment intent, which is read from Stripe's API before anything is recorded. Repeats, stale
    ones and intents that are not ours have no effect."""
    payload = await _body_within_limit(request)
    await run_in_threadpool(container.payments.accept_webhook, payload, signature)
    return WebhookReceived()


async def _body_within_limit(request: Request) -> bytes:
    """The body, counted while it streams in: one over the limit (declared or chunked) is
    refused as soon as the limit is passed, never read whole."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > WEBHOOK_MAX_BYTES:
            detail = f"webhook bodies are limited to {WEBHOOK_MAX_BYTES} bytes"
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail)
    return bytes(body)
