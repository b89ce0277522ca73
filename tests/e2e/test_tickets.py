"""Tickets over HTTP with the real servers and workers: a paid booking gets one ticket per seat
and GA place, listed with a signed secret that the deployment's public key verifies; a refund
or the show's cancellation voids them; only the booking's customer, the show's organiser and
admins see them; the log passes the audit."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.verify import verify
from domain.booking import CONFIRMED, REFUNDED
from domain.door import DoorList
from domain.ids import door_list_id_for, ticket_id_for
from tests.e2e.conftest import Api
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    book,
    open_organisers_show,
    running_system,
)
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "tickets", read_models=True) as started:
        yield started


@pytest.fixture(scope="module")
def organizer(system: SagaSystem) -> dict[str, str]:
    return system.api.new_account("organizer")


def auth(account: dict[str, str]) -> dict[str, str]:
    return {"Authorization": account["Authorization"]}


def organisers_show(api: Api, organizer: dict[str, str]) -> str:
    """A show of the organiser's on sale: seats in A, general admission in GA."""
    return open_organisers_show(api, organizer, "Ticket night", ga_tier="FLOOR")


def paid_booking(system: SagaSystem, customer: dict[str, str], show_id: str, **request: Any) -> str:
    held = book(system.api, customer, show_id, payment_method=VISA, **request)
    system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=40)
    booking_id: str = held["booking_id"]
    return booking_id


def tickets_of(
    system: SagaSystem, booking_id: str, account: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    r = system.api.http.get(
        f"/bookings/{booking_id}/tickets",
        params={"after": system.store.head_position()},
        headers=auth(account),
    )
    return r.status_code, r.json()


def verifies(system: SagaSystem, secret: str) -> tuple[UUID, UUID, str]:
    """Check a secret as an offline scanner would: with the deployment's public key only."""
    version, kid, payload, signature = secret.split(".")
    assert version == "TB1"
    signer = system.container.ticket_signer
    assert signer is not None
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(signer.public_keys()[kid]))

    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    public.verify(unb64(signature), f"{version}.{kid}.{payload}".encode())  # raises if forged
    raw = unb64(payload)
    return UUID(bytes=raw[:16]), UUID(bytes=raw[16:32]), raw[32:].decode()


def test_a_paid_booking_gets_one_valid_ticket_per_seat_with_a_verifiable_secret(
    system: SagaSystem, organizer: dict[str, str]
):
    """Given a show of the organiser's; when a fan pays for two seats;
    then two valid tickets name the seats and the fan, and each secret verifies with the
    deployment's public key and names its ticket, show and seat."""
    show_id = organisers_show(system.api, organizer)
    fan = system.api.new_customer()

    booking_id = paid_booking(system, fan, show_id, seats=["A-1-1", "A-1-2"])
    status, answer = tickets_of(system, booking_id, fan)

    assert status == 200, answer
    assert answer["booking_id"] == booking_id
    tickets = answer["tickets"]
    assert [(t["seat"], t["section"], t["status"]) for t in tickets] == [
        ("A-1-1", "A", "valid"),
        ("A-1-2", "A", "valid"),
    ]
    assert [t["ticket_id"] for t in tickets] == [
        str(ticket_id_for(UUID(booking_id), i)) for i in range(2)
    ]
    for ticket in tickets:
        assert ticket["holder_name"] == "Fan"
        assert (ticket["show_id"], ticket["booking_id"]) == (show_id, booking_id)
        assert verifies(system, ticket["secret"]) == (
            UUID(ticket["ticket_id"]),
            UUID(show_id),
            ticket["seat"],
        )
    door = system.store.get(door_list_id_for(UUID(show_id)), DoorList)
    assert [t.holder_id for t in door.tickets_of(UUID(booking_id))] == [UUID(fan["account_id"])] * 2


def test_general_admission_gets_one_ticket_per_place(system: SagaSystem, organizer: dict[str, str]):
    show_id = organisers_show(system.api, organizer)
    fan = system.api.new_customer()

    booking_id = paid_booking(system, fan, show_id, section="GA", quantity=3)
    status, answer = tickets_of(system, booking_id, fan)

    assert status == 200, answer
    assert [(t["seat"], t["section"]) for t in answer["tickets"]] == [(None, "GA")] * 3
    assert len({t["secret"] for t in answer["tickets"]}) == 3
    assert {verifies(system, t["secret"])[2] for t in answer["tickets"]} == {"GA"}


