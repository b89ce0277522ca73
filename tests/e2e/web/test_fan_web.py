"""The fans' web pages in a real browser (headless Chromium driven by Playwright) against a
real stack with its workers (the payment saga, ticket issuing) and the Stripe emulator, whose
Stripe.js stand-in serves the card form: register, pick seats on the SVG map, pay, see the
QR tickets; two browsers racing for one seat; a declined card; and what must stay harmless
(a title with markup, a form posted without its CSRF token).

Screenshots of the show page, the checkout and the tickets go to docs/screenshots/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.saga_support import SagaSystem, running_system, show_starting, wait_until
from ticketblitz.embedded import StackEndpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[3]
SHOTS = REPO / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery"
VISA = "4242424242424242"
DECLINED_ON_CHARGE = "4000000000000341"  # the emulator declines the charge, not the card
DECLINED_CARD = "4000000000000002"  # the emulator refuses the card itself
# Waits for what the server does (a payment, a projection) are bounded generously: two shared
# cores can be slow. The race's 2 s bound is its own, explicit.
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("fan-web")
    with running_system(endpoints, data_dir, read_models=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    yield context.new_page()
    context.close()


def new_show(system: SagaSystem, title: str | None = None, seats: int = 12, rows: int = 4) -> str:
    from datetime import UTC, datetime, timedelta

    changes = {"title": title} if title else {}
    starts = datetime.now(UTC) + timedelta(days=30)
    return show_starting(system.api, starts, seats=seats, rows=rows, **changes)


def register(page: Page, base: str, next_path: str) -> str:
    """A new fan registers through the page and lands on `next_path`."""
    email = f"fan-{uuid4().hex[:10]}@example.com"
    page.goto(f"{base}/register?next={next_path}")
    page.fill("input[name=name]", "Robin Fan")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(f"{base}{next_path}")
    return email


def seat(page: Page, seat_id: str) -> Any:
    return page.locator(f'[data-seat="{seat_id}"]')


def live(page: Page) -> None:
    """The page's seat map has its live feed open."""
    expect(page.locator("svg.seatmap")).to_have_attribute("data-live", "open", timeout=10_000)


def fill_card(page: Page, number: str) -> None:
    """The Stripe.js stand-in's Elements card field: number, month, year, CVC, postcode."""
    field = page.locator("#card-element")
    field.locator("input[placeholder=number]").fill(number)
    field.locator("input[placeholder=exp_month]").fill("12")
    field.locator("input[placeholder=exp_year]").fill("34")
    field.locator("input[placeholder=cvc]").fill("123")
    field.locator("input[placeholder=postal_code]").fill("75001")


def seat_status(system: SagaSystem, show_id: str, seat_id: str) -> str:
    # As of everything written so far (no cached answer older than that).
    head = system.store.head_position()
    r = system.api.http.get(f"/shows/{show_id}/seats", params={"after": head})
    assert r.status_code == 200, r.text
    for section in r.json()["sections"]:
        for row in section["rows"]:
            for each in row["seats"]:
                if each["seat"] == seat_id:
                    return str(each["status"])
    raise AssertionError(f"no seat {seat_id}")


def test_1_a_fan_registers_picks_two_seats_pays_and_gets_two_qr_tickets(
    system: SagaSystem, page: Page
):
    base = system.api.server_url
    show_id = new_show(system, title="Quartet under the stars")
    register(page, base, f"/shows/{show_id}")
    live(page)

    # One seat by mouse, one by keyboard (focus, then Space).
    seat(page, "A-2-5").click()
    seat(page, "A-2-6").focus()
    page.keyboard.press("Space")
    expect(page.locator("#selection")).to_contain_text("2 seats")
    expect(seat(page, "A-2-6")).to_have_attribute("aria-checked", "true")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "show-page.png"), full_page=True)

    page.click("#hold-seats")
    page.wait_for_url(re.compile(r".*/bookings/[0-9a-f-]+\?after=\d+"))
    expect(page.locator("h1")).to_have_text("Checkout")
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(page.get_by_text("Section A, row 2, seat 5")).to_be_visible()
    fill_card(page, VISA)
    page.screenshot(path=str(SHOTS / "checkout.png"), full_page=True)

    page.click("#pay-button")
    expect(page.locator("#booking-status")).to_have_attribute(
        "data-status", "confirmed", timeout=30_000
    )
    tickets = page.locator(".ticket")
    expect(tickets).to_have_count(2, timeout=30_000)
    for each in tickets.all():
        expect(each.locator("img")).to_have_attribute("src", re.compile("^data:image/svg"))
    expect(tickets.nth(0)).to_contain_text("Section A, row 2, seat 5")
    expect(page.locator("a[href$='tickets.pdf']")).to_be_visible()
    page.screenshot(path=str(SHOTS / "tickets.png"), full_page=True)

    # The PDF through the same session; both seats are sold on the read side.
    link = page.locator("a[href$='tickets.pdf']").get_attribute("href")
    pdf = page.request.get(f"{base}{link}")
    assert pdf.status == 200 and pdf.body().startswith(b"%PDF")
    wait_until(lambda: seat_status(system, show_id, "A-2-5") == "sold", 10, "the seat sold")
    page.goto(f"{base}/me")
    expect(page.locator("td.status-confirmed")).to_have_count(1)


