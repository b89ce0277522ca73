"""The ops port of `ticketblitz workers` and `ticketblitz projections run`.

Given `ticketblitz workers` (a process of its own, `TICKETBLITZ_OPS_PORT` set) on a fresh
database, the session's Stripe emulator and SMTP server, and a Kafka broker of its own,
when fans book and pay (one card accepted, one declined),
then its `/metrics` counts the holds, the confirmation, the decline and the e-mails sent, its
`/healthz` and `/readyz` answer 200; while the broker is down `/readyz` answers 503
problem+json naming Kafka (`/healthz` still 200), and 200 again once it is back.
And `ticketblitz projections run` answers `/healthz`, `/readyz` and the read models' lag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from http_shell.metrics import BUSINESS_EVENTS
from tests.e2e.saga_support import (
    DECLINED,
    VISA,
    SagaSystem,
    in_days,
    show_starting,
    start_system,
    wait_until,
)
from tests.faults.support import CliProcess, book_paid, own_stack, problem_of, wait_final
from ticketblitz.embedded import EmbeddedStack, StackEndpoints
from ticketblitz.http_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

WITHIN = 120  # seconds: a bound for each wait, not a target


@pytest.fixture
def kafka() -> Iterator[EmbeddedStack]:
    with own_stack(kafka=True) as stack:
        yield stack


@pytest.fixture
def system(
    endpoints: StackEndpoints, stack_dir: Path, kafka: EmbeddedStack
) -> Iterator[SagaSystem]:
    own = StackEndpoints(
        **{**endpoints.__dict__, "kafka_bootstrap": kafka.endpoints.kafka_bootstrap}
    )
    system = start_system(own, stack_dir / "ops-port")
    try:
        yield system
    finally:
        system.close()


def ops_process(args: list[str], system: SagaSystem, log: Path) -> tuple[CliProcess, str]:
    port = free_port()
    process = CliProcess(args, system.settings.model_copy(update={"ops_port": port}), log)
    return process, f"http://127.0.0.1:{port}"


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=10)
    except httpx.TransportError:
        return None


def metric(text: str, name: str, labels: str = "") -> float:
    """A sample's value in Prometheus text (0 when absent)."""
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def status_of(url: str) -> int | None:
    r = get(url)
    return None if r is None else r.status_code


def test_the_workers_ops_port_counts_business_and_says_when_kafka_is_away(
    system: SagaSystem, kafka: EmbeddedStack, stack_dir: Path
):
    process, ops = ops_process(["workers"], system, stack_dir / "ops-port-workers.log")
    process.start()
    try:
        wait_until(lambda: status_of(ops + "/readyz") == 200, WITHIN, "the workers to be ready")
        assert status_of(ops + "/healthz") == 200
        ready = httpx.get(ops + "/readyz").json()
        assert {"postgres", "kafka"} <= set(ready["checks"]), ready

        show_id = show_starting(system.api, in_days(30), seats=10)
        booked = book_paid(system, show_id, [VISA, DECLINED])
        wait_final(system, booked)

        def counted() -> str | None:
            r = get(ops + "/metrics")
            if r is None or r.status_code != 200:
                return None
            text = r.text
            done = (
                metric(text, "ticketblitz_holds_total") >= 2
                and metric(text, "ticketblitz_confirmations_total") >= 1
                and metric(text, "ticketblitz_declines_total") >= 1
                and metric(text, "ticketblitz_emails_sent_total", '{kind="booking.confirmed"}') >= 1
            )
            return text if done else None

        text = wait_until(counted, WITHIN, "the business counters and e-mails on /metrics")
        for name in ("expiries", "refunds", "checkins", "waitlist_offers"):
            assert f"ticketblitz_{name}_total " in text, name  # exported, even while 0

        kafka.stop_server("kafka")
        wait_until(lambda: status_of(ops + "/readyz") == 503, WITHIN, "/readyz to notice Kafka")
        r = httpx.get(ops + "/readyz", timeout=30)
        body = problem_of(r)
        assert body["checks"]["kafka"]["ok"] is False and body["checks"]["postgres"]["ok"]
        assert "kafka" in body["detail"]
        assert status_of(ops + "/healthz") == 200  # the workers live on, waiting for it

        kafka.start_server("kafka")
        wait_until(lambda: status_of(ops + "/readyz") == 200, WITHIN, "/readyz after Kafka")
        assert process.alive(), process.log_tail()
    finally:
        process.stop()


def test_the_projection_runners_ops_port_reports_lag(system: SagaSystem, stack_dir: Path):
    process, ops = ops_process(["projections", "run"], system, stack_dir / "ops-port-proj.log")
    process.start()
    try:
        wait_until(lambda: status_of(ops + "/readyz") == 200, WITHIN, "the runners to be ready")
        assert status_of(ops + "/healthz") == 200
        ready = httpx.get(ops + "/readyz").json()
        assert set(ready["checks"]) == {"postgres", "projections"}, ready
        text = httpx.get(ops + "/metrics").text
        assert "ticketblitz_projection_lag_seconds{" in text
        assert "ticketblitz_event_store_head_position " in text
        missing = httpx.get(ops + "/nothing")
        assert missing.status_code == 404 and problem_of(missing)

        # Every metric the Grafana dashboard plots is one that some process exports.
        exported = metric_names(text) | metric_names(
            httpx.get(system.api.server_url + "/metrics").text
        )
        exported |= {*BUSINESS_EVENTS, "ticketblitz_emails_sent"}  # the workers' (above)
        plotted = metric_names(DASHBOARD.read_text())
        assert plotted and plotted <= exported, plotted - exported
    finally:
        process.stop()


DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "ticketblitz.json"


def metric_names(text: str) -> set[str]:
    """The metric names in a text (Prometheus exposition or PromQL), without the suffixes."""
    names = set(re.findall(r"\bticketblitz_[a-z_]+", text))
    return {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in names}
