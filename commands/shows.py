"""Handlers for the organiser's commands: schedule a show, open, close or cancel its sale."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from commands.futures import then
from commands.models import CancelShow, CloseSale, OpenSale, ScheduleShow
from commands.ports import Clock, EventStore
from commands.show_writer import ShowBatch, ShowWriters
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from domain.show import Show


@dataclass(frozen=True)
class ShowScheduled:
    show_id: UUID
    position: int


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ShowCommands:
    def __init__(self, store: EventStore, writers: ShowWriters, clock: Clock = _utc_now) -> None:
        self._store = store
        self._writers = writers
        self._clock = clock

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

    def open_sale(self, command: OpenSale) -> Future[int]:
        def decide(batch: ShowBatch) -> None:
            batch.show().open_sale()
            batch.inventory.open_sale()

        return self._positions(command.show_id, decide)

    def close_sale(self, command: CloseSale) -> Future[int]:
        def decide(batch: ShowBatch) -> None:
            batch.show().close_sale()
            batch.inventory.close_sale()

        return self._positions(command.show_id, decide)

    def cancel_show(self, command: CancelShow) -> Future[int]:
        """Cancelling a show stops its sale (no hold after it: every booking of the show is
        before it in the log). Its bookings are cancelled, and the paid ones refunded, by
        process_managers/show_cancellation.py and the payment saga."""

        def decide(batch: ShowBatch) -> None:
            batch.show().cancel(command.reason)
            batch.inventory.close_sale()

        return self._positions(command.show_id, decide)

    def _positions(self, show_id: UUID, decide: Callable[[ShowBatch], None]) -> Future[int]:
        return then(self._writers.for_show(show_id).submit(decide), lambda done: done[1])