def test_2_two_browsers_race_for_one_seat_and_the_loser_sees_it_taken_live(
    system: SagaSystem, browser: Browser
):
    base = system.api.server_url
    show_id = new_show(system)
    contexts = [browser.new_context() for _ in range(2)]
    try:
        first, second = (context.new_page() for context in contexts)
        for each in (first, second):
            register(each, base, f"/shows/{show_id}")
            live(each)
            seat(each, "A-1-7").click()
            expect(seat(each, "A-1-7")).to_have_attribute("aria-checked", "true")

        first.click("#hold-seats")
        first.wait_for_url(re.compile(r".*/bookings/"))  # the hold is written
        # Without reloading, the other map shows the seat taken within 2 seconds.
        expect(seat(second, "A-1-7")).to_have_class(re.compile(r"\bheld\b"), timeout=2_000)
        expect(second.locator("#live-notice")).to_contain_text("was just taken")

        second.click("#hold-seats")
        expect(second.locator("#hold-error")).to_contain_text(
            "Section A, row 1, seat 7 was just taken by someone else"
        )
        assert "/shows/" in second.url
    finally:
        for context in contexts:
            context.close()


def test_5_a_declined_card_shows_a_clear_error_and_frees_the_seats(system: SagaSystem, page: Page):
    base = system.api.server_url
    show_id = new_show(system)
    register(page, base, f"/shows/{show_id}")
    live(page)
    seat(page, "A-3-1").click()
    page.click("#hold-seats")
    page.wait_for_url(re.compile(r".*/bookings/"))

    # A card Stripe refuses outright: the form says so, the hold stays for another card.
    fill_card(page, DECLINED_CARD)
    page.click("#pay-button")
    expect(page.locator("#card-errors")).to_contain_text("declined")
    wait_until(lambda: seat_status(system, show_id, "A-3-1") == "held", 10, "the seat held")

    # A card whose charge is declined: the booking ends and its seat goes back on sale.
    fill_card(page, DECLINED_ON_CHARGE)
    page.click("#pay-button")
    expect(page.locator("#booking-error")).to_contain_text("Your card was declined")
    expect(page.locator("#booking-status")).to_have_attribute(
        "data-status", "cancelled", timeout=10_000
    )
    wait_until(
        lambda: seat_status(system, show_id, "A-3-1") == "free", 10, "the seat to be free again"
    )
    page.goto(f"{base}/shows/{show_id}")
    expect(seat(page, "A-3-1")).to_have_class(re.compile(r"\bfree\b"))


def test_6_a_title_with_markup_is_text_and_a_post_without_csrf_token_changes_nothing(
    system: SagaSystem, page: Page
):
    base = system.api.server_url
    title = "<script>alert(1)</script>"
    show_id = new_show(system, title=title)
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    register(page, base, f"/shows/{show_id}")
    expect(page.locator("#show-title")).to_have_text(title)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.content()
    page.goto(f"{base}/")
    expect(page.get_by_text(title).first).to_be_visible()
    assert dialogs == []
    policy = page.request.get(f"{base}/shows/{show_id}").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy

    # The same signed-in browser posts the hold form without the token, then with a wrong
    # one, then from another site: refused each time, and the seat stays free.
    hold = f"{base}/shows/{show_id}/hold"
    token = csrf_of(page, f"{base}/shows/{show_id}")
    attempts: list[tuple[dict[str, str | float | bool], dict[str, str]]] = [
        ({"seats": "A-1-1"}, {}),
        ({"seats": "A-1-1", "csrf_token": "x" * 43}, {}),
        ({"seats": "A-1-1", "csrf_token": token}, {"Origin": "http://evil.example"}),
    ]
    for form, headers in attempts:
        refused = page.request.post(hold, form=form, headers=headers, max_redirects=0)
        assert refused.status == 403, refused.text()
        assert "could not be accepted" in refused.text()
    assert seat_status(system, show_id, "A-1-1") == "free"
    page.goto(f"{base}/me")
    expect(page.get_by_text("No bookings yet")).to_be_visible()


def csrf_of(page: Page, url: str) -> str:
    page.goto(url)
    token = page.locator("#seat-form input[name=csrf_token]").get_attribute("value")
    assert token
    return token
