"""What a fan holds, over HTTP with the real servers and the workers: the booking-confirmed
e-mail carries the tickets as a PDF (one page per ticket: title, venue, start on the venue's
clock, place, holder, a QR code that decodes to the ticket's secret, which verifies) and a
calendar invite in the venue's zone; the QR codes (SVG, PNG) are the holder's, the organiser's
and the admins' only; money is shown with its currency's decimals (JPY none, KWD three)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID

import pypdf
import pytest
import zxingcpp
from PIL import Image, ImageDraw

from audit.verify import verify
from commands.venue_time import local_time
from domain.booking import CONFIRMED, REFUNDED
from domain.ids import ticket_id_for
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    book,
    running_system,
    show_starting,
    wait_until,
)
from ticketblitz.embedded import Mailbox, StackEndpoints

pytestmark = pytest.mark.integration

STARTS = datetime(2027, 3, 1, 19, 0, tzinfo=UTC)  # 20:00 CET in Berlin
BERLIN_START = "Mon 01 Mar 2027, 20:00 CET (UTC+01:00)"
TITLE = "Café Tacheles, Nacht; Jazz 🎷"  # emoji: not in the PDF's font, drawn as "?"


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "ticket-documents", read_models=True) as started:
        yield started


def auth(person: dict[str, str]) -> dict[str, str]:
    return {"Authorization": person["Authorization"]}


def confirmed_mail(mailbox: Mailbox, booking_id: str) -> EmailMessage:
    return mailbox.wait_for(
        lambda m: (
            m["X-TicketBlitz-Booking-Id"] == booking_id
            and m["X-TicketBlitz-Event-Type"] == "booking.confirmed"
        ),
        timeout=60,
    )


def attachments(message: EmailMessage) -> dict[str, tuple[str, bytes]]:
    found = {}
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found[str(part.get_filename())] = (part.get_content_type(), payload)
    return found


def decoded(image: Image.Image | None) -> list[str]:
    assert image is not None
    return [code.text for code in zxingcpp.read_barcodes(image)]


def svg_image(svg: bytes, scale: int = 8) -> Image.Image:
    """Draw segno's SVG on pixels, to decode what the SVG itself shows: a path of horizontal
    runs of dark modules (`M x y`, `m dx dy` moves, `h n` runs of width 1 centred on y),
    drawn `scale(k)` times larger into a `width` wide picture."""
    width = re.search(rb'width="(\d+)"', svg)
    zoom = re.search(rb'transform="scale\((\d+)\)"', svg)
    path = re.search(rb' d="([^"]+)"', svg)
    assert width is not None and path is not None
    modules = int(width.group(1)) // (int(zoom.group(1)) if zoom else 1)
    image = Image.new("1", (modules * scale, modules * scale), 1)
    draw = ImageDraw.Draw(image)
    x = y = 0.0
    for command, numbers in re.findall(rb"([Mmh])([-\d. ]+)", path.group(1)):
        values = [float(n) for n in numbers.split()]
        if command == b"M":
            x, y = values
        elif command == b"m":
            x, y = x + values[0], y + values[1]
        else:
            top = int(y - 0.5) * scale
            draw.rectangle(
                (int(x) * scale, top, int(x + values[0]) * scale - 1, top + scale - 1), fill=0
            )
            x += values[0]
    return image


def berlin_show(system: SagaSystem, **changes: Any) -> str:
    body: dict[str, Any] = {
        "title": TITLE,
        "venue": "Blue Hall, Berlin",
        "time_zone": "Europe/Berlin",
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 10}]},
            {"code": "GA", "kind": "general", "tier": "STD", "capacity": 50},
        ],
        **changes,
    }
    return show_starting(system.api, STARTS, **body)


def tickets_of(system: SagaSystem, booking_id: str, who: dict[str, str]) -> list[dict[str, Any]]:
    """The booking's tickets (GET /bookings/{id}/tickets), once issued."""

    def issued() -> list[dict[str, Any]] | None:
        r = system.api.http.get(f"/bookings/{booking_id}/tickets", headers=who)
        if r.status_code != 200 or not r.json()["tickets"]:
            return None
        tickets: list[dict[str, Any]] = r.json()["tickets"]
        return tickets

    return wait_until(issued, 30, f"the tickets of booking {booking_id}")


