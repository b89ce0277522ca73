"""Integration events: the versioned JSON contract other systems read from Kafka.

docs/INTEGRATION_EVENTS.md describes the contract. Domain events are internal and may change;
integration events are what we promise. Each carries the state of its booking or show *after*
the event (event-carried state), so a consumer needs no access to our store, and an id derived
from the domain event, so a re-published event keeps its id and consumers can deduplicate.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate
from pydantic import BaseModel, ConfigDict

from commands.errors import NotFoundError
from commands.ports import AggregateHistory
from domain.account import Account
from domain.booking import Booking, BookingEvents, event_name
from domain.door import DoorList
from domain.ids import TICKETBLITZ_NAMESPACE, account_id_for
from domain.show import Show
from domain.waitlist import WaitingList
from infra.log_follower import LoggedEvent
from infra.personal_data import seal_people, unseal_people
from process_managers.show_cancellation import SHOW_CANCELLED

SCHEMA_VERSION = 1
BOOKINGS = "bookings.v1"
SHOWS = "shows.v1"
TICKETS = "tickets.v1"  # ticket.* events (booking_id: the ticket's booking)
WAITLIST = "waitlist.v1"  # waitlist.* events (booking_id: the entry's offer, once made)

# Domain event type name -> integration event type.
BOOKING_TYPES = {
    BookingEvents.PLACED: "booking.placed",
    BookingEvents.PAYMENT_REQUESTED: "booking.payment_requested",
    BookingEvents.PAYMENT_SUCCEEDED: "booking.paid",
    BookingEvents.LATE_PAYMENT_RECEIVED: "booking.late_payment_received",
    BookingEvents.PAYMENT_FAILED: "booking.payment_failed",
    BookingEvents.CONFIRMED: "booking.confirmed",
    BookingEvents.CANCELLED: "booking.cancelled",
    BookingEvents.EXPIRED: "booking.expired",
    BookingEvents.REFUNDED: "booking.refunded",
    # Its show was rescheduled: the ticket holder is told the new date (once per reschedule).
    BookingEvents.RESCHEDULE_ANNOUNCED: "booking.rescheduled",
}
SHOW_TYPES = {
    event_name(Show, "Scheduled"): "show.scheduled",
    event_name(Show, "SaleOpened"): "show.sale_opened",
    event_name(Show, "SaleClosed"): "show.sale_closed",
    event_name(Show, "Cancelled"): "show.cancelled",
    # The organiser's edits (each carries the show's state after it, like the others).
    event_name(Show, "DetailsChanged"): "show.details_changed",
    event_name(Show, "Rescheduled"): "show.rescheduled",
    event_name(Show, "SaleWindowChanged"): "show.sale_window_changed",
    event_name(Show, "TierRepriced"): "show.tier_repriced",
    event_name(Show, "TimeZoneChanged"): "show.time_zone_changed",
    event_name(Show, "Deleted"): "show.deleted",
    event_name(Show, "TransfersAllowedChanged"): "show.transfers_allowed_changed",
}
TICKET_TRANSFERRED = event_name(DoorList, "TicketTransferred")
WAITLIST_OFFER_MADE = event_name(WaitingList, "OfferMade")
WAITLIST_TYPES = {
    event_name(WaitingList, "EntryJoined"): "waitlist.joined",
    event_name(WaitingList, "EntryLeft"): "waitlist.left",
    WAITLIST_OFFER_MADE: "waitlist.offered",
    event_name(WaitingList, "OfferAccepted"): "waitlist.offer_accepted",
    event_name(WaitingList, "OfferLapsed"): "waitlist.offer_lapsed",
}


def topic_names(prefix: str) -> dict[str, str]:
    """Topic of each stream, e.g. {"bookings.v1": "ticketblitz.bookings.v1"}."""
    return {stream: f"{prefix}.{stream}" for stream in (BOOKINGS, SHOWS, TICKETS, WAITLIST)}


class IntegrationEvent(BaseModel):
    """Version 1 of the contract (docs/INTEGRATION_EVENTS.md)."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID
    type: str
    version: int = SCHEMA_VERSION
    occurred_at: datetime
    position: int
    show_id: UUID
    booking_id: UUID | None = None
    payload: dict[str, Any]

    @property
    def stream(self) -> str:
        if self.type.startswith("ticket."):
            return TICKETS
        if self.type.startswith("waitlist."):
            return WAITLIST
        return BOOKINGS if self.booking_id is not None else SHOWS

    def to_json(self) -> bytes:
        # People's e-mails and names travel encrypted for them (docs/PRIVACY.md).
        sealed = self.model_copy(update={"payload": seal_people(self.payload)})
        return sealed.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes) -> IntegrationEvent:
        event = cls.model_validate_json(raw)
        return event.model_copy(update={"payload": unseal_people(event.payload)})


