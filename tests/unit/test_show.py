"""Show: scheduling a sellable show (starting in the future, with a cap per customer), then
opening, closing, reopening and cancelling its sale."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent

from domain.errors import InvalidShowError, ShowStatusError
from domain.inventory import DEFAULT_TICKETS_PER_CUSTOMER
from domain.seatmap import MAX_SEATS_PER_SHOW
from domain.show import CANCELLED, ON_SALE, SALE_CLOSED, SCHEDULED, Show
from tests.unit.factories import (
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
    assert state["class_version"] == 3
    del state["class_version"], state["max_tickets_per_customer"], state["organizer_id"]
    old = StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )

    scheduled: Any = mapper.to_domain_event(old)
    rebuilt = replay([scheduled])

    assert scheduled.max_tickets_per_customer == DEFAULT_TICKETS_PER_CUSTOMER
    assert rebuilt.max_tickets_per_customer == DEFAULT_TICKETS_PER_CUSTOMER
    assert rebuilt.title == show.title
    assert rebuilt.organizer_id is None  # a show only admins manage


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
