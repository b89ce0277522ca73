"""Schema evolution: SeatInventory.SeatsReleased version 2 records what it released, version 3
when; events stored as version 1 or 2 (before the changes) are upcast when read and still
replay correctly.

Uses the library's mapper with in-memory persistence: the same JSON as the PostgreSQL store."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent

from domain.inventory import SeatInventory
from tests.unit.factories import (
    HOLD_UNTIL,
    T0,
    an_inventory,
    new_events,
    place_hold,
    replay,
    state_of,
)


class BoxOffice(Application[UUID]):
    name = "UpcastingBoxOffice"


def stored_as(stored: StoredEvent, version: int) -> StoredEvent:
    """What the code before `version + 1` wrote: version 2 had no `released_at`, version 1
    neither `seats` nor `general`, and version 1 events carry no class version."""
    state = json.loads(stored.state)
    added = {1: ("seats", "general", "released_at", "class_version"), 2: ("released_at",)}
    for field in added[version]:
        del state[field]
    if version > 1:
        state["class_version"] = version
    return StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )


def test_a_release_records_what_it_freed_and_when_as_version_3():
    inventory = an_inventory()
    booking = place_hold(inventory, ["A-1-1", "A-1-2"], {"GA": 2})
    inventory.release(booking, "cancelled by the customer", T0)

    released = new_events(inventory)[-1]
    stored = BoxOffice(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper.to_stored_event(
        released
    )

    assert (released.seats, released.general) == (["A-1-1", "A-1-2"], {"GA": 2})
    assert released.released_at == T0
    assert json.loads(stored.state)["class_version"] == 3


def test_a_version_2_release_is_upcast_and_its_lapse_dated_by_the_holds_expiry():
    """Given a customer's hold whose release was stored as version 2 (no time of release);
    when the events are read back and replayed;
    then the lapse counts from the hold's expiry, as it did before version 3."""
    inventory = an_inventory()
    customer_id = uuid4()
    booking = place_hold(inventory, ["A-1-1"], customer_id=customer_id, until=HOLD_UNTIL)
    inventory.release(booking, "cancelled by the customer", T0)
    mapper = BoxOffice(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    stored = [mapper.to_stored_event(e) for e in new_events(inventory)]
    stored[-1] = stored_as(stored[-1], 2)

    read_back = [mapper.to_domain_event(s) for s in stored]
    rebuilt: SeatInventory = replay(read_back)

    upcast = read_back[-1]
    assert isinstance(upcast, SeatInventory.SeatsReleased)
    assert upcast.released_at is None
    assert rebuilt.lapses == {customer_id.hex: [HOLD_UNTIL]}
    assert inventory.lapses == {customer_id.hex: [T0]}


def test_a_version_1_release_is_upcast_and_replays_to_the_same_state():
    """Given an inventory whose release was stored as version 1;
    when its events are read back through the mapper and replayed;
    then the release has the version 2 shape and the state equals the original's."""
    inventory = an_inventory()
    booking = place_hold(inventory, ["A-1-1", "A-1-2"], {"GA": 2})
    inventory.release(booking, "hold expired")
    events = new_events(inventory)
    mapper = BoxOffice(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    stored = [mapper.to_stored_event(e) for e in events]
    stored[-1] = stored_as(stored[-1], 1)

    read_back = [mapper.to_domain_event(s) for s in stored]
    rebuilt: SeatInventory = replay(read_back)

    upcast = read_back[-1]
    assert type(upcast) is SeatInventory.SeatsReleased
    assert (upcast.booking_id, upcast.reason) == (booking, "hold expired")
    assert (upcast.seats, upcast.general) == (None, None)  # not recorded before version 2
    assert state_of(rebuilt) == state_of(inventory)
    assert rebuilt.is_free("A-1-1") and rebuilt.general["GA"]["taken"] == 0
