"""The organiser's show form: what was typed (price tiers and sections one per line, times on
the venue's clock) turned into the command API's fields, with errors a person can act on. The
commands' own models (commands/models.py) still check everything after this."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from commands.venue_time import venue_zone
from domain.money import minor_units

TIER_LINE = re.compile(r"^\s*([A-Za-z0-9]{1,16})\s+([0-9]+(?:[.,][0-9]+)?)\s*$")
SEATED_LINE = re.compile(
    r"^\s*([A-Za-z0-9]{1,16})\s+([A-Za-z0-9]{1,16})\s+(\d+)\s*[xX]\s*(\d+)\s*$"
)
GENERAL_LINE = re.compile(r"^\s*([A-Za-z0-9]{1,16})\s+([A-Za-z0-9]{1,16})\s+(\d+)\s*$")

TIERS_HELP = "one tier a line: a code and its price, e.g. `STD 45.00`"
SECTIONS_HELP = (
    "one section a line: a code, its tier and `ROWSxSEATS` for seats in rows (`A STD 5x10`) "
    "or a number for standing places (`FLOOR GA 200`)"
)


@dataclass
class ShowForm:
    """The fields as typed (to show the form again) and what they mean."""

    values: dict[str, str]
    errors: list[str] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)


def price_cents(text: str, currency: str) -> int:
    """ "45.00" EUR -> 4500, "4500" JPY -> 4500; ValueError for more decimals than it has."""
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a price") from None
    cents = value * (10 ** minor_units(currency))
    if cents != cents.to_integral_value():
        raise ValueError(f"{text} has more decimals than {currency.upper()} has")
    return int(cents)


def parse_tiers(text: str, currency: str, errors: list[str]) -> list[dict[str, Any]]:
    tiers: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        found = TIER_LINE.match(line)
        if found is None:
            errors.append(f"Price tiers, line {number}: {TIERS_HELP}.")
            continue
        try:
            tiers.append({"code": found[1].upper(), "price_cents": price_cents(found[2], currency)})
        except ValueError as error:
            errors.append(f"Price tiers, line {number}: {error}.")
    if not tiers and not errors:
        errors.append(f"Give at least one price tier ({TIERS_HELP}).")
    return tiers


def parse_sections(text: str, errors: list[str]) -> list[dict[str, Any]]:
    sections: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        seated, general = SEATED_LINE.match(line), GENERAL_LINE.match(line)
        if seated is not None:
            rows, seats = int(seated[3]), int(seated[4])
            if not 1 <= rows <= 500 or not 1 <= seats <= 500:
                errors.append(f"Sections, line {number}: 1 to 500 rows of 1 to 500 seats.")
                continue
            sections.append(
                {
                    "code": seated[1].upper(),
                    "kind": "seated",
                    "tier": seated[2].upper(),
                    "rows": [{"label": str(r), "seats": seats} for r in range(1, rows + 1)],
                }
            )
        elif general is not None:
            sections.append(
                {
                    "code": general[1].upper(),
                    "kind": "general",
                    "tier": general[2].upper(),
                    "capacity": int(general[3]),
                }
            )
        else:
            errors.append(f"Sections, line {number}: {SECTIONS_HELP}.")
    if not sections and not errors:
        errors.append(f"Give at least one section ({SECTIONS_HELP}).")
    return sections


def venue_time(text: str, zone: str, label: str, errors: list[str]) -> str | None:
    """A `datetime-local` value on the venue's clock as an ISO 8601 instant (None if empty)."""
    text = text.strip()
    if not text:
        return None
    try:
        naive = datetime.fromisoformat(text)
    except ValueError:
        errors.append(f"{label}: give a date and time, e.g. 2027-03-01T20:00.")
        return None
    if naive.tzinfo is not None:
        return naive.isoformat()
    return naive.replace(tzinfo=venue_zone(zone)).isoformat()


