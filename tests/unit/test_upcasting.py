"""Schema evolution: SeatInventory.SeatsReleased version 2 records what it released; events
stored as version 1 (before the change) are upcast when read and still replay correctly.

Uses the library's mapper with in-memory persistence: the same JSON as the PostgreSQL store."""

from __future__ import annotations

import json
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent

from domain.inventory import SeatInventory
from tests.unit.factories import an_inventory, new_events, place_hold, replay, state_of


class BoxOffice(Application[UUID]):
    name = "UpcastingBoxOffice"


def stored_as_version_1(stored: StoredEvent) -> StoredEvent:
    """What the code before version 2 wrote: no `seats`, no `general`, no class version."""
    state = json.loads(stored.state)
    for added in ("seats", "general", "class_version"):
        del state[added]
    return StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )


def test_a_release_records_what_it_freed_as_version_2():
    inventory = an_inventory()
    booking = place_hold(inventory, ["A-1-1", "A-1-2"], {"GA": 2})
    inventory.release(booking, "cancelled by the customer")

    released = new_events(inventory)[-1]
    stored = BoxOffice(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper.to_stored_event(
        released
    )

    assert (released.seats, released.general) == (["A-1-1", "A-1-2"], {"GA": 2})
    assert json.loads(stored.state)["class_version"] == 2


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
    stored[-1] = stored_as_version_1(stored[-1])

    read_back = [mapper.to_domain_event(s) for s in stored]
    rebuilt: SeatInventory = replay(read_back)

    upcast = read_back[-1]
    assert type(upcast) is SeatInventory.SeatsReleased
    assert (upcast.booking_id, upcast.reason) == (booking, "hold expired")
    assert (upcast.seats, upcast.general) == (None, None)  # not recorded before version 2
    assert state_of(rebuilt) == state_of(inventory)
    assert rebuilt.is_free("A-1-1") and rebuilt.general["GA"]["taken"] == 0