def test_the_confirmed_email_carries_the_tickets_pdf_and_a_calendar_invite(
    system: SagaSystem, mailbox: Mailbox
):
    api, signer = system.api, system.container.ticket_signer
    assert signer is not None
    show_id = berlin_show(system)
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-3", "A-1-4"], payment_method=VISA)
    booking_id = held["booking_id"]
    system.wait_for_status(booking_id, {CONFIRMED}, timeout=30)

    mail = confirmed_mail(mailbox, booking_id)

    files = attachments(mail)
    assert set(files) == {f"tickets-{booking_id}.pdf", "Caf-Tacheles-Nacht-Jazz.ics"}
    pdf_type, pdf = files[f"tickets-{booking_id}.pdf"]
    assert pdf_type == "application/pdf"
    pages = pypdf.PdfReader(io.BytesIO(pdf)).pages
    assert len(pages) == 2  # one per ticket
    served = {t["ticket_id"]: t["secret"] for t in tickets_of(system, booking_id, auth(fan))}
    for index, (page, seat) in enumerate(zip(pages, ("3", "4"), strict=True)):
        text = page.extract_text()
        for expected in (
            "Café Tacheles, Nacht; Jazz ?",
            "Blue Hall, Berlin",
            BERLIN_START,
            f"Section A, row 1, seat {seat}",
            "Holder: Fan",
            booking_id,
        ):
            assert expected in text
        [secret] = decoded(page.images[0].image)
        signed = signer.verify(secret)
        ticket_id = ticket_id_for(UUID(booking_id), index)
        assert (signed.ticket_id, signed.show_id, signed.place) == (
            ticket_id,
            UUID(show_id),
            f"A-1-{seat}",
        )
        assert served[str(ticket_id)] == secret  # the ticket as issued and served
    ics_type, ics = files["Caf-Tacheles-Nacht-Jazz.ics"]
    assert ics_type == "text/calendar"
    lines = ics.decode("utf-8").replace("\r\n ", "").split("\r\n")
    assert "DTSTART;TZID=Europe/Berlin:20270301T200000" in lines
    assert "SUMMARY:Café Tacheles\\, Nacht\\; Jazz 🎷" in lines
    assert "LOCATION:Blue Hall\\, Berlin" in lines
    assert f"UID:booking-{booking_id}@ticketblitz" in lines
    body = mail.get_body(("plain",))
    assert body is not None
    assert f"at Blue Hall, Berlin on {BERLIN_START}" in body.get_content()
    assert "Amount paid: 90.00 EUR" in body.get_content()


def test_the_qr_codes_and_the_pdf_are_the_holders_the_organisers_and_the_admins_only(
    system: SagaSystem,
):
    api, signer = system.api, system.container.ticket_signer
    assert signer is not None
    organiser = api.new_account("organizer")
    r = api.http.post(
        "/shows",
        json={
            "title": "Door night",
            "category": "jazz",
            "venue": "Blue Hall",
            "starts_at": STARTS.isoformat(),
            "currency": "EUR",
            "time_zone": "America/New_York",
            "price_tiers": [{"code": "STD", "price_cents": 2000}],
            "sections": [{"code": "GA", "kind": "general", "tier": "STD", "capacity": 20}],
        },
        headers=auth(organiser),
    )
    assert r.status_code == 201, r.text
    show_id = r.json()["show_id"]
    assert api.http.post(f"/shows/{show_id}/open-sale", headers=auth(organiser)).status_code == 200
    fan, other = api.new_customer(), api.new_customer()
    held = book(api, fan, show_id, section="GA", quantity=2, payment_method=VISA)
    booking_id = held["booking_id"]
    system.wait_for_status(booking_id, {CONFIRMED}, timeout=30)
    ticket = tickets_of(system, booking_id, auth(fan))[0]
    base = f"/tickets/{ticket['ticket_id']}"

    for who in (auth(fan), auth(organiser), api.admin()):
        png = api.http.get(f"{base}/qr.png", headers=who)
        svg = api.http.get(f"{base}/qr.svg", headers=who)
        assert (png.status_code, svg.status_code) == (200, 200), (png.text, svg.text)
        assert png.headers["content-type"] == "image/png"
        assert svg.headers["content-type"] == "image/svg+xml"
        assert "no-store" in png.headers["cache-control"]
        assert decoded(Image.open(io.BytesIO(png.content))) == [ticket["secret"]]
        assert decoded(svg_image(svg.content)) == [ticket["secret"]]
        assert signer.verify(ticket["secret"]).place == "GA"
        pdf = api.http.get(f"/bookings/{booking_id}/tickets.pdf", headers=who)
        assert pdf.status_code == 200, pdf.text
        pages = pypdf.PdfReader(io.BytesIO(pdf.content)).pages
        assert len(pages) == 2
        assert "Mon 01 Mar 2027, 14:00 EST (UTC-05:00)" in pages[0].extract_text()
        assert "Section GA, general admission" in pages[1].extract_text()
    for path in (f"{base}/qr.png", f"{base}/qr.svg", f"/bookings/{booking_id}/tickets.pdf"):
        refused = api.http.get(path, headers=auth(other))
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"].endswith("/forbidden")
        assert api.http.get(path).status_code == 401
    unknown = api.http.get(f"/tickets/{ticket_id_for(UUID(int=1), 0)}/qr.png", headers=auth(fan))
    assert unknown.status_code == 404


