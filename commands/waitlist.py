"""Handlers of a show's waiting list (domain/waitlist.py): join, leave, and settle (record what
became of the offers, then offer the free seats to the waiting entries in first-come order).
Every one is decided by the show's writer with the waiting list as a companion of the
inventory, so an offer's hold, its booking and the list's OfferMade are one transaction, and
the public guard (`refuse_if_owed_to_waiting_list`, called by every public hold) sees the same
state as the offers."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from uuid import UUID, uuid4

from pydantic import Field

from commands.errors import ForbiddenError, NotFoundError
from commands.futures import then
from commands.models import Code, Command, Reason
from commands.ports import Clock, EventStore
from commands.show_writer import ShowBatch, ShowWriters
from domain.account import Account
from domain.booking import CONFIRMED, LEGAL, Booking
from domain.errors import (
    CustomerTicketLimitError,
    DomainError,
    SaleNotOpenError,
    SeatsUnavailableError,
    ShowDeletedError,
    UnknownSectionError,
)
from domain.ids import waiting_list_id_for
from domain.show import CANCELLED, DELETED
from domain.waitlist import (
    CANNOT_TAKE_INACTIVE,
    CANNOT_TAKE_LIMIT,
    OFFERED,
    EntryClosedError,
    FreeCounts,
    TicketsAvailableError,
    WaitingList,
    WaitingListEntry,
    offer_booking_id_for,
    section_of,
)

log = logging.getLogger(__name__)

LEFT_REASON = "left the waiting list"


class JoinWaitingList(Command):
    show_id: UUID
    customer_id: UUID
    quantity: int = Field(ge=1, le=10, strict=True)
    section: Code | None = None


class LeaveWaitingList(Command):
    entry_id: UUID
    actor_id: UUID
    actor_is_admin: bool = Field(default=False, strict=True)
    reason: Reason = LEFT_REASON


@dataclass(frozen=True)
class Joined:
    entry_id: UUID
    position: int  # in the queue (1: next to be served)
    log_position: int = 0


@dataclass
class Settled:
    """What one settlement did: offers recorded as accepted or lapsed, new offers (entry ->
    booking), entries that could not take an offer."""

    accepted: list[UUID] = field(default_factory=list)
    lapsed: list[UUID] = field(default_factory=list)
    offered: dict[UUID, UUID] = field(default_factory=dict)
    passed_over: int = 0


class HeldForWaitingListError(SeatsUnavailableError):
    """A public hold of tickets a waiting entry can take: 409 `seats-unavailable`."""

    def __init__(self, seats: list[str], entry_id: UUID) -> None:
        super().__init__(seats)
        self.args = ("held back for the waiting list: fans who waited come first",)
        self.entry_id = entry_id


@lru_cache(maxsize=4096)
def _list_id(show_id: UUID) -> UUID:
    return waiting_list_id_for(show_id)


def refuse_if_owed_to_waiting_list(
    batch: ShowBatch, seats: list[str], general: dict[str, int]
) -> None:
    """The public guard: refuse a public hold of tickets that a waiting entry the free tickets
    can serve could take (its section, or any section for an entry that takes any). A show
    without a waiting list, or with nobody waiting, costs one cached lookup."""
    waiting_list = batch.find_companion(_list_id(batch.inventory.show_id), WaitingList)
    if waiting_list is None or not waiting_list.waiting:
        return
    inventory = batch.inventory
    if any(not inventory.is_free(s) for s in seats):
        return  # the hold fails anyway, and says which seats are taken
    sections = {section_of(s) for s in seats} | set(general)
    owed_to = waiting_list.owed(FreeCounts.of(inventory), sections)
    if owed_to is not None:
        raise HeldForWaitingListError(list(seats), owed_to)


class WaitlistCommands:
    def __init__(
        self,
        store: EventStore,
        writers: ShowWriters,
        clock: Clock,
        offer_duration: timedelta,
        customer_ticket_limit: int | None = None,
    ) -> None:
        self._store = store
        self._writers = writers
        self._clock = clock
        self._offer_duration = offer_duration
        self._customer_limit = customer_ticket_limit

    def join_waiting_list(self, command: JoinWaitingList) -> Future[Joined]:
        """EntryJoined, while the request cannot be booked: 409 `tickets-available` if it can
        (free tickets serve it and nobody waiting is owed them), `already-waiting`,
        `sale-not-open` (not on sale, started, cancelled), `ticket-limit-reached`."""
        entry_id = uuid4()
        show_id = command.show_id
        list_id = _list_id(show_id)

        def decide(batch: ShowBatch) -> Joined:
            show = batch.show()
            if show.status == DELETED:
                raise ShowDeletedError(show_id)
            if show.status == CANCELLED:
                raise SaleNotOpenError(show_id, "cancelled")
            inventory = batch.inventory
            now = self._clock()
            inventory.check_open(now, batch.show_starts_at())
            existing = batch.find_companion(list_id, WaitingList)
            if existing is not None:
                existing.check_can_join(command.customer_id)
            inventory.check_allowance(command.customer_id, command.quantity, self._customer_limit)
            if command.section is not None and command.section not in inventory.section_kind:
                raise UnknownSectionError(command.section)
            counts = FreeCounts.of(inventory)
            scope = None if command.section is None else {command.section}
            owed = existing is not None and existing.owed(counts, scope) is not None
            if counts.serves(command.quantity, command.section) and not owed:
                raise TicketsAvailableError(command.quantity, command.section)
            # Only now (nothing refused): a list created here is saved with the entry.
            waiting_list = batch.companion(list_id, WaitingList, lambda: WaitingList(show_id))
            waiting_list.join(
                entry_id,
                command.customer_id,
                command.quantity,
                command.section,
                now,
                inventory.section_kind,
            )
            batch.companion(
                entry_id,
                WaitingListEntry,
                lambda: WaitingListEntry(entry_id, show_id, command.customer_id),
            )
            position = waiting_list.position_of(entry_id)
            assert position is not None
            return Joined(entry_id, position)

        future = self._writers.for_show(show_id).submit(decide)
        return then(future, lambda done: Joined(done[0].entry_id, done[0].position, done[1]))

    def leave_waiting_list(self, command: LeaveWaitingList) -> Future[int]:
        """EntryLeft; an entry offered seats also cancels its offer's booking (unpaid) and
        frees its seats in the same transaction. Only the entry's customer or an admin."""
        try:
            pointer = self._store.get(command.entry_id, WaitingListEntry)
        except NotFoundError:
            raise NotFoundError("waiting list entry", command.entry_id) from None
        if not isinstance(pointer, WaitingListEntry):
            raise NotFoundError("waiting list entry", command.entry_id)
        if not command.actor_is_admin and pointer.customer_id != command.actor_id:
            raise ForbiddenError("only the entry's customer or an admin may remove it")
        show_id = pointer.show_id

        def decide(batch: ShowBatch) -> None:
            waiting_list = batch.find_companion(_list_id(show_id), WaitingList)
            entry = None if waiting_list is None else waiting_list.entry(command.entry_id)
            if waiting_list is None or entry is None:
                raise NotFoundError("waiting list entry", command.entry_id)
            booking: Booking | None = None
            if entry.status == OFFERED and entry.booking is not None:
                booking = batch.booking(UUID(entry.booking))
                unpaid = booking.status in LEGAL["cancel unpaid"]
                if not unpaid and batch.inventory.claim_of(booking.id) is not None:
                    # Paid (or paying): the seats are the customer's now.
                    raise EntryClosedError(command.entry_id, f"offered ({booking.status})")
            # Every refusal is above: from here on, all or nothing in one transaction.
            waiting_list.leave(command.entry_id, command.reason)
            if booking is not None and booking.status in LEGAL["cancel unpaid"]:
                booking.cancel_unpaid(command.reason)
                if batch.inventory.claim_of(booking.id) is not None:
                    batch.inventory.release(booking.id, command.reason, self._clock())

        future = self._writers.for_show(show_id).submit(decide)
        return then(future, lambda done: done[1])

    def settle_waiting_list(self, show_id: UUID) -> Future[Settled]:
        """Record what became of the offers (confirmed: OfferAccepted; seats released:
        OfferLapsed), then offer the free tickets to the waiting entries in first-come order,
        passing over those they cannot serve; one transaction. State-based: redone after a
        crash, it does nothing twice."""

        def decide(batch: ShowBatch) -> Settled:
            waiting_list = batch.find_companion(_list_id(show_id), WaitingList)
            if waiting_list is None:
                return Settled()
            settled = Settled()
            self._record_outcomes(batch, waiting_list, settled)
            if waiting_list.waiting:
                self._make_offers(batch, waiting_list, settled)
            return settled

        future = self._writers.for_show(show_id).submit(decide)
        return then(future, lambda done: done[0])

    def _record_outcomes(self, batch: ShowBatch, waiting_list: WaitingList, out: Settled) -> None:
        for entry_id, entry in waiting_list.offered_entries():
            assert entry.booking is not None
            booking = batch.booking(UUID(entry.booking))
            if booking.status == CONFIRMED:
                waiting_list.accept_offer(entry_id)
                out.accepted.append(entry_id)
            elif batch.inventory.claim_of(booking.id) is None:  # released unsold
                waiting_list.lapse_offer(entry_id, booking.reason or booking.status)
                out.lapsed.append(entry_id)

    def _make_offers(self, batch: ShowBatch, waiting_list: WaitingList, out: Settled) -> None:
        inventory = batch.inventory
        now = self._clock()
        starts_at = batch.show_starts_at()
        try:
            inventory.check_open(now, starts_at)
        except DomainError:
            return  # not on sale (or a presale): the entries keep their places
        until = now + self._offer_duration
        for servable in waiting_list.servable_entries(inventory):
            entry = servable.entry
            customer_id = UUID(entry.customer)
            why_not = self._cannot_take(batch, customer_id, entry.quantity)
            if why_not is not None:
                waiting_list.lapse_offer(servable.entry_id, why_not)
                out.lapsed.append(servable.entry_id)
                out.passed_over += 1
                continue
            booking_id = offer_booking_id_for(servable.entry_id)
            try:  # every check comes before its event: a refusal changes nothing
                inventory.hold(
                    booking_id=booking_id,
                    customer_id=customer_id,
                    seats=servable.seats,
                    general=servable.general,
                    until=until,
                    customer_limit=self._customer_limit,
                    lapsed_limit=None,  # an offer is not the customer re-holding seats
                    now=now,
                    show_starts_at=starts_at,
                    offer=True,  # nor is its lapse
                )
            except DomainError as refused:
                log.warning("offer to entry %s not made: %s", servable.entry_id, refused)
                return
            booking = Booking(
                booking_id=booking_id,
                show_id=inventory.show_id,
                customer_id=customer_id,
                seats=servable.seats,
                general=servable.general,
                amount_cents=inventory.price_of(servable.seats, servable.general),
                currency=inventory.currency,
                hold_expires_at=until,
                payment_method=None,
                offer=True,
            )
            batch.add_booking(booking)
            waiting_list.make_offer(
                servable.entry_id, booking_id, servable.seats, servable.general, until
            )
            out.offered[servable.entry_id] = booking_id

    def _cannot_take(self, batch: ShowBatch, customer_id: UUID, quantity: int) -> str | None:
        """Why the customer cannot be offered tickets now (None: they can)."""
        try:
            batch.inventory.check_allowance(customer_id, quantity, self._customer_limit)
        except CustomerTicketLimitError:
            return CANNOT_TAKE_LIMIT
        try:
            account = self._store.get(customer_id, Account)
        except NotFoundError:
            return None  # a customer without an account (a script's): nothing says no
        return None if account.active else CANNOT_TAKE_INACTIVE
