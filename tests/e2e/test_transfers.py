"""Ticket transfers over HTTP with the real servers and workers: the holder gives a ticket to
another account by e-mail (registered, or invited: theirs once they register); the old secret
is void at the door at once, the receiver sees the new ticket in `GET /me/tickets` and gets an
e-mail; at most three hand-overs per place, only while the sale is open, unless the organiser
forbids them; a refund of the buyer's booking voids the transferred ticket; the log passes the
audit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from itertools import pairwise
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from audit.verify import verify
from domain.booking import CONFIRMED, REFUNDED
from domain.door import VALID, VOID, DoorList
from domain.ids import account_id_for, door_list_id_for
from process_managers.integration_events import TICKETS, topic_names
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    book,
    open_organisers_show,
    running_system,
    topic_events,
)
from ticketblitz.embedded import StackEndpoints
from ticketblitz.stack.smtp import Mailbox

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "transfers", read_models=True) as started:
        yield started


@pytest.fixture(scope="module")
def organizer(system: SagaSystem) -> dict[str, str]:
    return system.api.new_account("organizer")


def auth(account: dict[str, str]) -> dict[str, str]:
    return {"Authorization": account["Authorization"]}


def organisers_show(system: SagaSystem, organizer: dict[str, str], **changes: Any) -> str:
    """A show of the organiser's on sale: seats in A, general admission in GA."""
    return open_organisers_show(system.api, organizer, "Transfer night", **changes)


def a_fan(system: SagaSystem, name: str) -> dict[str, str]:
    fan = system.api.new_customer()
    r = system.api.http.patch("/me", json={"name": name}, headers=auth(fan))
    assert r.status_code == 200, r.text
    return fan


def bought_ticket(
    system: SagaSystem, fan: dict[str, str], show_id: str, **request: Any
) -> tuple[str, dict[str, Any]]:
    """The fan pays for one place; (the booking, its ticket as the fan lists it)."""
    held = book(system.api, fan, show_id, payment_method=VISA, **request)
    booking_id: str = held["booking_id"]
    system.wait_for_status(booking_id, {CONFIRMED}, timeout=40)
    r = system.api.http.get(
        f"/bookings/{booking_id}/tickets",
        params={"after": system.store.head_position()},
        headers=auth(fan),
    )
    assert r.status_code == 200, r.text
    (ticket,) = r.json()["tickets"]
    return booking_id, ticket


def transfer(
    system: SagaSystem, account: dict[str, str], ticket_id: str, body: Any
) -> httpx.Response:
    return system.api.http.post(f"/tickets/{ticket_id}/transfer", json=body, headers=auth(account))


