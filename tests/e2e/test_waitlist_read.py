"""The waiting list's read side over HTTP, with the real servers and the workers: the fan's
entries (`GET /me/waitlist`), the organiser's view (`GET /shows/{id}/waitlist`: length, demand
by section, the entries in order; nobody else's), the offer's booking (`offer: true`), the offer
e-mail (once, also when the relay publishes everything again) and the `waitlist.*` events on
the broker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from commands.venue_time import local_time_of
from infra.log_follower import positions_of
from process_managers.integration_events import WAITLIST, IntegrationEvent, topic_names
from process_managers.kafka_relay import rewind
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    book,
    in_days,
    running_system,
    topic_events,
    wait_until,
)
from tests.faults.support import group_lag
from ticketblitz.embedded import Mailbox, StackEndpoints

pytestmark = pytest.mark.integration

ZONE = "Europe/Berlin"
OFFERED = "waitlist.offered"


@dataclass
class Sold:
    """A sold-out show of an organiser's, three fans on its waiting list (the first in A, the
    second anywhere, the third in B) and the holds that sold it out."""

    system: SagaSystem
    show_id: str
    title: str
    owner: dict[str, str]
    fans: list[dict[str, str]]
    entries: list[str]
    holds: dict[str, str]  # seat -> its booking (of the fan who sold the show out)
    holder: dict[str, str]


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "waitlist-read", read_models=True) as started:
        yield started


@pytest.fixture(scope="module")
def sold(system: SagaSystem) -> Sold:
    api = system.api
    owner = api.new_account("organizer")
    title = f"Waiting Night {uuid4().hex[:6]}"
    body = {
        "title": title,
        "category": "rock",
        "venue": "Velvet Room",
        "starts_at": in_days(30).isoformat(),
        "time_zone": ZONE,
        "currency": "EUR",
        "price_tiers": [
            {"code": "STD", "price_cents": 4500},
            {"code": "PREM", "price_cents": 9000},
        ],
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 2}]},
            {"code": "B", "kind": "seated", "tier": "PREM", "rows": [{"label": "1", "seats": 1}]},
        ],
    }
    r = api.http.post("/shows", json=body, headers=owner)
    assert r.status_code == 201, r.text
    show_id = r.json()["show_id"]
    r = api.http.post(f"/shows/{show_id}/open-sale", headers=owner)
    assert r.status_code == 200, r.text
    holder = api.new_customer()
    holds = {
        seat: book(api, holder, show_id, seats=[seat])["booking_id"]
        for seat in ("A-1-1", "A-1-2", "B-1-1")
    }
    fans = [api.new_customer() for _ in range(3)]
    entries = []
    requests = ({"quantity": 1, "section": "A"}, {"quantity": 1}, {"quantity": 1, "section": "B"})
    for fan, request in zip(fans, requests, strict=True):
        r = api.http.post(f"/shows/{show_id}/waitlist", json=request, headers=fan)
        assert r.status_code == 201, r.text
        entries.append(r.json()["entry_id"])
    return Sold(system, show_id, title, owner, fans, entries, holds, holder)


def get(system: SagaSystem, path: str, who: dict[str, str], **params: Any) -> Any:
    r = system.api.http.get(path, params=params, headers={"Authorization": who["Authorization"]})
    assert r.status_code == 200, r.text
    return r.json()


def my_entry(sold: Sold, fan: int, status: str) -> dict[str, Any]:
    """The fan's entry, once the read model shows it in `status`."""

    def found() -> dict[str, Any] | None:
        [entry] = get(sold.system, "/me/waitlist", sold.fans[fan])["items"]
        return entry if entry["status"] == status else None

    return wait_until(found, 30, f"fan {fan + 1}'s entry to be {status}")


def cancel(sold: Sold, booking_id: str, who: dict[str, str]) -> None:
    r = sold.system.api.http.post(
        f"/bookings/{booking_id}/cancel", headers={"Authorization": who["Authorization"]}
    )
    assert r.status_code == 202, r.text


def offers_to(mailbox: Mailbox, address: str) -> list[EmailMessage]:
    return [
        m
        for m in mailbox.messages()
        if m["To"] == address and m["X-TicketBlitz-Event-Type"] == OFFERED
    ]


