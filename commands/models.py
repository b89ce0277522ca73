"""Commands: orders to the write side, validated at the edge (pydantic) before any handler runs."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, model_validator

Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,16}$")]
SeatIdStr = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,16}-[A-Za-z0-9]{1,16}-[0-9]{1,5}$")]
Text = Annotated[str, Field(max_length=200)]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceTier(Command):
    code: Code
    price_cents: int = Field(ge=0, le=10_000_000)


class Row(Command):
    label: Code
    seats: int = Field(ge=1, le=500)


class SeatedSection(Command):
    code: Code
    kind: Literal["seated"]
    tier: Code
    rows: list[Row] = Field(min_length=1, max_length=500)


class GeneralSection(Command):
    code: Code
    kind: Literal["general"]
    tier: Code
    capacity: int = Field(ge=1, le=200_000)


Section = Annotated[SeatedSection | GeneralSection, Field(discriminator="kind")]


class ScheduleShow(Command):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=5000)] = ""
    category: Annotated[str, Field(min_length=1, max_length=50)]
    venue: Annotated[str, Field(min_length=1, max_length=200)]
    starts_at: AwareDatetime
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")]
    price_tiers: list[PriceTier] = Field(min_length=1, max_length=50)
    sections: list[Section] = Field(min_length=1, max_length=200)


class OpenSale(Command):
    show_id: UUID


class CloseSale(Command):
    show_id: UUID


class CancelShow(Command):
    show_id: UUID
    reason: Text = "cancelled by the organiser"


class BookingRequest(Command):
    """What a customer asks for: chosen seats, or a quantity in a section, or anywhere."""

    show_id: UUID
    seats: list[SeatIdStr] | None = Field(default=None, min_length=1, max_length=10)
    section: Code | None = None
    quantity: int | None = Field(default=None, ge=1, le=10)
    payment_method: Annotated[str, Field(min_length=1, max_length=100)] | None = None

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
    replayable: bool = False  # the booking id came from an Idempotency-Key: a retry may find it


class CancelBooking(Command):
    booking_id: UUID
    actor_id: UUID
    actor_is_admin: bool = False
    reason: Text = "cancelled by the customer"


class RegisterAccount(Command):
    email: EmailStr
    password: Annotated[str, Field(min_length=8, max_length=128)]
    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: Literal["customer", "admin"] = "customer"


# --- payments (the booking saga's commands, and the customer's payment) ---

PaymentMethodId = Annotated[str, Field(min_length=1, max_length=100)]
IntentId = Annotated[str, Field(min_length=1, max_length=255)]


class PayBooking(Command):
    booking_id: UUID
    payment_method: PaymentMethodId
    actor_id: UUID
    actor_is_admin: bool = False


class RequestPayment(Command):
    booking_id: UUID
    payment_intent_id: IntentId


class RecordPayment(Command):
    booking_id: UUID
    payment_intent_id: IntentId
    amount_cents: int = Field(ge=0)


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
