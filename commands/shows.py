"""Handlers for the organiser's commands: schedule a show, edit it, open, close or cancel its
sale, delete it. Only the show's organiser or an admin (`Manager`) may change a show; the sale
window's process manager acts without one (`by=None`: the system)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from commands.errors import ForbiddenError
from commands.futures import then
from commands.models import (
    CancelShow,
    CloseSale,
    DeleteShow,
    EditShow,
    OpenSale,
    ScheduleShow,
    ShowChanges,
)
from commands.ports import Clock, EventStore
from commands.show_writer import ShowBatch, ShowWriters
from domain.errors import ShowDeletedError, ShowStatusError
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from domain.show import DELETED, KEEP, Show, ShowEdit


@dataclass(frozen=True)
class ShowScheduled:
    show_id: UUID
    position: int


@dataclass(frozen=True)
class Manager:
    """Who asks for a change to a show: its organiser, or an admin."""

    account_id: UUID
    is_admin: bool


@dataclass(frozen=True)
class ShowEdited:
    status: str
    position: int


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _edit_of(changes: ShowChanges) -> ShowEdit:
    given = changes.model_fields_set
    return ShowEdit(
        title=changes.title,
        description=changes.description,
        category=changes.category,
        venue=changes.venue,
        starts_at=changes.starts_at,
        sale_opens_at=changes.sale_opens_at if "sale_opens_at" in given else KEEP,
        sale_closes_at=changes.sale_closes_at,
        prices={tier.code: tier.price_cents for tier in changes.price_tiers or []},
        time_zone=changes.time_zone,
        transfers_allowed=changes.transfers_allowed,
        presale_opens_at=changes.presale_opens_at if "presale_opens_at" in given else KEEP,
        queue_admits_per_minute=(
            changes.queue_admits_per_minute if "queue_admits_per_minute" in given else KEEP
        ),
    )


class ShowScoped:
    """Handlers of commands on one show at a time: the store, the shows' writers, the clock."""

    def __init__(self, store: EventStore, writers: ShowWriters, clock: Clock = _utc_now) -> None:
        self._store = store
        self._writers = writers
        self._clock = clock


