"""The query API when things are not well: read models behind the writes, Redis down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import new_database
from http_shell.container import Container
from tests.e2e.conftest import Api, served, settings_for_tests
from tests.e2e.test_query_api import assert_problem, book
from tests.integration.projection_support import container_on
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints
from ticketblitz.http_server import free_port

pytestmark = pytest.mark.integration

ANSWER_WITHIN = 5.0  # s: the client gives up (and the test fails) on a read that hangs


@pytest.fixture(scope="module")
def without_runners(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[tuple[Api, Container]]:
    """A system of its own whose projection runners are not running (yet)."""
    assert endpoints.database_url is not None
    with (
        new_database(endpoints.database_url) as url,
        container_on(url, stack_dir / "no-runners", read_wait_seconds=0.3) as container,
        served(container) as api,
    ):
        yield api, container


@pytest.fixture(scope="module")
def without_redis(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[Api]:
    """The session's system (its runners keep the read models current) behind an app whose
    Redis is unreachable."""
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    container = bootstrap(
        settings_for_tests(endpoints, stack_dir / "no-redis-read", redis_url=dead)
    )
    with served(container) as api:
        yield api
    container.close()


def test_reads_behind_a_write_answer_503_then_catch_up(without_runners):
    api, container = without_runners
    show = api.new_show()
    placed = book(api, api.new_customer(), show, seats=["A-1-1"])
    after = {"after": placed["position"]}

    # The wait is bounded (read_wait_seconds): the read answers 503 rather than hanging until
    # the read models catch up, which here they never would (a deadline, not a timing claim).
    behind = api.http.get(f"/shows/{show}/seats", params=after, timeout=ANSWER_WITHIN)

    body = assert_problem(behind, 503, "not-caught-up")
    assert behind.headers["retry-after"] == "1"
    assert body["requested"] == placed["position"] and body["position"] < placed["position"]

    assert container.read_side is not None
    container.read_side.start_runners()
    caught_up = api.http.get(f"/shows/{show}/seats", params=after)
    assert caught_up.status_code == 200, caught_up.text
    assert caught_up.json()["sections"][0]["rows"][0]["seats"][0]["status"] == "held"


def test_hot_reads_still_answer_without_redis(without_redis: Api, api: Api):
    show = api.new_show(rows=1, seats_per_row=4, general=10)
    placed = book(api, api.new_customer(), show, seats=["A-1-4"])
    after = {"after": placed["position"]}

    # Neither a cache hit nor a hung request, each time: the client's timeout is the deadline
    # (a request stuck on the dead Redis raises httpx.ReadTimeout and fails the test).
    for _ in range(2):
        details = without_redis.http.get(f"/shows/{show}", params=after, timeout=ANSWER_WITHIN)
        seats = without_redis.http.get(f"/shows/{show}/seats", params=after, timeout=ANSWER_WITHIN)
        assert details.status_code == seats.status_code == 200
        assert details.headers["x-cache"] == seats.headers["x-cache"] == "bypass"
        assert details.json()["available"] == 13
        assert seats.json()["sections"][0]["rows"][0]["seats"][3]["status"] == "held"