def test_an_unpaid_booking_has_no_tickets(system: SagaSystem, organizer: dict[str, str]):
    show_id = organisers_show(system.api, organizer)
    fan = system.api.new_customer()
    held = book(system.api, fan, show_id, seats=["A-1-3"])  # no payment method: stays held

    status, answer = tickets_of(system, held["booking_id"], fan)

    assert (status, answer["tickets"]) == (200, [])


def test_who_may_see_a_bookings_tickets(system: SagaSystem, organizer: dict[str, str]):
    """The booking's customer, the show's organiser and admins see them; another customer,
    another organiser and door staff get 403; an unknown booking is a 404."""
    show_id = organisers_show(system.api, organizer)
    fan = system.api.new_customer()
    booking_id = paid_booking(system, fan, show_id, seats=["A-1-4"])
    api = system.api
    admin = {**api.admin(), "account_id": ""}

    seen = {
        name: tickets_of(system, booking_id, account)[0]
        for name, account in {
            "customer": fan,
            "organiser": organizer,
            "admin": admin,
            "other customer": api.new_customer(),
            "other organiser": api.new_account("organizer"),
            "door": api.new_account("door"),
        }.items()
    }

    assert seen == {
        "customer": 200,
        "organiser": 200,
        "admin": 200,
        "other customer": 403,
        "other organiser": 403,
        "door": 403,
    }
    _, answer = tickets_of(system, booking_id, organizer)
    assert [t["seat"] for t in answer["tickets"]] == ["A-1-4"]
    assert tickets_of(system, str(uuid4()), fan)[0] == 404
    r = api.http.get(f"/bookings/{booking_id}/tickets")
    assert r.status_code == 401


def test_a_refund_voids_the_tickets(system: SagaSystem, organizer: dict[str, str]):
    """Given a paid booking with valid tickets; when its customer cancels it (refunded);
    then its tickets are void, in the door list and in the listing."""
    show_id = organisers_show(system.api, organizer)
    fan = system.api.new_customer()
    booking_id = paid_booking(system, fan, show_id, seats=["A-1-5"])

    r = system.api.http.post(f"/bookings/{booking_id}/cancel", headers=auth(fan))
    assert r.status_code == 202, r.text
    system.wait_for_status(booking_id, {REFUNDED}, timeout=40)

    status, answer = tickets_of(system, booking_id, fan)
    assert status == 200, answer
    assert [t["status"] for t in answer["tickets"]] == ["void"]
    door = system.store.get(door_list_id_for(UUID(show_id)), DoorList)
    assert door.void_ticket_ids() == [ticket_id_for(UUID(booking_id), 0)]


def test_cancelling_the_show_voids_every_ticket(system: SagaSystem, organizer: dict[str, str]):
    show_id = organisers_show(system.api, organizer)
    fans = [system.api.new_customer() for _ in range(2)]
    seated = paid_booking(system, fans[0], show_id, seats=["A-1-6", "A-1-7"])
    standing = paid_booking(system, fans[1], show_id, section="GA", quantity=2)

    r = system.api.http.post(
        f"/shows/{show_id}/cancel", json={"reason": "the band fell ill"}, headers=auth(organizer)
    )
    assert r.status_code == 200, r.text
    for booking_id in (seated, standing):
        system.wait_for_status(booking_id, {REFUNDED}, timeout=60)

    for booking_id, fan in ((seated, fans[0]), (standing, fans[1])):
        status, answer = tickets_of(system, booking_id, fan)
        assert status == 200, answer
        assert [t["status"] for t in answer["tickets"]] == ["void", "void"]


def test_the_log_with_tickets_passes_the_audit(system: SagaSystem, organizer: dict[str, str]):
    """After issuing, refunds and a cancelled show (the tests above, on this system's own
    database), `audit verify` finds no violation."""
    show_id = organisers_show(system.api, organizer)
    paid_booking(system, system.api.new_customer(), show_id, seats=["A-1-8"])

    report = verify(system.store, refund_grace=timedelta(minutes=15))

    assert report.violation_count == 0, [str(v) for v in report.violations]
    assert report.events > 0
