"""Show: what is on sale, and whether it is on sale.

A show is scheduled to start in the future, with a cap on the tickets one customer may hold and
buy (`max_tickets_per_customer`); its SeatInventory, which decides holds, carries both. Its sale
window (`sale_opens_at`, `sale_closes_at`, opens < closes <= start) is when
process_managers/sale_windows.py opens and closes the sale by itself; no `sale_opens_at` means
the sale is opened by hand. A show may have a presale before it (`presale_opens_at`, before
`sale_opens_at` and the close): from then until the sale opens, only holds with a presale code
are accepted (the inventory's PresaleOpened, decided at that time by the same process manager;
domain/presale.py has the codes).

An organiser edits a show (`edit`) until it starts, unless it is cancelled: each kind of change
is its own event (DetailsChanged, Rescheduled, SaleWindowChanged, TierRepriced,
TimeZoneChanged), and a change to what the show already is records nothing. A show that never
had a booking may be deleted (`delete`): it takes no more commands, but its events stay in the
log.

A show has its venue's time zone (`time_zone`, an IANA name such as "Europe/Berlin"; the
commands check it names a zone): its times stay instants (UTC in the log), the zone only says
how tickets, e-mails and calendars show them to the audience.

The organiser may forbid the show's tickets to change hands (`transfers_allowed`, its own
event TransfersAllowedChanged: shows from before it allow them; domain/transfers.py).

An announced on-sale may have a waiting room (`queue_admits_per_minute`, 1-100,000, only with a
`sale_opens_at`; its own event WaitingRoomChanged, so shows and snapshots from before it have
none): fans queue before the opening and are let in at that rate (domain/waiting_room.py). Its
rate is fixed once the sale window opened (turning it off stays possible)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    InvalidShowError,
    ShowDeletedError,
    ShowEverBookedError,
    ShowStatusError,
)
from domain.inventory import DEFAULT_TICKETS_PER_CUSTOMER
from domain.seatmap import validate_seat_map
from domain.waiting_room import MAX_ADMITS_PER_MINUTE

MAX_ADVANCE = timedelta(days=3653)  # ten years
UTC_ZONE = "UTC"  # the time zone of shows scheduled before they had one
SCHEDULED = "scheduled"
ON_SALE = "on_sale"
SALE_CLOSED = "sale_closed"
CANCELLED = "cancelled"
DELETED = "deleted"


class Keep:
    """Stands for "leave it as it is" where None is a value (no automatic sale opening)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()


@dataclass(frozen=True)
class ShowEdit:
    """What an organiser changes on a show; None (KEEP for `sale_opens_at`, whose None means
    "opened by hand") leaves a field as it is. `prices` maps existing tier codes to new prices."""

    title: str | None = None
    description: str | None = None
    category: str | None = None
    venue: str | None = None
    starts_at: datetime | None = None
    sale_opens_at: datetime | Keep | None = KEEP
    sale_closes_at: datetime | None = None
    prices: dict[str, int] = field(default_factory=dict)
    presale_opens_at: datetime | Keep | None = KEEP
    time_zone: str | None = None
    transfers_allowed: bool | None = None
    queue_admits_per_minute: int | Keep | None = KEEP


