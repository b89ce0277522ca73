"""Show: scheduling a sellable show (starting in the future, with a cap per customer), then
opening, closing, reopening and cancelling its sale."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent

from domain.errors import (
    InvalidShowError,
    ShowDeletedError,
    ShowEverBookedError,
    ShowStatusError,
)
from domain.inventory import DEFAULT_TICKETS_PER_CUSTOMER
from domain.seatmap import MAX_SEATS_PER_SHOW
from domain.show import (
    CANCELLED,
    DELETED,
    MAX_ADVANCE,
    ON_SALE,
    SALE_CLOSED,
    SCHEDULED,
    Show,
    ShowEdit,
)
from tests.unit.factories import (
    FLOOR_CENTS,
    STD_CENTS,
    T0,
    a_show,
    event_names,
    general,
    new_events,
    replay,
    seated,
    show_args,
)


def test_scheduling_a_show_records_scheduled_with_its_seat_map():
    args = show_args()

    show = Show.schedule(**args)

    assert show.id == args["show_id"]
    assert show.status == SCHEDULED
    assert show.currency == "EUR"
    assert show.sections == args["sections"]
    [scheduled] = new_events(show)
    assert type(scheduled).__qualname__ == "Show.Scheduled"
    assert scheduled.title == "Night Owls Live"
    assert scheduled.max_tickets_per_customer == DEFAULT_TICKETS_PER_CUSTOMER == 10


def test_a_show_is_scheduled_with_its_own_cap_per_customer():
    show = a_show(max_tickets_per_customer=4, now=T0)

    [scheduled] = new_events(show)
    assert scheduled.max_tickets_per_customer == show.max_tickets_per_customer == 4


def test_a_show_starting_after_now_can_be_scheduled():
    args = show_args()

    show = Show.schedule(**args, now=args["starts_at"] - timedelta(seconds=1))

    assert show.starts_at == args["starts_at"]


def _without_rows(args: dict[str, Any]) -> None:
    args["sections"][0]["rows"] = []


def _row_without_seats(args: dict[str, Any]) -> None:
    args["sections"][0]["rows"][0]["seats"] = 0


def _duplicate_row_label(args: dict[str, Any]) -> None:
    args["sections"][0]["rows"].append({"label": "1", "seats": 3})


def _set_section(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(args: dict[str, Any]) -> None:
        args["sections"][0].update(fields)

    return change


def _set_row_label(label: str) -> Callable[[dict[str, Any]], None]:
    def change(args: dict[str, Any]) -> None:
        args["sections"][0]["rows"][0]["label"] = label

    return change


INVALID_SHOWS: dict[str, Callable[[dict[str, Any]], None]] = {
    "blank title": lambda a: a.update(title="   "),
    "naive start time": lambda a: a.update(starts_at=T0.replace(tzinfo=None)),
    "start in the past": lambda a: a.update(now=a["starts_at"] + timedelta(days=2000)),
    "start right now": lambda a: a.update(now=a["starts_at"]),
    "no ticket per customer": lambda a: a.update(max_tickets_per_customer=0),
    "no price tiers": lambda a: a.update(price_tiers={}),
    "negative price": lambda a: a["price_tiers"].update(STD=-1),
    "bad price tier code": lambda a: a["price_tiers"].update({"S TD": 1}),
    "no sections": lambda a: a.update(sections=[]),
    "unknown tier": _set_section(tier="VIP"),
    "duplicate section codes": lambda a: a.update(
        sections=[seated("A", {"1": 2}), seated("A", {"2": 2})]
    ),
    "seated section without rows": _without_rows,
    "row without seats": _row_without_seats,
    "duplicate row labels": _duplicate_row_label,
    "row label with a dash": _set_row_label("1-2"),
    "empty section code": _set_section(code=""),
    "section code with a dash": _set_section(code="A-1"),
    "section code too long": _set_section(code="A" * 17),
    "section code with a trailing newline": _set_section(code="A\n"),
    "unknown section kind": _set_section(kind="standing"),
    "GA without capacity": lambda a: a.update(sections=[general("GA", 0)]),
    "GA with negative capacity": lambda a: a.update(sections=[general("GA", -5)]),
    "more seats than a show sells": lambda a: a.update(
        sections=[general("GA", MAX_SEATS_PER_SHOW + 1)]
    ),
}


@pytest.mark.parametrize("change", INVALID_SHOWS.values(), ids=INVALID_SHOWS.keys())
def test_an_unsellable_show_cannot_be_scheduled(change):
    args = show_args()
    change(args)

    with pytest.raises(InvalidShowError):
        Show.schedule(**args)


def test_a_show_of_general_admission_only_can_be_scheduled():
    show = a_show(sections=[general("GA", MAX_SEATS_PER_SHOW)])

    assert show.status == SCHEDULED


def test_opening_the_sale_puts_the_show_on_sale():
    show = a_show()

    show.open_sale()

    assert show.status == ON_SALE
    assert event_names(new_events(show)) == ["Scheduled", "SaleOpened"]


def test_closing_the_sale_stops_it_and_it_can_be_reopened():
    show = a_show()
    show.open_sale()

    show.close_sale()
    assert show.status == SALE_CLOSED
    show.open_sale()

    assert show.status == ON_SALE
    assert event_names(new_events(show)) == [
        "Scheduled",
        "SaleOpened",
        "SaleClosed",
        "SaleOpened",
    ]


def _scheduled() -> Show:
    return a_show()


def _on_sale() -> Show:
    show = a_show()
    show.open_sale()
    return show


def _sale_closed() -> Show:
    show = _on_sale()
    show.close_sale()
    return show


def _cancelled() -> Show:
    show = a_show()
    show.cancel("venue flooded")
    return show


SHOWS_BY_STATUS: dict[str, Callable[[], Show]] = {
    SCHEDULED: _scheduled,
    ON_SALE: _on_sale,
    SALE_CLOSED: _sale_closed,
    CANCELLED: _cancelled,
}


@pytest.mark.parametrize("status", [SCHEDULED, ON_SALE, SALE_CLOSED])
def test_a_show_not_yet_cancelled_can_be_cancelled_with_its_reason(status):
    show = SHOWS_BY_STATUS[status]()

    show.cancel("artist unwell")

    assert show.status == CANCELLED
    assert show.cancellation_reason == "artist unwell"
    last = new_events(show)[-1]
    assert type(last).__qualname__ == "Show.Cancelled"
    assert last.reason == "artist unwell"


ILLEGAL_SHOW_TRANSITIONS = [
    pytest.param(ON_SALE, Show.open_sale, id="open a sale already open"),
    pytest.param(CANCELLED, Show.open_sale, id="open the sale of a cancelled show"),
    pytest.param(SCHEDULED, Show.close_sale, id="close a sale never opened"),
    pytest.param(SALE_CLOSED, Show.close_sale, id="close a closed sale"),
    pytest.param(CANCELLED, Show.close_sale, id="close the sale of a cancelled show"),
    pytest.param(CANCELLED, lambda show: show.cancel("again"), id="cancel twice"),
]


@pytest.mark.parametrize(("status", "command"), ILLEGAL_SHOW_TRANSITIONS)
def test_an_illegal_show_transition_is_refused_and_records_nothing(status, command):
    show = SHOWS_BY_STATUS[status]()
    new_events(show)

    with pytest.raises(ShowStatusError):
        command(show)

    assert show.status == status
    assert new_events(show) == []


def test_replaying_a_shows_events_rebuilds_the_show():
    show = _sale_closed()
    show.cancel("tour called off")

    rebuilt = replay(new_events(show))

    assert rebuilt.status == CANCELLED
    assert rebuilt.cancellation_reason == "tour called off"
    assert rebuilt.version == show.version


class BoxOffice(Application[UUID]):
    name = "ShowUpcastingBoxOffice"


def test_a_scheduled_event_stored_before_caps_existed_is_read_with_the_default_cap():
    """Given a Scheduled event stored as version 1 (no cap per customer);
    when it is read back through the library's mapper (the PostgreSQL store's JSON);
    then it has the default cap, and so has the show it rebuilds."""
    show = a_show()
    mapper = BoxOffice(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    stored = mapper.to_stored_event(new_events(show)[0])
    state = json.loads(stored.state)
    assert state["class_version"] == 5
    del state["class_version"], state["max_tickets_per_customer"], state["organizer_id"]
    del state["time_zone"]
    old = StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )

    scheduled: Any = mapper.to_domain_event(old)
    rebuilt = replay([scheduled])

    assert scheduled.max_tickets_per_customer == DEFAULT_TICKETS_PER_CUSTOMER
    assert rebuilt.max_tickets_per_customer == DEFAULT_TICKETS_PER_CUSTOMER
    assert rebuilt.title == show.title
    assert rebuilt.organizer_id is None  # a show only admins manage
    assert rebuilt.time_zone == "UTC"  # shown as it was before shows had a zone


def test_a_show_scheduled_by_an_organiser_is_managed_by_them_and_admins_only():
    organiser, other = uuid4(), uuid4()

    show = a_show(organizer_id=organiser)

    assert show.is_managed_by(organiser, is_admin=False)
    assert not show.is_managed_by(other, is_admin=False)
    assert show.is_managed_by(other, is_admin=True)
    assert not a_show().is_managed_by(organiser, is_admin=False)  # no organiser: admins only


def test_a_show_is_scheduled_with_its_sale_window():
    opens_at = T0 + timedelta(days=1)
    closes_at = T0 + timedelta(days=2)

    show = a_show(sale_opens_at=opens_at, sale_closes_at=closes_at, now=T0)

    [scheduled] = new_events(show)
    assert (scheduled.sale_opens_at, scheduled.sale_closes_at) == (opens_at, closes_at)
    assert (show.sale_opens_at, show.sale_closes_at) == (opens_at, closes_at)
    assert show.status == SCHEDULED  # the window opens it, later


def test_a_scheduled_opening_that_comes_after_its_window_closed_opens_nothing():
    """Given a show whose window closed (its opening was retried late, after the closing);
    when the window's opening runs; then the sale stays closed."""
    opens_at, closes_at = T0 + timedelta(days=1), T0 + timedelta(days=2)
    show = a_show(sale_opens_at=opens_at, sale_closes_at=closes_at, now=T0)

    with pytest.raises(ShowStatusError, match="sale window closed"):
        show.open_sale_on_schedule(closes_at)

    assert show.status == SCHEDULED
    show.open_sale_on_schedule(opens_at)  # in time: it opens
    assert show.status == ON_SALE