def new_show_form(form: dict[str, str]) -> ShowForm:
    """The schedule form: ScheduleShow's fields (checked again by the command's model)."""
    values = {k: form.get(k, "") for k in SHOW_FIELDS}
    result = ShowForm(values)
    errors = result.errors
    currency = values["currency"].strip().upper() or "EUR"
    zone = values["time_zone"].strip() or "UTC"
    body: dict[str, Any] = {
        "title": values["title"].strip(),
        "description": values["description"].replace("\r\n", "\n").strip(),
        "category": values["category"].strip(),
        "venue": values["venue"].strip(),
        "currency": currency,
        "time_zone": zone,
        "price_tiers": parse_tiers(values["price_tiers"], currency, errors),
        "sections": parse_sections(values["sections"], errors),
    }
    starts = venue_time(values["starts_at"], zone, "Starts", errors)
    if starts is None and not values["starts_at"].strip():
        errors.append("Starts: give the date and time the show starts.")
    body["starts_at"] = starts
    for name, label in WINDOW_FIELDS:
        moment = venue_time(values[name], zone, label, errors)
        if moment is not None:
            body[name] = moment
    limit = values["max_tickets_per_customer"].strip()
    if limit:
        if limit.isdigit():
            body["max_tickets_per_customer"] = int(limit)
        else:
            errors.append("Tickets per customer: a whole number from 1 to 1000.")
    body["transfers_allowed"] = form.get("transfers_allowed") == "on"
    result.body = body
    return result


SHOW_FIELDS = (
    "title",
    "description",
    "category",
    "venue",
    "starts_at",
    "time_zone",
    "currency",
    "price_tiers",
    "sections",
    "sale_opens_at",
    "sale_closes_at",
    "presale_opens_at",
    "max_tickets_per_customer",
)
WINDOW_FIELDS = (
    ("sale_opens_at", "Sale opens"),
    ("sale_closes_at", "Sale closes"),
    ("presale_opens_at", "Presale opens"),
)
EDITABLE = ("title", "description", "category", "venue", "time_zone")


def edit_changes(form: dict[str, str], current: dict[str, Any]) -> ShowForm:
    """The edit form: only what differs from the show as the catalog has it (an unchanged
    field is not sent, so an opening time already past is not refused as "in the past")."""
    values = {k: form.get(k, "") for k in (*EDITABLE, "starts_at", "sale_opens_at", "prices")}
    result = ShowForm(values)
    zone = values["time_zone"].strip() or current["time_zone"]
    changes: dict[str, Any] = {}
    for name in EDITABLE:
        typed = values[name].replace("\r\n", "\n").strip()
        if typed and typed != current[name]:
            changes[name] = typed
        elif name == "description" and not typed and current[name]:
            changes[name] = ""
    for name, label in (("starts_at", "Starts"), ("sale_opens_at", "Sale opens")):
        moment = venue_time(values[name], zone, label, result.errors)
        was = current[name].isoformat() if current[name] is not None else None
        if moment is None and name == "sale_opens_at" and was is not None:
            changes[name] = None  # emptied: the sale is opened by hand
        elif moment is not None and (
            was is None or datetime.fromisoformat(moment) != datetime.fromisoformat(was)
        ):
            changes[name] = moment
    tiers = parse_tiers(values["prices"], current["currency"], result.errors)
    moved = [t for t in tiers if current["price_tiers"].get(t["code"]) != t["price_cents"]]
    if moved:
        changes["price_tiers"] = moved
    if not changes and not result.errors:
        result.errors.append("Nothing was changed.")
    result.body = changes
    return result


def tiers_text(tiers: dict[str, int], currency: str) -> str:
    decimals = minor_units(currency)
    return "\n".join(
        f"{code} {Decimal(cents).scaleb(-decimals):.{decimals}f}" for code, cents in tiers.items()
    )


def validation_messages(error: ValidationError) -> list[str]:
    """A command model's refusal as sentences: the field, then what is wrong with it."""
    messages = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if not isinstance(part, int))
        text = str(problem.get("msg", "is not valid")).removeprefix("Value error, ")
        messages.append(f"{where.replace('_', ' ').capitalize()}: {text}" if where else text)
    return messages
