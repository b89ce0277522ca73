"""Who may give a ticket to whom, and when (domain/transfers.py), and the organiser's switch
`transfers_allowed` on a show (given/when/then; no servers)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from domain.door import VALID, DoorList, DoorTicket
from domain.errors import (
    NotTicketHolderError,
    TransferSaleClosedError,
    TransfersForbiddenError,
    TransferToSelfError,
)
from domain.ids import account_id_for
from domain.show import Show, ShowEdit
from domain.transfers import check_giver, check_receiver, check_transfers_open
from tests.unit.factories import T0, a_show, event_names, new_events, replay

HOLDER = uuid4()


def a_ticket(holder: UUID = HOLDER) -> DoorTicket:
    door = DoorList(show_id=uuid4())
    (ticket_id,) = door.issue(uuid4(), holder, "Ada Lovelace", ["A-1-1"], {})
    ticket = door.ticket(ticket_id)
    assert ticket is not None and ticket.status == VALID
    return ticket


def on_sale(**overrides: object) -> Show:
    show = a_show(**overrides)
    show.open_sale()
    return show


def test_the_holder_gives_their_ticket_to_someone_else():
    ticket = a_ticket()

    check_giver(ticket, HOLDER, actor_is_admin=False)
    check_receiver(ticket, uuid4())


def test_someone_elses_ticket_is_refused_unless_an_admin_gives_it():
    ticket = a_ticket()

    with pytest.raises(NotTicketHolderError):
        check_giver(ticket, uuid4(), actor_is_admin=False)
    check_giver(ticket, uuid4(), actor_is_admin=True)  # a support desk's action


def test_a_ticket_is_not_given_to_its_own_holder():
    holder = account_id_for("ada@example.com")
    ticket = a_ticket(holder)

    with pytest.raises(TransferToSelfError):
        check_receiver(ticket, account_id_for(" ADA@example.com "))


def test_transfers_are_open_while_the_sale_is():
    check_transfers_open(on_sale(), T0)


def test_a_show_whose_organiser_forbids_transfers_refuses_them():
    show = on_sale(transfers_allowed=False)

    with pytest.raises(TransfersForbiddenError):
        check_transfers_open(show, T0)


@pytest.mark.parametrize("sale", ["never opened", "closed", "cancelled"])
def test_no_transfer_unless_the_sale_is_open(sale: str):
    show = a_show()
    if sale != "never opened":
        show.open_sale()
        if sale == "closed":
            show.close_sale()
        else:
            show.cancel("the band fell ill")

    with pytest.raises(TransferSaleClosedError):
        check_transfers_open(show, T0)


def test_transfers_end_when_the_sale_window_closes_even_before_the_worker_records_it():
    """Given a show on sale whose window closes at a time; when a transfer is asked at that
    time (the sale-window worker has not closed the sale yet); then it is refused."""
    closes = T0 + timedelta(days=2)
    show = on_sale(sale_closes_at=closes)

    check_transfers_open(show, closes - timedelta(seconds=1))
    with pytest.raises(TransferSaleClosedError):
        check_transfers_open(show, closes)


def test_transfers_end_at_the_start_of_a_show_still_on_sale():
    show = on_sale()

    with pytest.raises(TransferSaleClosedError):
        check_transfers_open(show, show.starts_at)


def test_a_show_allows_transfers_unless_scheduled_without():
    allowed = a_show()
    forbidden = a_show(transfers_allowed=False)

    assert allowed.transfers_allowed is True
    assert event_names(new_events(allowed)) == ["Scheduled"]
    assert forbidden.transfers_allowed is False
    events = new_events(forbidden)
    assert event_names(events) == ["Scheduled", "TransfersAllowedChanged"]
    assert replay(events).transfers_allowed is False


def test_the_organiser_switches_transfers_by_an_edit_and_the_same_value_records_nothing():
    show = a_show()
    new_events(show)

    show.edit(ShowEdit(transfers_allowed=True), now=T0)
    assert new_events(show) == []
    show.edit(ShowEdit(transfers_allowed=False), now=T0)
    events = new_events(show)
    assert event_names(events) == ["TransfersAllowedChanged"]
    assert show.transfers_allowed is False
    show.edit(ShowEdit(transfers_allowed=True), now=T0)
    assert show.transfers_allowed is True


def test_a_show_from_before_the_switch_allows_transfers():
    """A show stored before `transfers_allowed` existed has no such attribute in its state
    (events or snapshot): it allows transfers."""
    show = a_show()
    old = replay(new_events(show))
    vars(old).pop("transfers_allowed", None)

    assert old.transfers_allowed is True
    check_transfers_open(_opened(old), T0)


def _opened(show: Show) -> Show:
    show.open_sale()
    return show
