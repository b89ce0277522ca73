"""The audit's presale rules, against logs forged to break them: no code used beyond its
max_uses, no hold during a presale without a code, no hold with an unknown, revoked or expired
code. A log the domain itself wrote passes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from audit.invariants import CHECKS, Invariants
from audit.presale_invariants import (
    CODE_OVERUSED,
    HOLD_WITH_INVALID_CODE,
    PRESALE_HOLD_WITHOUT_CODE,
    install,
)
from domain.ids import presale_codes_id_for
from domain.inventory import SeatInventory
from domain.presale import CodeTerms, PresaleCodes
from tests.unit.factories import HOLD_UNTIL, an_inventory, new_events

install(CHECKS)  # as audit/verify.py does


def codes_for(inventory: SeatInventory, *codes: str, **terms: Any) -> PresaleCodes:
    presale = PresaleCodes(
        presale_codes_id=presale_codes_id_for(inventory.show_id), show_id=inventory.show_id
    )
    terms.setdefault("max_uses", 1)
    presale.create_codes(list(codes), CodeTerms(**terms), {"STD", "FLOOR"}, datetime.now(UTC))
    return presale


def audited(*aggregates: Any) -> Invariants:
    invariants = Invariants()
    events = [e for a in aggregates for e in new_events(a)]
    for position, event in enumerate(events, start=1):
        invariants.apply(position, event)
    return invariants


def forged_hold(inventory: SeatInventory, seat: str, code: str | None) -> None:
    """A hold the domain would refuse, written anyway."""
    inventory.trigger_event(
        SeatInventory.SeatsHeld,
        booking_id=uuid4(),
        customer_id=uuid4(),
        seats=[seat],
        general={},
        until=HOLD_UNTIL,
        code=code,
    )


def rules(invariants: Invariants) -> list[str]:
    return [v.rule for v in invariants.violations]


def test_a_log_of_legal_presale_holds_passes():
    inventory = an_inventory(on_sale=False)
    presale = codes_for(inventory, "FANCLUB1", max_uses=2)
    inventory.open_presale()
    lapsed = uuid4()
    inventory.hold(
        lapsed, uuid4(), ["A-1-1"], {}, until=HOLD_UNTIL, code="FANCLUB1", code_max_uses=2
    )
    inventory.hold(
        uuid4(), uuid4(), ["A-1-2"], {}, until=HOLD_UNTIL, code="FANCLUB1", code_max_uses=2
    )
    inventory.release(lapsed, "hold expired")
    inventory.hold(
        uuid4(), uuid4(), ["A-1-3"], {}, until=HOLD_UNTIL, code="FANCLUB1", code_max_uses=2
    )
    inventory.open_sale()
    inventory.hold(uuid4(), uuid4(), ["A-1-4"], {}, until=HOLD_UNTIL)

    assert audited(presale, inventory).violations == []


def test_a_code_used_beyond_max_uses_is_reported():
    inventory = an_inventory()
    presale = codes_for(inventory, "ONCEONLY")
    forged_hold(inventory, "A-1-1", "ONCEONLY")
    forged_hold(inventory, "A-1-2", "ONCEONLY")

    assert rules(audited(presale, inventory)) == [CODE_OVERUSED]


def test_a_presale_hold_without_a_code_is_reported():
    inventory = an_inventory(on_sale=False)
    inventory.open_presale()
    forged_hold(inventory, "A-1-1", None)

    assert rules(audited(inventory)) == [PRESALE_HOLD_WITHOUT_CODE]


def test_holds_with_unknown_or_revoked_codes_are_reported():
    inventory = an_inventory()
    presale = codes_for(inventory, "REVOKED1", max_uses=5)
    presale.revoke("REVOKED1")
    forged_hold(inventory, "A-1-1", "NOSUCHCODE")
    forged_hold(inventory, "A-1-2", "REVOKED1")
    invariants = audited(presale, inventory)
    assert rules(invariants) == [HOLD_WITH_INVALID_CODE] * 2
    assert "revoked" in invariants.violations[1].message