def test_without_a_window_the_sale_is_opened_by_hand_and_closes_at_the_start():
    show = a_show()

    [scheduled] = new_events(show)
    assert scheduled.sale_opens_at is None
    assert scheduled.sale_closes_at == show.starts_at == show.sale_closes_at


def test_a_sale_may_close_exactly_at_the_start():
    args = show_args()

    show = Show.schedule(**args, sale_opens_at=T0, sale_closes_at=args["starts_at"])

    assert show.sale_closes_at == args["starts_at"]


def _window(opens_days: float | None, closes_days: float | None) -> dict[str, Any]:
    """A window in days from T0 (the show starts at T0 + 30 days)."""
    return {
        "sale_opens_at": None if opens_days is None else T0 + timedelta(days=opens_days),
        "sale_closes_at": None if closes_days is None else T0 + timedelta(days=closes_days),
    }


INVALID_WINDOWS: dict[str, dict[str, Any]] = {
    "opens after it closes": _window(5, 4),
    "opens when it closes": _window(4, 4),
    "closes after the start": _window(1, 31),
    "opens after the start, default close": _window(31, None),
    "opens at the start, default close": _window(30, None),
    "naive opening time": {"sale_opens_at": T0.replace(tzinfo=None)},
    "naive closing time": {"sale_closes_at": T0.replace(tzinfo=None)},
}


