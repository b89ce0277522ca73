"""What a Kafka record of `{prefix}.shows.v1` or `{prefix}.bookings.v1` changes for the
recommender (docs/INTEGRATION_EVENTS.md): a show's state, a booking's state, or nothing but a
note that the record is malformed (it does not follow the contract: logged and skipped)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError

from domain.booking import CONFIRMED
from process_managers.integration_events import IntegrationEvent
from recommender.embedder import ShowText


@dataclass(frozen=True)
class Record:
    """A Kafka record, as far as the projection cares."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]  # PostgreSQL text: no NUL


class ShowState(BaseModel):
    """The part of a `show.*` payload the recommender reads."""

    model_config = ConfigDict(frozen=True)

    status: Text
    title: Text
    description: Text
    category: Text
    venue: Text
    starts_at: AwareDatetime

    @property
    def text(self) -> ShowText:
        return ShowText(self.title, self.description, self.category, self.venue)


class CustomerRef(BaseModel):
    id: UUID


class BookingState(BaseModel):
    """The part of a `booking.*` payload the recommender reads."""

    status: Text
    customer: CustomerRef


@dataclass(frozen=True)
class ShowChange:
    record: Record
    show_id: UUID
    position: int
    occurred_at: datetime
    state: ShowState


@dataclass(frozen=True)
class BookingChange:
    record: Record
    booking_id: UUID
    show_id: UUID
    customer_id: UUID
    position: int
    confirmed: bool


@dataclass(frozen=True)
class Malformed:
    record: Record
    error: str
    event_id: UUID | None = None
    position: int | None = None


Change = ShowChange | BookingChange | Malformed


def _summary(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()[:3]
    ]
    return "; ".join(parts).replace("\x00", "")[:500]


def parse(record: Record) -> Change:
    """What a record changes; `Malformed` if it does not follow the contract."""
    try:
        event = IntegrationEvent.from_json(record.value or b"")
    except ValidationError as error:
        return Malformed(record, _summary(error))
    try:
        if event.booking_id is None:
            show = ShowState.model_validate(event.payload)
            return ShowChange(record, event.show_id, event.position, event.occurred_at, show)
        booking = BookingState.model_validate(event.payload)
    except ValidationError as error:
        return Malformed(record, _summary(error), event.event_id, event.position)
    return BookingChange(
        record,
        event.booking_id,
        event.show_id,
        booking.customer.id,
        event.position,
        booking.status == CONFIRMED,
    )


C = TypeVar("C", ShowChange, BookingChange)


def newest(changes: Iterable[C], key: str) -> list[C]:
    """Each show's (booking's) newest change: its state after the batch."""
    found: dict[UUID, C] = {}
    for change in changes:
        known = found.get(getattr(change, key))
        if known is None or known.position < change.position:
            found[getattr(change, key)] = change
    return list(found.values())
