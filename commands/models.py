"""Commands: orders to the write side, validated at the edge (pydantic) before any handler runs."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    model_validator,
)

from commands.text import SafeLine, SafeText, StripePaymentMethodId
from commands.venue_time import DEFAULT_TIME_ZONE, valid_time_zone
from domain.presale import (
    MAX_CODE_LENGTH,
    MAX_CODES_PER_REQUEST,
    MAX_PRICE_CENTS,
    MAX_USES,
    is_well_formed,
    normalise_code,
)

Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,16}$")]
SeatIdStr = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,16}-[A-Za-z0-9]{1,16}-[0-9]{1,5}$")]
Text = Annotated[str, Field(max_length=200)]
Reason = Annotated[SafeLine, Field(min_length=1, max_length=200)]


class Command(BaseModel):
    """Numbers and booleans are strict (`"2"` or `true` is no quantity); UUIDs and times
    still arrive as JSON strings, so the models as a whole are not."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceTier(Command):
    code: Code
    price_cents: int = Field(ge=0, le=10_000_000, strict=True)


class Row(Command):
    label: Code
    seats: int = Field(ge=1, le=500, strict=True)


class SeatedSection(Command):
    code: Code
    kind: Literal["seated"]
    tier: Code
    rows: list[Row] = Field(min_length=1, max_length=500)


class GeneralSection(Command):
    code: Code
    kind: Literal["general"]
    tier: Code
    capacity: int = Field(ge=1, le=200_000, strict=True)


Section = Annotated[SeatedSection | GeneralSection, Field(discriminator="kind")]


def _iso_datetime(value: object) -> object:
    """A time is an ISO 8601 string with its zone (or a datetime, from Python): a bare number
    would be read as seconds since 1970, which no organiser means."""
    if isinstance(value, int | float):
        raise ValueError("give the time as an ISO 8601 string with a time zone")
    return value


ShowTime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime)]


def _presale_code(value: object) -> object:
    """A presale code as typed (any case, blanks around it): its normalised form, checked
    (4 to 32 of A-Z, 0-9, '-', '_'; anything else, control characters included, is refused)."""
    if not isinstance(value, str):
        raise ValueError("a presale code is a string")
    if len(value) > 4 * MAX_CODE_LENGTH:  # no work on a huge string
        raise ValueError(f"a presale code has at most {MAX_CODE_LENGTH} characters")
    code = normalise_code(value)
    # ASCII before upper-casing too: "ﬁ".upper() is "FI", "ß".upper() "SS".
    if not value.isascii() or not is_well_formed(code):
        raise ValueError(
            f"a presale code is 4 to {MAX_CODE_LENGTH} letters A-Z, digits, '-' or '_' "
            "(starting with a letter or digit)"
        )
    return code


PresaleCodeText = Annotated[
    str,
    BeforeValidator(_presale_code),
    Field(description="a presale code: 4 to 32 letters, digits, '-' or '_' (any case)"),
]
# The venue's IANA time zone, e.g. "Europe/Berlin" (commands/venue_time.py checks it exists).
VenueTimeZone = Annotated[
    str,
    Field(
        max_length=64,
        description="the venue's IANA time zone, e.g. Europe/Berlin: tickets, e-mails and "
        "calendars show the show's times in it",
    ),
    AfterValidator(valid_time_zone),
]


# The waiting room's pace (domain/waiting_room.py); null: no waiting room.
QueueRate = Annotated[
    int,
    Field(
        ge=1,
        le=100_000,
        strict=True,
        description="fans the waiting room lets in a minute from sale_opens_at (needs one)",
    ),
]


class ScheduleShow(Command):
    title: Annotated[SafeLine, Field(min_length=1, max_length=200)]
    description: Annotated[SafeText, Field(max_length=5000)] = ""
    category: Annotated[SafeLine, Field(min_length=1, max_length=50)]
    venue: Annotated[SafeLine, Field(min_length=1, max_length=200)]
    starts_at: ShowTime
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")]
    price_tiers: list[PriceTier] = Field(min_length=1, max_length=50)
    sections: list[Section] = Field(min_length=1, max_length=200)
    # Fair share: tickets one customer may hold and buy for this show, across bookings.
    max_tickets_per_customer: int = Field(default=10, ge=1, le=1000, strict=True)
    # The sale window (checked by the domain: opens < closes <= starts_at). No opening time:
    # the sale is opened by hand; no closing time: it closes at the show's start.
    sale_opens_at: ShowTime | None = None
    sale_closes_at: ShowTime | None = None
    # How tickets, e-mails and calendars show the show's times (the times stay instants).
    time_zone: VenueTimeZone = DEFAULT_TIME_ZONE
    # Whether fans may give their tickets to others (POST /tickets/{id}/transfer).
    transfers_allowed: bool = Field(default=True, strict=True)
    # The presale (before sale_opens_at): only holds with a presale code from then on.
    presale_opens_at: ShowTime | None = None
    # The waiting room (POST /shows/{id}/queue): fans let in a minute from sale_opens_at.
    queue_admits_per_minute: QueueRate | None = None