@pytest.mark.parametrize("window", INVALID_WINDOWS.values(), ids=INVALID_WINDOWS.keys())
def test_a_show_with_an_impossible_sale_window_cannot_be_scheduled(window):
    with pytest.raises(InvalidShowError):
        Show.schedule(**show_args(**window))


def test_a_scheduled_event_stored_before_sale_windows_loads_without_a_window():
    """Given a Scheduled event stored before sale windows existed (no window fields);
    when it is read back; then the show it rebuilds has no window (opened by hand)."""
    show = a_show()
    mapper = BoxOffice(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    stored = mapper.to_stored_event(new_events(show)[0])
    state = json.loads(stored.state)
    del state["sale_opens_at"], state["sale_closes_at"]
    old = StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )

    rebuilt = replay([mapper.to_domain_event(old)])

    assert (rebuilt.sale_opens_at, rebuilt.sale_closes_at) == (None, None)
    assert rebuilt.title == show.title


# --- the organiser's edits: given a show, when an edit, then its events or an error ---

START = T0 + timedelta(days=30)  # show_args' start


def _given(**overrides: Any) -> Show:
    """A show scheduled at T0 (its own events already collected)."""
    show = a_show(now=T0, **overrides)
    new_events(show)
    return show


def _fields(event: Any, *names: str) -> dict[str, Any]:
    return {name: getattr(event, name) for name in names}


