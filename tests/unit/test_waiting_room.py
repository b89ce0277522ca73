"""The waiting room's rules without servers: the draw, the pace (floor(rate x minutes)), slots
of later fans, positions and waits, and the show's `queue_admits_per_minute` (validated, edited,
stored as its own event so older shows load without it)."""

from __future__ import annotations

import random
import secrets
from datetime import timedelta
from uuid import uuid4

import pytest

from domain.errors import InvalidShowError
from domain.show import Show, ShowEdit
from domain.waiting_room import (
    DRAW_BITS,
    WaitingRoomShow,
    admitted_count,
    draw,
    draw_order,
    late_slot,
    place_of,
    rank_correlation,
    slot_time,
)
from infra.event_store import TicketBlitz
from tests.unit.factories import T0, a_show, event_names, new_events, replay


class SnapshottingShows(TicketBlitz):
    name = "SnapshottingShows"
    is_snapshotting_enabled = True


OPENS = T0 + timedelta(days=1)
KEY = b"k" * 32


# --- the pace ---


@pytest.mark.parametrize(
    ("rate", "seconds", "expected"),
    [
        (300, 0, 0),
        (300, 30, 150),
        (300, 60, 300),
        (7, 60, 7),
        (7, 59.999999, 6),
        (1, 59, 0),
        (1, 60, 1),
        (100_000, 0.000600, 1),
        (60, 600, 600),
    ],
)
def test_admitted_count_is_floor_of_rate_times_minutes(rate: int, seconds: float, expected: int):
    now = OPENS + timedelta(seconds=seconds)
    assert admitted_count(rate, OPENS, now) == expected


def test_nobody_is_let_in_before_the_opening():
    assert admitted_count(300, OPENS, OPENS - timedelta(hours=1)) == 0


@pytest.mark.parametrize("rate", [1, 7, 60, 299, 300, 100_000])
def test_a_slot_is_let_in_exactly_at_its_time(rate: int):
    for slot in (1, 2, 3, rate - 1 or 1, rate, rate + 1, 10 * rate + 3):
        at = slot_time(rate, OPENS, slot)
        assert admitted_count(rate, OPENS, at) >= slot
        assert admitted_count(rate, OPENS, at - timedelta(microseconds=1)) < slot


def test_over_any_minute_the_rate_is_let_in():
    rate = 300
    for minute in range(10):
        start = OPENS + timedelta(minutes=minute, seconds=17)
        let_in = admitted_count(rate, OPENS, start + timedelta(minutes=1)) - admitted_count(
            rate, OPENS, start
        )
        assert let_in == rate


# --- later fans ---


def test_a_later_fan_queues_behind_the_last_slot_given():
    assert late_slot(last_slot=200, admitted_now=30) == 201


def test_a_later_fan_in_an_empty_room_is_let_in_now_and_no_slot_is_saved_up():
    # 200 early fans, all in by now (500 slots released): the newcomer takes the current slot...
    assert late_slot(last_slot=200, admitted_now=500) == 500
    # ...and the next one waits one slot, not 300 saved-up ones.
    assert late_slot(last_slot=500, admitted_now=500) == 501


# --- places ---


def test_before_the_opening_nobody_has_a_position():
    place = place_of(300, OPENS, OPENS - timedelta(seconds=1), slot=5)
    assert (place.position, place.admitted, place.estimated_wait_seconds) == (None, False, None)


def test_a_place_counts_the_slots_to_go_and_the_wait_at_the_rate():
    # rate 60: one a second; 30 s in, slots 1-30 are in.
    now = OPENS + timedelta(seconds=30)
    waiting = place_of(60, OPENS, now, slot=100)
    assert (waiting.position, waiting.admitted, waiting.estimated_wait_seconds) == (70, False, 70)
    next_one = place_of(60, OPENS, now, slot=31)
    assert (next_one.position, next_one.estimated_wait_seconds) == (1, 1)
    let_in = place_of(60, OPENS, now, slot=30)
    assert (let_in.position, let_in.admitted, let_in.estimated_wait_seconds) == (0, True, 0)


def test_the_room_is_on_only_while_the_sale_window_is_open():
    show = WaitingRoomShow(uuid4(), 300, OPENS, OPENS + timedelta(days=1))
    assert not show.is_active(OPENS - timedelta(seconds=1))
    assert show.is_active(OPENS)
    assert not show.is_active(OPENS + timedelta(days=1))
    assert show.takes_joins(OPENS - timedelta(days=3))
    assert not show.takes_joins(OPENS + timedelta(days=1))
    off = WaitingRoomShow(uuid4(), None, OPENS, OPENS + timedelta(days=1))
    assert not off.is_active(OPENS) and not off.takes_joins(OPENS)
    cancelled = WaitingRoomShow(uuid4(), 300, OPENS, OPENS + timedelta(days=1), cancelled=True)
    assert not cancelled.is_active(OPENS) and not cancelled.takes_joins(OPENS)


# --- the draw ---