def waitlist_events(sold: Sold) -> list[IntegrationEvent]:
    topic = topic_names(sold.system.prefix)[WAITLIST]
    bootstrap = sold.system.endpoints.kafka_bootstrap
    return [e for e in topic_events(bootstrap, topic) if str(e.show_id) == sold.show_id]


def mails_settled(system: SagaSystem) -> None:
    """Until the relay published every event and the notifier committed every waiting-list
    record: no offer e-mail about what happened so far is still to come."""
    bootstrap, group = system.endpoints.kafka_bootstrap, system.settings.kafka_notifier_group
    assert bootstrap is not None
    topic = topic_names(system.prefix)[WAITLIST]

    def done() -> bool:
        head = system.store.head_position()
        with system.store.connection() as conn:
            relayed = positions_of(conn).get("kafka-relay", (0, None))[0]
        return relayed >= head and group_lag(bootstrap, group, topic) == 0

    wait_until(done, 60, "the notifier to handle every waiting-list event")


def test_each_fan_sees_their_place_in_the_queue(sold: Sold):
    positions = [my_entry(sold, fan, "waiting")["position"] for fan in range(3)]

    assert positions == [1, 2, 3]
    entry = my_entry(sold, 1, "waiting")
    assert entry["entry_id"] == sold.entries[1]
    assert entry["show_id"] == sold.show_id
    assert entry["show_title"] == sold.title
    assert (entry["quantity"], entry["section"]) == (1, None)
    assert entry["booking_id"] is None and entry["expires_at"] is None
    # someone who never joined has no entries
    assert get(sold.system, "/me/waitlist", sold.holder)["items"] == []


def test_the_organiser_sees_length_demand_by_section_and_the_entries_in_order(sold: Sold):
    answer = get(sold.system, f"/shows/{sold.show_id}/waitlist", sold.owner)

    assert (answer["length"], answer["offered"], answer["currency"]) == (3, 0, "EUR")
    assert answer["by_section"] == [
        # anywhere: priced at the cheapest tier (STD, 45.00)
        {"section": None, "entries": 1, "tickets": 1, "revenue_cents": 4500},
        {"section": "A", "entries": 1, "tickets": 1, "revenue_cents": 4500},
        {"section": "B", "entries": 1, "tickets": 1, "revenue_cents": 9000},
    ]
    assert answer["demand"] == {"entries": 3, "tickets": 3, "revenue_cents": 18000}
    assert [e["entry_id"] for e in answer["entries"]] == sold.entries
    assert [e["position"] for e in answer["entries"]] == [1, 2, 3]
    assert [e["customer_email"] for e in answer["entries"]] == [f["email"] for f in sold.fans]
    admin = {"Authorization": sold.system.api.admin()["Authorization"]}
    assert get(sold.system, f"/shows/{sold.show_id}/waitlist", admin)["length"] == 3


def test_only_the_organiser_and_admins_see_a_show_s_list(sold: Sold):
    api = sold.system.api
    other = api.new_account("organizer")
    path = f"/shows/{sold.show_id}/waitlist"

    for who in (other, sold.fans[0]):
        r = api.http.get(path, headers={"Authorization": who["Authorization"]})
        assert r.status_code == 403, r.text
        assert r.json()["type"].endswith("forbidden")
    assert api.http.get(path).status_code == 401
    missing = api.http.get(f"/shows/{uuid4()}/waitlist", headers=api.admin())
    assert missing.status_code == 404, missing.text


