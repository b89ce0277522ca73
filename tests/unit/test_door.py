"""DoorList: issuing, voiding, admitting and transferring a show's tickets (given/when/then)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Snapshot

from domain.door import (
    ADMITTED,
    ALREADY_ADMITTED,
    REFUSED_VOID,
    USED,
    VALID,
    VOID,
    DoorList,
    Ticket,
)
from domain.errors import TicketNotValidError, TicketTransferLimitError, UnknownTicketError
from domain.ids import door_list_id_for, ticket_id_for, transferred_ticket_id_for
from infra.event_store import TicketBlitz
from tests.unit.factories import T0, event_names, new_events, replay, state_of

IN_MEMORY = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class SnapshottingDoor(TicketBlitz):
    name = "SnapshottingDoor"
    is_snapshotting_enabled = True


def a_door_list() -> DoorList:
    door = DoorList(show_id=uuid4())
    new_events(door)
    return door


def issued(door: DoorList, seats: list[str], general: dict[str, int] | None = None) -> UUID:
    booking_id = uuid4()
    door.issue(booking_id, uuid4(), "Ada Lovelace", seats, general or {})
    return booking_id


def test_a_door_list_per_show_has_the_derived_id():
    show_id = uuid4()

    door = DoorList(show_id=show_id)

    assert door.id == door_list_id_for(show_id)
    assert event_names(new_events(door)) == ["Created"]


def test_issuing_makes_one_ticket_per_seat_and_per_general_place():
    """Given a door list; when a booking of two seats and three GA places is issued;
    then five valid tickets with deterministic ids, seats first, name the holder."""
    door = a_door_list()
    booking_id, holder_id = uuid4(), uuid4()

    ids = door.issue(booking_id, holder_id, "Ada Lovelace", ["A-1-1", "A-1-2"], {"GA": 3})

    assert ids == [ticket_id_for(booking_id, i) for i in range(5)]
    tickets = door.tickets_of(booking_id)
    assert [(t.seat, t.section) for t in tickets] == [
        ("A-1-1", "A"),
        ("A-1-2", "A"),
        (None, "GA"),
        (None, "GA"),
        (None, "GA"),
    ]
    assert {(t.status, t.holder_id, t.holder_name) for t in tickets} == {
        (VALID, holder_id, "Ada Lovelace")
    }
    [event] = new_events(door)
    assert type(event).__name__ == "TicketsIssued"
    assert event.tickets[0] == {
        "ticket_id": ids[0],
        "seat": "A-1-1",
        "section": "A",
        "holder_name": "Ada Lovelace",
    }


def test_a_booking_is_issued_once():
    door = a_door_list()
    booking_id = issued(door, ["A-1-1"])
    new_events(door)

    again = door.issue(booking_id, uuid4(), "Someone Else", ["A-1-1"], {})

    assert again == []
    assert new_events(door) == []
    assert [t.holder_name for t in door.tickets_of(booking_id)] == ["Ada Lovelace"]


def test_voiding_a_booking_voids_its_tickets_once():
    """Given a booking's tickets, one of them used; when the booking is voided twice;
    then every ticket is void and the second voiding records nothing."""
    door = a_door_list()
    booking_id = issued(door, ["A-1-1", "A-1-2"])
    first = ticket_id_for(booking_id, 0)
    door.admit(first, "north", "scan-1", T0)
    new_events(door)

    voided = door.void_booking(booking_id, "refunded")
    again = door.void_booking(booking_id, "refunded")

    assert voided == [first, ticket_id_for(booking_id, 1)]
    assert again == []
    assert event_names(new_events(door)) == ["TicketsVoided"]
    assert {t.status for t in door.tickets_of(booking_id)} == {VOID}
    assert sorted(door.void_ticket_ids()) == sorted(voided)


def test_voiding_a_booking_without_tickets_records_nothing():
    door = a_door_list()

    assert door.void_booking(uuid4(), "cancelled") == []
    assert new_events(door) == []


def test_a_ticket_is_admitted_once_then_answers_when_and_where():
    """Given a valid ticket; when it is scanned at the north gate, then at the south gate;
    then it is admitted once, and the second scan says when and where it was admitted."""
    door = a_door_list()
    ticket_id = ticket_id_for(issued(door, ["A-1-1"]), 0)

    first = door.admit(ticket_id, "north", "scan-1", T0)
    second = door.admit(ticket_id, "south", "scan-2", T0 + timedelta(minutes=5))

    assert (first.result, first.at, first.gate, first.admitted) == (ADMITTED, T0, "north", True)
    assert first.ticket.seat == "A-1-1"
    assert (second.result, second.at, second.gate) == (ALREADY_ADMITTED, T0, "north")
    assert not second.replayed
    assert event_names(new_events(door)) == ["TicketsIssued", "TicketAdmitted"]
    ticket = door.ticket(ticket_id)
    assert ticket is not None
    assert (ticket.status, ticket.admitted_at, ticket.gate) == (USED, T0, "north")


def test_a_scanner_retrying_a_scan_hears_its_first_answer_again():
    door = a_door_list()
    ticket_id = ticket_id_for(issued(door, ["A-1-1"]), 0)
    door.admit(ticket_id, "north", "scan-1", T0)
    new_events(door)

    retried = door.admit(ticket_id, "north", "scan-1", T0 + timedelta(seconds=3))

    assert (retried.result, retried.at, retried.gate, retried.replayed) == (
        ADMITTED,
        T0,
        "north",
        True,
    )
    assert new_events(door) == []


def test_a_scan_id_reused_for_another_ticket_is_no_replay():
    door = a_door_list()
    booking_id = issued(door, ["A-1-1", "A-1-2"])
    door.admit(ticket_id_for(booking_id, 0), "north", "scan-1", T0)

    other = door.admit(ticket_id_for(booking_id, 1), "north", "scan-1", T0)

    assert (other.result, other.replayed) == (ADMITTED, False)
    assert door.scans["scan-1"] == ticket_id_for(booking_id, 0).hex


def test_a_void_ticket_is_refused_without_an_event():
    door = a_door_list()
    booking_id = issued(door, ["A-1-1"])
    door.void_booking(booking_id, "cancelled")
    new_events(door)

    answer = door.admit(ticket_id_for(booking_id, 0), "north", "scan-1", T0)

    assert answer.result == REFUSED_VOID
    assert not answer.admitted
    assert new_events(door) == []


def test_an_unknown_ticket_is_an_error():
    door = a_door_list()

    with pytest.raises(UnknownTicketError):
        door.admit(uuid4(), "north", "scan-1", T0)


def test_a_transfer_voids_the_ticket_and_issues_its_successor():
    """Given a valid ticket; when it is transferred to another holder;
    then the old ticket is void and the new one (derived id, same place) is valid."""
    door = a_door_list()
    booking_id = issued(door, ["A-1-1"])
    old_id = ticket_id_for(booking_id, 0)
    receiver = uuid4()

    new = door.transfer(old_id, receiver, "Grace Hopper")

    assert new.ticket_id == transferred_ticket_id_for(old_id)
    assert (new.status, new.seat, new.holder_id, new.holder_name, new.transfers) == (
        VALID,
        "A-1-1",
        receiver,
        "Grace Hopper",
        1,
    )
    old = door.ticket(old_id)
    assert old is not None and old.status == VOID
    assert [t.ticket_id for t in door.tickets_of(booking_id)] == [old_id, new.ticket_id]
    assert door.admit(old_id, "north", "scan-1", T0).result == REFUSED_VOID
    assert door.admit(new.ticket_id, "north", "scan-2", T0).result == ADMITTED


def test_a_place_changes_hands_at_most_max_transfers_times():
    door = a_door_list()
    ticket_id = ticket_id_for(issued(door, ["A-1-1"]), 0)
    for _ in range(2):
        ticket_id = door.transfer(ticket_id, uuid4(), "Next Holder", max_transfers=2).ticket_id

    with pytest.raises(TicketTransferLimitError):
        door.transfer(ticket_id, uuid4(), "One Too Many", max_transfers=2)


@pytest.mark.parametrize("status", [USED, VOID])
def test_only_a_valid_ticket_changes_hands(status: str):
    door = a_door_list()
    booking_id = issued(door, ["A-1-1"])
    ticket_id = ticket_id_for(booking_id, 0)
    if status == USED:
        door.admit(ticket_id, "north", "scan-1", T0)
    else:
        door.void_booking(booking_id, "refunded")

    with pytest.raises(TicketNotValidError):
        door.transfer(ticket_id, uuid4(), "Grace Hopper")


def test_voiding_a_booking_also_voids_the_tickets_it_transferred():
    door = a_door_list()
    booking_id = issued(door, ["A-1-1"])
    new = door.transfer(ticket_id_for(booking_id, 0), uuid4(), "Grace Hopper")

    voided = door.void_booking(booking_id, "refunded")

    assert voided == [new.ticket_id]


def test_replaying_the_events_rebuilds_the_same_state():
    door = DoorList(show_id=uuid4())
    booking_id = issued(door, ["A-1-1"], {"GA": 2})
    door.admit(ticket_id_for(booking_id, 0), "north", "scan-1", T0)
    door.transfer(ticket_id_for(booking_id, 1), uuid4(), "Grace Hopper")
    door.void_booking(issued(door, ["A-1-2"]), "cancelled")

    rebuilt = replay(list(door.collect_events()))

    assert state_of(rebuilt) == state_of(door)


def test_events_and_a_snapshot_of_many_tickets_survive_the_store():
    """Given a door list of 2,000 tickets, some used, void and transferred, saved and
    snapshotted through the application's transcoder; when it is loaded again;
    then the state is the same, its tickets are records, and a snapshot is taken."""
    app = SnapshottingDoor(env=IN_MEMORY)
    door = DoorList(show_id=uuid4())
    bookings = [issued(door, [], {"GA": 10}) for _ in range(200)]
    door.admit(ticket_id_for(bookings[0], 0), "north", "scan-1", T0)
    door.void_booking(bookings[1], "refunded")
    door.transfer(ticket_id_for(bookings[2], 0), uuid4(), "Grace Hopper")
    app.save(door)

    app.take_snapshot(door.id)
    reloaded: DoorList = app.repository.get(door.id)

    assert isinstance(reloaded, DoorList)
    assert state_of(reloaded) == state_of(door)
    assert all(type(t) is Ticket for t in reloaded.tickets.values())
    assert app.snapshots is not None
    [snapshot] = app.snapshots.get(door.id)
    assert isinstance(snapshot, Snapshot)
    assert snapshot.originator_version == door.version
    admitted = reloaded.ticket(ticket_id_for(bookings[0], 0))
    assert admitted is not None and admitted.admitted_at == T0
    assert reloaded.admit(ticket_id_for(bookings[0], 0), "south", "scan-9", T0).result == (
        ALREADY_ADMITTED
    )


def test_a_copy_snapshots_the_same_state_and_does_not_follow_later_scans():
    """Given a door list with an admission, saved; when it is copied and the original goes on
    admitting; then the copy's snapshot is the state at the copy, loaded as a door list."""
    app = SnapshottingDoor(env=IN_MEMORY)
    door = DoorList(show_id=uuid4())
    booking_id = issued(door, ["A-1-1", "A-1-2"])
    door.admit(ticket_id_for(booking_id, 0), "north", "scan-1", T0)
    app.save(door)

    copy = door.copy()
    door.admit(ticket_id_for(booking_id, 1), "south", "scan-2", T0)

    assert (copy.id, copy.version, copy.pending_events) == (door.id, door.version - 1, [])
    assert len(door.pending_events) == 1
    second = copy.ticket(ticket_id_for(booking_id, 1))
    assert second is not None and second.status == VALID
    assert "scan-2" not in copy.scans
    app.snapshots.put([Snapshot.take(copy)])  # type: ignore[union-attr]
    loaded: DoorList = app.repository.get(door.id)
    assert state_of(loaded) == state_of(copy)
    assert loaded.admit(ticket_id_for(booking_id, 1), "west", "scan-3", T0).result == ADMITTED