def test_a_draw_is_fixed_per_token_and_show_and_secret_without_the_key():
    show_id, token = uuid4(), secrets.token_urlsafe(16)
    lot = draw(KEY, show_id, token)
    assert lot == draw(KEY, show_id, token)  # joining again draws the same lot
    assert 0 <= lot < 2**DRAW_BITS
    assert lot != draw(KEY, uuid4(), token)
    assert lot != draw(b"x" * 32, show_id, token)


def test_the_draw_order_is_unrelated_to_arrival_order():
    """2,000 fans arrive in a known order; their order by draw is a permutation whose rank
    correlation with arrival is near 0 (|rho| < 0.1 is over 4 standard deviations)."""
    show_id = uuid4()
    arrivals = [secrets.token_urlsafe(16) for _ in range(2000)]
    order = draw_order({token: draw(KEY, show_id, token) for token in arrivals})
    assert sorted(order) == sorted(arrivals)
    assert abs(rank_correlation(arrivals, order)) < 0.1
    # The first tenth to arrive is spread over the whole order, not bunched at its front.
    first = set(arrivals[:200])
    in_front = sum(1 for token in order[:200] if token in first)
    assert in_front < 50  # about 20 expected


def test_rank_correlation_of_orders():
    items = [str(i) for i in range(50)]
    assert rank_correlation(items, items) == 1.0
    assert rank_correlation(items, items[::-1]) == -1.0
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    assert -1.0 < rank_correlation(items, shuffled) < 1.0
    with pytest.raises(ValueError):
        rank_correlation(items, items[:-1])


# --- the show's setting ---


def test_a_show_may_be_scheduled_with_a_waiting_room():
    show = a_show(sale_opens_at=OPENS, queue_admits_per_minute=300)

    assert show.queue_admits_per_minute == 300
    events = new_events(show)
    assert event_names(events) == ["Scheduled", "WaitingRoomChanged"]
    assert replay(events).queue_admits_per_minute == 300


def test_a_show_without_one_has_none_and_records_nothing_for_it():
    show = a_show(sale_opens_at=OPENS)
    assert show.queue_admits_per_minute is None
    assert event_names(new_events(show)) == ["Scheduled"]


@pytest.mark.parametrize("rate", [0, -1, 100_001, True])
def test_a_rate_out_of_range_is_refused(rate: int):
    with pytest.raises(InvalidShowError, match="queue_admits_per_minute"):
        a_show(sale_opens_at=OPENS, queue_admits_per_minute=rate)


def test_a_waiting_room_needs_a_sale_opening():
    with pytest.raises(InvalidShowError, match="sale_opens_at"):
        a_show(queue_admits_per_minute=300)


def test_an_organiser_sets_changes_and_turns_off_the_waiting_room_before_the_opening():
    show = a_show(sale_opens_at=OPENS)
    show.collect_events()
    now = OPENS - timedelta(hours=2)

    show.edit(ShowEdit(queue_admits_per_minute=300), now=now)
    show.edit(ShowEdit(queue_admits_per_minute=600), now=now)
    show.edit(ShowEdit(queue_admits_per_minute=600), now=now)  # the same: nothing recorded
    show.edit(ShowEdit(title="Renamed"), now=now)  # other edits keep it
    assert show.queue_admits_per_minute == 600
    show.edit(ShowEdit(queue_admits_per_minute=None), now=now)

    events = new_events(show)
    assert event_names(events).count("WaitingRoomChanged") == 3
    assert show.queue_admits_per_minute is None


def test_removing_the_sale_opening_of_a_show_with_a_waiting_room_is_refused():
    show = a_show(sale_opens_at=OPENS, queue_admits_per_minute=300)
    with pytest.raises(InvalidShowError, match="sale_opens_at"):
        show.edit(ShowEdit(sale_opens_at=None), now=OPENS - timedelta(hours=1))
    # Both at once is fine: no opening, no waiting room.
    show.edit(
        ShowEdit(sale_opens_at=None, queue_admits_per_minute=None), now=OPENS - timedelta(hours=1)
    )
    assert show.queue_admits_per_minute is None and show.sale_opens_at is None


def test_once_the_sale_opened_the_rate_is_fixed_but_may_be_turned_off():
    show = a_show(sale_opens_at=OPENS, queue_admits_per_minute=300)
    after = OPENS + timedelta(minutes=5)
    with pytest.raises(InvalidShowError, match="once the sale opened"):
        show.edit(ShowEdit(queue_admits_per_minute=900), now=after)
    show.edit(ShowEdit(queue_admits_per_minute=None), now=after)
    assert show.queue_admits_per_minute is None
    with pytest.raises(InvalidShowError, match="once the sale opened"):
        show.edit(ShowEdit(queue_admits_per_minute=300), now=after)


def test_a_snapshot_keeps_the_rate_and_an_older_one_loads_without_a_waiting_room():
    app = SnapshottingShows(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    with_room = a_show(sale_opens_at=OPENS, queue_admits_per_minute=250)
    without = a_show(sale_opens_at=OPENS)
    app.save(with_room, without)
    for show in (with_room, without):
        app.take_snapshot(show.id)
    assert app.repository.get(with_room.id).queue_admits_per_minute == 250
    assert app.repository.get(without.id).queue_admits_per_minute is None
    assert isinstance(app.repository.get(without.id), Show)