def test_an_offer_is_a_booking_of_the_fan_s_the_mail_says_until_when_and_comes_once(
    sold: Sold, mailbox: Mailbox
):
    system, fan = sold.system, sold.fans[0]
    cancel(sold, sold.holds["A-1-1"], sold.holder)  # a seat of A comes back: the first fan's

    entry = my_entry(sold, 0, "offered")
    booking_id = entry["booking_id"]
    assert entry["position"] is None and entry["expires_at"] is not None
    booking = get(system, f"/bookings/{booking_id}", fan)
    assert (booking["offer"], booking["customer_id"], booking["seats"]) == (
        True,
        fan["account_id"],
        ["A-1-1"],
    )
    assert [b["offer"] for b in get(system, "/me/bookings", fan)["items"]] == [True]
    assert my_entry(sold, 1, "waiting")["position"] == 2  # the offered one is still ahead
    answer = get(system, f"/shows/{sold.show_id}/waitlist", sold.owner)
    assert (answer["length"], answer["offered"]) == (2, 1)
    assert answer["demand"] == {"entries": 2, "tickets": 2, "revenue_cents": 13500}

    mail = mailbox.wait_for(
        lambda m: m["To"] == fan["email"] and m["X-TicketBlitz-Event-Type"] == OFFERED, 30
    )
    until = local_time_of(entry["expires_at"], ZONE)
    assert mail["Subject"] == f"Seats for {sold.title} are yours until {until}"
    assert until.split(", ")[1].split()[1] in {"CET", "CEST"}  # on the venue's clock
    assert mail["X-TicketBlitz-Booking-Id"] == booking_id
    body = mail.get_content()
    assert f"/api/v1/bookings/{booking_id}/pay" in body
    assert "seat A-1-1" in body and "45.00 EUR" in body
    mails_settled(system)
    assert len(offers_to(mailbox, fan["email"])) == 1

    # The relay publishes everything again (as after a broker lost its data): no second mail.
    rewind(system.store, 0)
    mails_settled(system)
    assert len(offers_to(mailbox, fan["email"])) == 1
    assert offers_to(mailbox, sold.fans[1]["email"]) == []  # nobody else was offered seats


def test_paid_left_and_lapsed_entries_and_their_events_on_the_broker(sold: Sold):
    system = sold.system
    first = my_entry(sold, 0, "offered")
    r = system.api.http.post(
        f"/bookings/{first['booking_id']}/pay",
        json={"payment_method": VISA},
        headers={"Authorization": sold.fans[0]["Authorization"]},
    )
    assert r.status_code == 200, r.text
    assert my_entry(sold, 0, "fulfilled")["booking_id"] == first["booking_id"]

    r = system.api.http.delete(
        f"/waitlist/{sold.entries[1]}", headers={"Authorization": sold.fans[1]["Authorization"]}
    )
    assert r.status_code == 204, r.text
    assert my_entry(sold, 1, "left")["position"] is None
    assert my_entry(sold, 2, "waiting")["position"] == 1

    cancel(sold, sold.holds["B-1-1"], sold.holder)  # B comes back: the third fan's
    third = my_entry(sold, 2, "offered")
    cancel(sold, third["booking_id"], sold.fans[2])  # who lets it go
    lapsed = my_entry(sold, 2, "lapsed")
    assert lapsed["reason"]

    answer = get(system, f"/shows/{sold.show_id}/waitlist", sold.owner)
    assert answer["statuses"] == {
        "waiting": 0,
        "offered": 0,
        "fulfilled": 1,
        "lapsed": 1,
        "left": 1,
    }
    assert (answer["length"], answer["demand"]["tickets"], answer["by_section"]) == (0, 0, [])

    expected = [
        ("waitlist.joined", sold.entries[0]),
        ("waitlist.joined", sold.entries[1]),
        ("waitlist.joined", sold.entries[2]),
        ("waitlist.offered", sold.entries[0]),
        ("waitlist.offer_accepted", sold.entries[0]),
        ("waitlist.left", sold.entries[1]),
        ("waitlist.offered", sold.entries[2]),
        ("waitlist.offer_lapsed", sold.entries[2]),
    ]

    def published() -> list[IntegrationEvent] | None:
        unique = list({e.event_id: e for e in waitlist_events(sold)}.values())  # at least once
        unique.sort(key=lambda e: e.position)
        seen = [(e.type, e.payload["entry_id"]) for e in unique]
        return unique if seen == expected else None

    events = wait_until(published, 60, "the waiting list's events on the broker")
    offered = events[3]
    assert offered.booking_id == UUID(first["booking_id"])
    assert offered.payload["customer"]["email"] == sold.fans[0]["email"]
    assert offered.payload["expires_at"] is not None
    assert (offered.payload["seats"], offered.payload["amount_cents"]) == (["A-1-1"], 4500)
    assert offered.payload["status"] == "offered"
    assert [e.payload["status"] for e in events[4:]] == ["fulfilled", "left", "offered", "lapsed"]
    assert events[1].booking_id is None and events[1].payload["section"] is None
    assert events[2].payload["section"] == "B"
    assert events[7].booking_id == UUID(third["booking_id"])
