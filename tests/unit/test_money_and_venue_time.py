"""Money and dates for people, without servers: each currency's decimals (ISO 4217), a show's
times on its venue's clock, which time zone names a show may have."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from commands.models import ScheduleShow, ShowChanges
from commands.venue_time import local_time, local_time_of, valid_time_zone
from domain.money import amount, minor_units, money, plain_amount
from projections.attendee_csv import money as csv_money


@pytest.mark.parametrize(
    ("currency", "decimals"),
    [
        *[("EUR", 2), ("usd", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("JOD", 3)],
        *[("OMR", 3), ("TND", 3), ("CLF", 4), ("XYZ", 2), ("", 2)],
    ],
)
def test_each_currency_has_its_iso_4217_decimals(currency, decimals):
    assert minor_units(currency) == decimals


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (4500, "EUR", "45.00 EUR"),
        (5, "EUR", "0.05 EUR"),
        (123456789, "EUR", "1,234,567.89 EUR"),
        (-250, "EUR", "-2.50 EUR"),
        (4500, "JPY", "4,500 JPY"),
        (0, "JPY", "0 JPY"),
        (12345, "KWD", "12.345 KWD"),
        (7, "kwd", "0.007 KWD"),
        (4500, "XYZ", "45.00 XYZ"),
    ],
)
def test_money_is_shown_with_its_currencys_decimals(minor, currency, shown):
    assert money(minor, currency) == shown


def test_an_amount_for_a_spreadsheet_has_no_thousands_separator():
    assert amount(123456, "EUR") == "1,234.56"
    assert plain_amount(123456, "EUR") == "1234.56"
    assert [csv_money(c, "JPY") for c in (4500, -3)] == ["4500", "-3"]
    assert [csv_money(c, "KWD") for c in (4500, 5)] == ["4.500", "0.005"]
    assert csv_money(4500) == "45.00"  # no currency: two decimals, as before


WINTER = datetime(2027, 3, 1, 19, 0, tzinfo=UTC)
SUMMER = datetime(2027, 7, 1, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "zone", "shown"),
    [
        (WINTER, "Europe/Berlin", "Mon 01 Mar 2027, 20:00 CET (UTC+01:00)"),
        (SUMMER, "Europe/Berlin", "Thu 01 Jul 2027, 20:30 CEST (UTC+02:00)"),
        (WINTER, "America/New_York", "Mon 01 Mar 2027, 14:00 EST (UTC-05:00)"),
        (WINTER, "Asia/Tokyo", "Tue 02 Mar 2027, 04:00 JST (UTC+09:00)"),
        (WINTER, "Asia/Kathmandu", "Tue 02 Mar 2027, 00:45 (UTC+05:45)"),  # no abbreviation
        (WINTER, "UTC", "Mon 01 Mar 2027, 19:00 UTC"),
        (WINTER, None, "Mon 01 Mar 2027, 19:00 UTC"),
        (WINTER, "Mars/Olympus_Mons", "Mon 01 Mar 2027, 19:00 UTC"),  # unknown here: UTC
    ],
)
def test_a_time_is_shown_on_the_venues_clock_with_its_zone(moment, zone, shown):
    assert local_time(moment, zone) == shown


def test_a_payloads_time_is_read_in_any_offset_and_shown_in_the_venues_zone():
    assert local_time_of("2027-03-01T20:00:00+01:00", "Europe/Lisbon") == (
        "Mon 01 Mar 2027, 19:00 WET (UTC+00:00)"
    )
    assert local_time_of(None, "Europe/Berlin") == "a new date"
    assert local_time_of("not a time", "Europe/Berlin") == "not a time"


@pytest.mark.parametrize("name", ["Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires"])
def test_an_iana_zone_is_a_venues_zone(name):
    assert valid_time_zone(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "europe/berlin",  # the database's names are case-sensitive
        "Europe/Atlantis",
        "localtime",  # the machine's own zone, not a venue's
        "posix/Europe/Berlin",
        "right/UTC",
        "../../etc/passwd",
        "/etc/localtime",
        "Europe/Berlin\x00",
        "CET ",
        "x" * 500,
    ],
)
def test_anything_else_is_refused_with_a_clear_error(name):
    with pytest.raises(ValueError, match="not an IANA time zone"):
        valid_time_zone(name)


def _schedule(**fields: object) -> ScheduleShow:
    body: dict[str, object] = {
        "title": "Night",
        "category": "jazz",
        "venue": "Hall",
        "starts_at": "2027-03-01T20:00:00+01:00",
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 100}],
        "sections": [{"code": "GA", "kind": "general", "tier": "STD", "capacity": 10}],
        **fields,
    }
    return ScheduleShow.model_validate(body)


def test_a_show_is_scheduled_in_utc_unless_given_its_venues_zone():
    assert _schedule().time_zone == "UTC"
    assert _schedule(time_zone="Europe/Berlin").time_zone == "Europe/Berlin"
    for bad in ("Berlin", 1, None, "Europe/Berlin/Mitte"):
        with pytest.raises(ValidationError):
            _schedule(time_zone=bad)


def test_an_edit_may_change_the_zone_but_not_to_nothing():
    assert ShowChanges.model_validate({"time_zone": "Asia/Tokyo"}).time_zone == "Asia/Tokyo"
    for bad in ({"time_zone": None}, {"time_zone": "Tokyo"}):
        with pytest.raises(ValidationError):
            ShowChanges.model_validate(bad)