class Show(Aggregate):
    class Scheduled(Aggregate.Created):
        """Version 2 also records the cap per customer; version 1 events (stored before it
        existed) are upcast to the default cap, which those shows' inventories apply.
        Version 3 also records the organiser who runs the show (`organizer_id`); older events
        are upcast to None: a show only admins manage. Version 4 also records the venue's time
        zone (`time_zone`); older events are upcast to "UTC", how their times were shown.
        Version 5 also records when its presale opens (`presale_opens_at`); older events are
        upcast to None: no presale."""

        class_version = 5

        show_id: UUID
        title: str
        description: str
        category: str
        venue: str
        starts_at: datetime
        currency: str
        price_tiers: dict[str, int]
        sections: list[dict[str, Any]]
        max_tickets_per_customer: int
        # Events stored before sale windows lack these: they load as None (no window).
        sale_opens_at: datetime | None
        sale_closes_at: datetime | None

        organizer_id: UUID | None
        time_zone: str
        presale_opens_at: datetime | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["max_tickets_per_customer"] = DEFAULT_TICKETS_PER_CUSTOMER

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["organizer_id"] = None

        @staticmethod
        def upcast_v3_v4(state: dict[str, Any]) -> None:
            state["time_zone"] = UTC_ZONE

        @staticmethod
        def upcast_v4_v5(state: dict[str, Any]) -> None:
            state["presale_opens_at"] = None

    # Version 2 snapshots carry `max_tickets_per_customer` (upcast_v1_v2), version 3 ones
    # `organizer_id` (upcast_v2_v3), version 4 ones `time_zone` (upcast_v3_v4), version 5
    # ones `presale_opens_at` (upcast_v4_v5).
    class_version = 5
    # Whether its tickets may change hands (domain/transfers.py). Recorded by its own event,
    # TransfersAllowedChanged, so shows (and snapshots) from before it allow them.
    transfers_allowed = True
    # The waiting room's rate (None: none). Recorded by its own event, WaitingRoomChanged, so
    # events and snapshots from before it need no upcasting: they load as "no waiting room".
    queue_admits_per_minute: int | None = None

    @event(Scheduled)
    def __init__(
        self,
        show_id: UUID,
        title: str,
        description: str,
        category: str,
        venue: str,
        starts_at: datetime,
        currency: str,
        price_tiers: dict[str, int],
        sections: list[dict[str, Any]],
        max_tickets_per_customer: int = DEFAULT_TICKETS_PER_CUSTOMER,
        sale_opens_at: datetime | None = None,
        sale_closes_at: datetime | None = None,
        organizer_id: UUID | None = None,
        time_zone: str = UTC_ZONE,
        presale_opens_at: datetime | None = None,
    ) -> None:
        self.presale_opens_at = presale_opens_at
        self.organizer_id = organizer_id
        self.time_zone = time_zone
        self.title = title
        self.description = description
        self.category = category
        self.venue = venue
        self.starts_at = starts_at
        self.currency = currency
        self.price_tiers = price_tiers
        self.sections = sections
        self.max_tickets_per_customer = max_tickets_per_customer
        self.sale_opens_at = sale_opens_at
        self.sale_closes_at = sale_closes_at
        self.status = SCHEDULED

    @staticmethod
    def create_id(show_id: UUID, **_: Any) -> UUID:
        return show_id

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before version 2 has the default cap per customer."""
        state["max_tickets_per_customer"] = DEFAULT_TICKETS_PER_CUSTOMER

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A snapshot taken before version 3 is of a show only admins manage."""
        state["organizer_id"] = None

    @staticmethod
    def upcast_v3_v4(state: dict[str, Any]) -> None:
        """A snapshot taken before version 4 shows its times in UTC."""
        state["time_zone"] = UTC_ZONE

    @staticmethod
    def upcast_v4_v5(state: dict[str, Any]) -> None:
        """A snapshot taken before version 5 is of a show without a presale."""
        state["presale_opens_at"] = None

    @classmethod
    def schedule(
        cls,
        show_id: UUID,
        title: str,
        description: str,
        category: str,
        venue: str,
        starts_at: datetime,
        currency: str,
        price_tiers: dict[str, int],
        sections: list[dict[str, Any]],
        max_tickets_per_customer: int = DEFAULT_TICKETS_PER_CUSTOMER,
        now: datetime | None = None,
        sale_opens_at: datetime | None = None,
        sale_closes_at: datetime | None = None,
        organizer_id: UUID | None = None,
        time_zone: str = UTC_ZONE,
        transfers_allowed: bool = True,
        presale_opens_at: datetime | None = None,
        queue_admits_per_minute: int | None = None,
    ) -> Show:
        """Schedule a new show; `now` is the deciding clock's time, which the show must start
        after (a show in the past would sell tickets nobody can use). The sale closes by
        itself at `sale_closes_at`, by default the show's start. `organizer_id` is who runs
        the show (None: admins only); `time_zone` the venue's (IANA name, checked by the
        command)."""
        if not title.strip():
            raise InvalidShowError("a show needs a title")
        _check_time_zone(time_zone)
        if starts_at.tzinfo is None:
            raise InvalidShowError("starts_at must carry a time zone")
        if now is not None:
            _check_start(starts_at, now)
        if max_tickets_per_customer < 1:
            raise InvalidShowError("max_tickets_per_customer must be at least 1")
        sale_closes_at = starts_at if sale_closes_at is None else sale_closes_at
        _validate_sale_window(sale_opens_at, sale_closes_at, starts_at)
        _validate_presale(presale_opens_at, sale_opens_at, sale_closes_at)
        _validate_waiting_room(queue_admits_per_minute, sale_opens_at)
        validate_seat_map(price_tiers, sections)
        show = cls(
            show_id=show_id,
            title=title,
            description=description,
            category=category,
            venue=venue,
            starts_at=starts_at,
            currency=currency.upper(),
            price_tiers=price_tiers,
            sections=sections,
            max_tickets_per_customer=max_tickets_per_customer,
            sale_opens_at=sale_opens_at,
            sale_closes_at=sale_closes_at,
            organizer_id=organizer_id,
            time_zone=time_zone,
            presale_opens_at=presale_opens_at,
        )
        if not transfers_allowed:
            show._transfers_allowed_changed(transfers_allowed=False)
        if queue_admits_per_minute is not None:
            show._waiting_room_changed(queue_admits_per_minute=queue_admits_per_minute)
        return show

    def is_managed_by(self, account_id: UUID, is_admin: bool) -> bool:
        """Admins manage every show, an organiser only the shows they scheduled."""
        return is_admin or (self.organizer_id is not None and self.organizer_id == account_id)

    def open_sale(self) -> None:
        self._check_not_deleted()
        if self.status not in (SCHEDULED, SALE_CLOSED):
            raise ShowStatusError(f"show {self.id} is {self.status}: cannot open its sale")
        self._sale_opened()

    def open_sale_on_schedule(self, now: datetime) -> None:
        """The sale window's opening: never once the window has closed (an opening retried
        late, after the closing ran, would otherwise open a sale that should stay closed)."""
        closes_at = self.sale_closes_at
        if closes_at is not None and now >= closes_at:
            raise ShowStatusError(
                f"show {self.id}: its sale window closed at {closes_at.isoformat()}"
            )
        self.open_sale()

    def check_presale_may_open(self, now: datetime) -> None:
        """The presale's opening (its inventory records it): refused (ShowStatusError, "nothing
        to do") for a show cancelled, deleted or on sale already, one without a presale or
        whose presale is not due, and once its sale window has closed."""
        self._check_not_deleted()
        if self.status not in (SCHEDULED, SALE_CLOSED):
            raise ShowStatusError(f"show {self.id} is {self.status}: no presale to open")
        opens_at = self.presale_opens_at
        if opens_at is None or now < opens_at:
            raise ShowStatusError(f"show {self.id}: no presale due at {now.isoformat()}")
        if now >= self._closes_at():
            raise ShowStatusError(f"show {self.id}: its sale window closed")

    @event("SaleOpened")
    def _sale_opened(self) -> None:
        self.status = ON_SALE

    def close_sale(self) -> None:
        self._check_not_deleted()
        if self.status != ON_SALE:
            raise ShowStatusError(f"show {self.id} is {self.status}: cannot close its sale")
        self._sale_closed()

    @event("SaleClosed")
    def _sale_closed(self) -> None:
        self.status = SALE_CLOSED

    def cancel(self, reason: str) -> None:
        self._check_not_deleted()
        if self.status == CANCELLED:
            raise ShowStatusError(f"show {self.id} is already cancelled")
        self._cancelled(reason=reason)

    @event("Cancelled")
    def _cancelled(self, reason: str) -> None:
        self.status = CANCELLED
        self.cancellation_reason = reason

    # --- the organiser's edits ---

    def edit(self, changes: ShowEdit, now: datetime) -> None:
        """Apply an organiser's changes, all or nothing: every rule is checked on the show as
        it would be before any event is recorded. A show cannot be edited once cancelled or
        started; a new start is in the future and within MAX_ADVANCE, like a new show's; the
        sale window keeps opens < closes <= start. A sale that closed at the old start (the
        default) moves with a reschedule; a window closing later than the new start must be
        given too. New prices are for new holds (the inventory keeps each claim's price)."""
        self._check_editable(now)
        starts_at = self.starts_at if changes.starts_at is None else changes.starts_at
        rescheduled = starts_at != self.starts_at
        if rescheduled:
            _check_start(starts_at, now)
        opens_at, closes_at = self._new_window(changes, starts_at, now)
        presale_at = self._new_presale(changes, opens_at, closes_at, now)
        queue_rate = self._new_waiting_room(changes, opens_at, now)
        for tier, cents in changes.prices.items():
            if tier not in self.price_tiers:
                raise InvalidShowError(f"unknown price tier: {tier}")
            if cents < 0:
                raise InvalidShowError(f"a price cannot be negative: {tier} {cents}")
        details = {
            "title": self.title if changes.title is None else changes.title,
            "description": self.description if changes.description is None else changes.description,
            "category": self.category if changes.category is None else changes.category,
            "venue": self.venue if changes.venue is None else changes.venue,
        }
        if not details["title"].strip():
            raise InvalidShowError("a show needs a title")
        if changes.time_zone is not None:
            _check_time_zone(changes.time_zone)
        # The window changed if given otherwise (a close moved with the start is the reschedule's).
        window_changed = opens_at != self.sale_opens_at or (
            changes.sale_closes_at is not None and changes.sale_closes_at != self._closes_at()
        )
        # Every rule held: record what changed, each change its own event.
        if any(getattr(self, name) != value for name, value in details.items()):
            self._details_changed(**details)
        allowed = changes.transfers_allowed
        if allowed is not None and allowed != self.transfers_allowed:
            self._transfers_allowed_changed(transfers_allowed=allowed)
        if changes.time_zone is not None and changes.time_zone != self.time_zone:
            self._time_zone_changed(time_zone=changes.time_zone, previous_time_zone=self.time_zone)
        if rescheduled:
            self._rescheduled(
                starts_at=starts_at, previous_starts_at=self.starts_at, sale_closes_at=closes_at
            )
        if window_changed:
            self._sale_window_changed(sale_opens_at=opens_at, sale_closes_at=closes_at)
        if presale_at != self.presale_opens_at:
            self._presale_window_changed(presale_opens_at=presale_at)
        if queue_rate != self.queue_admits_per_minute:
            self._waiting_room_changed(queue_admits_per_minute=queue_rate)
        for tier, cents in changes.prices.items():
            previous = self.price_tiers[tier]
            if cents != previous:
                self._tier_repriced(tier=tier, price_cents=cents, previous_cents=previous)

    def _check_editable(self, now: datetime) -> None:
        self._check_not_deleted()
        if self.status == CANCELLED:
            raise ShowStatusError(f"show {self.id} is cancelled: it cannot be edited")
        if now >= self.starts_at:
            raise ShowStatusError(
                f"show {self.id} started at {self.starts_at.isoformat()}: it cannot be edited"
            )

    def _closes_at(self) -> datetime:
        """When the sale closes: shows scheduled before sale windows close at their start."""
        return self.starts_at if self.sale_closes_at is None else self.sale_closes_at

    def _new_window(
        self, changes: ShowEdit, starts_at: datetime, now: datetime
    ) -> tuple[datetime | None, datetime]:
        """The sale window after the changes; a time that changes is in the future."""
        opens_at = (
            self.sale_opens_at if isinstance(changes.sale_opens_at, Keep) else changes.sale_opens_at
        )
        closes_at = changes.sale_closes_at
        if closes_at is None:
            closes_at = self._closes_at()
            if closes_at == self.starts_at:  # the default: the sale closes at the start
                closes_at = starts_at
            elif closes_at > starts_at:
                raise InvalidShowError(
                    f"the sale closes at {closes_at.isoformat()}, after the new start "
                    f"{starts_at.isoformat()}: give sale_closes_at (and sale_opens_at) too"
                )
        _validate_sale_window(opens_at, closes_at, starts_at)
        for name, time, before in (
            ("sale_opens_at", opens_at, self.sale_opens_at),
            ("sale_closes_at", changes.sale_closes_at, self._closes_at()),
        ):
            if time is not None and time != before and time <= now:
                raise InvalidShowError(f"a new {name} must be in the future: {time.isoformat()}")
        return opens_at, closes_at

    def _new_presale(
        self, changes: ShowEdit, opens_at: datetime | None, closes_at: datetime, now: datetime
    ) -> datetime | None:
        """The presale's opening after the changes: before the sale's opening and close; a
        new time is in the future."""
        before = self.presale_opens_at
        given = changes.presale_opens_at
        presale_at = before if isinstance(given, Keep) else given
        _validate_presale(presale_at, opens_at, closes_at)
        if presale_at is not None and presale_at != before and presale_at <= now:
            raise InvalidShowError(
                f"a new presale_opens_at must be in the future: {presale_at.isoformat()}"
            )
        return presale_at

    def _new_waiting_room(
        self, changes: ShowEdit, opens_at: datetime | None, now: datetime
    ) -> int | None:
        """The waiting room's rate after the changes: it needs a sale opening; once the
        window opened its rate is fixed (admissions so far follow from it), only turned off."""
        before = self.queue_admits_per_minute
        given = changes.queue_admits_per_minute
        rate = before if isinstance(given, Keep) else given
        _validate_waiting_room(rate, opens_at)
        opened = self.sale_opens_at is not None and self.sale_opens_at <= now
        if rate is not None and rate != before and opened:
            raise InvalidShowError(
                "the waiting room's rate cannot change once the sale opened "
                "(set queue_admits_per_minute to null to turn it off)"
            )
        return rate

    @event("WaitingRoomChanged")
    def _waiting_room_changed(self, queue_admits_per_minute: int | None) -> None:
        """How many fans a minute the waiting room lets in now (None: no waiting room)."""
        self.queue_admits_per_minute = queue_admits_per_minute

    @event("PresaleWindowChanged")
    def _presale_window_changed(self, presale_opens_at: datetime | None) -> None:
        """When the presale opens now (None: no presale)."""
        self.presale_opens_at = presale_opens_at

    @event("DetailsChanged")
    def _details_changed(self, title: str, description: str, category: str, venue: str) -> None:
        self.title = title
        self.description = description
        self.category = category
        self.venue = venue

    @event("TimeZoneChanged")
    def _time_zone_changed(self, time_zone: str, previous_time_zone: str) -> None:
        """The venue's zone (a venue corrected or moved): the show's times stay the same
        instants, they are shown in the new zone."""
        self.time_zone = time_zone

    @event("TransfersAllowedChanged")
    def _transfers_allowed_changed(self, transfers_allowed: bool) -> None:
        """The organiser lets the show's tickets change hands, or stops it (tickets given
        away before stay with their new holders)."""
        self.transfers_allowed = transfers_allowed

    @event("Rescheduled")
    def _rescheduled(
        self, starts_at: datetime, previous_starts_at: datetime, sale_closes_at: datetime
    ) -> None:
        """`sale_closes_at` is when the sale closes after the reschedule (moved with a default
        window, or given with it)."""
        self.starts_at = starts_at
        self.sale_closes_at = sale_closes_at

    @event("SaleWindowChanged")
    def _sale_window_changed(
        self, sale_opens_at: datetime | None, sale_closes_at: datetime
    ) -> None:
        self.sale_opens_at = sale_opens_at
        self.sale_closes_at = sale_closes_at

    @event("TierRepriced")
    def _tier_repriced(self, tier: str, price_cents: int, previous_cents: int) -> None:
        self.price_tiers = {**self.price_tiers, tier: price_cents}

    # --- deletion ---

    def delete(self, ever_booked: bool) -> None:
        """Delete a show that never had a booking (`ever_booked`: its inventory ever held a
        seat); one that had must be cancelled instead, so its bookings stay accountable."""
        self._check_not_deleted()
        if ever_booked:
            raise ShowEverBookedError(self.id)
        self._deleted()

    @event("Deleted")
    def _deleted(self) -> None:
        self.status = DELETED

    def _check_not_deleted(self) -> None:
        if self.status == DELETED:
            raise ShowDeletedError(self.id)


