"""The rules of waiting lists (domain/waitlist.py), checked before each event is applied, like
those of audit/invariants.py (`install` adds them to its CHECKS; audit/verify.py calls it):

- an entry gets at most one offer (OfferMade only for a waiting entry);
- no offer skips an earlier waiting entry that the same free tickets could serve: at the
  moment of the offer, the tickets free then plus the offer's own could not serve any entry
  that joined before it and was still waiting;
- no public hold of tickets a waiting entry could take: a hold that is not an entry's offer
  (offers have ids derived from their entry) never takes a ticket in the scope of a waiting
  entry that the free tickets could serve (its section; any section for an entry that takes
  any).

Servability is counted (`FreeCounts`), as best-available decides it: free seats of a section
(scattered ones too), places left in a GA section, and for "anywhere" either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID
from weakref import WeakKeyDictionary

from audit.invariants import add_check
from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from domain.waitlist import (
    WAITING,
    FreeCounts,
    WaitingList,
    offer_booking_id_for,
    section_of,
)

OFFERED_TWICE = "waitlist-entry-offered-twice"
OFFER_SKIPPED_ENTRY = "waitlist-offer-skipped-entry"
PUBLIC_HOLD_OWED = "public-hold-of-waitlist-seat"

WAITLIST_RULES = (OFFERED_TWICE, OFFER_SKIPPED_ENTRY, PUBLIC_HOLD_OWED)

Check = Callable[[Any, int, Any, Any], None]


class _Lists:
    """What one audit knows of waiting lists: the inventory of each show that has one."""

    def __init__(self) -> None:
        self.by_inventory: dict[UUID, UUID] = {}  # inventory stream -> its show's waiting list


_KNOWN: WeakKeyDictionary[Any, _Lists] = WeakKeyDictionary()


def _lists(audit: Any) -> _Lists:
    found = _KNOWN.get(audit)
    if found is None:
        found = _KNOWN[audit] = _Lists()
    return found


def _joined(audit: Any, position: int, e: Any, waiting_list: Any) -> None:
    if isinstance(waiting_list, WaitingList):
        _lists(audit).by_inventory[inventory_id_for(waiting_list.show_id)] = waiting_list.id


def _offer_made(audit: Any, position: int, e: Any, waiting_list: Any) -> None:
    if not isinstance(waiting_list, WaitingList):
        return
    entry = waiting_list.entries.get(e.entry_id.hex)
    if entry is None or entry.status != WAITING:
        status = "unknown" if entry is None else entry.status
        audit.report(
            position,
            e.originator_id,
            OFFERED_TWICE,
            f"offer {e.booking_id} made to entry {e.entry_id}, which is {status}"
            + ("" if entry is None or entry.booking is None else f" (offer {entry.booking})"),
        )
        return
    inventory = audit.aggregates.get(inventory_id_for(waiting_list.show_id))
    if not isinstance(inventory, SeatInventory):
        return
    claim = inventory.claims.get(e.booking_id.hex)  # the offer's hold, once applied
    counts = FreeCounts.of(
        inventory,
        () if claim is None else claim.seats,
        None if claim is None else claim.general,
    )
    for key in waiting_list.waiting:
        if key == e.entry_id.hex:
            return
        earlier = waiting_list.entries[key]
        if counts.serves(earlier.quantity, earlier.section):
            where = "anywhere" if earlier.section is None else f"in section {earlier.section}"
            audit.report(
                position,
                e.originator_id,
                OFFER_SKIPPED_ENTRY,
                f"offer {e.booking_id} made to entry {e.entry_id} while entry {UUID(key)}, "
                f"waiting since {earlier.joined_at.isoformat()} for {earlier.quantity} "
                f"{where}, could be served",
            )
            return


def _seats_held(audit: Any, position: int, e: Any, inventory: Any) -> None:
    list_id = _lists(audit).by_inventory.get(e.originator_id)
    if list_id is None:
        return
    waiting_list = audit.aggregates.get(list_id)
    if not isinstance(waiting_list, WaitingList) or not waiting_list.waiting:
        return
    sections = {section_of(s) for s in e.seats} | set(e.general)
    owed_to = waiting_list.owed(FreeCounts.of(inventory), sections)
    if owed_to is None:
        return
    if any(e.booking_id == offer_booking_id_for(UUID(k)) for k in waiting_list.waiting):
        return  # a waiting entry's offer
    taken = ", ".join([*e.seats, *(f"{n} in {code}" for code, n in e.general.items())])
    audit.report(
        position,
        e.originator_id,
        PUBLIC_HOLD_OWED,
        f"booking {e.booking_id} held {taken} while waiting entry {owed_to} could take them",
    )


WAITLIST_CHECKS: dict[type, Check] = {
    WaitingList.EntryJoined: _joined,  # type: ignore[attr-defined]
    WaitingList.OfferMade: _offer_made,  # type: ignore[attr-defined]
    SeatInventory.SeatsHeld: _seats_held,
}


def install(checks: dict[type, Check]) -> None:
    """Add these rules to an audit's CHECKS (after the rules already there for the same event);
    idempotent."""
    for kind, check in WAITLIST_CHECKS.items():
        add_check(checks, kind, check)
