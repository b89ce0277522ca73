"""A show's venue time zone: scheduled with it (UTC by default), changed by an edit as its own
event, and shows stored before zones existed read as UTC (events and snapshots)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent

from domain.errors import InvalidShowError
from domain.show import Show, ShowEdit
from tests.unit.factories import T0, a_show, new_events, replay, show_args


class BoxOffice(Application[UUID]):
    name = "ShowTimeZoneBoxOffice"


def _mapper() -> Any:
    return BoxOffice(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper


def test_a_show_is_scheduled_with_its_venues_zone_or_utc():
    berlin = a_show(time_zone="Europe/Berlin")
    [scheduled] = new_events(berlin)
    assert (scheduled.time_zone, berlin.time_zone) == ("Europe/Berlin", "Europe/Berlin")
    assert a_show().time_zone == "UTC"


@pytest.mark.parametrize("name", ["", "Europe//Berlin", "/etc/passwd", "Europe/Berlin\n", "a b"])
def test_a_name_that_cannot_be_a_zone_is_refused(name):
    with pytest.raises(InvalidShowError):
        Show.schedule(**show_args(time_zone=name))


def test_changing_the_zone_records_time_zone_changed_and_keeps_the_times():
    show = a_show(now=T0, time_zone="Europe/Berlin")
    scheduled = new_events(show)
    starts_at = show.starts_at

    show.edit(ShowEdit(time_zone="Europe/Lisbon"), now=T0)

    [changed] = new_events(show)
    assert type(changed).__qualname__ == "Show.TimeZoneChanged"
    assert (changed.time_zone, changed.previous_time_zone) == ("Europe/Lisbon", "Europe/Berlin")
    assert (show.time_zone, show.starts_at) == ("Europe/Lisbon", starts_at)
    assert replay([*scheduled, changed]).time_zone == "Europe/Lisbon"


def test_the_same_zone_again_records_nothing_and_a_bad_one_nothing_at_all():
    show = a_show(now=T0, time_zone="Europe/Berlin")
    new_events(show)

    show.edit(ShowEdit(time_zone="Europe/Berlin"), now=T0)
    assert new_events(show) == []

    with pytest.raises(InvalidShowError):
        show.edit(ShowEdit(title="New title", time_zone="no zone"), now=T0)
    assert new_events(show) == [] and show.title != "New title"  # all or nothing


def test_a_scheduled_event_stored_before_zones_reads_as_utc():
    """Given a Scheduled event stored as version 3 (no time zone); when it is read back
    through the library's mapper; then it and the show it rebuilds are in UTC."""
    show = a_show(time_zone="Asia/Tokyo")
    mapper = _mapper()
    stored = mapper.to_stored_event(new_events(show)[0])
    state = json.loads(stored.state)
    assert state["class_version"] == 5
    state["class_version"] = 3
    del state["time_zone"]
    old = StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )

    scheduled: Any = mapper.to_domain_event(old)
    rebuilt = replay([scheduled])

    assert scheduled.time_zone == "UTC"
    assert (rebuilt.time_zone, rebuilt.title) == ("UTC", show.title)


def test_a_snapshot_taken_before_zones_loads_in_utc():
    state: dict[str, Any] = {"title": "Old show"}
    Show.upcast_v3_v4(state)
    assert state["time_zone"] == "UTC"
