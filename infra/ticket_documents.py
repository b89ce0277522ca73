"""What a fan holds: a ticket's QR code (SVG, PNG; segno), the booking's tickets as a PDF with
one page per ticket (fpdf2) and a calendar invite (.ics, RFC 5545). Pure rendering: everything
they show is given (no database); the same input renders the same bytes.

The QR code holds the ticket's signed secret (infra/ticket_signing.py), which is the ticket
itself: whoever shows it at the door is admitted once. Never render it for anyone but the
ticket's holder, the show's organiser or an admin.

Text on a PDF page is Unicode when a TrueType font is found (DejaVu Sans, the usual system
font; `find_font`); characters the font lacks (emoji, most CJK) are drawn as "?" rather than
left out or crashing. Without a font, the PDF's core Helvetica (Latin-1) is used the same way.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import segno
from fontTools.ttLib import TTFont
from fpdf import FPDF
from PIL import Image

from commands.venue_time import local, local_time, venue_zone
from domain.money import money

# Where systems keep DejaVu Sans (Debian/Ubuntu fonts-dejavu-core, Fedora, Arch, Alpine).
FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
    Path("/usr/share/fonts/ttf-dejavu/DejaVuSans.ttf"),
)
REPLACEMENT = "?"
QR_ERROR = "m"  # 15 % of the code may be scuffed or folded and it still reads
QR_BORDER = 4  # the quiet zone the QR standard asks for, in modules
PNG_SCALE = 8  # pixels per module: sharp enough for a phone camera or a door scanner
PDF_QR_MM = 70.0
PDF_QR_SCALE = 4  # pixels per module of the image in the PDF (printed 70 mm wide)
CALENDAR_PRODUCT = "-//TicketBlitz//Tickets//EN"
ICS_LINE_OCTETS = 75


@dataclass(frozen=True)
class ShowInfo:
    """The show a ticket is for, as the documents show it."""

    show_id: UUID
    title: str
    venue: str
    starts_at: datetime  # an instant
    time_zone: str  # the venue's IANA zone


@dataclass(frozen=True)
class TicketInfo:
    """One ticket: its place (a seat, or a place in a general-admission section), holder and
    signed secret (what its QR code holds)."""

    ticket_id: UUID
    booking_id: UUID
    seat: str | None
    section: str
    holder_name: str
    secret: str


def place_text(seat: str | None, section: str) -> str:
    """Where the ticket admits to: "Section A, row 1, seat 3" for seat A-1-3, "Section GA,
    general admission" for a standing place."""
    if seat:
        parts = seat.split("-")
        if len(parts) == 3:
            return f"Section {parts[0]}, row {parts[1]}, seat {parts[2]}"
        return f"Seat {seat}"
    return f"Section {section}, general admission"


# --- QR codes ---


def _qr(secret: str) -> segno.QRCode:
    return segno.make_qr(secret, error=QR_ERROR, boost_error=False)


def qr_svg(secret: str) -> bytes:
    """The secret as a QR code in SVG (scalable: prints sharp at any size)."""
    out = io.BytesIO()
    _qr(secret).save(out, kind="svg", scale=4, border=QR_BORDER, xmldecl=True, title="Ticket")
    return out.getvalue()


def qr_image(secret: str, scale: int = PNG_SCALE) -> Image.Image:
    """The secret as a black-and-white QR image, `scale` pixels per module (drawn by Pillow
    from segno's matrix: a tenth of the time of segno's own PNG writer)."""
    code = _qr(secret)
    rows = list(code.matrix_iter(scale=1, border=QR_BORDER))
    size = len(rows)
    image = Image.new("1", (size, size))
    image.putdata([0 if dark else 1 for row in rows for dark in row])
    return image.resize((size * scale, size * scale), Image.Resampling.NEAREST)


def qr_png(secret: str, scale: int = PNG_SCALE) -> bytes:
    """The secret as a QR code in PNG, `scale` pixels per module."""
    out = io.BytesIO()
    qr_image(secret, scale).save(out, format="PNG", optimize=True)
    return out.getvalue()


# --- the PDF ---


@lru_cache(maxsize=1)
def find_font() -> Path | None:
    """A Unicode TrueType font this machine has (DejaVu Sans), or None."""
    return next((path for path in FONT_CANDIDATES if path.is_file()), None)


@lru_cache(maxsize=4)
def _font_characters(path: Path) -> frozenset[int]:
    """The code points `path` has glyphs for."""
    with TTFont(str(path), lazy=True) as font:
        return frozenset(font.getBestCmap() or {})