def test_changing_the_details_records_details_changed_with_the_new_values():
    show = _given()

    show.edit(ShowEdit(title="Night Owls: Encore", venue="Dock Arena"), now=T0)

    [changed] = new_events(show)
    assert type(changed).__qualname__ == "Show.DetailsChanged"
    assert _fields(changed, "title", "description", "category", "venue") == {
        "title": "Night Owls: Encore",
        "description": "An evening of loud music.",
        "category": "concert",
        "venue": "Dock Arena",
    }
    assert (show.title, show.venue) == ("Night Owls: Encore", "Dock Arena")


def test_an_edit_to_what_the_show_already_is_records_nothing():
    show = _given(sale_opens_at=T0 + timedelta(days=1))

    show.edit(
        ShowEdit(
            title=show.title,
            venue=show.venue,
            starts_at=show.starts_at,
            sale_opens_at=show.sale_opens_at,
            sale_closes_at=show.sale_closes_at,
            prices={"STD": STD_CENTS},
        ),
        now=T0,
    )

    assert new_events(show) == []


def test_a_reschedule_moves_the_start_and_a_default_sale_close_with_it():
    show = _given()
    later = START + timedelta(days=7)

    show.edit(ShowEdit(starts_at=later), now=T0)

    [rescheduled] = new_events(show)
    assert type(rescheduled).__qualname__ == "Show.Rescheduled"
    assert _fields(rescheduled, "starts_at", "previous_starts_at", "sale_closes_at") == {
        "starts_at": later,
        "previous_starts_at": START,
        "sale_closes_at": later,
    }
    assert (show.starts_at, show.sale_closes_at) == (later, later)


def test_a_reschedule_keeps_a_sale_close_set_before_the_start():
    closes_at = START - timedelta(days=2)
    show = _given(sale_closes_at=closes_at)

    show.edit(ShowEdit(starts_at=START + timedelta(days=1)), now=T0)

    [rescheduled] = new_events(show)
    assert rescheduled.sale_closes_at == closes_at == show.sale_closes_at


def test_a_show_scheduled_before_sale_windows_is_rescheduled_with_its_close():
    show = _given()
    show.sale_closes_at = None  # as a show replayed from an event without a window
    earlier = START - timedelta(days=3)

    show.edit(ShowEdit(starts_at=earlier), now=T0)

    [rescheduled] = new_events(show)
    assert rescheduled.sale_closes_at == earlier