class ShowCommands(ShowScoped):
    def schedule_show(
        self,
        command: ScheduleShow,
        show_id: UUID | None = None,
        organizer_id: UUID | None = None,
    ) -> ShowScheduled:
        """The show and its inventory are created in one transaction; the inventory carries
        the show's start and cap per customer, so that the show's writer decides both alone.
        `organizer_id` is the organiser who runs it (None: a show only admins manage)."""
        show_id = show_id or uuid4()
        sections = [s.model_dump() for s in command.sections]
        tiers = {t.code: t.price_cents for t in command.price_tiers}
        show = Show.schedule(
            show_id=show_id,
            title=command.title,
            description=command.description,
            category=command.category,
            venue=command.venue,
            starts_at=command.starts_at,
            currency=command.currency,
            price_tiers=tiers,
            sections=sections,
            max_tickets_per_customer=command.max_tickets_per_customer,
            now=self._clock(),
            sale_opens_at=command.sale_opens_at,
            sale_closes_at=command.sale_closes_at,
            organizer_id=organizer_id,
            time_zone=command.time_zone,
            transfers_allowed=command.transfers_allowed,
            presale_opens_at=command.presale_opens_at,
            queue_admits_per_minute=command.queue_admits_per_minute,
        )
        inventory = SeatInventory(
            inventory_id=inventory_id_for(show_id),
            show_id=show_id,
            currency=show.currency,
            price_tiers=tiers,
            sections=sections,
            starts_at=show.starts_at,
            max_tickets_per_customer=show.max_tickets_per_customer,
        )
        return ShowScheduled(show_id, self._store.save(show, inventory))

    def authorize(self, show_id: UUID, by: Manager | None) -> None:
        """Refuse (ForbiddenError) a caller who manages not this show; None is the system.
        Blocking (it loads the show): call it off the event loop. The organiser never changes,
        so this check cannot race with the command; a deletion meanwhile is the domain's."""
        if by is None:
            return
        show = self._store.get(show_id, Show)
        if show.status == DELETED:
            raise ShowDeletedError(show_id)
        if not show.is_managed_by(by.account_id, by.is_admin):
            raise ForbiddenError("only the show's organiser or an admin may change it")

    def edit_show(self, command: EditShow, by: Manager | None = None) -> Future[ShowEdited]:
        """Each change is a Show event; a reschedule and a repricing are the inventory's too
        (when no hold is accepted, what new holds pay), committed in the same transaction."""
        self.authorize(command.show_id, by)
        changes = _edit_of(command.changes)

        def decide(batch: ShowBatch) -> str:
            show = batch.show()
            starts_at, prices = show.starts_at, dict(show.price_tiers)
            now = self._clock()
            show.edit(changes, now=now)
            presale_at = show.presale_opens_at
            if presale_at is None or presale_at > now:  # an open presale moved later, or gone
                batch.inventory.close_presale()
            if show.starts_at != starts_at:
                batch.inventory.reschedule(show.starts_at)
            for tier, cents in show.price_tiers.items():
                if prices[tier] != cents:
                    batch.inventory.reprice(tier, cents)
            return str(show.status)

        future = self._writers.for_show(command.show_id).submit(decide)
        return then(future, lambda done: ShowEdited(done[0], done[1]))

    def delete_show(self, command: DeleteShow, by: Manager | None = None) -> Future[int]:
        """Only a show that never had a booking (its inventory never held a seat) is deleted;
        its sale stops with it, in the same transaction, so no hold can follow."""
        self.authorize(command.show_id, by)

        def decide(batch: ShowBatch) -> None:
            batch.show().delete(ever_booked=batch.inventory.ever_held)
            batch.inventory.close_sale()

        return self._positions(command.show_id, decide)

    def open_sale(self, command: OpenSale, by: Manager | None = None) -> Future[int]:
        self.authorize(command.show_id, by)

        def decide(batch: ShowBatch) -> None:
            batch.show().open_sale()
            batch.inventory.open_sale()

        return self._positions(command.show_id, decide)

    def open_sale_on_schedule(self, command: OpenSale) -> Future[int]:
        """The sale window's opening (the system's, no caller): nothing once the window has
        closed, decided by the show's writer at its time."""

        def decide(batch: ShowBatch) -> None:
            batch.show().open_sale_on_schedule(self._clock())
            batch.inventory.open_sale()

        return self._positions(command.show_id, decide)

    def open_presale_on_schedule(self, command: OpenSale) -> Future[int]:
        """The presale's opening (the system's, at `presale_opens_at`): from now until the sale
        opens, holds with a presale code only. Nothing to do (ShowStatusError) for a show
        cancelled, deleted or on sale, or whose presale is not due (moved) or window closed."""

        def decide(batch: ShowBatch) -> None:
            batch.show().check_presale_may_open(self._clock())
            if not batch.inventory.open_presale():
                raise ShowStatusError(f"show {command.show_id}: its presale is open already")

        return self._positions(command.show_id, decide)

    def close_sale(self, command: CloseSale, by: Manager | None = None) -> Future[int]:
        self.authorize(command.show_id, by)

        def decide(batch: ShowBatch) -> None:
            batch.show().close_sale()
            batch.inventory.close_sale()

        return self._positions(command.show_id, decide)

    def cancel_show(self, command: CancelShow, by: Manager | None = None) -> Future[int]:
        """Cancelling a show stops its sale (no hold after it: every booking of the show is
        before it in the log). Its bookings are cancelled, and the paid ones refunded, by
        process_managers/show_cancellation.py and the payment saga."""
        self.authorize(command.show_id, by)

        def decide(batch: ShowBatch) -> None:
            batch.show().cancel(command.reason)
            batch.inventory.close_sale()

        return self._positions(command.show_id, decide)

    def _positions(self, show_id: UUID, decide: Callable[[ShowBatch], None]) -> Future[int]:
        return then(self._writers.for_show(show_id).submit(decide), lambda done: done[1])