class ShowChanges(Command):
    """`PATCH /shows/{id}`: what the organiser changes, any subset (at least one field).
    Only `sale_opens_at` (no automatic opening: the sale is opened by hand) and
    `presale_opens_at` (no presale) may be null; `price_tiers` reprices existing tiers (for
    new holds)."""

    title: Annotated[SafeLine, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[SafeText, Field(max_length=5000)] | None = None
    category: Annotated[SafeLine, Field(min_length=1, max_length=50)] | None = None
    venue: Annotated[SafeLine, Field(min_length=1, max_length=200)] | None = None
    starts_at: ShowTime | None = None
    sale_opens_at: ShowTime | None = None
    sale_closes_at: ShowTime | None = None
    price_tiers: list[PriceTier] | None = Field(default=None, min_length=1, max_length=50)
    time_zone: VenueTimeZone | None = None
    transfers_allowed: bool | None = Field(default=None, strict=True)
    presale_opens_at: ShowTime | None = None
    queue_admits_per_minute: QueueRate | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> ShowChanges:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        null = sorted(
            name
            for name in self.model_fields_set
            if name not in NULLABLE_CHANGES and getattr(self, name) is None
        )
        if null:
            raise ValueError(
                "only sale_opens_at, presale_opens_at and queue_admits_per_minute may be "
                f"null: {', '.join(null)}"
            )
        codes = [tier.code for tier in self.price_tiers or []]
        if len(set(codes)) != len(codes):
            raise ValueError("price_tiers must not repeat a tier")
        return self


NULLABLE_CHANGES = frozenset({"sale_opens_at", "presale_opens_at", "queue_admits_per_minute"})


class EditShow(Command):
    show_id: UUID
    changes: ShowChanges


class DeleteShow(Command):
    show_id: UUID


class OpenSale(Command):
    show_id: UUID


class CloseSale(Command):
    show_id: UUID


class CancelShow(Command):
    show_id: UUID
    reason: Reason = "cancelled by the organiser"


AdmissionText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2000,
        pattern=r"^[A-Za-z0-9_.=-]+$",
        description="the waiting room's signed admission for this show and account "
        "(`admission` of GET /shows/{id}/queue/{token})",
    ),
]


class BookingRequest(Command):
    """What a customer asks for: chosen seats, or a quantity in a section, or anywhere."""

    show_id: UUID
    seats: list[SeatIdStr] | None = Field(default=None, min_length=1, max_length=10)
    section: Code | None = None
    quantity: int | None = Field(default=None, ge=1, le=10, strict=True)
    payment_method: StripePaymentMethodId | None = None
    # A presale code: required during the presale; may change the price at any time.
    code: PresaleCodeText | None = None
    # The waiting room's admission (GET /shows/{id}/queue/{token}): required while it is on.
    admission: AdmissionText | None = None

    @model_validator(mode="after")
    def _one_way_of_choosing(self) -> BookingRequest:
        if self.seats is not None:
            if self.section is not None or self.quantity is not None:
                raise ValueError("give either seats, or a quantity (optionally with a section)")
            if len(set(self.seats)) != len(self.seats):
                raise ValueError("seats must not repeat")
        elif self.quantity is None:
            raise ValueError("give seats, or a quantity (optionally with a section)")
        return self


class PlaceHold(Command):
    request: BookingRequest
    customer_id: UUID
    booking_id: UUID
    # The booking id came from an Idempotency-Key: a retry may find it.
    replayable: bool = Field(default=False, strict=True)


class CancelBooking(Command):
    booking_id: UUID
    actor_id: UUID
    actor_is_admin: bool = Field(default=False, strict=True)
    reason: Reason = "cancelled by the customer"


class RegisterAccount(Command):
    email: EmailStr
    password: Annotated[str, Field(min_length=8, max_length=128)]
    name: Annotated[SafeLine, Field(min_length=1, max_length=100)]
    role: Literal["customer", "organizer", "door", "admin"] = "customer"


AccountName = Annotated[SafeLine, Field(min_length=1, max_length=100)]
Password = Annotated[str, Field(min_length=8, max_length=128)]
RoleName = Literal["customer", "organizer", "door", "admin"]


class RenameAccount(Command):
    account_id: UUID
    name: AccountName


class ChangePassword(Command):
    account_id: UUID
    current: Annotated[str, Field(min_length=1, max_length=128)]
    new: Password


