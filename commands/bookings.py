"""Handlers for customers' bookings: place a hold, cancel a booking."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from commands.errors import ForbiddenError, IdempotencyMismatchError
from commands.futures import then
from commands.models import (
    AnnounceReschedule,
    CancelBooking,
    CancelShowBookings,
    CancelUnpaidBookings,
    PlaceHold,
)
from commands.ports import Clock, EventStore
from commands.show_writer import ShowBatch, ShowWriters
from commands.tickets import void_tickets
from commands.waitlist import refuse_if_owed_to_waiting_list
from domain.booking import CONFIRMED, LEGAL, Booking
from domain.errors import CapacityExceededError, ShowStatusError
from domain.ids import presale_codes_id_for
from domain.inventory import LapsedHoldLimit, SeatInventory
from domain.presale import UNKNOWN as UNKNOWN_CODE
from domain.presale import CodeInvalidError, PresaleCode, PresaleCodes
from domain.show import CANCELLED as SHOW_CANCELLED


@dataclass(frozen=True)
class HoldPlaced:
    booking_id: UUID
    show_id: UUID
    status: str
    seats: list[str]
    general: dict[str, int]
    amount_cents: int
    currency: str
    hold_expires_at: datetime
    position: int = 0
    replayed: bool = False

    @classmethod
    def of(cls, booking: Booking, replayed: bool = False) -> HoldPlaced:
        return cls(
            booking_id=booking.id,
            show_id=booking.show_id,
            status=booking.status,
            seats=list(booking.seats),
            general=dict(booking.general),
            amount_cents=booking.amount_cents,
            currency=booking.currency,
            hold_expires_at=booking.hold_expires_at,
            replayed=replayed,
        )


class BookingCommands:
    def __init__(
        self,
        store: EventStore,
        writers: ShowWriters,
        clock: Clock,
        hold_duration: timedelta,
        customer_ticket_limit: int | None = None,
        lapsed_hold_limit: LapsedHoldLimit | None = None,
    ) -> None:
        self._store = store
        self._writers = writers
        self._clock = clock
        self._hold_duration = hold_duration
        self._customer_limit = customer_ticket_limit
        self._lapsed_limit = lapsed_hold_limit

    def place_hold(self, command: PlaceHold) -> Future[HoldPlaced]:
        """SeatsHeld on the inventory and BookingPlaced on the booking, in one transaction."""
        writer = self._writers.for_show(command.request.show_id)
        return then(writer.submit(self._hold_decision(command)), _with_position)

    async def place_hold_async(self, command: PlaceHold) -> HoldPlaced:
        """`place_hold` for a caller on an event loop, which is woken once per batch. A caller
        that stops waiting does not withdraw the command: it is decided all the same."""
        writer = self._writers.for_show(command.request.show_id)
        return _with_position(await writer.submit_async(self._hold_decision(command)))

    def _hold_decision(self, command: PlaceHold) -> Callable[[ShowBatch], HoldPlaced]:
        request = command.request

        def decide(batch: ShowBatch) -> HoldPlaced:
            if command.replayable and batch.booking_exists(command.booking_id):
                return _replay(batch.booking(command.booking_id), command)
            inventory = batch.inventory
            now = self._clock()
            starts_at = batch.show_starts_at()
            # Refused requests (not on sale, a presale without a code, a bad code) skip the rest.
            inventory.check_open(now, starts_at, request.code)
            code = None if request.code is None else _presale_code(batch, request.code, now)
            general: dict[str, int] = {}
            if request.seats is not None:
                seats = list(request.seats)
            else:
                assert request.quantity is not None  # guaranteed by BookingRequest
                # Refused requests (over the customer's share) skip the seat search.
                inventory.check_allowance(
                    command.customer_id, request.quantity, self._customer_limit
                )
                seats, general = _best_available(inventory, request.quantity, request.section, code)
            if code is not None:
                code.check_tiers(inventory.tiers_of(seats, general))
            refuse_if_owed_to_waiting_list(batch, seats, general)  # fans who waited come first
            until = now + self._hold_duration
            inventory.hold(
                booking_id=command.booking_id,
                customer_id=command.customer_id,
                seats=seats,
                general=general,
                until=until,
                customer_limit=self._customer_limit,
                lapsed_limit=self._lapsed_limit,
                now=now,
                show_starts_at=starts_at,
                code=None if code is None else code.code,
                code_max_uses=None if code is None else code.max_uses,
            )
            amount = inventory.price_of(seats, general)
            if code is not None:
                amount = code.amount(amount, len(seats) + sum(general.values()))
            booking = Booking(
                booking_id=command.booking_id,
                show_id=request.show_id,
                customer_id=command.customer_id,
                seats=seats,
                general=general,
                amount_cents=amount,
                currency=inventory.currency,
                hold_expires_at=until,
                payment_method=request.payment_method,
                code=None if code is None else code.code,
            )
            batch.add_booking(booking)
            return HoldPlaced.of(booking)

        return decide

    def cancel_booking(self, command: CancelBooking) -> Future[int]:
        """Cancel, release the seats and void the tickets in one transaction; a paid booking only
        before the show starts, unless an admin cancels it (its refund is the saga's job)."""
        booking = self._store.get(command.booking_id, Booking)
        if not command.actor_is_admin and booking.customer_id != command.actor_id:
            raise ForbiddenError("only the booking's customer or an admin may cancel it")

        def decide(batch: ShowBatch) -> None:
            current = batch.booking(command.booking_id)
            now = self._clock()
            had_tickets = current.status == CONFIRMED
            current.cancel_before_show(
                command.reason, now, batch.show_starts_at(), by_admin=command.actor_is_admin
            )
            if batch.inventory.claim_of(command.booking_id) is not None:
                batch.inventory.release(command.booking_id, command.reason, now)
            if had_tickets:
                void_tickets(batch, command.booking_id, command.reason)

        future = self._writers.for_show(booking.show_id).submit(decide)
        return then(future, lambda done: done[1])

    def cancel_for_show(self, command: CancelShowBookings) -> Future[int]:
        """The show was cancelled: cancel each of these bookings that is not over yet and free
        its seats, all in one transaction; answers how many it cancelled. Unlike a customer's
        cancellation this has no start-time limit (a show is cancelled, and its tickets
        refunded, also after its start); paid bookings are refunded in full by the saga."""

        def decide(batch: ShowBatch) -> int:
            show = batch.show()
            if show.status != SHOW_CANCELLED:
                raise ShowStatusError(f"show {show.id} is {show.status}, not cancelled")
            now = self._clock()
            cancelled = 0
            for booking_id in command.booking_ids:
                booking = batch.booking(booking_id)
                if booking.show_id != command.show_id or booking.status not in LEGAL["cancel"]:
                    continue  # another show's, or over already: nothing to undo (idempotent)
                had_tickets = booking.status == CONFIRMED
                booking.cancel(command.reason)
                if batch.inventory.claim_of(booking_id) is not None:
                    batch.inventory.release(booking_id, command.reason, now)
                if had_tickets:
                    void_tickets(batch, booking_id, command.reason)
                cancelled += 1
            return cancelled

        future = self._writers.for_show(command.show_id).submit(decide)
        return then(future, lambda done: done[0])

    def announce_reschedule(self, command: AnnounceReschedule) -> Future[int]:
        """The show was rescheduled: each of these bookings whose customer holds tickets and was
        not told of this reschedule yet records it (the notifier e-mails the customer), all in
        one transaction; answers how many. A batch redone after a crash records nothing more."""

        def decide(batch: ShowBatch) -> int:
            now = self._clock()
            announced = 0
            for booking_id in command.booking_ids:
                booking = batch.booking(booking_id)
                if booking.show_id != command.show_id or not booking.reschedule_notice_due(
                    command.show_version, command.starts_at, now
                ):
                    continue  # another show's, no ticket holder, or told already (idempotent)
                booking.announce_reschedule(
                    command.show_version, command.starts_at, command.previous_starts_at, now
                )
                announced += 1
            return announced

        future = self._writers.for_show(command.show_id).submit(decide)
        return then(future, lambda done: done[0])

    def cancel_unpaid(self, command: CancelUnpaidBookings) -> Future[int]:
        """The customer's account was deactivated: cancel each of these bookings of theirs that
        is not paid yet and free its seats, in one transaction; answers how many. Paid ones
        stay the customer's; a batch redone after a crash cancels nothing more."""

        def decide(batch: ShowBatch) -> int:
            now = self._clock()
            cancelled = 0
            for booking_id in command.booking_ids:
                booking = batch.booking(booking_id)
                if (
                    booking.show_id != command.show_id
                    or booking.customer_id != command.customer_id
                    or booking.status not in LEGAL["cancel unpaid"]
                ):
                    continue  # not theirs, paid, or over already: left alone (idempotent)
                booking.cancel_unpaid(command.reason)
                if batch.inventory.claim_of(booking_id) is not None:
                    batch.inventory.release(booking_id, command.reason, now)
                cancelled += 1
            return cancelled

        future = self._writers.for_show(command.show_id).submit(decide)
        return then(future, lambda done: done[0])


def _presale_code(batch: ShowBatch, code: str, now: datetime) -> PresaleCode:
    """The show's code if it admits a hold now (CodeInvalidError says why not)."""
    show_id = batch.inventory.show_id
    codes = batch.find_companion(presale_codes_id_for(show_id), PresaleCodes)
    if codes is None:
        raise CodeInvalidError(code, UNKNOWN_CODE, f"presale code {code} is unknown for this show")
    return codes.admit(code, now)


def _best_available(
    inventory: SeatInventory, quantity: int, section: str | None, code: PresaleCode | None
) -> tuple[list[str], dict[str, int]]:
    """Best-available; anywhere, for a code of some tiers only, means in a section of those
    tiers (the first that has the tickets)."""
    if section is not None or code is None or code.tiers is None:
        return inventory.choose_best_available(quantity, section)
    sections = inventory.sections_of_tiers(set(code.tiers))
    refused: CapacityExceededError | None = None
    for each in sections:
        try:
            return inventory.choose_best_available(quantity, each)
        except CapacityExceededError as error:
            refused = error
    if refused is None:  # no section of its tiers (tiers are checked when codes are created)
        return inventory.choose_best_available(quantity, None)
    raise refused


def _with_position(done: tuple[HoldPlaced, int]) -> HoldPlaced:
    placed, position = done
    return replace(placed, position=position)


def _replay(existing: Booking, command: PlaceHold) -> HoldPlaced:
    """A retried request finds its booking: same answer, no second effect."""
    if existing.customer_id != command.customer_id or existing.show_id != command.request.show_id:
        raise IdempotencyMismatchError("this Idempotency-Key was used for another booking")
    return HoldPlaced.of(existing, replayed=True)
