"""Schema evolution: SeatInventory.SeatsReleased version 2 records what it released, version 3
when; events stored as version 1 or 2 (before the changes) are upcast when read and still
replay correctly. SeatInventory snapshots of version 3 keep rows, claims and GA sections as
records; a snapshot stored by the code before (version 2, or 1) is upcast when loaded.

Uses the library's mapper with in-memory persistence: the same JSON as the PostgreSQL store."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent

from domain.errors import CustomerTicketLimitError, LapsedHoldLimitError
from domain.inventory import (
    DEFAULT_TICKETS_PER_CUSTOMER,
    Claim,
    GeneralSection,
    LapsedHoldLimit,
    Row,
    SeatInventory,
)
from infra.event_store import TicketBlitz
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
    assert rebuilt.is_free("A-1-1") and rebuilt.general["GA"].taken == 0


# --- snapshots stored by the code before class version 3 ---

# A SeatInventory snapshot as the code of class version 2 stored it (captured from that code,
# re-indented): show 2, seats A-1-1..A-2-4, GA of 10 at a cap of 6 per customer. Booking 0x51
# of customer 0xF bought A-1-2, A-1-3 and 2 GA; booking 0x4E of customer 0xE holds A-1-1 and
# 1 GA until T0+20min; an earlier hold of 0xE on A-2-1 lapsed at T0+10min.
VERSION_2_SNAPSHOT = """\
{
  "timestamp": {"_type_": "datetime_iso", "_data_": "2026-12-05T12:19:28.293056+00:00"},
  "topic": "domain.inventory:SeatInventory",
  "state": {
    "_created_on": {"_type_": "datetime_iso", "_data_": "2026-12-05T12:19:28.291028+00:00"},
    "_modified_on": {"_type_": "datetime_iso", "_data_": "2026-12-05T12:19:28.291967+00:00"},
    "show_id": {"_type_": "uuid_hex", "_data_": "00000000000000000000000000000002"},
    "starts_at": {"_type_": "datetime_iso", "_data_": "2031-05-31T18:00:00+00:00"},
    "customer_limit": 6,
    "currency": "EUR",
    "price_tiers": {"STD": 5000, "FLOOR": 3000},
    "on_sale": true,
    "seat_tier": {
      "A-1-1": "STD",
      "A-1-2": "STD",
      "A-1-3": "STD",
      "A-1-4": "STD",
      "A-2-1": "STD",
      "A-2-2": "STD",
      "A-2-3": "STD",
      "A-2-4": "STD"
    },
    "rows": [
      ["A", "A-1", ["A-1-1", "A-1-2", "A-1-3", "A-1-4"]],
      ["A", "A-2", ["A-2-1", "A-2-2", "A-2-3", "A-2-4"]]
    ],
    "row_free": {"A-1": 1, "A-2": 4},
    "general": {"GA": {"tier": "FLOOR", "capacity": 10, "taken": 3}},
    "section_kind": {"A": "seated", "GA": "general"},
    "row_run_bound": {"A-1": 4, "A-2": 4},
    "first_open_row": 0,
    "holder": {
      "A-1-2": "00000000000000000000000000000051",
      "A-1-3": "00000000000000000000000000000051",
      "A-1-1": "0000000000000000000000000000004e"
    },
    "claims": {
      "00000000000000000000000000000051": {
        "customer": "0000000000000000000000000000000f",
        "seats": ["A-1-2", "A-1-3"],
        "general": {"GA": 2},
        "until": {"_type_": "datetime_iso", "_data_": "2031-05-01T18:10:00+00:00"},
        "sold": true
      },
      "0000000000000000000000000000004e": {
        "customer": "0000000000000000000000000000000e",
        "seats": ["A-1-1"],
        "general": {"GA": 1},
        "until": {"_type_": "datetime_iso", "_data_": "2031-05-01T18:20:00+00:00"},
        "sold": false
      }
    },
    "customer_tickets": {
      "0000000000000000000000000000000f": 4,
      "0000000000000000000000000000000e": 2
    },
    "lapses": {
      "0000000000000000000000000000000e": [
        {"_type_": "datetime_iso", "_data_": "2031-05-01T18:10:00+00:00"}
      ]
    },
    "class_version": 2
  }
}
"""
INVENTORY_ID = UUID(int=0x1)
FAN, OTHER = UUID(int=0xF), UUID(int=0xE)
SOLD, HELD = UUID(int=0x51), UUID(int=0x4E)


def a_store() -> TicketBlitz:
    return TicketBlitz(
        env={"PERSISTENCE_MODULE": "eventsourcing.popo", "IS_SNAPSHOTTING_ENABLED": "y"}
    )


def loaded(store: TicketBlitz, snapshot: dict[str, Any]) -> SeatInventory:
    """The inventory the store loads from this snapshot record (and any events after it)."""
    assert store.snapshots is not None
    record = json.dumps(snapshot).encode()
    store.snapshots.recorder.insert_events(
        [StoredEvent(INVENTORY_ID, 7, "eventsourcing.domain:Snapshot", record)]
    )
    inventory: SeatInventory = store.repository.get(INVENTORY_ID)
    assert isinstance(inventory, SeatInventory)
    return inventory


def as_version_1(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The same snapshot as the code before version 2 stored it: no class version, start or
    cap, and (the oldest) neither the memo of full rows nor lapses."""
    state = dict(snapshot["state"])
    for key in ("class_version", "starts_at", "customer_limit", "first_open_row", "lapses"):
        del state[key]
    return {**snapshot, "state": state}