def drawable(text: str, characters: frozenset[int] | None) -> str:
    """`text` as the font can draw it: one line, NFC, each character the font lacks (and
    every control character) shown as "?"; None is the core fonts' Latin-1."""
    shown = []
    for char in unicodedata.normalize("NFC", text):
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            shown.append(" " if char in "\t\n\r\u2028\u2029" else "")
            continue
        ok = ord(char) < 256 if characters is None else ord(char) in characters
        shown.append(char if ok else REPLACEMENT)
    return "".join(shown)


class _Pages(FPDF):
    def __init__(self, font_path: Path | None) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.set_auto_page_break(auto=False)
        self.set_margins(20, 20, 20)
        if font_path is not None:
            self.add_font("body", "", str(font_path))
            bold = font_path.with_name(font_path.stem + "-Bold" + font_path.suffix)
            self.add_font("body", "B", str(bold if bold.is_file() else font_path))
            self.font_name = "body"
            self.characters: frozenset[int] | None = _font_characters(font_path)
        else:
            self.font_name = "helvetica"
            self.characters = None

    def text_line(self, text: str, size: float, bold: bool = False, height: float = 7) -> None:
        self.set_font(self.font_name, "B" if bold else "", size)
        self.multi_cell(0, height, drawable(text, self.characters), new_x="LMARGIN", new_y="NEXT")


def _latin1(show: ShowInfo, tickets: Sequence[TicketInfo]) -> bool:
    """Whether the core fonts (Latin-1) draw every text of these pages as it is."""
    texts = [show.title, show.venue, *(t.holder_name for t in tickets)]
    return all(ord(char) < 256 for text in texts for char in text)


def tickets_pdf(
    show: ShowInfo,
    tickets: Sequence[TicketInfo],
    created_at: datetime,
    paid: tuple[int, str] | None = None,
    font_path: Path | Literal["core"] | None = None,
) -> bytes:
    """The booking's tickets, one A4 page each: the show's title, venue, its local start
    (the venue's zone), the place, the holder's name, the QR code of the secret, the booking's
    and the ticket's ids. `created_at` dates the document (the same input, the same bytes);
    `paid` (minor units, currency) is shown as the booking's total; `font_path` overrides
    `find_font()` ("core": the PDF's own Helvetica, Latin-1 only, which is also what pages
    whose texts are all Latin-1 use: no font to parse, several times faster)."""
    if not tickets:
        raise ValueError("a ticket PDF needs at least one ticket")
    if font_path is None and _latin1(show, tickets):
        font_path = "core"  # parsing a TrueType font costs more than the rest of the PDF
    pages = _Pages(None if font_path == "core" else font_path or find_font())
    pages.set_creation_date(created_at.astimezone(UTC))
    pages.set_title(drawable(f"Tickets: {show.title}", pages.characters))
    pages.set_author("TicketBlitz")
    pages.set_producer("TicketBlitz")
    starts = local_time(show.starts_at, show.time_zone)
    for number, ticket in enumerate(tickets, start=1):
        pages.add_page()
        pages.text_line(f"Ticket {number} of {len(tickets)}", 10)
        pages.ln(2)
        pages.text_line(show.title, 22, bold=True, height=10)
        pages.ln(2)
        pages.text_line(show.venue, 14)
        pages.text_line(starts, 14)
        pages.ln(4)
        pages.text_line(place_text(ticket.seat, ticket.section), 16, bold=True)
        pages.text_line(f"Holder: {ticket.holder_name}", 14)
        pages.ln(4)
        top = pages.get_y()
        code = qr_image(ticket.secret, scale=PDF_QR_SCALE)
        pages.image(code, x=(210 - PDF_QR_MM) / 2, y=top, w=PDF_QR_MM)
        pages.set_y(top + PDF_QR_MM + 4)
        pages.text_line("Show this code at the door. It admits once.", 10)
        pages.ln(4)
        pages.text_line(f"Booking {ticket.booking_id}", 9, height=5)
        pages.text_line(f"Ticket {ticket.ticket_id}", 9, height=5)
        if paid is not None:
            pages.text_line(f"Booking total: {money(*paid)}", 9, height=5)
    return bytes(pages.output())


# --- the calendar invite (RFC 5545) ---


