"""Handlers for the organiser's commands: schedule a show, open, close or cancel its sale."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from uuid import UUID, uuid4

from commands.futures import then
from commands.models import CancelShow, CloseSale, OpenSale, ScheduleShow
from commands.ports import EventStore
from commands.show_writer import ShowBatch, ShowWriters
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from domain.show import Show


@dataclass(frozen=True)
class ShowScheduled:
    show_id: UUID
    position: int


class ShowCommands:
    def __init__(self, store: EventStore, writers: ShowWriters) -> None:
        self._store = store
        self._writers = writers

    def schedule_show(self, command: ScheduleShow, show_id: UUID | None = None) -> ShowScheduled:
        """The show and its inventory are created in one transaction."""
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
        )
        inventory = SeatInventory(
            inventory_id=inventory_id_for(show_id),
            show_id=show_id,
            currency=show.currency,
            price_tiers=tiers,
            sections=sections,
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
        """Cancelling a show stops its sale; refunding its bookings is the saga's job."""

        def decide(batch: ShowBatch) -> None:
            batch.show().cancel(command.reason)
            batch.inventory.close_sale()

        return self._positions(command.show_id, decide)

    def _positions(self, show_id: UUID, decide: Callable[[ShowBatch], None]) -> Future[int]:
        return then(self._writers.for_show(show_id).submit(decide), lambda done: done[1])
