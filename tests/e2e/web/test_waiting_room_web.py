"""The waiting room in the fans' pages, in a real browser (headless Chromium driven by
Playwright) against the real servers: a fan joins from the show page before the opening, waits
on the waiting page (which asks again by itself) and, once let in, holds seats with the
admission the show page's form carries, and reaches checkout; a fan not let in yet sees their
place and their hold is refused; joining again keeps the one token of the account.

"The room" is an app on the session's servers whose clock the tests set (as in
tests/e2e/test_waiting_room.py); its catalog is the session app's read models. A screenshot of
the waiting page goes to docs/screenshots/waiting-room.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Api
from tests.e2e.queue_support import (
    SetClock,
    auth,
    clock_fixtures,
    join,
    opens_at,
    queued_show,
    room_fixture,
)
from tests.e2e.web.browser import chromium, logged_in, screenshot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RATE = 1  # one fan a minute: the tests pick who is let in by the clock


clock, real_time_after = clock_fixtures()
room = room_fixture("waiting-room-web", rate_limit_queue_join_per_minute=100_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def fan_page(browser: Browser, room: Api, fan: dict[str, str], path: str) -> Page:
    return logged_in(
        browser, room.server_url, fan["email"], path, viewport={"width": 1100, "height": 900}
    )


def csrf_of(page: Page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "tb_csrf")


def token_of(room: Api, show_id: str, fan: dict[str, str]) -> str:
    """The account's token as the API answers a join (200: it had one already)."""
    r = join(room, show_id, fan)
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


def test_a_fan_joins_before_the_opening_is_let_in_holds_seats_and_reaches_checkout(
    api: Api, room: Api, browser: Browser, clock: SetClock
):
    show_id = queued_show(api, rate=RATE)
    opens = opens_at(api, show_id)
    clock.at = opens - timedelta(hours=1)
    fan = api.new_customer()
    page = fan_page(browser, room, fan, f"/shows/{show_id}")
    base = room.server_url

    # Before the opening: the show page says when the draw is, and has no hold form.
    waiting_room = page.locator("#waiting-room")
    expect(waiting_room).to_contain_text("is put in random order")
    expect(page.locator("#best-form")).to_have_count(0)
    page.click("#queue-form button[type=submit]")
    expect(page).to_have_url(f"{base}/shows/{show_id}/queue")
    expect(page.locator("#queue-place")).to_contain_text("drawn at the opening")
    expect(page.locator("#queue-wait")).to_contain_text("known at the opening")

    # One token per account, whichever door: the API's join answers the web's token, and
    # joining again through the web keeps it.
    token = token_of(room, show_id, fan)
    again = page.request.post(
        f"{base}/shows/{show_id}/queue", form={"csrf_token": csrf_of(page)}, max_redirects=0
    )
    assert again.status == 303, again.text()
    assert token_of(room, show_id, fan) == token
    page.goto(f"{base}/shows/{show_id}")
    expect(page.locator("#queue-form")).to_have_count(0)
    expect(waiting_room).to_contain_text("your place is drawn at the opening")
    page.click("#queue-link")
    expect(page).to_have_url(f"{base}/shows/{show_id}/queue")

    # Past the opening (the only early fan: slot 1, let in a minute after it), the waiting
    # page, asking again by itself, takes the fan to the show page's hold forms.
    clock.at = opens + timedelta(minutes=5)
    expect(page).to_have_url(f"{base}/shows/{show_id}")
    form = page.locator("#best-form")
    expect(form).to_be_visible()
    assert form.locator("input[name=admission]").get_attribute("value")
    expect(page.locator("#waiting-room")).to_have_count(0)
    form.locator("select[name=section]").select_option("GA")
    form.locator("input[name=quantity]").fill("2")
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(rf"{re.escape(base)}/bookings/[0-9a-f-]{{36}}\?after=\d+"))
    expect(page.locator("h1")).to_have_text("Checkout")
    page.context.close()


def test_a_fan_not_yet_let_in_sees_their_place_and_their_hold_is_refused(
    api: Api, room: Api, browser: Browser, clock: SetClock
):
    show_id = queued_show(api, rate=RATE)
    opens = opens_at(api, show_id)
    clock.at = opens - timedelta(minutes=10)
    for _ in range(3):
        assert join(room, show_id, api.new_customer()).status_code == 201
    clock.at = opens + timedelta(seconds=30)  # nobody let in yet
    fan = api.new_customer()
    page = fan_page(browser, room, fan, f"/shows/{show_id}")
    base = room.server_url

    expect(page.locator("#waiting-room")).to_contain_text("1 a minute")
    expect(page.locator("#best-form")).to_have_count(0)
    expect(page.locator("#seat-form")).to_have_count(0)
    page.click("#queue-form button[type=submit]")
    expect(page).to_have_url(f"{base}/shows/{show_id}/queue")
    # Behind the three drawn at the opening: slot 4, let in 4 minutes after it.
    expect(page.locator("#queue-position")).to_have_text("4")
    expect(page.locator("#queue-wait")).to_contain_text("about 4 minutes")
    screenshot(page, "waiting-room.png")

    # A hold posted anyway, without an admission or with a made-up one: refused.
    for admission in ("", "eyJhbGciOiJIUzI1NiJ9.e30.forged"):
        refused = page.request.post(
            f"{base}/shows/{show_id}/hold",
            form={
                "csrf_token": csrf_of(page),
                "section": "GA",
                "quantity": "2",
                "admission": admission,
            },
            max_redirects=0,
        )
        assert refused.status == 403, refused.text()
        assert "This on-sale has a waiting room" in refused.text()

    # Its token is the account's own: the API's status of it agrees with the page.
    r = room.http.get(f"/shows/{show_id}/queue/{token_of(room, show_id, fan)}", headers=auth(fan))
    assert r.status_code == 200, r.text
    assert r.json()["position"] == 4 and not r.json()["admitted"], r.json()
    page.context.close()
