"""The Kafka broker goes away while bookings are confirmed and declined.

Given the booking saga, the relay and the notifier running against a broker of their own,
when the broker stops, bookings are paid (or declined) meanwhile, and it starts again (the
embedded broker keeps topics in memory: it comes back empty),
then the relay and the notifier wait and catch up by themselves: the outage's e-mails go out;
and once the operator re-feeds the broker from the event store (`ticketblitz relay refeed`),
every integration event of the log is on it again, while the notifier, handed every event a
second time, still sends each e-mail once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.log_follower import positions_of
from process_managers.integration_events import event_id_for
from process_managers.kafka_relay import RELAY_NAME, rewind
from tests.e2e.saga_support import (
    DECLINED,
    VISA,
    SagaSystem,
    in_days,
    running_system,
    show_starting,
    wait_until,
)
from tests.faults.support import (
    book_paid,
    emails_by_event,
    emails_due,
    group_lag,
    own_stack,
    published_events,
    wait_final,
    wait_for_emails,
    wait_until_consumed,
)
from ticketblitz.embedded import EmbeddedStack, Mailbox, StackEndpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
# A bound, not a target: the former 60 s was exceeded in about one full run in five (cause
# not found, docs/RELIABILITY.md); a failure now says where it stuck.
CATCH_UP_SECONDS = 120


@pytest.fixture
def kafka() -> Iterator[EmbeddedStack]:
    with own_stack(kafka=True) as stack:
        yield stack


@pytest.fixture
def system(
    endpoints: StackEndpoints, stack_dir: Path, kafka: EmbeddedStack
) -> Iterator[SagaSystem]:
    bootstrap = kafka.endpoints.kafka_bootstrap
    with running_system(endpoints, stack_dir / "kafka-down", kafka_bootstrap=bootstrap) as system:
        yield system


def relay_position(system: SagaSystem) -> int:
    with system.store.connection() as conn:
        return positions_of(conn)[RELAY_NAME][0]


def test_relay_and_notifier_catch_up_after_the_broker_and_email_each_event_once(
    system: SagaSystem, kafka: EmbeddedStack, mailbox: Mailbox
):
    bootstrap = kafka.endpoints.kafka_bootstrap
    assert bootstrap is not None
    show_id = show_starting(system.api, in_days(30), seats=20)
    before = book_paid(system, show_id, [VISA, VISA])
    wait_for_emails(mailbox, emails_due(system.store, before))

    kafka.stop_server("kafka")
    during = book_paid(system, show_id, [VISA, DECLINED, VISA, DECLINED])
    wait_final(system, during)  # the saga needs no broker
    stuck_at = relay_position(system)
    assert stuck_at < system.store.head_position()  # nothing acknowledged, nothing recorded

    kafka.start_server("kafka")
    restarted = time.monotonic()
    after = book_paid(system, show_id, [VISA])
    wait_final(system, after)
    bookings = before + during + after
    expected = emails_due(system.store, bookings)
    try:  # the relay and the notifier catch up by themselves
        wait_for_emails(mailbox, expected, timeout=CATCH_UP_SECONDS)
    except AssertionError as error:  # say where it stuck: publishing, or consuming
        lag = group_lag(bootstrap, system.settings.kafka_notifier_group, system.bookings_topic)
        raise AssertionError(
            f"{error}: {len(emails_by_event(mailbox, expected))} came; relay at "
            f"{relay_position(system)} of {system.store.head_position()}; notifier lag {lag}"
        ) from error
    print(f"caught up {time.monotonic() - restarted:.1f} s after the broker came back")

    rewind(system.store, 0)  # `ticketblitz relay refeed --from 0`: the broker lost its topics
    head = system.store.head_position()
    wait_until(lambda: relay_position(system) >= head, 60, "the relay to publish the log again")
    wait_until_consumed(system, bootstrap)

    published = set(published_events(bootstrap, system.bookings_topic))
    every_event = {
        event_id_for(booking.id, version)
        for booking in map(system.booking, bookings)
        for version in range(1, booking.version + 1)
    }
    assert published == every_event
    print(f"{len(every_event)} integration events on Kafka, {len(expected)} e-mails")
    assert emails_by_event(mailbox, expected) == {event_id: 1 for event_id in expected}
