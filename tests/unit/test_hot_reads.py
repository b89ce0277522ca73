"""Conditional GETs (If-None-Match as RFC 9110 has it) and what the hot reads' listener
follows: no servers needed."""

from __future__ import annotations

from domain.inventory import SeatInventory
from domain.show import Show
from http_shell.conditional import entity_tag, none_match
from read_api.hot_reads import FOLLOWED_AGGREGATES, followed_topics

TAG = entity_tag(b'{"seats": []}')


def test_an_entity_tag_is_strong_and_follows_the_bytes():
    assert TAG.startswith('"') and TAG.endswith('"') and len(TAG) == 18
    assert entity_tag(b'{"seats": []}') == TAG
    assert entity_tag(b'{"seats": [1]}') != TAG


def test_if_none_match_matches_the_tag_a_list_of_tags_weak_tags_and_the_star():
    opaque = TAG.strip('"')
    for header in (TAG, f"W/{TAG}", f'"a", {TAG}', f'"a",W/"{opaque}"', "*", " * "):
        assert none_match(header, TAG), header


def test_anything_else_matches_nothing():
    opaque = TAG.strip('"')
    for header in (None, "", opaque, '"other"', f'"{opaque}', "W/", ",,", "*, *x", '"' * 9):
        assert not none_match(header, TAG), header
    assert not none_match(", ".join(f'"{n}"' for n in range(10_000)), TAG)


def test_the_listener_follows_every_event_that_changes_a_show_page_or_a_seat_map():
    # Each event's originator is the show or its seat inventory: the listener maps both
    # back to the show (domain/ids.py). An event of another aggregate here would go unseen.
    topics = followed_topics()
    prefixes = tuple(f"{a.__module__}:{a.__qualname__}." for a in FOLLOWED_AGGREGATES)
    assert (Show, SeatInventory) == FOLLOWED_AGGREGATES
    assert topics and all(t.startswith(prefixes) for t in topics), topics
    assert f"{SeatInventory.__module__}:SeatInventory.SeatsHeld" in topics
    assert f"{Show.__module__}:Show.Deleted" in topics
