"""What a fan holds, rendered without servers: QR codes that decode to the ticket's secret,
a PDF with one page per ticket (read back with pypdf, its QR decoded with zxing-cpp), Unicode
titles that never crash it, a calendar invite by RFC 5545 (escaping, folding, the venue's zone),
and the confirmed e-mail's attachments, whose tickets are those the door list issues."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from uuid import uuid4

import pypdf
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from domain.door import DoorList
from domain.ids import ticket_id_for
from infra.ticket_documents import (
    ShowInfo,
    TicketInfo,
    calendar_invite,
    drawable,
    find_font,
    fold,
    ics_text,
    place_text,
    qr_png,
    qr_svg,
    tickets_pdf,
)
from infra.ticket_signing import Ed25519TicketSigner, key_set
from process_managers.integration_events import IntegrationEvent
from process_managers.notifier import compose
from process_managers.ticket_mail import TicketAttachments, issued_places

STARTS = datetime(2027, 3, 1, 19, 0, tzinfo=UTC)  # 20:00 in Berlin
CREATED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
SIGNER = Ed25519TicketSigner(key_set(Ed25519PrivateKey.generate()))


def a_show(title: str = "Night of Jazz", zone: str = "Europe/Berlin") -> ShowInfo:
    return ShowInfo(uuid4(), title, "Blue Hall, Berlin", STARTS, zone)


def tickets_of(show: ShowInfo, places: list[tuple[str | None, str]], holder: str = "Ana"):
    booking = uuid4()
    out = []
    for index, (seat, section) in enumerate(places):
        ticket_id = ticket_id_for(booking, index)
        secret = SIGNER.sign(ticket_id, show.show_id, seat or section)
        out.append(TicketInfo(ticket_id, booking, seat, section, holder, secret))
    return out


def decoded(image: Image.Image | None) -> list[str]:
    assert image is not None
    return [code.text for code in zxingcpp.read_barcodes(image)]


def test_the_qr_codes_hold_the_tickets_secret_which_verifies():
    show = a_show()
    [ticket] = tickets_of(show, [("A-1-3", "A")])

    png = Image.open(io.BytesIO(qr_png(ticket.secret)))
    svg = qr_svg(ticket.secret)

    assert decoded(png) == [ticket.secret]
    assert SIGNER.verify(decoded(png)[0]).ticket_id == ticket.ticket_id
    assert svg.startswith(b"<?xml") and b"<svg" in svg and b"<path" in svg
    assert qr_svg(ticket.secret) == svg  # the same ticket, the same code


def test_the_pdf_has_one_page_per_ticket_with_everything_a_door_needs():
    show = a_show()
    tickets = tickets_of(show, [("A-1-3", "A"), ("A-1-4", "A"), (None, "GA")])

    pdf = tickets_pdf(show, tickets, created_at=CREATED, paid=(13500, "EUR"))

    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 3
    for page, ticket in zip(reader.pages, tickets, strict=True):
        text = page.extract_text()
        for expected in (
            "Night of Jazz",
            "Blue Hall, Berlin",
            "Mon 01 Mar 2027, 20:00 CET (UTC+01:00)",
            place_text(ticket.seat, ticket.section),
            "Holder: Ana",
            str(ticket.booking_id),
            "135.00 EUR",
        ):
            assert expected in text
        [image] = page.images
        assert decoded(image.image) == [ticket.secret]
    assert "Section GA, general admission" in reader.pages[2].extract_text()
    assert tickets_pdf(show, tickets, created_at=CREATED, paid=(13500, "EUR")) == pdf


@pytest.mark.parametrize("font", [None, "core"])
def test_a_unicode_title_never_crashes_the_pdf(font):
    show = a_show(title="Café Ørsted 🎷 Nacht \u2013 夜")
    tickets = tickets_of(show, [("A-1-1", "A")], holder="Zoë\u202eevil\u0000")

    pdf = tickets_pdf(show, tickets, created_at=CREATED, font_path=font)

    text = pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "Café Ørsted" in text  # accents survive, in the core font's Latin-1 too
    assert "\u202e" not in text and "\x00" not in text  # controls never reach the page
    assert "Holder: Zoëevil" in text


def test_a_character_the_font_lacks_is_drawn_as_a_question_mark():
    assert drawable("Jazz 🎷 night", frozenset(map(ord, "Jaz night"))) == "Jazz ? night"
    assert drawable("Łódź", None) == "?ód?"  # Latin-1 only
    assert drawable("a\tb\nc", None) == "a b c"
    font = find_font()
    assert font is None or font.suffix == ".ttf"


def test_ics_text_escapes_backslashes_semicolons_commas_and_line_breaks():
    assert ics_text("Rock, Paper; Scissors\\Lizard\r\nSpock\rend\x07") == (
        "Rock\\, Paper\\; Scissors\\\\Lizard\\nSpock\\nend"
    )


def test_long_lines_fold_at_75_octets_without_splitting_a_character():
    line = "SUMMARY:" + "Ünïcødé 🎷 " * 20
    folded = fold(line)
    parts = folded.split("\r\n")
    assert all(len(p.encode("utf-8")) <= 75 for p in parts)
    assert all(p.startswith(" ") for p in parts[1:])
    assert "".join([parts[0], *(p[1:] for p in parts[1:])]) == line  # unfolds to the line
    assert fold("SHORT:line") == "SHORT:line"


def unfolded(ics: bytes) -> list[str]:
    text = ics.decode("utf-8")
    assert "\n" not in text.replace("\r\n", "")  # CRLF only
    return text.replace("\r\n ", "").split("\r\n")


def test_the_invite_starts_on_the_venues_clock_with_its_zone():
    show = a_show(title="Rock, Paper; Scissors")
    booking = uuid4()

    lines = unfolded(calendar_invite(show, booking, ["Section A, row 1, seat 3"], CREATED))

    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2:] == ["END:VCALENDAR", ""]
    for expected in (
        "VERSION:2.0",
        "METHOD:PUBLISH",
        f"UID:booking-{booking}@ticketblitz",
        "DTSTAMP:20261201T093000Z",
        "DTSTART;TZID=Europe/Berlin:20270301T200000",
        "SUMMARY:Rock\\, Paper\\; Scissors",
        "LOCATION:Blue Hall\\, Berlin",
        f"DESCRIPTION:Booking {booking}\\nSection A\\, row 1\\, seat 3",
        "TZID:Europe/Berlin",
        "TZOFFSETTO:+0100",  # CET in March
        "TZNAME:CET",
    ):
        assert expected in lines
    assert lines.count("BEGIN:VEVENT") == 1 and lines.count("BEGIN:VTIMEZONE") == 1


def test_a_utc_venue_gets_a_utc_start_and_no_zone():
    lines = unfolded(calendar_invite(a_show(zone="UTC"), uuid4(), [], CREATED))
    assert "DTSTART:20270301T190000Z" in lines
    assert "BEGIN:VTIMEZONE" not in lines


def test_tickets_are_derived_as_the_door_list_issues_them():
    """The e-mail's tickets (ids, places, order) are those `DoorList.issue` records."""
    booking, show_id = uuid4(), uuid4()
    seats, general = ["B-2-7", "A-1-1"], {"GA": 2, "PIT": 1}
    door = DoorList(show_id=show_id)
    door.issue(booking, uuid4(), "Ana", seats, general)

    issued = [(t.ticket_id, t.seat, t.section) for t in door.tickets_of(booking)]

    derived = [
        (ticket_id_for(booking, i), seat, section)
        for i, (seat, section) in enumerate(issued_places(seats, general))
    ]
    assert derived == issued


