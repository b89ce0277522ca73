"""The door scanner page in a real browser (Chromium, a phone-sized screen) against the real
stack: door staff pick the show, enter a paid ticket's code (the camera's fallback) and read
ADMITTED with the seat; the same ticket again reads ALREADY IN. The first scan is sent through
a connection that drops: the page keeps it queued and sends it again with the same scan id,
and the ticket is admitted once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from uuid import uuid4

import pytest
from playwright.sync_api import Route, expect

from domain.booking import CONFIRMED
from tests.e2e.saga_support import VISA, SagaSystem, book, in_days, running_system
from tests.e2e.web.browser import chromium, logged_in, screenshot
from ticketblitz.embedded import StackEndpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "door-web", read_models=True) as started:
        yield started


def show_with_a_paid_ticket(system: SagaSystem) -> tuple[str, str, dict[str, Any]]:
    """An organiser's show on sale, and a fan's paid ticket for seat A-1-1: the show's
    title and id, and the ticket (with the secret its QR code holds)."""
    organizer = system.api.new_account("organizer")
    auth = {"Authorization": organizer["Authorization"]}
    title = f"Door night {uuid4().hex[:6]}"
    body = {
        "title": title,
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": in_days(20).isoformat(),
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 10}]}
        ],
    }
    r = system.api.http.post("/shows", json=body, headers=auth)
    assert r.status_code == 201, r.text
    show_id: str = r.json()["show_id"]
    r = system.api.http.post(f"/shows/{show_id}/open-sale", headers=auth)
    assert r.status_code == 200, r.text
    fan = system.api.new_customer()
    held = book(system.api, fan, show_id, seats=["A-1-1"], payment_method=VISA)
    system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=40)
    r = system.api.http.get(
        f"/bookings/{held['booking_id']}/tickets",
        params={"after": system.store.head_position()},
        headers={"Authorization": fan["Authorization"]},
    )
    assert r.status_code == 200, r.text
    return title, show_id, r.json()["tickets"][0]


def test_the_door_admits_a_ticket_once_through_a_flaky_connection(system: SagaSystem) -> None:
    """Given a paid ticket and door staff on a phone; when they scan it while the network is
    down, the network comes back, and they scan it again; then the page first says the scan
    is waiting for the network, then ADMITTED with the seat (every retry carried the same
    scan id), then ALREADY IN with the gate; the server admitted it once."""
    title, show_id, ticket = show_with_a_paid_ticket(system)
    door = system.api.new_account("door")
    base = system.api.server_url
    sent: list[str] = []
    network = {"up": False}

    def flaky(route: Route) -> None:
        sent.append(parse_qs(route.request.post_data or "")["scan_id"][0])
        if network["up"]:
            route.continue_()
        else:
            route.abort("internetdisconnected")  # the request never reaches the server

    with chromium() as browser:
        page = logged_in(browser, base, door["email"], "/door", **PHONE)
        page.click(f"a:has-text('{title}')")
        expect(page.locator("#verdict-word")).to_have_text("READY")
        page.route("**/door/shows/*/scan", flaky)

        page.fill("#gate", "North")
        page.fill("#manual-secret", ticket["secret"])
        page.click("button:has-text('Check ticket')")
        expect(page.locator("#queue-state")).to_contain_text("waiting for the network")
        network["up"] = True
        expect(page.locator("#verdict-word")).to_have_text("ADMITTED")
        expect(page.locator("#verdict-seat")).to_have_text("Section A, row 1, seat 1")
        expect(page.locator("#verdict")).to_have_class("verdict verdict-admitted")
        expect(page.locator("#queue-state")).to_have_text("")
        screenshot(page, "door-admitted.png")

        page.fill("#manual-secret", ticket["secret"])
        page.click("button:has-text('Check ticket')")
        expect(page.locator("#verdict-word")).to_have_text("ALREADY IN")
        expect(page.locator("#verdict-seat")).to_have_text("Section A, row 1, seat 1")
        expect(page.locator("#verdict-detail")).to_contain_text("North")
        expect(page.locator("#verdict")).to_have_class("verdict verdict-already")
        screenshot(page, "door-already-in.png")

    *first, second = sent
    assert len(first) >= 2, sent  # lost at least once, then sent again
    assert set(first) == {first[0]}, sent  # every retry is the same scan (its scan id)
    assert second != first[0]  # a new scan of the same ticket
    stats = system.api.http.get(
        f"/shows/{show_id}/checkins/stats",
        params={"after": system.store.head_position()},
        headers=system.api.admin(),
    )
    assert stats.status_code == 200, stats.text
    assert (stats.json()["admitted"], stats.json()["by_gate"]) == (1, {"North": 1})