def _check_time_zone(name: str) -> None:
    """An IANA zone's name, in form only: which names exist is the tz database's (no I/O here;
    commands/venue_time.py checks it against the database before a command reaches a show)."""
    if not name or len(name) > 64 or not all(part for part in name.split("/")):
        raise InvalidShowError(f"not a time zone name: {name!r}")
    if any(not (c.isascii() and (c.isalnum() or c in "_+-/")) for c in name):
        raise InvalidShowError(f"not a time zone name: {name!r}")


def _check_start(starts_at: datetime, now: datetime) -> None:
    """A show starts in the future, within MAX_ADVANCE."""
    if starts_at.tzinfo is None:
        raise InvalidShowError("starts_at must carry a time zone")
    if starts_at <= now:
        raise InvalidShowError(
            f"a show must start in the future: {starts_at.isoformat()} is not after "
            f"{now.isoformat()}"
        )
    if starts_at - now > MAX_ADVANCE:
        # Nobody sells a show a decade ahead; a far date is a typo or an attack (a time
        # beyond the year 9999 in UTC cannot even be read back).
        raise InvalidShowError(
            f"a show must start within {MAX_ADVANCE.days} days: {starts_at.isoformat()} "
            "is too far ahead"
        )


def _validate_presale(
    presale_at: datetime | None, opens_at: datetime | None, closes_at: datetime
) -> None:
    """A presale opens before the general sale (and before the sale closes)."""
    if presale_at is None:
        return
    if presale_at.tzinfo is None:
        raise InvalidShowError("presale_opens_at must carry a time zone")
    if opens_at is not None and presale_at >= opens_at:
        raise InvalidShowError(
            f"the presale must open before the sale: presale_opens_at {presale_at.isoformat()} "
            f"is not before sale_opens_at {opens_at.isoformat()}"
        )
    if presale_at >= closes_at:
        raise InvalidShowError(
            f"the presale must open before the sale closes: presale_opens_at "
            f"{presale_at.isoformat()} is not before sale_closes_at {closes_at.isoformat()}"
        )


