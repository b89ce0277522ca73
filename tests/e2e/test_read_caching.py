"""Seat maps and show pages under the surge: a strong ETag, Cache-Control, 304 Not Modified on
a matching If-None-Match, computed once per change of the show, and never older than `after`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_shell.conditional import CACHE_CONTROL
from http_shell.container import Container
from tests.e2e.conftest import Api, served, settings_for_tests
from tests.e2e.saga_support import wait_until
from tests.e2e.test_query_api import assert_problem, book, head
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints
from ticketblitz.http_server import free_port

pytestmark = pytest.mark.integration

HOT_PATHS = ("/shows/{}", "/shows/{}/seats")


def statuses(seat_map: dict[str, Any]) -> dict[str, str]:
    return {s["seat"]: s["status"] for row in seat_map["sections"][0]["rows"] for s in row["seats"]}


def etag_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    return etag


def test_hot_reads_carry_a_strong_etag_that_stays_while_the_show_does_not_change(api: Api):
    show, other = api.new_show(rows=1, seats_per_row=4), api.new_show(rows=1, seats_per_row=4)
    for n, path in enumerate(p.format(show) for p in HOT_PATHS):
        first = api.http.get(path, params={"after": head(api)})
        assert first.headers["cache-control"] == CACHE_CONTROL == "public, max-age=1, s-maxage=1"
        etag = etag_of(first)
        # Holds on another show move the read models on, not this show's answer.
        placed = book(api, api.new_customer(), other, seats=[f"A-1-{n + 1}"])
        api.http.get(f"/shows/{other}/seats", params={"after": placed["position"]})
        again = [api.http.get(path) for _ in range(5)]
        assert {etag_of(r) for r in again} == {etag}
        assert {r.content for r in again} == {first.content}


def test_a_matching_if_none_match_is_answered_304_without_a_body(api: Api):
    show = api.new_show(rows=1, seats_per_row=4)
    for path in (p.format(show) for p in HOT_PATHS):
        etag = etag_of(api.http.get(path, params={"after": head(api)}))
        opaque = etag.strip('"')
        for sent in (etag, f'W/"{opaque}"', f'"elsewhere", {etag}', "*", f'"x" ,W/"{opaque}"'):
            r = api.http.get(path, headers={"If-None-Match": sent})
            assert r.status_code == 304, (sent, r.status_code)
            assert r.content == b""
            assert r.headers["etag"] == etag and r.headers["cache-control"] == CACHE_CONTROL
            assert "x-request-id" in r.headers
        other = api.http.get(path, headers={"If-None-Match": '"not-this-one"'})
        assert etag_of(other) == etag and other.json()["show_id"] == show


def test_a_hold_changes_the_etag_and_a_stale_tag_is_never_answered_304(api: Api):
    show = api.new_show(rows=1, seats_per_row=4)
    seats_path, show_path = f"/shows/{show}/seats", f"/shows/{show}"
    before = {
        p: etag_of(api.http.get(p, params={"after": head(api)})) for p in (seats_path, show_path)
    }
    for path, etag in before.items():  # in memory now, answered 304
        assert api.http.get(path, headers={"If-None-Match": etag}).status_code == 304

    placed = book(api, api.new_customer(), show, seats=["A-1-2"])
    after = {"after": placed["position"]}

    # Asked for the hold's position with the old tag: the new answer, never a 304.
    fresh = api.http.get(seats_path, params=after, headers={"If-None-Match": before[seats_path]})
    new_seats = etag_of(fresh)
    assert new_seats != before[seats_path]
    assert fresh.json()["position"] >= placed["position"]
    assert statuses(fresh.json())["A-1-2"] == "held"
    page = api.http.get(show_path, params=after, headers={"If-None-Match": before[show_path]})
    assert etag_of(page) != before[show_path] and page.json()["available"] == 3
    # ... and the new tag is the current one: 304 at that position.
    again = api.http.get(seats_path, params=after, headers={"If-None-Match": new_seats})
    assert again.status_code == 304 and again.headers["etag"] == new_seats

    # Without `after`, the old tag stops matching once the change is seen (a small max-age).
    def changed() -> httpx.Response | None:
        r = api.http.get(seats_path, headers={"If-None-Match": before[seats_path]})
        return r if r.status_code == 200 else None

    latest = wait_until(changed, 30, "the seat map to leave the old tag")
    assert statuses(latest.json())["A-1-2"] == "held" and etag_of(latest) != before[seats_path]


def test_a_deleted_show_is_not_found_not_revalidated(api: Api):
    show = api.new_show(rows=1, seats_per_row=4)
    tags = {
        p: etag_of(api.http.get(p.format(show), params={"after": head(api)})) for p in HOT_PATHS
    }
    for path, etag in tags.items():
        r = api.http.get(path.format(show), headers={"If-None-Match": etag})
        assert r.status_code == 304

    deleted = api.http.delete(f"/shows/{show}", headers=api.admin())
    assert deleted.status_code == 204, deleted.text

    after = {"after": head(api)}
    for path, etag in tags.items():
        for sent in (etag, "*"):
            r = api.http.get(path.format(show), params=after, headers={"If-None-Match": sent})
            assert_problem(r, 404, "not-found")

        def gone(path: str = path, etag: str = etag) -> bool:
            r = api.http.get(path.format(show), headers={"If-None-Match": etag})
            return r.status_code == 404

        wait_until(gone, 30, f"{path} of a deleted show to be not found")


def test_odd_if_none_match_headers_are_answered_in_full_never_with_an_error(api: Api):
    show = api.new_show(rows=1, seats_per_row=4)
    path = f"/shows/{show}/seats"
    etag = etag_of(api.http.get(path, params={"after": head(api)}))
    for sent in (
        "garbage",
        '"unterminated',
        "W/",
        ",,,",
        '""',
        etag.strip('"'),  # unquoted: not an entity tag
        "*, " + etag.replace('"', "'"),
        ", ".join(f'"{n:020d}"' for n in range(300)),  # about 7 KB of tags
        "é" * 100,  # not ASCII (sent as UTF-8 bytes)
    ):
        r = api.http.get(path, headers={b"If-None-Match": sent.encode()})
        assert r.status_code == 200, (sent[:40], r.status_code)
        assert r.headers["etag"] == etag
    huge = api.http.get(path, headers={"If-None-Match": ", ".join(['"x"'] * 12_000)})
    assert huge.status_code < 500
    # Several header lines form one list.
    r = api.http.get(path, headers=[("If-None-Match", '"a"'), ("If-None-Match", etag)])
    assert r.status_code == 304


def test_the_seat_map_answered_from_memory_counts_in_the_metrics(api: Api):
    show = api.new_show(rows=1, seats_per_row=4)
    path = f"/shows/{show}/seats"
    etag = etag_of(api.http.get(path, params={"after": head(api)}))
    for _ in range(3):
        assert api.http.get(path, headers={"If-None-Match": etag}).status_code == 304
    metrics = httpx.get(api.server_url + "/metrics").text
    line = (
        'ticketblitz_http_requests_total{method="GET",'
        'route="/api/v1/shows/{show_id}/seats",status="304"}'
    )
    assert line in metrics
    assert show not in metrics  # ids never become label values


def test_the_catalog_page_is_answered_304_while_it_does_not_change(api: Api):
    api.new_show(rows=1, seats_per_row=2)
    api.http.get("/shows", params={"after": head(api)})

    def revalidated() -> bool:  # the catalog's position may move between the two requests
        etag = etag_of(api.http.get("/shows", params={"limit": 5}))
        r = api.http.get("/shows", params={"limit": 5}, headers={"If-None-Match": etag})
        return r.status_code == 304 and r.headers["etag"] == etag and r.content == b""

    wait_until(revalidated, 30, "a 304 for the catalog page")


@pytest.fixture(scope="module")
def without_redis(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[tuple[Api, Container]]:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    container = bootstrap(
        settings_for_tests(endpoints, stack_dir / "no-redis-etag", redis_url=dead)
    )
    with served(container) as api:
        yield api, container
    container.close()


def test_without_redis_hot_reads_stay_correct(without_redis: tuple[Api, Container], api: Api):
    # The read models are the session's (its runners follow the shared database).
    no_redis, _ = without_redis
    show = api.new_show(rows=1, seats_per_row=4)
    path = f"/shows/{show}/seats"
    first = no_redis.http.get(path, params={"after": head(api)})
    etag = etag_of(first)
    assert first.headers["x-cache"] == "bypass"
    assert no_redis.http.get(path, headers={"If-None-Match": etag}).status_code == 304

    placed = book(api, api.new_customer(), show, seats=["A-1-4"])
    after = {"after": placed["position"]}
    r = no_redis.http.get(path, params=after, headers={"If-None-Match": etag})
    assert etag_of(r) != etag and statuses(r.json())["A-1-4"] == "held"
    assert (
        no_redis.http.get(
            path, params=after, headers={"If-None-Match": r.headers["etag"]}
        ).status_code
        == 304
    )