class ChangeAccountRole(Command):
    account_id: UUID
    role: RoleName
    actor_id: UUID  # the admin: nobody changes their own role


class SetAccountActive(Command):
    """Deactivate (`active` false) or reactivate an account."""

    account_id: UUID
    active: bool = Field(strict=True)
    actor_id: UUID  # the admin: nobody deactivates themself


# --- payments (the booking saga's commands, and the customer's payment) ---

PaymentMethodId = StripePaymentMethodId  # commands/text.py
IntentId = Annotated[str, Field(min_length=1, max_length=255)]
# Money as the provider reports it: range-checked before it enters the log (PostgreSQL bigint).
ReportedCents = Annotated[int, Field(ge=0, le=100_000_000_000, strict=True)]


class PayBooking(Command):
    booking_id: UUID
    payment_method: PaymentMethodId
    actor_id: UUID
    actor_is_admin: bool = False


class RequestPayment(Command):
    booking_id: UUID
    payment_intent_id: IntentId


class RecordPayment(Command):
    """A payment reported for a booking. It pays for the booking only if it matches it
    (domain.booking.Booking.payment_mismatch); else it is recorded as mismatched and refunded.
    `currency` and `named_booking_id` are what the provider's API said (None: not reported)."""

    booking_id: UUID
    payment_intent_id: IntentId
    amount_cents: ReportedCents
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")] | None = None
    named_booking_id: UUID | None = None


class RecordPaymentFailure(Command):
    booking_id: UUID
    payment_intent_id: IntentId | None = None
    reason: Text = "payment failed"


class ConfirmBooking(Command):
    booking_id: UUID


class ExpireHold(Command):
    booking_id: UUID
    at: AwareDatetime


class RecordRefund(Command):
    booking_id: UUID
    refund_id: IntentId
    amount_cents: int = Field(gt=0)


class RecordMismatchRefund(Command):
    """The money of a mismatched payment (on `payment_intent_id`) was given back."""

    booking_id: UUID
    payment_intent_id: IntentId
    refund_id: IntentId
    amount_cents: ReportedCents


class CancelShowBookings(Command):
    """The show's cancellation reaching its bookings: cancel those not over yet (a batch)."""

    show_id: UUID
    booking_ids: list[UUID] = Field(min_length=1, max_length=500)
    reason: Reason


class AnnounceReschedule(Command):
    """A show's reschedule reaching its ticket holders (a batch of its bookings): each one not
    told of it yet records `Booking.RescheduleAnnounced`, which its customer is e-mailed."""

    show_id: UUID
    show_version: int = Field(ge=1)  # the show's version after its `Rescheduled`
    starts_at: AwareDatetime
    previous_starts_at: AwareDatetime
    booking_ids: list[UUID] = Field(min_length=1, max_length=500)


class CancelUnpaidBookings(Command):
    """A customer's account was deactivated: cancel these bookings of theirs for one show that
    are not paid yet (held or awaiting payment), and free their seats (a batch)."""

    show_id: UUID
    customer_id: UUID
    booking_ids: list[UUID] = Field(min_length=1, max_length=500)
    reason: Reason


# --- presale codes (the show's organiser or an admin) ---


class PresaleCodesRequest(Command):
    """`POST /shows/{id}/codes`: the codes to create (`codes`, or `count` generated ones)
    and their terms (shared by all of them)."""

    codes: list[PresaleCodeText] | None = Field(
        default=None, min_length=1, max_length=MAX_CODES_PER_REQUEST
    )
    count: int | None = Field(default=None, ge=1, le=MAX_CODES_PER_REQUEST, strict=True)
    max_uses: int = Field(ge=1, le=MAX_USES, strict=True)
    tiers: list[Code] | None = Field(default=None, min_length=1, max_length=50)
    discount_percent: int | None = Field(default=None, ge=1, le=100, strict=True)
    price_cents: int | None = Field(default=None, ge=0, le=MAX_PRICE_CENTS, strict=True)
    valid_from: ShowTime | None = None
    valid_until: ShowTime | None = None

    @model_validator(mode="after")
    def _one_way_of_giving(self) -> PresaleCodesRequest:
        if (self.codes is None) == (self.count is None):
            raise ValueError("give either codes or count")
        if self.codes is not None and len(set(self.codes)) != len(self.codes):
            raise ValueError("codes must not repeat (compared in upper case)")
        if self.discount_percent is not None and self.price_cents is not None:
            raise ValueError("give discount_percent or price_cents, not both")
        if self.tiers is not None and len(set(self.tiers)) != len(self.tiers):
            raise ValueError("tiers must not repeat")
        return self


class CreatePresaleCodes(Command):
    show_id: UUID
    request: PresaleCodesRequest


class RevokePresaleCode(Command):
    show_id: UUID
    code: PresaleCodeText
