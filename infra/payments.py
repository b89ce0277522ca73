"""Stripe behind the PaymentGateway port, through the official SDK (the same code path for real
Stripe and for the embedded `localstripe` emulator: only the API base and keys differ).

Each call may be repeated by a follower after a crash, so each is idempotent for its booking:
Stripe idempotency keys derived from the booking (`booking-{id}-intent`,
`booking-{id}-refund-{intent}`, ...), and, because the emulator ignores idempotency keys, a
look-up before refunding. A repeated intent creation against the emulator can leave an extra,
never-confirmed intent behind; it charges nothing, since only the intent recorded on the
booking is ever confirmed.

Nothing Stripe sends us is believed as such. A webhook is verified (signature, timestamp within
the tolerance both ways), validated (strict types, bounded ids and amounts) and then only names
an intent: the intent itself is read from Stripe's API, and every answer of the API is read
through the same strict, bounded model before a number of it is recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from typing import Annotated, Any, Literal
from uuid import UUID

import httpx
import stripe
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from commands.errors import (
    InvalidWebhookError,
    PaymentGatewayUnavailableError,
    PaymentRejectedError,
    UnknownPaymentMethodError,
)
from commands.ports import PaymentNotice, PaymentOutcome, PaymentResult
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
WEBHOOK_EVENTS: dict[str, PaymentOutcome] = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
}
EMULATOR_WEBHOOK_ID = "ticketblitz"
# Stripe's default; checked both ways (its SDK only refuses timestamps in the past).
WEBHOOK_TOLERANCE_SECONDS = 300
# Far above any real payment (Stripe's own limit is 8 digits), far below PostgreSQL's bigint.
MAX_AMOUNT_CENTS = 10**11

_STAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")

StripeId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_]+$")
]
IntentId = Annotated[str, StringConstraints(max_length=255, pattern=r"^pi_[A-Za-z0-9_]+$")]
EventType = Annotated[str, StringConstraints(max_length=255, pattern=r"^[a-z0-9_.]+$")]


def _digits_as_int(value: object) -> object:
    """Stripe sends amounts as JSON integers; the embedded emulator (localstripe) answers an
    updated amount as a string of digits. Only those become a number: "abc", true, 2.5 stay
    refused by the strict model."""
    if isinstance(value, str) and 0 < len(value) <= 12 and value.isascii() and value.isdigit():
        return int(value)
    return value


Cents = Annotated[int, BeforeValidator(_digits_as_int), Field(ge=0, le=MAX_AMOUNT_CENTS)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")]
MetadataKey = Annotated[str, StringConstraints(max_length=40)]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]


class StripeIntent(BaseModel):
    """A PaymentIntent as Stripe sends it (webhook body) or answers it (API): the fields we read,
    strictly typed and bounded as Stripe documents them; the others are not looked at."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    id: IntentId
    object: Literal["payment_intent"] = "payment_intent"
    status: Annotated[str, StringConstraints(max_length=64)] | None = None
    amount: Cents | None = None
    amount_received: Cents | None = None
    amount_capturable: Cents | None = None
    currency: Currency | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=50)] = {}
    last_payment_error: dict[str, Any] | None = None


class _EventData(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    object: dict[str, Any]


class StripeEvent(BaseModel):
    """A webhook's envelope (the event), as Stripe sends it."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    id: StripeId
    type: EventType
    data: _EventData


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
        except stripe.InvalidRequestError as error:
            if _names_missing_payment_method(error):  # a typo, or another Stripe's test card
                raise UnknownPaymentMethodError(payment_method) from None
            return self._not_confirmable(booking_id, intent_id, error)
        except stripe.StripeError as error:
            return self._not_confirmable(booking_id, intent_id, error)
        return _result_of(booking_id, _read(intent.to_dict()))

    def _not_confirmable(
        self, booking_id: UUID, intent_id: str, error: stripe.StripeError
    ) -> PaymentResult:
        """Not confirmable (already paid, ...): the intent's state tells."""
        current = self._retrieve(intent_id)
        result = _result_of(booking_id, current)
        if result.outcome == "pending" and current.status in _UNTRIED:
            return self._failed(booking_id, intent_id, error)
        return result

    def intent_result(self, booking_id: UUID, intent_id: str) -> PaymentResult:
        return _result_of(booking_id, self._retrieve(intent_id))

    def read_intent(self, intent_id: str) -> PaymentResult | None:
        try:
            intent = self._retrieve(intent_id)
        except PaymentRejectedError:  # Stripe does not know it (a made-up id)
            return None
        booking_id = _booking_id_of(intent.metadata)
        return None if booking_id is None else _result_of(booking_id, intent)

    def _retrieve(self, intent_id: str) -> StripeIntent:
        return _read(self._call(self._client.v1.payment_intents.retrieve, intent_id).to_dict())

    def refund(self, booking_id: UUID, intent_id: str, amount_cents: int) -> str:
        existing = self._call(
            self._client.v1.refunds.list, params={"payment_intent": intent_id, "limit": 100}
        )
        for refund in existing.data:
            if _booking_id_of(refund.to_dict().get("metadata") or {}) == booking_id:
                return str(refund.id)
        params: Any = {
            "payment_intent": intent_id,
            "amount": amount_cents,
            "metadata": {"booking_id": str(booking_id)},
        }
        refund = self._call(
            self._client.v1.refunds.create,
            params=params,
            # One refund per intent of the booking: its own, and any that did not match it.
            options={"idempotency_key": f"booking-{booking_id}-refund-{intent_id}"},
        )
        return str(refund.id)

    def parse_webhook(self, payload: bytes, signature: str | None) -> PaymentNotice | None:
        verify_signature(payload, signature, self._webhook_secret, time.time())
        try:
            event = StripeEvent.model_validate_json(payload)
            intent = (
                StripeIntent.model_validate(event.data.object)
                if event.type.startswith("payment_intent.")
                else None
            )
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                for e in error.errors(include_input=False, include_url=False)[:5]
            )
            raise InvalidWebhookError(f"invalid Stripe webhook: {problems}") from None
        outcome = WEBHOOK_EVENTS.get(event.type)
        if intent is None or outcome is None:
            return None  # an event we do not follow
        booking_id = _booking_id_of(intent.metadata)
        if booking_id is None:
            return None  # not one of ours
        return PaymentNotice(intent.id, outcome, booking_id)

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