def my_tickets(system: SagaSystem, account: dict[str, str]) -> list[dict[str, Any]]:
    r = system.api.http.get(
        "/me/tickets", params={"after": system.store.head_position()}, headers=auth(account)
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def scan(
    system: SagaSystem, organizer: dict[str, str], show_id: str, secret: str
) -> httpx.Response:
    body = {"secret": secret, "gate": "North", "scan_id": uuid4().hex}
    return system.api.http.post(f"/shows/{show_id}/checkins", json=body, headers=auth(organizer))


def door_ticket_status(system: SagaSystem, show_id: str, ticket_id: str) -> str:
    door = system.store.get(door_list_id_for(UUID(show_id)), DoorList)
    ticket = door.ticket(UUID(ticket_id))
    assert ticket is not None
    return ticket.status


def transfer_mail(mailbox: Mailbox, address: str) -> EmailMessage:
    return mailbox.wait_for(
        lambda m: m["To"] == address and m["X-TicketBlitz-Event-Type"] == "ticket.transferred",
        timeout=40,
    )


def test_a_ticket_given_to_a_registered_fan_is_theirs_and_the_old_secret_is_void_at_the_door(
    system: SagaSystem, organizer: dict[str, str], mailbox: Mailbox
):
    """Given a fan's paid seat; when the fan gives it to a registered friend by e-mail;
    then the old secret is refused at the door, the friend lists a new valid ticket whose
    secret admits them, and the friend gets an e-mail (with no secret in it)."""
    show_id = organisers_show(system, organizer)
    fan = a_fan(system, "Ada Lovelace")
    friend = a_fan(system, "Grace Hopper")
    booking_id, ticket = bought_ticket(system, fan, show_id, seats=["A-1-1"])

    r = transfer(system, fan, ticket["ticket_id"], {"email": friend["email"]})

    assert r.status_code == 200, r.text
    given = r.json()
    assert given["previous_ticket_id"] == ticket["ticket_id"]
    assert given["ticket_id"] != ticket["ticket_id"]
    assert (given["seat"], given["holder_name"], given["status"]) == (
        "A-1-1",
        "Grace Hopper",
        "valid",
    )
    assert (given["invited"], given["transfers"], given["transfers_left"]) == (False, 1, 2)
    assert given["replayed"] is False
    assert "secret" not in given  # the new secret is the receiver's alone
    refused = scan(system, organizer, show_id, ticket["secret"])
    assert (refused.status_code, refused.json()["result"]) == (409, "void"), refused.text
    (received,) = my_tickets(system, friend)
    assert (received["ticket_id"], received["status"], received["holder_name"]) == (
        given["ticket_id"],
        "valid",
        "Grace Hopper",
    )
    assert (received["show_id"], received["booking_id"]) == (show_id, booking_id)
    assert received["secret"] != ticket["secret"]
    admitted = scan(system, organizer, show_id, received["secret"])
    assert admitted.status_code == 200, admitted.text
    assert admitted.json()["holder_name"] == "Grace Hopper"
    assert [(t["ticket_id"], t["status"]) for t in my_tickets(system, fan)] == [
        (ticket["ticket_id"], "void")
    ]
    mail = transfer_mail(mailbox, friend["email"])
    body = mail.get_content()
    assert "Ada Lovelace gave you a ticket" in body
    assert "seat A-1-1" in body and given["ticket_id"] in body
    assert "TB1." not in body and received["secret"] not in body
    assert mail["X-TicketBlitz-Ticket-Id"] == given["ticket_id"]


def test_a_ticket_given_to_an_unregistered_address_is_theirs_once_they_register(
    system: SagaSystem, organizer: dict[str, str], mailbox: Mailbox
):
    """Given a fan's paid GA place; when the fan gives it to an address nobody registered
    (written with capitals); then it is an invitation: the address gets an e-mail telling
    them to register, and once they register (in lower case) the ticket is in their list."""
    show_id = organisers_show(system, organizer)
    fan = a_fan(system, "Ada Lovelace")
    _, ticket = bought_ticket(system, fan, show_id, section="GA", quantity=1)
    local = f"newcomer-{uuid4().hex[:8]}"
    address = f"{local}@example.com"

    r = transfer(system, fan, ticket["ticket_id"], {"email": f"{local}@Example.COM"})

    assert r.status_code == 200, r.text
    given = r.json()
    assert (given["invited"], given["holder_name"], given["section"]) == (True, address, "GA")
    assert door_ticket_status(system, show_id, ticket["ticket_id"]) == VOID
    mail = transfer_mail(mailbox, address)
    assert f"register at TicketBlitz with this e-mail address ({address})" in mail.get_content()
    topic = topic_names(system.prefix)[TICKETS]  # the e-mail came from it: it is there
    (published,) = [
        e
        for e in topic_events(system.endpoints.kafka_bootstrap, topic)
        if e.payload["ticket_id"] == given["ticket_id"]
    ]
    assert (published.type, str(published.show_id)) == ("ticket.transferred", show_id)
    assert published.payload["holder"] == {
        "id": str(account_id_for(address)),
        "email": address,
        "name": address,
        "registered": False,
    }
    assert published.payload["previous_holder"]["name"] == "Ada Lovelace"
    assert published.payload["previous_ticket_id"] == ticket["ticket_id"]
    r = system.api.http.post(
        "/auth/register", json={"email": address, "password": PASSWORD, "name": "New Comer"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["account_id"] == str(account_id_for(address))
    newcomer = {"Authorization": f"Bearer {system.api.token_for(address, PASSWORD)}"}
    (received,) = my_tickets(system, newcomer)
    assert (received["ticket_id"], received["status"], received["section"]) == (
        given["ticket_id"],
        "valid",
        "GA",
    )


def test_a_place_changes_hands_at_most_three_times_and_a_retry_changes_nothing(
    system: SagaSystem, organizer: dict[str, str]
):
    """Given a paid seat; when it is passed on three times (each by its holder), a fourth
    hand-over is refused with 409 `transfer-limit-reached`; the same transfer sent again
    (a client's retry) answers the same ticket, `replayed`, and changes nothing."""
    show_id = organisers_show(system, organizer)
    holders = [a_fan(system, f"Holder {i}") for i in range(5)]
    _, ticket = bought_ticket(system, holders[0], show_id, seats=["A-1-2"])
    ticket_id = ticket["ticket_id"]

    for giver, receiver in pairwise(holders[:4]):
        r = transfer(system, giver, ticket_id, {"email": receiver["email"]})
        assert r.status_code == 200, r.text
        again = transfer(system, giver, ticket_id, {"email": receiver["email"]})
        assert again.status_code == 200, again.text
        assert (again.json()["ticket_id"], again.json()["replayed"]) == (
            r.json()["ticket_id"],
            True,
        )
        ticket_id = r.json()["ticket_id"]
    fourth = transfer(system, holders[3], ticket_id, {"email": holders[4]["email"]})

    assert r.json()["transfers_left"] == 0
    assert fourth.status_code == 409, fourth.text
    assert (fourth.json()["type"].rsplit("/", 1)[1], fourth.json()["limit"]) == (
        "transfer-limit-reached",
        3,
    )
    assert [t["status"] for t in my_tickets(system, holders[3])] == ["valid"]
    assert my_tickets(system, holders[4]) == []


def forbidden_at(system: SagaSystem) -> int:
    """The log's head: a query waiting for it sees everything written so far."""
    return system.store.head_position()


def test_an_organiser_may_forbid_transfers_for_a_show_and_allow_them_again(
    system: SagaSystem, organizer: dict[str, str]
):
    show_id = organisers_show(system, organizer, transfers_allowed=False)
    fan, friend = a_fan(system, "Ada Lovelace"), a_fan(system, "Grace Hopper")
    _, ticket = bought_ticket(system, fan, show_id, seats=["A-1-3"])

    forbidden = transfer(system, fan, ticket["ticket_id"], {"email": friend["email"]})
    assert forbidden.status_code == 409, forbidden.text
    assert forbidden.json()["type"].endswith("/transfers-forbidden")
    assert door_ticket_status(system, show_id, ticket["ticket_id"]) == VALID

    shown = system.api.http.get(f"/shows/{show_id}", params={"after": forbidden_at(system)})
    assert shown.json()["transfers_allowed"] is False, shown.text
    r = system.api.http.patch(
        f"/shows/{show_id}", json={"transfers_allowed": True}, headers=auth(organizer)
    )
    assert r.status_code == 200, r.text
    shown = system.api.http.get(f"/shows/{show_id}", params={"after": r.json()["position"]})
    assert shown.json()["transfers_allowed"] is True, shown.text
    allowed = transfer(system, fan, ticket["ticket_id"], {"email": friend["email"]})
    assert allowed.status_code == 200, allowed.text
    r = system.api.http.patch(
        f"/shows/{show_id}", json={"transfers_allowed": "no"}, headers=auth(organizer)
    )
    assert r.status_code == 422, r.text


def test_no_transfer_once_the_sale_closed(system: SagaSystem, organizer: dict[str, str]):
    show_id = organisers_show(system, organizer)
    fan, friend = a_fan(system, "Ada Lovelace"), a_fan(system, "Grace Hopper")
    _, ticket = bought_ticket(system, fan, show_id, seats=["A-1-4"])
    r = system.api.http.post(f"/shows/{show_id}/close-sale", headers=auth(organizer))
    assert r.status_code == 200, r.text

    refused = transfer(system, fan, ticket["ticket_id"], {"email": friend["email"]})

    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("/sale-closed")
    assert door_ticket_status(system, show_id, ticket["ticket_id"]) == VALID


def test_only_the_holder_or_an_admin_gives_a_ticket_and_never_to_its_holder(
    system: SagaSystem, organizer: dict[str, str]
):
    """Someone else's ticket is a 403 (another fan, the show's organiser, door staff); an
    unknown ticket a 404; no token a 401; giving it to the holder's own address a 422
    `transfer-to-self`; a ticket given away already a 409 `ticket-not-valid`; an admin may
    give any valid ticket."""
    show_id = organisers_show(system, organizer)
    fan, friend = a_fan(system, "Ada Lovelace"), a_fan(system, "Grace Hopper")
    _, ticket = bought_ticket(system, fan, show_id, seats=["A-1-5"])
    to_friend = {"email": friend["email"]}
    api = system.api

    refused = {
        name: transfer(system, account, ticket["ticket_id"], to_friend).status_code
        for name, account in {
            "other fan": api.new_customer(),
            "organiser": organizer,
            "door": api.new_account("door"),
        }.items()
    }
    assert refused == {"other fan": 403, "organiser": 403, "door": 403}
    assert transfer(system, fan, str(uuid4()), to_friend).status_code == 404
    no_token = api.http.post(f"/tickets/{ticket['ticket_id']}/transfer", json=to_friend)
    assert no_token.status_code == 401
    to_self = transfer(system, fan, ticket["ticket_id"], {"email": fan["email"].upper()})
    assert to_self.status_code == 422, to_self.text
    assert to_self.json()["type"].endswith("/transfer-to-self")
    assert door_ticket_status(system, show_id, ticket["ticket_id"]) == VALID

    admin = {"Authorization": api.admin()["Authorization"]}
    by_admin = transfer(system, admin, ticket["ticket_id"], to_friend)
    assert by_admin.status_code == 200, by_admin.text
    again = transfer(system, fan, ticket["ticket_id"], {"email": api.new_customer()["email"]})
    assert again.status_code == 409, again.text
    assert (again.json()["type"].rsplit("/", 1)[1], again.json()["ticket_status"]) == (
        "ticket-not-valid",
        "void",
    )


def test_a_refund_of_the_buyers_booking_voids_the_transferred_ticket(
    system: SagaSystem, organizer: dict[str, str]
):
    """The booking and its money stay the buyer's: when the buyer cancels it (refunded in
    full), the ticket they gave away is void too, and refused at the door."""
    show_id = organisers_show(system, organizer)
    fan, friend = a_fan(system, "Ada Lovelace"), a_fan(system, "Grace Hopper")
    booking_id, ticket = bought_ticket(system, fan, show_id, seats=["A-1-6"])
    r = transfer(system, fan, ticket["ticket_id"], {"email": friend["email"]})
    assert r.status_code == 200, r.text
    (received,) = my_tickets(system, friend)

    r = system.api.http.post(f"/bookings/{booking_id}/cancel", headers=auth(fan))
    assert r.status_code == 202, r.text
    system.wait_for_status(booking_id, {REFUNDED}, timeout=40)

    assert [t["status"] for t in my_tickets(system, friend)] == ["void"]
    assert door_ticket_status(system, show_id, received["ticket_id"]) == VOID
    refused = scan(system, organizer, show_id, received["secret"])
    assert (refused.status_code, refused.json()["result"]) == (409, "void"), refused.text


@pytest.fixture(scope="module")
def hostile_target(
    system: SagaSystem, organizer: dict[str, str]
) -> tuple[str, str, dict[str, str]]:
    """(show, ticket, its holder): a valid ticket the hostile bodies aim at."""
    show_id = organisers_show(system, organizer)
    fan = a_fan(system, "Ada Lovelace")
    _, ticket = bought_ticket(system, fan, show_id, seats=["A-1-7"])
    return show_id, ticket["ticket_id"], fan


@pytest.mark.parametrize(
    "body",
    [
        {"email": "friend@example.com\r\nBcc: everyone@example.com"},
        {"email": "friend@example.com\nSubject: free tickets"},
        {"email": ("x" * 10_000) + "@example.com"},
        {"email": "not an address"},
        {"email": ["friend@example.com"]},
        {"email": "friend@example.com", "holder_id": str(uuid4())},
        {},
    ],
    ids=["crlf", "lf", "10k", "no-address", "a-list", "unknown-field", "empty"],
)
def test_hostile_bodies_are_422_and_change_nothing(
    system: SagaSystem, hostile_target: tuple[str, str, dict[str, str]], body: Any
):
    show_id, ticket_id, fan = hostile_target

    r = transfer(system, fan, ticket_id, body)

    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert door_ticket_status(system, show_id, ticket_id) == VALID


def test_the_log_with_transfers_passes_the_audit(system: SagaSystem, organizer: dict[str, str]):
    """After the transfers, refusals and refund above (this system's own database), `audit
    verify` finds no violation."""
    show_id = organisers_show(system, organizer)
    fan, friend = a_fan(system, "Ada Lovelace"), a_fan(system, "Grace Hopper")
    _, ticket = bought_ticket(system, fan, show_id, seats=["A-1-8"])
    assert transfer(system, fan, ticket["ticket_id"], {"email": friend["email"]}).is_success

    report = verify(system.store, refund_grace=timedelta(minutes=15))

    assert report.violation_count == 0, [str(v) for v in report.violations]
