"""Venue time zones: which names a show may have (the commands check them against the tz
database, `zoneinfo` with the `tzdata` package) and a show's times as its audience reads them,
in the venue's zone with its abbreviation and offset (e-mails, tickets, calendars).

Times stay instants everywhere else (UTC in the log and the read models); only what people
read is local."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DEFAULT_TIME_ZONE = "UTC"
# In the tz database but no venue's zone: the machine's own, a placeholder, and the same zones
# again under directories (POSIX rules, leap seconds) that name nothing new.
NOT_VENUE_ZONES = frozenset({"localtime", "Factory", "posixrules"})
NOT_VENUE_PREFIXES = ("posix/", "right/")


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(
        name
        for name in available_timezones()
        if name not in NOT_VENUE_ZONES and not name.startswith(NOT_VENUE_PREFIXES)
    )


def valid_time_zone(name: str) -> str:
    """`name` if it is an IANA time zone of the tz database (e.g. "Europe/Berlin", "UTC");
    ValueError otherwise (names are case-sensitive, as the database's are)."""
    if not isinstance(name, str) or name not in _known_zones():
        shown = name if isinstance(name, str) and len(name) <= 64 else "that"
        raise ValueError(f"not an IANA time zone: {shown!r} (e.g. 'Europe/Berlin', 'UTC')")
    return name


def venue_zone(name: str | None) -> ZoneInfo:
    """The zone of `name`; UTC for none or a name this machine's tz database lacks (times
    are then shown in UTC, with that said, rather than not at all)."""
    try:
        return ZoneInfo(name or DEFAULT_TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIME_ZONE)


def local(moment: datetime, zone: str | None) -> datetime:
    """`moment` (an instant; a naive one is taken as UTC) on the venue's clock."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(venue_zone(zone))


def utc_offset(moment: datetime) -> str:
    """The offset of an aware local time as people write it: "UTC+01:00", "UTC+05:45",
    "UTC-03:00", "UTC+00:00"."""
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def local_time(moment: datetime, zone: str | None) -> str:
    """A show's time as its audience reads it, on the venue's clock with the zone's
    abbreviation and offset: "Mon 01 Mar 2027, 20:00 CET (UTC+01:00)", "19:00 GMT
    (UTC+00:00)"; a zone without an abbreviation of its own (the database writes "+0545")
    shows the offset only, and UTC is "20:00 UTC". English day and month names, whatever the
    machine's locale."""
    there = local(moment, zone)
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    text = (
        f"{days[there.weekday()]} {there.day:02d} {months[there.month - 1]} {there.year}, "
        f"{there.hour:02d}:{there.minute:02d}"
    )
    offset = utc_offset(there)
    abbreviation = there.tzname() or ""
    if abbreviation == "UTC":
        return f"{text} UTC"
    if abbreviation and abbreviation[0] not in "+-":
        return f"{text} {abbreviation} ({offset})"
    return f"{text} ({offset})"


def local_time_of(iso: str | None, zone: str | None, missing: str = "a new date") -> str:
    """`local_time` of an ISO 8601 time as an event's payload carries it; `missing` if none,
    the text itself if it is no time."""
    if not iso:
        return missing
    try:
        return local_time(datetime.fromisoformat(iso), zone)
    except ValueError:
        return iso
