"""Stripe behind the PaymentGateway port, through the official SDK (the same code path for real
Stripe and for the embedded `localstripe` emulator: only the API base and keys differ).

Each call may be repeated by a follower after a crash, so each is idempotent for its booking:
Stripe idempotency keys derived from the booking (`booking-{id}-intent`, `booking-{id}-refund`,
...), and, because the emulator ignores idempotency keys, a look-up before refunding. A repeated
intent creation against the emulator can leave an extra, never-confirmed intent behind; it
charges nothing, since only the intent recorded on the booking is ever confirmed.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import httpx
import stripe

from commands.errors import (
    InvalidWebhookError,
    PaymentGatewayUnavailableError,
    PaymentRejectedError,
)
from commands.ports import PaymentResult
from infra.settings import Settings
from infra.tokens import kept_secret

log = logging.getLogger(__name__)

# Errors on Stripe's side or on the way there: retrying later may succeed.
_TRANSIENT = (
    stripe.APIConnectionError,
    stripe.APIError,
    stripe.RateLimitError,
    stripe.AuthenticationError,
    stripe.PermissionError,
)
_PENDING = frozenset({"processing", "requires_action", "requires_capture", "requires_confirmation"})
_UNTRIED = frozenset({"requires_payment_method", "requires_confirmation"})  # no charge attempted
WEBHOOK_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed")
EMULATOR_WEBHOOK_ID = "ticketblitz"


class StripeGateway:
    """Implements commands.ports.PaymentGateway with `stripe.StripeClient`."""

    def __init__(
        self,
        api_key: str,
        webhook_secret: str,
        api_base: str | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        addresses: Any = {"api": api_base.rstrip("/")} if api_base else None
        self._client = stripe.StripeClient(
            api_key,
            base_addresses=addresses,
            max_network_retries=2,
            http_client=stripe.new_default_http_client(timeout=timeout_seconds),
        )
        self._webhook_secret = webhook_secret

    def create_intent(self, booking_id: UUID, amount_cents: int, currency: str) -> str:
        params: Any = {
            "amount": amount_cents,
            "currency": currency.lower(),
            "payment_method_types": ["card"],
            "metadata": {"booking_id": str(booking_id)},
        }
        intent = self._call(
            self._client.v1.payment_intents.create,
            params=params,
            options={"idempotency_key": f"booking-{booking_id}-intent"},
        )
        return str(intent.id)

    def confirm_intent(
        self, booking_id: UUID, intent_id: str, payment_method: str
    ) -> PaymentResult:
        # Set the method, then confirm (the emulator cannot confirm with a method in one call).
        keys = f"booking-{booking_id}-{payment_method}"
        try:
            self._client.v1.payment_intents.update(
                intent_id,
                params={"payment_method": payment_method},
                options={"idempotency_key": f"{keys}-method"},
            )
            intent = self._client.v1.payment_intents.confirm(
                intent_id, options={"idempotency_key": f"{keys}-confirm"}
            )
        except stripe.CardError as error:
            return self._failed(booking_id, intent_id, error)
        except _TRANSIENT as error:
            raise PaymentGatewayUnavailableError(str(error)) from error
        except stripe.StripeError as error:
            # Not confirmable (already paid, unknown method, ...): the intent's state tells.
            current = self._retrieve(intent_id)
            result = _result_of(booking_id, current)
            if result.outcome == "pending" and current.get("status") in _UNTRIED:
                return self._failed(booking_id, intent_id, error)
            return result
        return _result_of(booking_id, intent.to_dict())

    def intent_result(self, booking_id: UUID, intent_id: str) -> PaymentResult:
        return _result_of(booking_id, self._retrieve(intent_id))

    def _retrieve(self, intent_id: str) -> dict[str, Any]:
        intent = self._call(self._client.v1.payment_intents.retrieve, intent_id)
        found: dict[str, Any] = intent.to_dict()
        return found

    def refund(self, booking_id: UUID, intent_id: str, amount_cents: int) -> str:
        existing = self._call(
            self._client.v1.refunds.list, params={"payment_intent": intent_id, "limit": 100}
        )
        for refund in existing.data:
            if _booking_id_of(refund.to_dict()) == booking_id:
                return str(refund.id)
        params: Any = {
            "payment_intent": intent_id,
            "amount": amount_cents,
            "metadata": {"booking_id": str(booking_id)},
        }
        refund = self._call(
            self._client.v1.refunds.create,
            params=params,
            options={"idempotency_key": f"booking-{booking_id}-refund"},
        )
        return str(refund.id)

    def parse_webhook(self, payload: bytes, signature: str | None) -> PaymentResult | None:
        try:
            event = stripe.Webhook.construct_event(payload, signature, self._webhook_secret)
        except (stripe.SignatureVerificationError, ValueError) as error:
            raise InvalidWebhookError(f"invalid Stripe webhook: {error}") from None
        if event.type not in WEBHOOK_EVENTS:
            return None
        intent = event.data.object.to_dict()
        booking_id = _booking_id_of(intent)
        if booking_id is None:
            return None  # not one of ours
        return _result_of(booking_id, intent)

    def _failed(self, booking_id: UUID, intent_id: str, error: stripe.StripeError) -> PaymentResult:
        reason = error.user_message or _error_message(error) or "payment failed"
        return PaymentResult(booking_id, intent_id, "failed", 0, reason[:200])

    @staticmethod
    def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except _TRANSIENT as error:
            raise PaymentGatewayUnavailableError(str(error)) from error
        except stripe.StripeError as error:
            raise PaymentRejectedError(_error_message(error) or str(error)) from error


def _error_message(error: stripe.StripeError) -> str | None:
    message = None if error.error is None else error.error.message
    return str(message) if message else None


def _booking_id_of(intent: dict[str, Any]) -> UUID | None:
    metadata = intent.get("metadata") or {}
    try:
        return UUID(str(metadata.get("booking_id")))
    except ValueError:
        return None


def _result_of(booking_id: UUID, intent: dict[str, Any]) -> PaymentResult:
    status = intent.get("status")
    if status == "succeeded":
        amount = intent.get("amount_received") or intent.get("amount") or 0
        return PaymentResult(booking_id, intent["id"], "succeeded", int(amount))
    if status in _PENDING:
        return PaymentResult(booking_id, intent["id"], "pending", 0)
    error = intent.get("last_payment_error") or {}
    reason = str(error.get("message") or ("payment cancelled" if status == "canceled" else ""))
    if status == "requires_payment_method" and not reason:
        return PaymentResult(booking_id, intent["id"], "pending", 0)  # not tried yet
    return PaymentResult(booking_id, intent["id"], "failed", 0, (reason or "payment failed")[:200])


def webhook_secret_for(settings: Settings) -> str:
    """The configured signing secret; otherwise one generated and kept in the data dir (the
    embedded emulator is told it when the webhook endpoint is registered)."""
    if settings.stripe_webhook_secret is not None:
        return settings.stripe_webhook_secret.get_secret_value()
    return kept_secret(settings.data_dir / "stripe-webhook-secret", prefix="whsec_")


def gateway_for(settings: Settings) -> StripeGateway:
    return StripeGateway(
        api_key=settings.stripe_api_key.get_secret_value(),
        webhook_secret=webhook_secret_for(settings),
        api_base=settings.stripe_api_base,
    )


def register_emulator_webhook(api_base: str, url: str, secret: str) -> None:
    """localstripe only: tell the emulator where to send its webhooks (real Stripe is configured
    in its dashboard instead)."""
    response = httpx.post(
        f"{api_base.rstrip('/')}/_config/webhooks/{EMULATOR_WEBHOOK_ID}",
        data={"url": url, "secret": secret, "events[]": list(WEBHOOK_EVENTS)},
        timeout=10,
    )
    response.raise_for_status()