def event_id_for(aggregate_id: UUID, version: int) -> UUID:
    """Stable across re-publication: one domain event, one integration event id."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"event:{aggregate_id}:{version}")


class IntegrationEvents:
    """Builds integration events from the log, keeping recent aggregate states in memory so
    that the state after each event is usually one `mutate` away."""

    def __init__(self, store: AggregateHistory, max_cached: int = 10_000) -> None:
        self._store = store
        self._max_cached = max_cached
        self._states: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._customers: OrderedDict[UUID, dict[str, str]] = OrderedDict()

    def forget(self) -> None:
        self._states.clear()

    def build(self, logged: LoggedEvent) -> IntegrationEvent | None:
        name = logged.type_name
        if name in BOOKING_TYPES:
            booking = self._state_after(logged)
            assert isinstance(booking, Booking)
            payload = self._booking_payload(booking)
            if name == BookingEvents.RESCHEDULE_ANNOUNCED:
                # The date this notice announces (the show may have moved again since).
                payload["reschedule"] = {
                    "starts_at": logged.event.starts_at.isoformat(),
                    "previous_starts_at": logged.event.previous_starts_at.isoformat(),
                }
            return self._event(logged, BOOKING_TYPES[name], booking.show_id, booking.id, payload)
        if name in SHOW_TYPES:
            show = self._state_after(logged)
            assert isinstance(show, Show)
            return self._event(logged, SHOW_TYPES[name], show.id, None, _show_payload(show))
        if name == TICKET_TRANSFERRED:
            return self._ticket_transferred(logged)
        if name in WAITLIST_TYPES:
            return self._waitlist_event(logged, WAITLIST_TYPES[name])
        return None

    def _waitlist_event(self, logged: LoggedEvent, kind: str) -> IntegrationEvent:
        """`waitlist.*`: the entry after the event, with its customer, the show, and its
        offer once made (the booking held for it: seats, places and amount)."""
        waiting_list = self._state_after(logged)
        assert isinstance(waiting_list, WaitingList)
        event = logged.event
        entry = waiting_list.entry(event.entry_id)
        assert entry is not None  # every waiting-list event names an entry of the list
        booking_id = None if entry.booking is None else UUID(entry.booking)
        seats: list[str] = []
        general: dict[str, int] = {}
        amount: int | None = None
        if logged.type_name == WAITLIST_OFFER_MADE:
            seats, general = list(event.seats), dict(event.general)
        booking = None if booking_id is None else self._booking(booking_id)
        if booking is not None:
            seats, general, amount = (
                list(booking.seats),
                dict(booking.general),
                booking.amount_cents,
            )
        show = self._show(waiting_list.show_id)
        payload = {
            "status": entry.status,
            "entry_id": str(event.entry_id),
            "customer_id": str(UUID(entry.customer)),
            "customer": self._customer(UUID(entry.customer)),
            "quantity": entry.quantity,
            "section": entry.section,
            "joined_at": entry.joined_at.isoformat(),
            "booking_id": None if booking_id is None else str(booking_id),
            "seats": seats,
            "general": general,
            "amount_cents": amount,
            "currency": None if show is None else show.currency,
            "expires_at": None if entry.expires_at is None else entry.expires_at.isoformat(),
            "reason": entry.reason,
            "show": None if show is None else _show_summary(show),
        }
        return self._event(logged, kind, waiting_list.show_id, booking_id, payload)

    def _booking(self, booking_id: UUID) -> Booking | None:
        """An offer's booking: what it holds and costs never change once placed."""
        cached = self._states.get(booking_id)
        if isinstance(cached, Booking):
            return cached
        try:
            return self._store.get(booking_id, Booking)
        except NotFoundError:
            return None

    def _ticket_transferred(self, logged: LoggedEvent) -> IntegrationEvent:
        """`ticket.transferred`: the receiver (and their e-mail, also when invited: then the
        ticket names the address its holder id derives from) and the ticket given. The door
        list is read as of the event, not cached: a show's is big, and transfers are rare."""
        event = logged.event
        door = self._store.get_as_of(event.originator_id, event.originator_version)
        assert isinstance(door, DoorList)
        old, new = door.ticket(event.ticket_id), door.ticket(event.new_ticket_id)
        assert old is not None and new is not None
        holder = dict(self._customer(event.to_holder_id))
        invited = account_id_for(event.to_holder_name) == event.to_holder_id
        registered = bool(holder["email"])
        if not registered and invited:
            holder["email"] = event.to_holder_name
        show = self._show(door.show_id)
        payload = {
            "ticket_id": str(new.ticket_id),
            "previous_ticket_id": str(old.ticket_id),
            "seat": new.seat,
            "section": new.section,
            "transfers": new.transfers,
            "holder": {**holder, "name": event.to_holder_name, "registered": registered},
            "previous_holder": {"id": str(old.holder_id), "name": old.holder_name},
            "show": None if show is None else _show_summary(show),
        }
        return self._event(logged, "ticket.transferred", door.show_id, new.booking_id, payload)

    def _event(
        self,
        logged: LoggedEvent,
        kind: str,
        show_id: UUID,
        booking_id: UUID | None,
        payload: dict[str, Any],
    ) -> IntegrationEvent:
        event = logged.event
        return IntegrationEvent(
            event_id=event_id_for(event.originator_id, event.originator_version),
            type=kind,
            occurred_at=logged.timestamp,
            position=logged.position,
            show_id=show_id,
            booking_id=booking_id,
            payload=payload,
        )

    def _state_after(self, logged: LoggedEvent) -> Aggregate:
        event = logged.event
        aggregate_id: UUID = event.originator_id
        version: int = event.originator_version
        cached = self._states.get(aggregate_id)
        state: Aggregate
        if cached is not None and cached.version == version - 1:
            state = event.mutate(cached)
        elif version == 1:
            state = event.mutate(None)
        else:  # not cached, or a page is being redone: read it as of this event
            state = self._store.get_as_of(aggregate_id, version)
        self._remember(self._states, aggregate_id, state)
        return state

    def _show(self, show_id: UUID) -> Show | None:
        cached = self._states.get(show_id)
        if isinstance(cached, Show):
            return cached
        try:
            show = self._store.get(show_id, Show)
        except NotFoundError:
            return None
        self._remember(self._states, show_id, show)
        return show

    def _customer(self, customer_id: UUID) -> dict[str, str]:
        found = self._customers.get(customer_id)
        if found is None:
            try:
                account = self._store.get(customer_id, Account)
                found = {"id": str(customer_id), "email": account.email, "name": account.name}
            except NotFoundError:
                found = {"id": str(customer_id), "email": "", "name": ""}
            self._remember(self._customers, customer_id, found)
        return found

    def _remember(self, cache: OrderedDict[UUID, Any], key: UUID, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self._max_cached:
            cache.popitem(last=False)

    def _booking_payload(self, booking: Booking) -> dict[str, Any]:
        show = self._show(booking.show_id)
        return {
            "status": booking.status,
            "customer": self._customer(booking.customer_id),
            "seats": list(booking.seats),
            "general": dict(booking.general),
            "quantity": booking.quantity,
            "amount_cents": booking.amount_cents,
            "currency": booking.currency,
            "hold_expires_at": booking.hold_expires_at.isoformat(),
            "payment_intent_id": booking.payment_intent_id,
            "paid_cents": booking.paid_cents,
            "refunded_cents": booking.refunded_cents,
            "refund_id": booking.refund_id,
            "reason": booking.reason,
            # Cancelled because its show was (then `reason` is "show cancelled"): its money,
            # if any, is refunded in full.
            "show_cancelled": booking.reason == SHOW_CANCELLED,
            "offer": booking.offer,  # held for a waiting-list entry
            "show": None
            if show is None
            else {
                "title": show.title,
                "venue": show.venue,
                "starts_at": show.starts_at.isoformat(),
                "time_zone": show.time_zone,
            },
        }


def _show_summary(show: Show) -> dict[str, Any]:
    return {
        "title": show.title,
        "venue": show.venue,
        "starts_at": show.starts_at.isoformat(),
        "time_zone": show.time_zone,
    }


def _show_payload(show: Show) -> dict[str, Any]:
    return {
        "status": show.status,
        "title": show.title,
        "description": show.description,
        "category": show.category,
        "venue": show.venue,
        "starts_at": show.starts_at.isoformat(),
        "time_zone": show.time_zone,
        "currency": show.currency,
        "price_tiers": dict(show.price_tiers),
        "transfers_allowed": show.transfers_allowed,
    }
