"""The organiser console in a real browser (Chromium) against the real stack with its workers:
an organiser schedules a show through the form, uploads a poster, opens the sale after the
confirmation step, blocks a seat by clicking it on the map, and watches the dashboard count a
sale that a fan made through the API (the figures refresh without reloading)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect

from domain.booking import CONFIRMED
from tests.e2e.saga_support import VISA, SagaSystem, book, in_days, running_system, wait_until
from tests.e2e.web.browser import chromium, logged_in, screenshot
from ticketblitz.embedded import StackEndpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "organizer-web", read_models=True) as started:
        yield started


def png(width: int = 120, height: int = 80) -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def seat_status(system: SagaSystem, show_id: str, seat: str) -> str | None:
    r = system.api.http.get(f"/shows/{show_id}/seats")
    if r.status_code != 200:
        return None
    for section in r.json()["sections"]:
        for row in section["rows"]:
            for each in row["seats"]:
                if each["seat"] == seat:
                    status: str = each["status"]
                    return status
    return None


def test_an_organiser_schedules_opens_blocks_and_watches_a_sale(system: SagaSystem) -> None:
    """Given an organiser; when they schedule a show in the console, upload its poster, open
    its sale (confirming), block seat A-1-1 by clicking it, and a fan buys A-2-1 through the
    API; then the show is on sale with A-1-1 blocked and its poster served, and the dashboard
    shows one ticket sold and its revenue without being reloaded."""
    organizer = system.api.new_account("organizer")
    base = system.api.server_url
    starts = in_days(30).strftime("%Y-%m-%dT20:00")
    title = "Web Console Jazz Night"

    with chromium() as browser:
        page = logged_in(browser, base, organizer["email"], "/organizer")
        page.click("text=Schedule a show")
        page.fill("input[name=title]", title)
        page.fill("textarea[name=description]", "A quartet, two sets.")
        page.fill("input[name=category]", "jazz")
        page.fill("input[name=venue]", "Blue Hall")
        page.fill("input[name=starts_at]", starts)
        page.fill("input[name=time_zone]", "Europe/Berlin")
        page.fill("textarea[name=price_tiers]", "STD 45.00")
        page.fill("textarea[name=sections]", "A STD 3x8")
        page.click("button:has-text('Schedule the show')")
        expect(page.get_by_text("The show is scheduled.")).to_be_visible()
        found = re.search(r"/organizer/shows/([0-9a-f-]{36})", page.url)
        assert found, page.url
        show_id = found[1]

        page.set_input_files(
            "input[name=poster]", {"name": "poster.png", "mimeType": "image/png", "buffer": png()}
        )
        page.click("button:has-text('Upload poster')")
        expect(page.get_by_text("The poster was uploaded.")).to_be_visible()

        page.click("a:has-text('Open the sale')")
        expect(page.get_by_role("heading", name="Open the sale now?")).to_be_visible()
        page.click("button:has-text('Open the sale')")
        expect(page.get_by_text("The sale is open.")).to_be_visible()

        seat = page.locator("#blockmap [data-seat='A-1-1']")
        seat.click()
        expect(page.locator("#picked-seats")).to_have_value("A-1-1")
        page.fill("input[name=reason]", "house seats")
        page.click("button:has-text('Block seats')")
        expect(page.get_by_text("The seats are off sale.")).to_be_visible()
        # The map follows the read model live: the seat turns blocked without a reload.
        expect(page.locator("#blockmap [data-seat='A-1-1']")).to_have_class(
            re.compile(r"\bblocked\b")
        )

        page.goto(f"{base}/organizer")
        row = page.locator("#dashboard-rows tr", has_text=title)
        expect(row.locator("[data-figure=sold]")).to_have_text("0")

        fan = system.api.new_customer()
        held: dict[str, Any] = book(system.api, fan, show_id, seats=["A-2-1"], payment_method=VISA)
        system.wait_for_status(held["booking_id"], {CONFIRMED}, timeout=40)

        # No reload: the dashboard refreshes its figures by itself.
        expect(row.locator("[data-figure=sold]")).to_have_text("1", timeout=30_000)
        expect(row.locator("[data-figure=revenue]")).to_have_text("45.00 EUR")
        expect(row.locator("svg.chart")).to_be_visible()
        screenshot(page, "organizer-dashboard.png")

        page.goto(f"{base}/organizer/shows/{show_id}")
        expect(page.locator("dd[data-figure=sold]")).to_have_text("1")
        screenshot(page, "organizer-show.png")

    assert wait_until(lambda: seat_status(system, show_id, "A-1-1") == "blocked", 10, "blocked")
    details = system.api.http.get(f"/shows/{show_id}").json()
    assert (details["title"], details["status"], details["time_zone"]) == (
        title,
        "on_sale",
        "Europe/Berlin",
    )
    poster = httpx.get(f"{system.api.base_url}/shows/{show_id}/poster", timeout=10)
    assert poster.status_code == 200
    assert poster.headers["content-type"] == "image/webp"