def confirmed_event(currency: str = "EUR", paid: int = 9000, **show: Any) -> IntegrationEvent:
    return IntegrationEvent(
        event_id=uuid4(),
        type="booking.confirmed",
        occurred_at=CREATED,
        position=7,
        show_id=uuid4(),
        booking_id=uuid4(),
        payload={
            "status": "confirmed",
            "customer": {"id": str(uuid4()), "email": "ana@example.com", "name": "Ana"},
            "seats": ["A-1-1"],
            "general": {"GA": 1},
            "currency": currency,
            "paid_cents": paid,
            "show": {
                "title": "Night of Jazz",
                "venue": "Blue Hall",
                "starts_at": STARTS.isoformat(),
                "time_zone": "Europe/Berlin",
                **show,
            },
        },
    )


def attachments(message: EmailMessage) -> dict[str, tuple[str, bytes]]:
    found = {}
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found[str(part.get_filename())] = (part.get_content_type(), payload)
    return found


def test_the_confirmed_email_carries_the_tickets_and_the_invite():
    event = confirmed_event()
    message = compose(event, "tickets@ticketblitz.local")
    assert message is not None

    TicketAttachments(SIGNER)(event, message)

    files = attachments(message)
    pdf_type, pdf = files[f"tickets-{event.booking_id}.pdf"]
    ics_type, ics = files["Night-of-Jazz.ics"]
    assert (pdf_type, ics_type) == ("application/pdf", "text/calendar")
    pages = pypdf.PdfReader(io.BytesIO(pdf)).pages
    assert len(pages) == 2
    assert event.booking_id is not None
    secrets = [decoded(page.images[0].image)[0] for page in pages]
    verified = [SIGNER.verify(secret) for secret in secrets]
    assert [(v.ticket_id, v.show_id, v.place) for v in verified] == [
        (ticket_id_for(event.booking_id, 0), event.show_id, "A-1-1"),
        (ticket_id_for(event.booking_id, 1), event.show_id, "GA"),
    ]
    assert "DTSTART;TZID=Europe/Berlin:20270301T200000" in unfolded(ics)
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "on Mon 01 Mar 2027, 20:00 CET (UTC+01:00)" in text
    assert f"/bookings/{event.booking_id}/tickets.pdf" in text
    assert text.rstrip().endswith("TicketBlitz")


def test_other_emails_get_no_attachments():
    event = confirmed_event().model_copy(update={"type": "booking.cancelled"})
    message = compose(event, "tickets@ticketblitz.local")
    assert message is not None
    TicketAttachments(SIGNER)(event, message)
    assert attachments(message) == {}


@pytest.mark.parametrize(
    ("currency", "paid", "shown"),
    [("JPY", 9000, "9,000 JPY"), ("KWD", 9000, "9.000 KWD"), ("EUR", 9000, "90.00 EUR")],
)
def test_the_email_shows_the_amount_with_its_currencys_decimals(currency, paid, shown):
    message = compose(confirmed_event(currency, paid), "tickets@ticketblitz.local")
    assert message is not None
    assert f"Amount paid: {shown}" in message.get_content()