def _validate_waiting_room(rate: int | None, opens_at: datetime | None) -> None:
    """A waiting room lets 1-100,000 fans in a minute, counted from the sale's opening."""
    if rate is None:
        return
    if isinstance(rate, bool) or not 1 <= rate <= MAX_ADMITS_PER_MINUTE:
        raise InvalidShowError(
            f"queue_admits_per_minute must be 1 to {MAX_ADMITS_PER_MINUTE:,}: {rate!r}"
        )
    if opens_at is None:
        raise InvalidShowError(
            "a waiting room (queue_admits_per_minute) needs a sale_opens_at: fans are let in "
            "from the sale's opening"
        )


def _validate_sale_window(
    opens_at: datetime | None, closes_at: datetime, starts_at: datetime
) -> None:
    """A sale window opens before it closes, and closes at the show's start at the latest."""
    for name, time in (("sale_opens_at", opens_at), ("sale_closes_at", closes_at)):
        if time is not None and time.tzinfo is None:
            raise InvalidShowError(f"{name} must carry a time zone")
    if closes_at > starts_at:
        raise InvalidShowError(
            f"the sale must close by the show's start: sale_closes_at {closes_at.isoformat()} "
            f"is after starts_at {starts_at.isoformat()}"
        )
    if opens_at is not None and opens_at >= closes_at:
        raise InvalidShowError(
            f"the sale must open before it closes: sale_opens_at {opens_at.isoformat()} is not "
            f"before sale_closes_at {closes_at.isoformat()}"
        )
