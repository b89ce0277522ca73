"""Errors raised by command handlers (beyond the domain's own rule violations)."""

from __future__ import annotations

from uuid import UUID


class CommandError(Exception):
    """A command could not be carried out; nothing was written."""


class NotFoundError(CommandError):
    def __init__(self, kind: str, aggregate_id: UUID) -> None:
        super().__init__(f"{kind} {aggregate_id} not found")
        self.kind = kind
        self.aggregate_id = aggregate_id


class ForbiddenError(CommandError):
    """The caller is authenticated but may not act on this resource."""


class AccountExistsError(CommandError):
    def __init__(self, email: str) -> None:
        super().__init__(f"an account for {email} already exists")
        self.email = email


class ConcurrencyError(CommandError):
    """Optimistic version checks kept failing after the bounded number of retries."""


class VersionConflictError(CommandError):
    """An append carried a stale expected version (raised by the event store adapter)."""


class StoreUnavailableError(CommandError):
    """The event store cannot be reached right now; the command had no effect."""


class IdempotencyMismatchError(CommandError):
    """An Idempotency-Key was reused with a different request."""


class PaymentGatewayUnavailableError(CommandError):
    """The payment provider could not be reached or failed on its side; retrying may succeed."""


class PaymentRejectedError(CommandError):
    """The payment provider refused a request for good (bad parameters, unknown object)."""


class InvalidWebhookError(CommandError):
    """A webhook without a valid signature, or not parseable: it is ignored."""


class PaymentNotReadyError(CommandError):
    """The booking's payment intent is not created yet; retry in a moment."""


class PaymentDeclinedError(CommandError):
    """The card was declined: the booking was cancelled and its seats released."""

    def __init__(self, booking_id: UUID, reason: str) -> None:
        super().__init__(f"payment for booking {booking_id} was declined: {reason}")
        self.booking_id = booking_id
        self.reason = reason


class UnknownPaymentMethodError(CommandError):
    """The payment provider does not know the payment method: nothing was charged and the
    booking is as it was (the customer may pay with another method until the hold expires)."""

    def __init__(self, payment_method: str) -> None:
        super().__init__(f"the payment provider does not know payment method {payment_method}")
        self.payment_method = payment_method


class PaymentRefundedError(CommandError):
    """The charge went through, but the booking could no longer be confirmed (its show was
    cancelled or started, or it was cancelled meanwhile): the money is refunded."""

    def __init__(self, booking_id: UUID, status: str, reason: str | None) -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"booking {booking_id} is {status}{why}: it was not confirmed and the payment is "
            "being refunded in full"
        )
        self.booking_id = booking_id
        self.status = status
        self.reason = reason


class InvalidImageError(CommandError):
    """An upload is not a JPEG, PNG or WebP image this system decodes (or is too big once
    decoded): nothing was stored."""


class BlobStoreUnavailableError(CommandError):
    """The blob store (images) cannot be reached right now; retrying may succeed."""


class InvalidTicketSecretError(CommandError):
    """A ticket secret that does not verify: forged, altered, truncated, or signed by a key
    this deployment does not know. Nothing tells which (a forger learns nothing)."""