def ics_text(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon and comma escaped, line breaks as
    \\n, other control characters dropped."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for char in value:
        if char == "\\":
            out.append("\\\\")
        elif char in ";,":
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif unicodedata.category(char) == "Cc":
            continue
        else:
            out.append(char)
    return "".join(out)


def fold(line: str) -> str:
    """A content line folded at 75 octets (RFC 5545 3.1): CRLF and a space before each
    continuation, never inside a UTF-8 character."""
    pieces: list[str] = []
    current: list[str] = []
    octets, limit = 0, ICS_LINE_OCTETS
    for char in line:
        size = len(char.encode("utf-8"))
        if octets + size > limit:
            pieces.append("".join(current))
            current = []
            octets, limit = 0, ICS_LINE_OCTETS - 1  # the leading space counts
        current.append(char)
        octets += size
    pieces.append("".join(current))
    return "\r\n ".join(pieces)


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta()).total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{rest:02d}"


def _last_transition(zone: ZoneInfo, moment: datetime) -> datetime | None:
    """The last instant before `moment` (within ~2 years) where the zone's offset changed
    (tz transitions fall on whole minutes); None if it did not change."""
    at = moment.astimezone(zone)
    offset = at.utcoffset()
    earliest = moment - timedelta(days=800)
    probe = moment
    while probe > earliest:  # back in weeks until the offset differs
        before = probe - timedelta(days=7)
        if before.astimezone(zone).utcoffset() != offset:
            low, high = before, probe  # low: other offset, high: this offset
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == offset:
                    high = middle
                else:
                    low = middle
            return high.replace(second=0, microsecond=0)
        probe = before
    return None


def _vtimezone(name: str, moment: datetime) -> list[str]:
    """A VTIMEZONE for the zone as it is at `moment`: one observance starting at its last
    change before (RFC 5545 3.6.5 wants one for every TZID; clients that know the IANA
    name use their own rules)."""
    zone = ZoneInfo(name)
    at = moment.astimezone(zone)
    since = _last_transition(zone, moment)
    if since is None:
        onset_local = datetime(1970, 1, 1)
        offset_from = at.utcoffset()
    else:  # the onset on the clock before it (RFC 5545: 03:00 for CEST -> CET)
        offset_from = (since - timedelta(minutes=1)).astimezone(zone).utcoffset()
        onset_local = since.astimezone(UTC).replace(tzinfo=None) + (offset_from or timedelta())
    kind = "DAYLIGHT" if at.dst() else "STANDARD"
    abbreviation = at.tzname() or name
    return [
        "BEGIN:VTIMEZONE",
        f"TZID:{name}",
        f"BEGIN:{kind}",
        f"DTSTART:{onset_local.strftime('%Y%m%dT%H%M%S')}",
        f"TZOFFSETFROM:{_offset(offset_from)}",
        f"TZOFFSETTO:{_offset(at.utcoffset())}",
        f"TZNAME:{ics_text(abbreviation)}",
        f"END:{kind}",
        "END:VTIMEZONE",
    ]


def calendar_invite(
    show: ShowInfo,
    booking_id: UUID,
    places: Iterable[str],
    created_at: datetime,
) -> bytes:
    """An .ics file with one event, the show: UID (the booking's, so a second invite for it
    updates the first), DTSTAMP, DTSTART on the venue's clock (TZID, with its VTIMEZONE) or
    in UTC for a UTC venue, SUMMARY (the title), LOCATION (the venue), DESCRIPTION (the
    booking and its places). No end: the show's length is not known."""
    zone_name = venue_zone(show.time_zone).key
    starts = local(show.starts_at, zone_name)
    if zone_name == "UTC":
        timezone_lines: list[str] = []
        start_line = f"DTSTART:{_utc_stamp(show.starts_at)}"
    else:
        timezone_lines = _vtimezone(zone_name, show.starts_at)
        start_line = f"DTSTART;TZID={zone_name}:{starts.strftime('%Y%m%dT%H%M%S')}"
    description = "\n".join([f"Booking {booking_id}", *places])
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{CALENDAR_PRODUCT}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        *timezone_lines,
        "BEGIN:VEVENT",
        f"UID:booking-{booking_id}@ticketblitz",
        f"DTSTAMP:{_utc_stamp(created_at)}",
        start_line,
        f"SUMMARY:{ics_text(show.title)}",
        f"LOCATION:{ics_text(show.venue)}",
        f"DESCRIPTION:{ics_text(description)}",
        "STATUS:CONFIRMED",
        "TRANSP:OPAQUE",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return ("\r\n".join(fold(line) for line in lines) + "\r\n").encode("utf-8")
