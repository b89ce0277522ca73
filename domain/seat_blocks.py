"""The organiser's controls over what a show sells: blocked seats and general-admission capacity.

A blocked seat (a production hold, a broken seat, a house seat) is off sale: neither held, sold
nor offered by best-available until it is unblocked. A seat a booking holds or bought cannot be
blocked: it is its customer's. A GA section's capacity may be raised, or lowered down to the
tickets already held or sold in it, never below.

Blocking is idempotent: seats already blocked keep their first reason and are reported as
unchanged; unblocking a seat that is not blocked (free, held or sold) changes nothing. So a
retried request never fails nor records anything twice.

These are the decisions (checks, what would change) and the state changes that SeatInventory's
commands and events (domain/inventory.py) delegate to: functions over its state.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.best_available import row_key
from domain.errors import (
    CapacityBelowTakenError,
    InvalidShowError,
    NotGeneralAdmissionError,
    SeatsTakenError,
    UnknownSeatsError,
    UnknownSectionError,
)
from domain.seat_state import SeatState
from domain.seatmap import GENERAL, MAX_SEATS_PER_SHOW

MAX_REASON_LENGTH = 200


def seats_to_block(inventory: SeatState, seats: Sequence[str], reason: str) -> list[str]:
    """The seats a block would newly take off sale (in the order asked, once each); raises
    if one is unknown or taken, or the reason is blank or too long."""
    if not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        raise InvalidShowError(f"a block needs a reason of 1 to {MAX_REASON_LENGTH} characters")
    wanted = _known(inventory, seats)
    holder, claims = inventory.holder, inventory.claims
    taken = [s for s in wanted if s in holder]
    if taken:
        sold = [s for s in taken if claims[holder[s]].sold]
        raise SeatsTakenError([s for s in taken if s not in sold], sold)
    return [s for s in wanted if s not in inventory.blocked]


def seats_to_unblock(inventory: SeatState, seats: Sequence[str]) -> list[str]:
    """The blocked seats among `seats` (in the order asked, once each); raises if one is unknown."""
    return [s for s in _known(inventory, seats) if s in inventory.blocked]


def _known(inventory: SeatState, seats: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(seats))
    unknown = [s for s in wanted if s not in inventory.seat_tier]
    if unknown:
        raise UnknownSeatsError(unknown)
    return wanted


def apply_block(inventory: SeatState, seats: Sequence[str], reason: str) -> None:
    for seat in seats:
        if seat in inventory.blocked:
            continue  # a log that blocks twice blocks once
        inventory.blocked[seat] = reason
        inventory.row_free[row_key(seat)] -= 1
        # row_run_bound stays an upper bound: blocking only shortens runs


def apply_unblock(inventory: SeatState, seats: Sequence[str]) -> None:
    for seat in seats:
        if inventory.blocked.pop(seat, None) is None:
            continue
        key = row_key(seat)
        inventory.row_free[key] += 1
        inventory.row_run_bound[key] = inventory.row_free[key]
    inventory.first_open_row = 0  # the memos of full rows no longer hold


def capacity_changes(inventory: SeatState, section: str, capacity: int) -> bool:
    """Whether setting the GA section's capacity changes it; raises if the section is unknown
    or seated, or the capacity is below what is taken or beyond what a show may sell."""
    kind = inventory.section_kind.get(section)
    if kind is None:
        raise UnknownSectionError(section)
    if kind != GENERAL:
        raise NotGeneralAdmissionError(section)
    if capacity < 0:
        raise InvalidShowError(f"section {section} needs a capacity of at least 0")
    ga = inventory.general[section]
    if capacity < ga.taken:
        sold = sum(c.general.get(section, 0) for c in inventory.claims.values() if c.sold)
        raise CapacityBelowTakenError(section, capacity, ga.taken - sold, sold)
    others = sum(g.capacity for code, g in inventory.general.items() if code != section)
    if len(inventory.seat_tier) + others + capacity > MAX_SEATS_PER_SHOW:
        raise InvalidShowError(f"a show sells at most {MAX_SEATS_PER_SHOW} tickets")
    return capacity != ga.capacity
