"""Presale codes in the pure domain: PresaleCodes (definitions), the inventory's presale phase
and its count of each code's uses, the show's presale opening time. Given events, when a
command, then events or an error."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from domain.errors import InvalidShowError, SaleNotOpenError, ShowStatusError
from domain.presale import (
    EXPIRED,
    NOT_YET_VALID,
    REVOKED,
    UNKNOWN,
    WRONG_TIER,
    CodeExistsError,
    CodeInvalidError,
    CodeNotFoundError,
    CodeRequiredError,
    CodeTerms,
    CodeUsedUpError,
    InvalidCodesError,
    PresaleCodes,
)
from domain.show import ShowEdit
from tests.unit.factories import (
    STD_CENTS,
    T0,
    a_show,
    an_inventory,
    event_names,
    new_events,
    replay,
)

TIERS = {"STD", "FLOOR"}


def some_codes(*codes: str, **terms: object) -> PresaleCodes:
    presale = PresaleCodes(presale_codes_id=uuid4(), show_id=uuid4())
    if codes:
        presale.create_codes(list(codes), CodeTerms(**terms), TIERS, T0)  # type: ignore[arg-type]
    return presale


# --- PresaleCodes ---


def test_creating_codes_records_them_with_their_terms():
    presale = some_codes()
    new_events(presale)

    presale.create_codes(
        ["FANCLUB1", "FANCLUB2"],
        CodeTerms(max_uses=3, tiers=["STD"], discount_percent=20),
        TIERS,
        T0,
    )

    [created] = new_events(presale)
    assert event_names([created]) == ["CodesCreated"]
    assert (created.codes, created.max_uses, created.tiers) == (
        ["FANCLUB1", "FANCLUB2"],
        3,
        ["STD"],
    )
    assert created.discount_percent == 20 and created.price_cents is None
    assert presale.admit("FANCLUB2", T0).max_uses == 3


def test_codes_replay_to_the_same_state():
    presale = some_codes("FANCLUB1", max_uses=2, price_cents=1_000)
    presale.revoke("FANCLUB1")
    rebuilt = replay(new_events(presale))
    assert rebuilt.codes == presale.codes


@pytest.mark.parametrize(
    ("codes", "terms"),
    [
        (["fanclub"], CodeTerms(max_uses=1)),  # not normalised (the command upper-cases)
        (["AB"], CodeTerms(max_uses=1)),  # too short
        (["A" * 33], CodeTerms(max_uses=1)),  # too long
        (["FAN\x00CLUB"], CodeTerms(max_uses=1)),  # a control character
        (["FANCLUB", "FANCLUB"], CodeTerms(max_uses=1)),  # twice
        (["FANCLUB"], CodeTerms(max_uses=0)),
        (["FANCLUB"], CodeTerms(max_uses=1, discount_percent=10, price_cents=100)),
        (["FANCLUB"], CodeTerms(max_uses=1, discount_percent=101)),
        (["FANCLUB"], CodeTerms(max_uses=1, tiers=["VIP"])),  # no such tier
        (["FANCLUB"], CodeTerms(max_uses=1, valid_until=T0)),  # expired already
        (
            ["FANCLUB"],
            CodeTerms(max_uses=1, valid_from=T0 + timedelta(days=2), valid_until=T0 + timedelta(1)),
        ),
    ],
)
def test_codes_that_break_a_rule_are_refused_and_nothing_is_recorded(
    codes: list[str], terms: CodeTerms
):
    presale = some_codes()
    new_events(presale)
    with pytest.raises(InvalidCodesError):
        presale.create_codes(codes, terms, TIERS, T0)
    assert new_events(presale) == [] and presale.codes == {}


def test_a_code_the_show_has_already_is_refused_and_none_of_the_others_created():
    presale = some_codes("FANCLUB1", max_uses=1)
    new_events(presale)
    with pytest.raises(CodeExistsError) as refused:
        presale.create_codes(["NEWCODE1", "FANCLUB1"], CodeTerms(max_uses=1), TIERS, T0)
    assert refused.value.codes == ["FANCLUB1"]
    assert new_events(presale) == [] and "NEWCODE1" not in presale.codes


def test_a_code_says_why_it_admits_no_hold():
    presale = some_codes(
        "LATERCODE", max_uses=1, valid_from=T0 + timedelta(hours=1), valid_until=T0 + timedelta(2)
    )
    presale.create_codes(["REVOKED1"], CodeTerms(max_uses=1), TIERS, T0)
    presale.revoke("REVOKED1")

    for code, now, reason in [
        ("NOSUCHCODE", T0, UNKNOWN),
        ("REVOKED1", T0, REVOKED),
        ("LATERCODE", T0, NOT_YET_VALID),
        ("LATERCODE", T0 + timedelta(days=2), EXPIRED),
    ]:
        with pytest.raises(CodeInvalidError) as refused:
            presale.admit(code, now)
        assert refused.value.reason == reason, code
    assert presale.admit("LATERCODE", T0 + timedelta(hours=1)).code == "LATERCODE"


def test_revoking_twice_records_once_and_an_unknown_code_is_not_found():
    presale = some_codes("FANCLUB1", max_uses=1)
    new_events(presale)
    assert presale.revoke("FANCLUB1") is True
    assert presale.revoke("FANCLUB1") is False
    assert event_names(new_events(presale)) == ["CodeRevoked"]
    with pytest.raises(CodeNotFoundError):
        presale.revoke("NOSUCHCODE")


def test_a_code_of_some_tiers_refuses_tickets_of_another():
    code = some_codes("FLOORONLY", max_uses=1, tiers=["FLOOR"]).admit("FLOORONLY", T0)
    code.check_tiers({"FLOOR"})
    with pytest.raises(CodeInvalidError) as refused:
        code.check_tiers({"FLOOR", "STD"})
    assert refused.value.reason == WRONG_TIER
    assert "not for tier STD" in str(refused.value)


def test_a_discount_or_a_price_per_ticket_changes_the_amount():
    presale = some_codes("TENOFF", max_uses=1, discount_percent=10)
    presale.create_codes(["FIXED"], CodeTerms(max_uses=1, price_cents=2_000), TIERS, T0)
    presale.create_codes(["PLAIN"], CodeTerms(max_uses=1), TIERS, T0)
    assert presale.admit("TENOFF", T0).amount(2 * STD_CENTS, 2) == 9_000
    assert presale.admit("TENOFF", T0).amount(333, 1) == 300  # 299.7, half up
    assert presale.admit("FIXED", T0).amount(2 * STD_CENTS, 2) == 4_000
    assert presale.admit("PLAIN", T0).amount(2 * STD_CENTS, 2) == 2 * STD_CENTS


# --- the inventory: presale phase and uses ---


def test_during_the_presale_only_a_hold_with_a_code_is_accepted():
    inventory = an_inventory(on_sale=False)
    with pytest.raises(SaleNotOpenError):
        inventory.hold(uuid4(), uuid4(), ["A-1-1"], {}, until=T0, code="FANCLUB1", code_max_uses=1)
    new_events(inventory)

    assert inventory.open_presale() is True
    assert event_names(new_events(inventory)) == ["PresaleOpened"]
    with pytest.raises(CodeRequiredError):
        inventory.hold(uuid4(), uuid4(), ["A-1-1"], {}, until=T0)
    inventory.hold(uuid4(), uuid4(), ["A-1-1"], {}, until=T0, code="FANCLUB1", code_max_uses=1)
    [held] = new_events(inventory)
    assert held.code == "FANCLUB1"

    inventory.open_sale()  # the general sale: no code needed
    assert inventory.presale_open is False and inventory.open_presale() is False
    inventory.hold(uuid4(), uuid4(), ["A-1-2"], {}, until=T0)


def test_closing_the_sale_ends_the_presale_too():
    inventory = an_inventory(on_sale=False)
    inventory.open_presale()
    inventory.close_sale()
    assert inventory.presale_open is False
    with pytest.raises(SaleNotOpenError):
        inventory.hold(uuid4(), uuid4(), ["A-1-1"], {}, until=T0, code="FANCLUB1", code_max_uses=1)


def test_a_code_is_used_by_at_most_max_uses_bookings_and_a_lapse_gives_its_use_back():
    inventory = an_inventory()
    first = uuid4()
    inventory.hold(first, uuid4(), ["A-1-1"], {}, until=T0, code="TWICE", code_max_uses=2)
    inventory.hold(uuid4(), uuid4(), [], {"GA": 2}, until=T0, code="TWICE", code_max_uses=2)
    assert inventory.code_uses == {"TWICE": 2}
    new_events(inventory)

    with pytest.raises(CodeUsedUpError):
        inventory.hold(uuid4(), uuid4(), ["A-1-3"], {}, until=T0, code="TWICE", code_max_uses=2)
    assert new_events(inventory) == []

    inventory.release(first, "hold expired", at=T0)  # unsold: the use comes back
    assert inventory.code_uses == {"TWICE": 1}
    inventory.hold(uuid4(), uuid4(), ["A-1-3"], {}, until=T0, code="TWICE", code_max_uses=2)
    assert inventory.code_uses == {"TWICE": 2}


def test_a_sold_booking_keeps_its_use_when_refunded():
    inventory = an_inventory()
    booking = uuid4()
    inventory.hold(booking, uuid4(), ["A-1-1"], {}, until=T0, code="ONCE", code_max_uses=1)
    inventory.sell(booking)
    inventory.release(booking, "refunded", at=T0)
    assert inventory.code_uses == {"ONCE": 1}


def test_uses_replay_to_the_same_state():
    inventory = an_inventory()
    lapsed = uuid4()
    inventory.hold(lapsed, uuid4(), ["A-1-1"], {}, until=T0, code="ONCE", code_max_uses=3)
    inventory.hold(uuid4(), uuid4(), ["A-1-2"], {}, until=T0, code="ONCE", code_max_uses=3)
    inventory.release(lapsed, "hold expired", at=T0)
    rebuilt = replay(new_events(inventory))
    assert rebuilt.code_uses == inventory.code_uses == {"ONCE": 1}


def test_the_sections_of_a_codes_tiers():
    inventory = an_inventory()
    assert inventory.sections_of_tiers({"FLOOR"}) == ["GA"]
    assert inventory.sections_of_tiers({"STD", "FLOOR"}) == ["A", "GA"]
    assert inventory.tiers_of(["A-1-1"], {"GA": 1}) == {"STD", "FLOOR"}


# --- the show's presale opening time ---


def test_a_presale_opens_before_the_sale():
    opens = T0 + timedelta(days=2)
    a_show(sale_opens_at=opens, presale_opens_at=opens - timedelta(days=1))
    with pytest.raises(InvalidShowError, match="presale must open before the sale"):
        a_show(sale_opens_at=opens, presale_opens_at=opens)
    with pytest.raises(InvalidShowError, match="before the sale closes"):
        a_show(presale_opens_at=T0 + timedelta(days=31))  # the show starts at T0 + 30 days


def test_an_edit_moves_the_presale_and_keeps_it_before_the_sale():
    opens = T0 + timedelta(days=2)
    show = a_show(sale_opens_at=opens, presale_opens_at=opens - timedelta(days=1))
    new_events(show)

    show.edit(ShowEdit(presale_opens_at=opens - timedelta(hours=1)), now=T0)
    [moved] = new_events(show)
    assert event_names([moved]) == ["PresaleWindowChanged"]
    assert moved.presale_opens_at == show.presale_opens_at == opens - timedelta(hours=1)

    with pytest.raises(InvalidShowError):  # the sale cannot open before its presale
        show.edit(ShowEdit(sale_opens_at=opens - timedelta(hours=2)), now=T0)
    with pytest.raises(InvalidShowError, match="in the future"):
        show.edit(ShowEdit(presale_opens_at=T0 - timedelta(hours=1)), now=T0)
    show.edit(ShowEdit(presale_opens_at=None), now=T0)
    assert show.presale_opens_at is None
    assert new_events(show)[-1].presale_opens_at is None


def test_the_presale_may_open_only_when_due_and_before_the_window_closes():
    opens = T0 + timedelta(days=2)
    presale_at = opens - timedelta(days=1)
    show = a_show(sale_opens_at=opens, presale_opens_at=presale_at)
    with pytest.raises(ShowStatusError):
        show.check_presale_may_open(presale_at - timedelta(seconds=1))
    show.check_presale_may_open(presale_at)
    show.cancel("storm")
    with pytest.raises(ShowStatusError):
        show.check_presale_may_open(presale_at)
