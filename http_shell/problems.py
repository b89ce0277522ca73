"""RFC 9457 problem+json: every error leaves the API in this shape, mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from commands.accounts import (
    AccountDeactivatedError,
    InvalidCredentialsError,
    WrongPasswordError,
)
from commands.checkins import WrongShowError
from commands.errors import (
    AccountExistsError,
    BlobStoreUnavailableError,
    CommandError,
    ConcurrencyError,
    ForbiddenError,
    IdempotencyMismatchError,
    InvalidImageError,
    InvalidTicketSecretError,
    InvalidWebhookError,
    NotFoundError,
    PaymentDeclinedError,
    PaymentGatewayUnavailableError,
    PaymentNotReadyError,
    PaymentRefundedError,
    PaymentRejectedError,
    StoreUnavailableError,
    UnknownPaymentMethodError,
)
from domain.errors import (
    CapacityBelowTakenError,
    CapacityExceededError,
    CustomerTicketLimitError,
    DomainError,
    HoldNotFoundError,
    IllegalTransitionError,
    InvalidShowError,
    LapsedHoldLimitError,
    NotGeneralAdmissionError,
    NotTicketHolderError,
    OwnAccountError,
    SaleNotOpenError,
    SeatsUnavailableError,
    ShowDeletedError,
    ShowEverBookedError,
    ShowStatusError,
    TicketLimitError,
    TicketNotValidError,
    TicketTransferLimitError,
    TransferSaleClosedError,
    TransfersForbiddenError,
    TransferToSelfError,
    UnknownSeatsError,
    UnknownSectionError,
    UnknownTicketError,
)
from domain.presale import (
    CodeExistsError,
    CodeInvalidError,
    CodeNotFoundError,
    CodeRequiredError,
    CodeUsedUpError,
    InvalidCodesError,
)
from domain.waitlist import AlreadyWaitingError, EntryClosedError, TicketsAvailableError
from infra.tokens import InvalidTokenError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://ticketblitz.dev/problems/"


class ProblemError(Exception):
    """Raised by endpoints for errors that are not a domain or command error."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem(
    status: int,
    kind: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": TYPE_BASE + kind,
        "title": kind.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _to_problem(error: Exception) -> ProblemError:
    """The one mapping from errors to HTTP (an unknown error is a 500 that leaks nothing)."""
    match error:
        case ProblemError():
            return error
        case SeatsUnavailableError():
            return ProblemError(409, "seats-unavailable", str(error), seats=error.seats)
        case CapacityExceededError():
            return ProblemError(
                409,
                "not-enough-tickets",
                str(error),
                section=error.section,
                available=error.available,
            )
        case CapacityBelowTakenError():
            return ProblemError(
                409,
                "capacity-below-taken",
                str(error),
                section=error.section,
                taken=error.taken,
                held=error.held,
                sold=error.sold,
            )
        case NotGeneralAdmissionError():
            return ProblemError(422, "not-general-admission", str(error), section=error.section)
        case SaleNotOpenError():
            return ProblemError(409, "sale-not-open", str(error))
        case AlreadyWaitingError():
            return ProblemError(409, "already-waiting", str(error), entry_id=str(error.entry_id))
        case TicketsAvailableError():
            return ProblemError(409, "tickets-available", str(error), section=error.section)
        case EntryClosedError():
            return ProblemError(409, "illegal-transition", str(error), entry_status=error.status)
        case CodeRequiredError():  # presale codes (domain/presale.py)
            return ProblemError(403, "code-required", str(error))
        case CodeInvalidError():
            return ProblemError(422, "code-invalid", str(error), reason=error.reason)
        case CodeUsedUpError():
            return ProblemError(409, "code-used-up", str(error))
        case InvalidCodesError():
            return ProblemError(422, "invalid-codes", str(error))
        case CodeExistsError():
            return ProblemError(409, "code-exists", str(error), codes=error.codes[:100])
        case CodeNotFoundError():
            return ProblemError(404, "not-found", "presale code not found")
        case CustomerTicketLimitError():  # the customer's share of the show, not one booking's
            return ProblemError(
                409,
                "ticket-limit-reached",
                str(error),
                limit=error.limit,
                remaining=error.remaining,
            )
        case ShowDeletedError():  # a deleted show is gone, as its GET says
            return ProblemError(404, "not-found", "show not found")
        case ShowEverBookedError():
            return ProblemError(409, "cancel-instead", str(error))
        case IllegalTransitionError() | ShowStatusError() | HoldNotFoundError():
            return ProblemError(409, "illegal-transition", str(error))
        case AccountExistsError():
            return ProblemError(409, "account-exists", str(error))
        case UnknownSeatsError():
            return ProblemError(422, "unknown-seats", str(error), seats=error.seats)
        case UnknownSectionError():
            return ProblemError(422, "unknown-section", str(error), section=error.section)
        case LapsedHoldLimitError():
            retry_after = {"Retry-After": str(error.retry_after_seconds)}
            return ProblemError(429, "too-many-lapsed-holds", str(error), retry_after)
        case TicketLimitError():
            return ProblemError(422, "ticket-limit", str(error), limit=error.limit)
        case InvalidShowError():
            return ProblemError(422, "invalid-show", str(error))
        case IdempotencyMismatchError():
            return ProblemError(422, "idempotency-key-reused", str(error))
        case NotFoundError():
            return ProblemError(404, "not-found", f"{error.kind.lower()} not found")
        case ForbiddenError():
            return ProblemError(403, "forbidden", str(error))
        case InvalidTokenError():
            return ProblemError(
                401,
                "unauthorized",
                "missing or invalid access token",
                {"WWW-Authenticate": "Bearer"},
            )
        case InvalidCredentialsError():
            return ProblemError(401, "invalid-credentials", "unknown e-mail or wrong password")
        case AccountDeactivatedError():
            return ProblemError(401, "account-deactivated", "this account was deactivated")
        case WrongPasswordError():
            return ProblemError(422, "wrong-password", "the current password is wrong")
        case OwnAccountError():
            return ProblemError(409, "own-account", str(error))
        case PaymentDeclinedError():
            return ProblemError(402, "payment-declined", str(error), reason=error.reason)
        case UnknownPaymentMethodError():  # nothing charged, the booking as it was
            return ProblemError(
                422, "unknown-payment-method", str(error), payment_method=error.payment_method
            )
        case PaymentRefundedError():
            return ProblemError(
                409,
                "payment-refunded",
                str(error),
                booking_status=error.status,
                reason=error.reason,
            )
        case InvalidWebhookError():
            return ProblemError(400, "invalid-webhook", str(error))
        case PaymentNotReadyError():
            return ProblemError(503, "payment-not-ready", str(error), {"Retry-After": "1"})
        case PaymentGatewayUnavailableError():
            detail = "the payment provider is unavailable"
            return ProblemError(503, "payments-unavailable", detail, {"Retry-After": "5"})
        case PaymentRejectedError():
            return ProblemError(422, "payment-rejected", str(error))
        case InvalidImageError():
            return ProblemError(422, "invalid-image", str(error))
        case InvalidTicketSecretError():
            return ProblemError(422, "invalid-secret", str(error))
        case WrongShowError():
            return ProblemError(422, "wrong-show", str(error), ticket_show_id=str(error.show_id))
        case UnknownTicketError():
            return ProblemError(404, "not-found", "ticket not found")
        case TicketNotValidError():
            return ProblemError(409, "ticket-not-valid", str(error), ticket_status=error.status)
        case TicketTransferLimitError():
            return ProblemError(409, "transfer-limit-reached", str(error), limit=error.limit)
        case NotTicketHolderError():
            return ProblemError(403, "forbidden", str(error))
        case TransferToSelfError():
            return ProblemError(422, "transfer-to-self", str(error))
        case TransfersForbiddenError():
            return ProblemError(409, "transfers-forbidden", str(error))
        case TransferSaleClosedError():
            return ProblemError(409, "sale-closed", str(error))
        case BlobStoreUnavailableError():
            detail = "the image store is unavailable"
            return ProblemError(503, "blobs-unavailable", detail, {"Retry-After": "5"})
        case ConcurrencyError():
            return ProblemError(503, "busy", str(error), {"Retry-After": "1"})
        case StoreUnavailableError():
            return ProblemError(
                503, "unavailable", "the event store is unavailable", {"Retry-After": "2"}
            )
        case ClientDisconnect():
            # The client hung up while sending its body: its failure, not ours (no 500 to count
            # or log; nobody reads this answer).
            return ProblemError(400, "client-disconnected", "the request body was cut short")
        case TimeoutError():
            return ProblemError(
                503,
                "timeout",
                "the command did not finish in time; retry with the same Idempotency-Key",
                {"Retry-After": "1"},
            )
    log.exception("unhandled error", exc_info=error)
    return ProblemError(500, "internal-error", "an internal error occurred")


def response_for(error: Exception) -> JSONResponse:
    mapped = _to_problem(error)
    return problem(mapped.status, mapped.kind, mapped.detail, mapped.headers, **mapped.extra)


def install_problem_handlers(app: FastAPI) -> None:
    async def on_error(_: Request, error: Exception) -> JSONResponse:
        return response_for(error)

    async def on_validation(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in error.errors()
        ]
        return problem(422, "validation-error", "the request is not valid", errors=errors)

    async def on_http(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        kind = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
            error.status_code, "http-error"
        )
        return problem(error.status_code, kind, str(error.detail), dict(error.headers or {}))

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for known in (
        ProblemError,
        DomainError,
        CommandError,
        InvalidTokenError,
        InvalidCredentialsError,
        AccountDeactivatedError,
        WrongPasswordError,
        TimeoutError,
        ClientDisconnect,
        Exception,  # last resort: a 500 that leaks nothing
    ):
        app.add_exception_handler(known, on_error)
