"""Events survive the application's JSON transcoding; snapshots of an inventory rebuild it.

Uses the library's in-memory (POPO) persistence: no servers, but the same mapper and JSON
transcoder as the PostgreSQL store (the application's, with its transcodings), so UUIDs,
datetimes, dict/list payloads and the inventory's records (Row, Claim, GeneralSection) are
exercised.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import ClassVar
from uuid import UUID

from eventsourcing.domain import MutableOrImmutableAggregate, Snapshot

from domain.booking import Booking
from domain.inventory import Claim, GeneralSection, Row, SeatInventory
from domain.show import Show
from infra.event_store import TicketBlitz
from tests.unit.factories import (
    HOLD_UNTIL,
    T0,
    a_booking,
    a_show,
    an_inventory,
    place_hold,
    state_of,
)

IN_MEMORY = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class BoxOffice(TicketBlitz):
    name = "BoxOffice"


class SnapshottingBoxOffice(TicketBlitz):
    name = "SnapshottingBoxOffice"
    is_snapshotting_enabled = True


class AutoSnapshottingBoxOffice(TicketBlitz):
    name = "AutoSnapshottingBoxOffice"
    snapshotting_intervals: ClassVar[dict[type[MutableOrImmutableAggregate[UUID]], int]] = {
        SeatInventory: 3
    }


def _a_busy_inventory() -> tuple[SeatInventory, UUID, UUID]:
    """An inventory with a sold claim, a released one and an open hold."""
    inventory = an_inventory()
    sold = place_hold(inventory, ["A-1-5", "A-1-6"], {"GA": 2})
    inventory.sell(sold)
    released = place_hold(inventory, ["A-2-1"])
    inventory.release(released, reason="hold expired")
    held = place_hold(inventory, ["A-2-1", "A-2-2"], until=T0)
    return inventory, sold, held


def test_stored_events_are_json():
    app = BoxOffice(env=IN_MEMORY)
    inventory, _, _ = _a_busy_inventory()

    app.save(inventory)

    stored = app.recorder.select_events(inventory.id)
    assert len(stored) == inventory.version
    assert all(isinstance(json.loads(s.state), dict) for s in stored)


def test_an_inventory_and_its_bookings_reload_with_the_same_state():
    app = BoxOffice(env=IN_MEMORY)
    show = a_show()
    inventory, sold_id, held_id = _a_busy_inventory()
    paid = a_booking()
    paid.request_payment("pi_1")
    paid.record_payment("pi_1", paid.amount_cents)
    paid.confirm()
    expired = a_booking()
    expired.expire(at=HOLD_UNTIL)
    expired.record_payment("pi_2", expired.amount_cents)

    app.save(show, inventory, paid, expired)

    reloaded_show: Show = app.repository.get(show.id)
    reloaded: SeatInventory = app.repository.get(inventory.id)
    assert isinstance(reloaded_show, Show)
    assert isinstance(reloaded, SeatInventory)
    assert state_of(reloaded_show) == state_of(show)
    assert state_of(reloaded) == state_of(inventory)
    for booking in (paid, expired):
        reloaded_booking: Booking = app.repository.get(booking.id)
        assert isinstance(reloaded_booking, Booking)
        assert state_of(reloaded_booking) == state_of(booking)
    claim = reloaded.claim_of(held_id)
    assert claim is not None
    assert isinstance(claim, Claim)
    assert isinstance(claim.until, datetime)
    assert claim.until.tzinfo is not None
    assert reloaded.expired_holds(T0) == [held_id]
    assert reloaded.claim_of(sold_id) == inventory.claim_of(sold_id)


def test_a_reloaded_inventory_keeps_enforcing_its_rules():
    app = BoxOffice(env=IN_MEMORY)
    inventory, _, held_id = _a_busy_inventory()
    app.save(inventory)
    reloaded: SeatInventory = app.repository.get(inventory.id)
    assert isinstance(reloaded, SeatInventory)

    reloaded.release(held_id, reason="hold expired")
    place_hold(reloaded, ["A-2-1", "A-2-2"])
    app.save(reloaded)

    assert app.repository.get(inventory.id).version == inventory.version + 2


def test_a_snapshot_of_an_inventory_rebuilds_the_same_state():
    app = SnapshottingBoxOffice(env=IN_MEMORY)
    inventory, _, held_id = _a_busy_inventory()
    app.save(inventory)

    app.take_snapshot(inventory.id)
    inventory.sell(held_id)
    app.save(inventory)

    assert app.snapshots is not None
    [snapshot] = app.snapshots.get(inventory.id)
    assert isinstance(snapshot, Snapshot)
    assert snapshot.originator_version == inventory.version - 1
    assert snapshot.state["class_version"] == SeatInventory.class_version
    reloaded: SeatInventory = app.repository.get(inventory.id)
    assert state_of(reloaded) == state_of(inventory)
    assert all(type(row) is Row for row in reloaded.rows)
    assert all(type(claim) is Claim for claim in reloaded.claims.values())
    assert type(reloaded.general["GA"]) is GeneralSection


def test_inventories_are_snapshotted_at_their_interval():
    app = AutoSnapshottingBoxOffice(env=IN_MEMORY)
    inventory = an_inventory()
    place_hold(inventory, ["A-1-1"])
    app.save(inventory)

    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(inventory.id))

    assert [s.originator_version for s in snapshots] == [3]
    assert state_of(app.repository.get(inventory.id)) == state_of(inventory)
