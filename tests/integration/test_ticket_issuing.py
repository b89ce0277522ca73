"""Tickets follow their booking in the show writer's transactions, against the real event
store: issued with the confirmation (by a recorded payment, or by the saga's confirmation of a
paid booking), voided with the cancellation of a confirmed booking (its customer's, the show's);
batches that have nothing to do with tickets never touch the show's door list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from commands.bookings import BookingCommands
from commands.models import (
    BookingRequest,
    CancelBooking,
    CancelShow,
    CancelShowBookings,
    ConfirmBooking,
    GeneralSection,
    OpenSale,
    PlaceHold,
    PriceTier,
    RecordPayment,
    RequestPayment,
    Row,
    ScheduleShow,
    SeatedSection,
)
from commands.payments import PaymentCommands
from commands.show_writer import ShowBatch, ShowWriters
from commands.shows import ShowCommands
from domain.account import CUSTOMER, Account
from domain.booking import CONFIRMED, Booking
from domain.door import VALID, VOID, DoorList
from domain.ids import door_list_id_for, inventory_id_for, ticket_id_for
from infra.event_store import PostgresEventStore
from infra.payments import gateway_for
from infra.settings import Settings
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


class Box:
    """One process's commands over the session's event store."""

    def __init__(self, store: PostgresEventStore, endpoints: StackEndpoints) -> None:
        clock = lambda: datetime.now(UTC)  # noqa: E731
        self.store = store
        self.writers = ShowWriters(store, max_batch=100)
        self.shows = ShowCommands(store, self.writers, clock=clock)
        self.bookings = BookingCommands(
            store, self.writers, clock=clock, hold_duration=timedelta(minutes=10)
        )
        gateway = gateway_for(Settings(stripe_api_base=endpoints.stripe_api_base))
        self.payments = PaymentCommands(store, self.writers, gateway, clock=clock)

    def show(self) -> UUID:
        show_id = self.shows.schedule_show(
            ScheduleShow(
                title="Door night",
                category="rock",
                venue="Arena",
                starts_at=datetime.now(UTC) + timedelta(days=30),
                currency="EUR",
                price_tiers=[PriceTier(code="STD", price_cents=1000)],
                sections=[
                    SeatedSection(
                        code="A", kind="seated", tier="STD", rows=[Row(label="1", seats=10)]
                    ),
                    GeneralSection(code="GA", kind="general", tier="STD", capacity=20),
                ],
            )
        ).show_id
        self.shows.open_sale(OpenSale(show_id=show_id)).result(timeout=10)
        return show_id

    def customer(self, name: str) -> UUID:
        account = Account(
            email=f"fan-{uuid4().hex[:10]}@example.com", name=name, password_hash="x", role=CUSTOMER
        )
        self.store.save(account)
        return account.id

    def hold(self, show_id: UUID, customer_id: UUID, **request: object) -> Booking:
        booking_id = uuid4()
        self.bookings.place_hold(
            PlaceHold(
                request=BookingRequest(show_id=show_id, **request),  # type: ignore[arg-type]
                customer_id=customer_id,
                booking_id=booking_id,
            )
        ).result(timeout=10)
        return self.store.get(booking_id, Booking)

    def pay(self, booking: Booking) -> None:
        intent = f"pi_{uuid4().hex[:12]}"
        requested = RequestPayment(booking_id=booking.id, payment_intent_id=intent)
        self.payments.request_payment(requested).result(timeout=10)
        self.payments.record_payment(
            RecordPayment(
                booking_id=booking.id,
                payment_intent_id=intent,
                amount_cents=booking.amount_cents,
                currency="eur",
                named_booking_id=booking.id,
            )
        ).result(timeout=10)

    def door(self, show_id: UUID) -> DoorList:
        return self.store.get(door_list_id_for(show_id), DoorList)

    def events_since(self, position: int, show_id: UUID, *bookings: UUID) -> list[str]:
        """The events of the show's inventory and door list and of `bookings` after
        `position`, in log order (other tests may write meanwhile)."""
        streams = {inventory_id_for(show_id), door_list_id_for(show_id), *bookings}
        return [
            type(e).__qualname__
            for _, e in self.store.events_after(position, 1000)
            if e.originator_id in streams
        ]


@pytest.fixture(scope="module")
def box(endpoints: StackEndpoints) -> Iterator[Box]:
    assert endpoints.database_url is not None
    store = PostgresEventStore(endpoints.database_url, pool_size=4)
    opened = Box(store, endpoints)
    yield opened
    opened.writers.close()
    store.close()


def test_a_recorded_payment_confirms_and_issues_in_one_transaction(box: Box):
    """Given a held booking of two seats and two GA places; when its payment is recorded;
    then the same commit confirms it and issues four tickets to its customer, by name."""
    show_id = box.show()
    customer = box.customer("Ada Lovelace")
    booking = box.hold(show_id, customer, seats=["A-1-1", "A-1-2"])
    ga = box.hold(show_id, customer, section="GA", quantity=2)
    before = box.store.head_position()

    box.pay(booking)
    box.pay(ga)

    events = box.events_since(before, show_id, booking.id, ga.id)
    confirmed = events.index("Booking.Confirmed")
    assert events[confirmed + 1 : confirmed + 3] == ["DoorList.Created", "DoorList.TicketsIssued"]
    assert events[-2:] == ["Booking.Confirmed", "DoorList.TicketsIssued"]  # the second payment
    door = box.door(show_id)
    tickets = door.tickets_of(booking.id) + door.tickets_of(ga.id)
    assert [(t.seat, t.section) for t in tickets] == [
        ("A-1-1", "A"),
        ("A-1-2", "A"),
        (None, "GA"),
        (None, "GA"),
    ]
    assert {(t.holder_id, t.holder_name, t.status) for t in tickets} == {
        (customer, "Ada Lovelace", VALID)
    }


def test_the_sagas_confirmation_of_a_paid_booking_issues_its_tickets(box: Box):
    show_id = box.show()
    booking = box.hold(show_id, box.customer("Grace Hopper"), seats=["A-1-3"])

    def paid_only(batch: ShowBatch) -> None:  # paid, the confirmation still to come
        batch.booking(booking.id).record_payment("pi_paid_only", booking.amount_cents)

    box.writers.for_show(show_id).submit(paid_only).result(timeout=10)
    assert not box.store.exists(door_list_id_for(show_id))

    step = box.payments.confirm_booking(ConfirmBooking(booking_id=booking.id)).result(timeout=10)

    assert step.status == CONFIRMED
    [ticket] = box.door(show_id).tickets_of(booking.id)
    assert (ticket.ticket_id, ticket.holder_name) == (ticket_id_for(booking.id, 0), "Grace Hopper")


def test_cancelling_a_confirmed_booking_voids_its_tickets_in_the_same_commit(box: Box):
    show_id = box.show()
    customer = box.customer("Ada")
    booking = box.hold(show_id, customer, seats=["A-1-4", "A-1-5"])
    box.pay(booking)
    before = box.store.head_position()

    box.bookings.cancel_booking(CancelBooking(booking_id=booking.id, actor_id=customer)).result(
        timeout=10
    )

    assert box.events_since(before, show_id, booking.id) == [
        "Booking.Cancelled",
        "SeatInventory.SeatsReleased",
        "DoorList.TicketsVoided",
    ]
    assert {t.status for t in box.door(show_id).tickets_of(booking.id)} == {VOID}


def test_cancelling_the_show_voids_the_tickets_of_its_confirmed_bookings(box: Box):
    show_id = box.show()
    confirmed = box.hold(show_id, box.customer("Ada"), seats=["A-1-6"])
    box.pay(confirmed)
    unpaid = box.hold(show_id, box.customer("Grace"), seats=["A-1-7"])
    box.shows.cancel_show(CancelShow(show_id=show_id)).result(timeout=10)

    cancelled = box.bookings.cancel_for_show(
        CancelShowBookings(
            show_id=show_id, booking_ids=[confirmed.id, unpaid.id], reason="show cancelled"
        )
    ).result(timeout=10)

    assert cancelled == 2
    door = box.door(show_id)
    assert [t.status for t in door.tickets_of(confirmed.id)] == [VOID]
    assert door.tickets_of(unpaid.id) == []


def test_holds_and_their_cancellation_never_touch_the_door_list(box: Box):
    """A show whose bookings never got confirmed has no door list: holding, cancelling an
    unpaid booking and paying nothing load (or create) none."""
    show_id = box.show()
    customer = box.customer("Ada")
    booking = box.hold(show_id, customer, seats=["A-1-8"])

    box.bookings.cancel_booking(CancelBooking(booking_id=booking.id, actor_id=customer)).result(
        timeout=10
    )

    assert not box.store.exists(door_list_id_for(show_id))
