"""On a log written by the real command handlers, the audit's appliers (audit/appliers.py)
rebuild every aggregate exactly as eventsourcing's own replay (`event.mutate`) does."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from audit.appliers import apply_event
from bench.common import new_database
from bench.workload import Workload
from infra.decoding import Decoder, read_rows
from tests.integration.projection_support import container_on
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


def test_every_aggregate_of_a_generated_log_rebuilds_as_eventsourcing_rebuilds_it(
    endpoints: StackEndpoints, stack_dir: Path
):
    assert endpoints.database_url is not None
    with (
        new_database(endpoints.database_url) as url,
        container_on(url, stack_dir / "appliers-log") as container,
    ):
        workload = Workload(container, seed=19, rows=10, seats_per_row=20, general=100)
        try:
            workload.schedule_shows(3)
            for _ in range(5):  # holds, then payments, confirmations, expiries, cancellations
                workload.run_wave(400)
            workload.close_a_sale()
        finally:
            workload.close()
        head = container.store.head_position()
        decode = Decoder(container.store.app.mapper).event
        by_mutate: dict[Any, Any] = {}
        by_appliers: dict[Any, Any] = {}
        kinds: set[str] = set()
        with container.store.connection() as conn:
            after = 0
            while rows := read_rows(conn, after, 500):
                for row in rows:
                    event = decode(row)
                    stream = event.originator_id
                    kinds.add(type(event).__qualname__)
                    by_mutate[stream] = event.mutate(by_mutate.get(stream))
                    by_appliers[stream] = apply_event(event, by_appliers.get(stream))
                after = rows[-1][0]
    assert after == head
    # The log has the kinds of event the appliers take over, and the others.
    assert {
        "Booking.Placed",
        "SeatInventory.Created",
        "SeatInventory.SeatsHeld",
        "Booking.PaymentRequested",
        "Booking.Confirmed",
        "SeatInventory.SeatsReleased",
    } <= kinds, kinds
    assert by_mutate.keys() == by_appliers.keys()
    for stream, expected in by_mutate.items():
        rebuilt = by_appliers[stream]
        assert type(rebuilt) is type(expected)
        assert pickle.dumps(vars(rebuilt)) == pickle.dumps(vars(expected)), stream
