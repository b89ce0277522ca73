"""Liveness and readiness of the APIs: `/healthz` and `/readyz`.

Given the APIs with their projection runners on a PostgreSQL and a Kafka broker of their own,
when PostgreSQL stops, then `/readyz` answers 503 problem+json naming PostgreSQL while
`/healthz` still answers 200 (the process lives: restarting it would not help), and once
PostgreSQL is back `/readyz` answers 200 again; the same for Kafka.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Api, served, settings_for_tests
from tests.e2e.saga_support import wait_until
from tests.faults.support import own_stack, problem_of
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import EmbeddedStack, StackEndpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OUTAGE_SEEN_WITHIN = 60  # seconds for /readyz to notice (a probe takes at most 2 s)
RECOVERY_WITHIN = 120  # seconds for it to be ready again (pools revive, runners catch up)


def readyz(api: Api) -> httpx.Response:
    return httpx.get(api.server_url + "/readyz", timeout=30)


def failed_checks(response: httpx.Response) -> set[str] | None:
    """The names of the failed checks of a 503 problem+json (None for a 200)."""
    if response.status_code == 200:
        return None
    assert response.status_code == 503, response.text
    body = problem_of(response)
    assert body["type"].endswith("/not-ready"), body
    assert int(response.headers["retry-after"]) >= 1
    return {name for name, check in body["checks"].items() if not check["ok"]}


def test_healthz_says_alive_and_readyz_checks_each_server(api: Api):
    alive = httpx.get(api.server_url + "/healthz")
    assert alive.status_code == 200 and alive.json() == {"status": "alive"}
    wait_until(lambda: readyz(api).status_code == 200, RECOVERY_WITHIN, "/readyz")
    ready = readyz(api)
    checks: dict[str, Any] = ready.json()["checks"]
    assert {"postgres", "redis", "projections"} <= set(checks)
    assert all(check["ok"] for check in checks.values()), checks
    assert httpx.get(api.server_url + "/health").status_code == 200  # the old one stays


@pytest.fixture
def outage_system(
    endpoints: StackEndpoints, stack_dir: Path
) -> Iterator[tuple[Api, EmbeddedStack]]:
    with own_stack(postgres=True, kafka=True) as stack:
        settings = settings_for_tests(
            endpoints,
            stack_dir / "readyz",
            database_url=stack.endpoints.database_url,
            kafka_bootstrap=stack.endpoints.kafka_bootstrap,
            command_timeout_seconds=2.0,
        )
        container = bootstrap(settings)
        assert container.read_side is not None
        container.read_side.start_runners()
        try:
            with served(container) as api:
                yield api, stack
        finally:
            container.close()


@pytest.mark.parametrize("server", ["postgres", "kafka"])
def test_readyz_goes_unready_while_a_server_is_down_and_ready_again(
    outage_system: tuple[Api, EmbeddedStack], server: str
):
    api, stack = outage_system
    wait_until(lambda: failed_checks(readyz(api)) is None, RECOVERY_WITHIN, "ready at first")
    assert {"postgres", "redis", "kafka", "projections"} <= set(readyz(api).json()["checks"])

    stack.stop_server(server)
    failed = wait_until(
        lambda: failed_checks(readyz(api)), OUTAGE_SEEN_WITHIN, f"/readyz to notice {server}"
    )
    assert server in failed, failed
    r = readyz(api)
    assert server in problem_of(r)["detail"], r.text  # the detail names what is not ready
    assert httpx.get(api.server_url + "/healthz").status_code == 200  # alive all along

    stack.start_server(server)
    wait_until(
        lambda: failed_checks(readyz(api)) is None,
        RECOVERY_WITHIN,
        f"/readyz to be ready again after {server} came back",
    )