def test_a_reschedule_before_the_windows_close_needs_the_new_window_too():
    show = _given(sale_opens_at=T0 + timedelta(days=1), sale_closes_at=START - timedelta(days=1))
    earlier = START - timedelta(days=10)

    with pytest.raises(InvalidShowError, match="give sale_closes_at"):
        show.edit(ShowEdit(starts_at=earlier), now=T0)
    assert new_events(show) == []
    assert show.starts_at == START

    show.edit(ShowEdit(starts_at=earlier, sale_closes_at=earlier - timedelta(hours=1)), now=T0)
    rescheduled, window = new_events(show)
    assert event_names([rescheduled, window]) == ["Rescheduled", "SaleWindowChanged"]
    assert rescheduled.sale_closes_at == window.sale_closes_at == earlier - timedelta(hours=1)
    assert window.sale_opens_at == T0 + timedelta(days=1)


def test_changing_the_sale_window_records_sale_window_changed():
    show = _given(sale_opens_at=T0 + timedelta(days=1))
    opens_at, closes_at = T0 + timedelta(days=3), START - timedelta(hours=2)

    show.edit(ShowEdit(sale_opens_at=opens_at, sale_closes_at=closes_at), now=T0)

    [changed] = new_events(show)
    assert type(changed).__qualname__ == "Show.SaleWindowChanged"
    assert (changed.sale_opens_at, changed.sale_closes_at) == (opens_at, closes_at)
    assert (show.sale_opens_at, show.sale_closes_at) == (opens_at, closes_at)


def test_a_sale_window_without_an_opening_time_is_opened_by_hand():
    show = _given(sale_opens_at=T0 + timedelta(days=1))

    show.edit(ShowEdit(sale_opens_at=None), now=T0)

    [changed] = new_events(show)
    assert (changed.sale_opens_at, changed.sale_closes_at) == (None, START)


def test_repricing_records_tier_repriced_with_the_previous_price():
    show = _given()

    show.edit(ShowEdit(prices={"STD": 6_500, "FLOOR": FLOOR_CENTS}), now=T0)

    [repriced] = new_events(show)
    assert type(repriced).__qualname__ == "Show.TierRepriced"
    assert _fields(repriced, "tier", "price_cents", "previous_cents") == {
        "tier": "STD",
        "price_cents": 6_500,
        "previous_cents": STD_CENTS,
    }
    assert show.price_tiers == {"STD": 6_500, "FLOOR": FLOOR_CENTS}


def test_every_change_of_one_edit_is_its_own_event_in_order():
    show = _given()

    show.edit(
        ShowEdit(
            description="Louder.",
            starts_at=START + timedelta(days=1),
            sale_opens_at=T0 + timedelta(days=2),
            prices={"STD": 1},
        ),
        now=T0,
    )

    names = event_names(new_events(show))
    assert names == ["DetailsChanged", "Rescheduled", "SaleWindowChanged", "TierRepriced"]


def _cancelled_show() -> Show:
    show = _given()
    show.cancel("venue flooded")
    new_events(show)
    return show


INVALID_EDITS: dict[str, ShowEdit] = {
    "blank title": ShowEdit(title="  "),
    "start in the past": ShowEdit(starts_at=T0 - timedelta(minutes=1)),
    "start right now": ShowEdit(starts_at=T0),
    "start more than ten years ahead": ShowEdit(starts_at=T0 + MAX_ADVANCE + timedelta(days=1)),
    "start without a time zone": ShowEdit(starts_at=START.replace(tzinfo=None)),
    "window opening after it closes": ShowEdit(
        sale_opens_at=START - timedelta(days=1), sale_closes_at=START - timedelta(days=2)
    ),
    "window closing after the start": ShowEdit(sale_closes_at=START + timedelta(minutes=1)),
    "window opening at the start": ShowEdit(sale_opens_at=START),
    "new opening time in the past": ShowEdit(sale_opens_at=T0 - timedelta(hours=1)),
    "new closing time in the past": ShowEdit(
        sale_opens_at=T0 - timedelta(hours=2), sale_closes_at=T0 - timedelta(hours=1)
    ),
    "opening time without a time zone": ShowEdit(
        sale_opens_at=(T0 + timedelta(days=1)).replace(tzinfo=None)
    ),
    "unknown tier": ShowEdit(prices={"VIP": 100}),
    "negative price": ShowEdit(prices={"STD": -1}),
}


