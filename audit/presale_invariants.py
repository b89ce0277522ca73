"""The rules of presale codes (domain/presale.py), checked before each hold is applied, like
those of audit/invariants.py (verify.py installs them into its CHECKS):

- no code is used by more held or sold bookings than its `max_uses`, at any point of the log;
- during a presale (the inventory's PresaleOpened, until its sale opens) no hold without a code;
- no hold with a code the show does not have, or one revoked, not yet valid or expired when the
  hold was recorded (give or take CLOCK_SLACK: the deciding clock is read just before the
  event is stamped).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate

from audit.invariants import add_check
from domain.ids import presale_codes_id_for
from domain.inventory import SeatInventory
from domain.presale import EXPIRED, NOT_YET_VALID, PresaleCodes

CODE_OVERUSED = "code-used-beyond-max-uses"
PRESALE_HOLD_WITHOUT_CODE = "presale-hold-without-code"
HOLD_WITH_INVALID_CODE = "hold-with-invalid-code"
PRESALE_RULES = (CODE_OVERUSED, PRESALE_HOLD_WITHOUT_CODE, HOLD_WITH_INVALID_CODE)
CLOCK_SLACK = timedelta(seconds=1)


class Findings(Protocol):
    """What these checks use of audit.invariants.Invariants."""

    aggregates: dict[UUID, Aggregate]

    def report(self, position: int, stream_id: UUID | None, rule: str, message: str) -> None: ...


Check = Callable[[Any, int, Any, Any], None]


def _held(audit: Findings, position: int, e: Any, inventory: SeatInventory) -> None:
    code = getattr(e, "code", None)  # holds recorded before codes carry none
    presale = getattr(inventory, "presale_open", False) and not inventory.on_sale
    if code is None:
        if presale:
            audit.report(
                position,
                e.originator_id,
                PRESALE_HOLD_WITHOUT_CODE,
                f"booking {e.booking_id} held seats during the presale without a code",
            )
        return
    codes = audit.aggregates.get(presale_codes_id_for(inventory.show_id))
    known = codes.codes.get(code) if isinstance(codes, PresaleCodes) else None
    if known is None:
        audit.report(
            position,
            e.originator_id,
            HOLD_WITH_INVALID_CODE,
            f"booking {e.booking_id} held seats with code {code}, which the show does not have",
        )
        return
    reason = known.why_not_valid(e.timestamp)
    if reason == EXPIRED and known.why_not_valid(e.timestamp - CLOCK_SLACK) is None:
        reason = None
    if reason == NOT_YET_VALID and known.why_not_valid(e.timestamp + CLOCK_SLACK) is None:
        reason = None
    if reason is not None:
        audit.report(
            position,
            e.originator_id,
            HOLD_WITH_INVALID_CODE,
            f"booking {e.booking_id} held seats with code {code}, which was {reason}",
        )
    uses = getattr(inventory, "code_uses", {}).get(code, 0) + 1
    if uses > known.max_uses:
        audit.report(
            position,
            e.originator_id,
            CODE_OVERUSED,
            f"booking {e.booking_id} is use {uses} of code {code}, which allows {known.max_uses}",
        )


PRESALE_CHECKS: dict[type, Check] = {SeatInventory.SeatsHeld: _held}


def install(checks: dict[type, Check]) -> None:
    """Add these rules to an audit's CHECKS (after the rules already there for the same event);
    idempotent."""
    for kind, check in PRESALE_CHECKS.items():
        add_check(checks, kind, check)
