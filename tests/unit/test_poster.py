"""The Poster aggregate: which images a show is advertised with, as events."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.poster import Poster, blob_key, poster_id_for

ORGANIZER = uuid4()


def uploaded(poster: Poster, etag: str = "a" * 64) -> bool:
    return poster.upload(etag, "b" * 64, 2000, 1000, "image/webp", ORGANIZER)


def test_one_poster_stream_per_show():
    show = uuid4()
    assert Poster(show_id=show).id == poster_id_for(show) != poster_id_for(uuid4())


def test_a_new_poster_shows_nothing_until_an_upload():
    poster = Poster(show_id=uuid4())
    assert not poster.is_shown and poster.keys() == set()
    assert uploaded(poster)
    assert poster.is_shown and poster.etag("full") == "a" * 64 and poster.etag("thumb") == "b" * 64
    assert poster.keys() == {blob_key(poster.show_id, "a" * 64), blob_key(poster.show_id, "b" * 64)}
    assert [type(e).__name__ for e in poster.collect_events()] == ["Created", "Uploaded"]


def test_the_same_images_again_record_nothing():
    poster = Poster(show_id=uuid4())
    uploaded(poster)
    poster.collect_events()
    assert not uploaded(poster)
    assert poster.collect_events() == []
    assert uploaded(poster, etag="c" * 64)
    assert poster.etag("full") == "c" * 64


def test_removing_goes_back_to_the_placeholder_once():
    poster = Poster(show_id=uuid4())
    uploaded(poster)
    assert poster.remove(removed_by=ORGANIZER)
    assert not poster.is_shown and poster.keys() == set()
    assert not poster.remove(removed_by=ORGANIZER)
    assert [type(e).__name__ for e in poster.collect_events()] == ["Created", "Uploaded", "Removed"]


def test_a_poster_without_pixels_is_refused():
    with pytest.raises(ValueError):
        Poster(show_id=uuid4()).upload("a", "b", 0, 10, "image/webp", ORGANIZER)