@pytest.mark.parametrize("edit", INVALID_EDITS.values(), ids=INVALID_EDITS.keys())
def test_an_invalid_edit_is_refused_and_records_nothing(edit):
    show = _given()
    before = (show.title, show.starts_at, show.sale_opens_at, show.sale_closes_at)

    with pytest.raises(InvalidShowError):
        # with a valid change too: all or nothing
        show.edit(replace(edit, venue="Elsewhere"), now=T0)

    assert new_events(show) == []
    assert (show.title, show.starts_at, show.sale_opens_at, show.sale_closes_at) == before
    assert show.venue == "Harbour Hall"


def test_a_cancelled_show_cannot_be_edited():
    show = _cancelled_show()

    with pytest.raises(ShowStatusError, match="cancelled"):
        show.edit(ShowEdit(title="Back on"), now=T0)
    assert new_events(show) == []


@pytest.mark.parametrize("late", [timedelta(0), timedelta(hours=1)], ids=["at", "after"])
def test_a_show_that_started_cannot_be_edited_or_rescheduled(late):
    show = _given()

    for edit in (ShowEdit(title="Too late"), ShowEdit(starts_at=START + timedelta(days=1))):
        with pytest.raises(ShowStatusError, match="started"):
            show.edit(edit, now=START + late)
    assert new_events(show) == []


def test_replaying_the_edits_rebuilds_the_edited_show():
    show = a_show(now=T0)
    show.open_sale()
    later = START + timedelta(days=2)
    show.edit(ShowEdit(title="Renamed", starts_at=later, prices={"FLOOR": 10}), now=T0)
    show.edit(ShowEdit(sale_closes_at=later - timedelta(hours=1)), now=T0)

    rebuilt = replay(new_events(show))

    assert rebuilt.title == "Renamed"
    assert (rebuilt.starts_at, rebuilt.sale_closes_at) == (later, later - timedelta(hours=1))
    assert rebuilt.price_tiers == {"STD": STD_CENTS, "FLOOR": 10}
    assert rebuilt.status == ON_SALE
    assert rebuilt.version == show.version


# --- deletion ---


@pytest.mark.parametrize("status", [SCHEDULED, ON_SALE, SALE_CLOSED, CANCELLED])
def test_a_show_that_never_had_a_booking_can_be_deleted(status):
    show = SHOWS_BY_STATUS[status]()
    new_events(show)

    show.delete(ever_booked=False)

    [deleted] = new_events(show)
    assert type(deleted).__qualname__ == "Show.Deleted"
    assert show.status == DELETED


def test_a_show_that_had_a_booking_must_be_cancelled_instead():
    show = _given()

    with pytest.raises(ShowEverBookedError, match="cancel it instead"):
        show.delete(ever_booked=True)

    assert new_events(show) == []
    assert show.status == SCHEDULED


DELETED_SHOW_COMMANDS = {
    "edit": lambda show: show.edit(ShowEdit(title="Ghost"), now=T0),
    "open the sale": Show.open_sale,
    "close the sale": Show.close_sale,
    "cancel": lambda show: show.cancel("gone"),
    "delete again": lambda show: show.delete(ever_booked=False),
}


@pytest.mark.parametrize(
    "command", DELETED_SHOW_COMMANDS.values(), ids=DELETED_SHOW_COMMANDS.keys()
)
def test_a_deleted_show_takes_no_more_commands(command):
    show = _on_sale()
    show.delete(ever_booked=False)
    new_events(show)

    with pytest.raises(ShowDeletedError):
        command(show)

    assert new_events(show) == []
    assert show.status == DELETED