def test_a_refunded_booking_has_no_ticket_to_show(system: SagaSystem):
    api = system.api
    show_id = berlin_show(system)
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-7"], payment_method=VISA)
    booking_id = held["booking_id"]
    system.wait_for_status(booking_id, {CONFIRMED}, timeout=30)
    ticket = tickets_of(system, booking_id, auth(fan))[0]

    r = api.http.post(f"/bookings/{booking_id}/cancel", headers=auth(fan))
    assert r.status_code == 202, r.text
    system.wait_for_status(booking_id, {REFUNDED}, timeout=30)
    after = system.store.head_position()

    qr = api.http.get(f"/tickets/{ticket['ticket_id']}/qr.png?after={after}", headers=auth(fan))
    pdf = api.http.get(f"/bookings/{booking_id}/tickets.pdf?after={after}", headers=auth(fan))
    assert (qr.status_code, qr.json()["type"].rsplit("/", 1)[1]) == (409, "ticket-void")
    assert (pdf.status_code, pdf.json()["type"].rsplit("/", 1)[1]) == (409, "no-tickets")


@pytest.mark.parametrize(
    ("currency", "amount"), [("JPY", "4,500 JPY"), ("KWD", "4.500 KWD"), ("EUR", "45.00 EUR")]
)
def test_money_in_the_email_has_its_currencys_decimals(
    system: SagaSystem, mailbox: Mailbox, currency: str, amount: str
):
    api = system.api
    show_id = berlin_show(
        system, currency=currency, price_tiers=[{"code": "STD", "price_cents": 4500}]
    )
    fan = api.new_customer()
    held = book(api, fan, show_id, seats=["A-1-1"], payment_method=VISA)

    mail = confirmed_mail(mailbox, held["booking_id"])

    body = mail.get_body(("plain",))
    assert body is not None
    assert f"Amount paid: {amount}" in body.get_content()


def test_the_venues_zone_is_shown_changed_and_checked(system: SagaSystem):
    api = system.api
    admin = api.admin()
    show_id = berlin_show(system)

    def details(after: int | None = None) -> dict[str, Any]:
        r = api.http.get(f"/shows/{show_id}", params={"after": after} if after else {})
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        return found

    assert details()["time_zone"] == "Europe/Berlin"
    r = api.http.patch(f"/shows/{show_id}", json={"time_zone": "Asia/Tokyo"}, headers=admin)
    assert r.status_code == 200, r.text
    moved = details(r.json()["position"])
    assert moved["time_zone"] == "Asia/Tokyo"
    assert datetime.fromisoformat(moved["starts_at"]) == STARTS  # the same instant
    assert local_time(STARTS, moved["time_zone"]) == "Tue 02 Mar 2027, 04:00 JST (UTC+09:00)"
    for bad in ("Asia/Atlantis", "localtime", None, 9):
        refused = api.http.patch(f"/shows/{show_id}", json={"time_zone": bad}, headers=admin)
        assert refused.status_code == 422, refused.text
    assert details()["time_zone"] == "Asia/Tokyo"

    report = verify(system.store)
    assert report.violation_count == 0, "\n".join(str(v) for v in report.violations)