def verify_signature(payload: bytes, header: str | None, secret: str, now: float) -> None:
    """Check a `Stripe-Signature` header (`t=...,v1=...`): an HMAC-SHA256 of `{t}.{payload}`
    with the endpoint's secret, and a timestamp within the tolerance of `now`, either way."""
    if not header:
        raise InvalidWebhookError("missing Stripe-Signature header")
    stamps: list[str] = []
    signatures: list[str] = []
    for item in header[:4096].split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            stamps.append(value)
        elif key == "v1" and _SIGNATURE.fullmatch(value):
            signatures.append(value)
    if len(stamps) != 1 or not _STAMP.fullmatch(stamps[0]):
        raise InvalidWebhookError("invalid Stripe-Signature header: one timestamp expected")
    signed = stamps[0].encode() + b"." + payload
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise InvalidWebhookError("invalid Stripe webhook: no signature matches the payload")
    if abs(now - int(stamps[0])) > WEBHOOK_TOLERANCE_SECONDS:
        raise InvalidWebhookError(
            f"invalid Stripe webhook: its timestamp is more than {WEBHOOK_TOLERANCE_SECONDS} s "
            "away from now"
        )


def _read(answer: dict[str, Any]) -> StripeIntent:
    """Stripe's API answer about an intent, through the strict model (never trusted as is)."""
    try:
        return StripeIntent.model_validate(answer)
    except ValidationError as error:
        log.error("unreadable payment intent from Stripe: %s", error)
        raise PaymentGatewayUnavailableError(
            "Stripe answered an unreadable payment intent"
        ) from None


def _names_missing_payment_method(error: stripe.StripeError) -> bool:
    """Stripe's answer to a payment method it does not have (404 `resource_missing`; the
    emulator says only 404)."""
    code = None if error.error is None else error.error.code
    param = None if error.error is None else error.error.param
    return (
        error.http_status == 404
        and (code in (None, "resource_missing"))
        and (param in (None, "payment_method"))
    )


def _error_message(error: stripe.StripeError) -> str | None:
    message = None if error.error is None else error.error.message
    return str(message) if message else None


def _booking_id_of(metadata: dict[str, Any]) -> UUID | None:
    try:
        return UUID(str(metadata.get("booking_id")))
    except ValueError:
        return None


def _result_of(booking_id: UUID, intent: StripeIntent) -> PaymentResult:
    named = _booking_id_of(intent.metadata)
    if intent.status == "succeeded":
        amount = intent.amount if intent.amount_received is None else intent.amount_received
        if amount is None or intent.currency is None:
            raise PaymentGatewayUnavailableError("Stripe answered a payment without its amount")
        return PaymentResult(
            booking_id, intent.id, "succeeded", amount, None, intent.currency.lower(), named
        )
    if intent.status in _PENDING:
        return PaymentResult(booking_id, intent.id, "pending", 0, named_booking_id=named)
    error = intent.last_payment_error or {}
    message = error.get("message")
    reason = str(message) if isinstance(message, str) and message else ""
    if not reason and intent.status == "canceled":
        reason = "payment cancelled"
    if intent.status == "requires_payment_method" and not reason:
        # not tried yet
        return PaymentResult(booking_id, intent.id, "pending", 0, named_booking_id=named)
    reason = (reason or "payment failed")[:200]
    return PaymentResult(booking_id, intent.id, "failed", 0, reason, named_booking_id=named)


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
