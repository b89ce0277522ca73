"""The organiser's controls over what a show sells: block and unblock seats, change a GA
section's capacity. Decided by the show's writer (one batch with the holds, so a block and a
hold of the same seat never both succeed); only the show's organiser or an admin may, and not
once the show is cancelled, deleted or has started (domain/seat_blocks.py has the rules)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Annotated, TypeVar
from uuid import UUID

from pydantic import AfterValidator, Field

from commands.errors import ForbiddenError
from commands.futures import then
from commands.models import Code, Command, Reason, SeatIdStr
from commands.show_writer import ShowBatch
from commands.shows import Manager, ShowScoped
from domain.errors import ShowDeletedError, ShowStatusError
from domain.inventory import SeatInventory
from domain.seatmap import MAX_SEATS_PER_SHOW
from domain.show import CANCELLED, DELETED, Show

T = TypeVar("T")

# Seats per block or unblock request: a big section takes a few requests, and no one request
# (nor the one event it records) grows without bound.
MAX_SEATS_PER_REQUEST = 1000


def _distinct(seats: list[str]) -> list[str]:
    if len(set(seats)) != len(seats):
        raise ValueError("seats must not repeat")
    return seats


SeatList = Annotated[
    list[SeatIdStr],
    Field(min_length=1, max_length=MAX_SEATS_PER_REQUEST),
    AfterValidator(_distinct),
]


class BlockSeats(Command):
    show_id: UUID
    seats: SeatList
    reason: Reason


class UnblockSeats(Command):
    show_id: UUID
    seats: SeatList


class ChangeCapacity(Command):
    show_id: UUID
    section: Code
    capacity: int = Field(ge=0, le=MAX_SEATS_PER_SHOW, strict=True)


@dataclass(frozen=True)
class SeatsChanged:
    """Seats whose state the command changed, and those it left as they were (already blocked,
    or not blocked), in the order asked."""

    changed: list[str]
    unchanged: list[str]
    position: int


@dataclass(frozen=True)
class CapacityChanged:
    capacity: int
    changed: bool
    position: int


class SeatBlockCommands(ShowScoped):
    def block_seats(self, command: BlockSeats, by: Manager) -> Future[SeatsChanged]:
        """SeatsBlocked for the seats not blocked yet; a held or sold seat refuses the lot."""
        seats, reason = list(command.seats), command.reason
        return self._seats(command.show_id, by, seats, lambda i: i.block(seats, reason))

    def unblock_seats(self, command: UnblockSeats, by: Manager) -> Future[SeatsChanged]:
        """SeatsUnblocked for the blocked ones among the seats; the others are left alone."""
        seats = list(command.seats)
        return self._seats(command.show_id, by, seats, lambda i: i.unblock(seats))

    def change_capacity(self, command: ChangeCapacity, by: Manager) -> Future[CapacityChanged]:
        """GeneralCapacityChanged, unless the section has that capacity already."""

        def decide(batch: ShowBatch) -> bool:
            self._check_changeable(batch)
            return batch.inventory.change_capacity(command.section, command.capacity)

        future = self._submit(command.show_id, by, decide)
        return then(future, lambda done: CapacityChanged(command.capacity, done[0], done[1]))

    def _seats(
        self,
        show_id: UUID,
        by: Manager,
        seats: list[str],
        change: Callable[[SeatInventory], list[str]],
    ) -> Future[SeatsChanged]:
        def decide(batch: ShowBatch) -> list[str]:
            self._check_changeable(batch)
            return change(batch.inventory)

        def answer(done: tuple[list[str], int]) -> SeatsChanged:
            changed = set(done[0])
            return SeatsChanged(done[0], [s for s in seats if s not in changed], done[1])

        return then(self._submit(show_id, by, decide), answer)

    def _submit(
        self, show_id: UUID, by: Manager, decide: Callable[[ShowBatch], T]
    ) -> Future[tuple[T, int]]:
        self._authorize(show_id, by)
        return self._writers.for_show(show_id).submit(decide)

    def _authorize(self, show_id: UUID, by: Manager) -> None:
        """Only the show's organiser or an admin (ForbiddenError). Blocking: it loads the show,
        so call it off the event loop. The organiser never changes: no race with the command."""
        show = self._store.get(show_id, Show)
        if show.status == DELETED:
            raise ShowDeletedError(show_id)
        if not show.is_managed_by(by.account_id, by.is_admin):
            raise ForbiddenError("only the show's organiser or an admin may change its seats")

    def _check_changeable(self, batch: ShowBatch) -> None:
        """What a show sells is settled once it is cancelled, deleted or has started."""
        show = batch.show()
        if show.status == DELETED:
            raise ShowDeletedError(show.id)
        if show.status == CANCELLED:
            raise ShowStatusError(f"show {show.id} is cancelled: its seats cannot change")
        starts_at = batch.show_starts_at()
        if self._clock() >= starts_at:
            raise ShowStatusError(
                f"show {show.id} started at {starts_at.isoformat()}: its seats cannot change"
            )