def test_a_version_2_snapshot_is_upcast_to_records():
    inventory = loaded(a_store(), json.loads(VERSION_2_SNAPSHOT))

    assert inventory.version == 7
    assert inventory.rows == [
        Row("A", "A-1", ["A-1-1", "A-1-2", "A-1-3", "A-1-4"]),
        Row("A", "A-2", ["A-2-1", "A-2-2", "A-2-3", "A-2-4"]),
    ]
    assert inventory.general == {"GA": GeneralSection("FLOOR", 10, 3)}
    assert inventory.claims == {
        SOLD.hex: Claim(FAN.hex, ["A-1-2", "A-1-3"], {"GA": 2}, HOLD_UNTIL, sold=True),
        HELD.hex: Claim(OTHER.hex, ["A-1-1"], {"GA": 1}, T0 + timedelta(minutes=20)),
    }
    assert (inventory.customer_limit, inventory.starts_at) == (6, T0 + timedelta(days=30))
    assert inventory.lapses == {OTHER.hex: [HOLD_UNTIL]}
    assert inventory.free_count() == 5 + 7


def test_an_inventory_loaded_from_a_version_2_snapshot_holds_sells_and_releases():
    """Given the inventory loaded from the old snapshot; when seats are held, the open hold
    sold and the bought booking refunded; then the rules hold as before and the store
    reloads the same state from the old snapshot and the new events."""
    store = a_store()
    inventory = loaded(store, json.loads(VERSION_2_SNAPSHOT))
    now = T0 + timedelta(minutes=12)

    seats, general = inventory.choose_best_available(2)
    assert (seats, general) == (["A-2-2", "A-2-3"], {})
    booking = uuid4()
    inventory.hold(booking, OTHER, seats, {"GA": 2}, until=now + timedelta(minutes=10), now=now)
    with pytest.raises(CustomerTicketLimitError):  # 2 + 4 tickets: the show's cap of 6
        inventory.hold(uuid4(), OTHER, ["A-1-4"], {}, until=HOLD_UNTIL, now=now)
    inventory.sell(HELD)
    inventory.release(SOLD, "refunded", at=now)

    assert inventory.is_free("A-1-2") and not inventory.is_free("A-2-2")
    assert inventory.general["GA"].taken == 3 - 2 + 2
    assert inventory.tickets_of(FAN) == 0 and inventory.tickets_of(OTHER) == 6
    assert inventory.claim_of(HELD) == Claim(
        OTHER.hex, ["A-1-1"], {"GA": 1}, T0 + timedelta(minutes=20), sold=True
    )
    assert inventory.expired_holds(T0 + timedelta(hours=1)) == [booking]
    assert inventory.lapses == {OTHER.hex: [HOLD_UNTIL]}  # a refund is no lapse
    store.save(inventory)
    assert state_of(store.repository.get(INVENTORY_ID)) == state_of(inventory)


def test_an_upcast_inventory_snapshots_as_version_5_and_loads_the_same():
    store = a_store()
    inventory = loaded(store, json.loads(VERSION_2_SNAPSHOT))
    inventory.release(HELD, "hold expired", at=T0 + timedelta(minutes=20))
    store.save(inventory)

    store.take_snapshot(INVENTORY_ID)

    assert store.snapshots is not None
    [stored] = store.snapshots.recorder.select_events(INVENTORY_ID, desc=True, limit=1)
    state = json.loads(stored.state)["state"]
    assert state["class_version"] == 5
    assert (state["blocked"], state["ever_held"]) == ({}, True)  # upcast_v3_v4: conservative
    assert state["rows"][0] == {
        "_type_": "inventory_row",
        "_data_": ["A", "A-1", ["A-1-1", "A-1-2", "A-1-3", "A-1-4"]],
    }
    assert state["claims"][SOLD.hex]["_type_"] == "inventory_claim"
    assert state["general"]["GA"]["_type_"] == "inventory_general_section"
    assert state_of(store.repository.get(INVENTORY_ID)) == state_of(inventory)


def test_a_version_1_snapshot_gets_the_default_cap_and_starts_counting_lapses():
    inventory = loaded(a_store(), as_version_1(json.loads(VERSION_2_SNAPSHOT)))

    assert (inventory.customer_limit, inventory.starts_at) == (DEFAULT_TICKETS_PER_CUSTOMER, None)
    assert (inventory.lapses, inventory.first_open_row) == ({}, 0)
    assert inventory.claim_of(HELD) == Claim(
        OTHER.hex, ["A-1-1"], {"GA": 1}, T0 + timedelta(minutes=20)
    )
    once_an_hour = LapsedHoldLimit(times=1, window=timedelta(hours=1))
    later = T0 + timedelta(minutes=20)
    inventory.hold(uuid4(), OTHER, ["A-2-1"], {}, later, lapsed_limit=once_an_hour, now=T0)
    inventory.release(HELD, "hold expired", at=later)

    assert inventory.lapses == {OTHER.hex: [later]}
    with pytest.raises(LapsedHoldLimitError):
        inventory.hold(uuid4(), OTHER, ["A-2-2"], {}, later, lapsed_limit=once_an_hour, now=later)
