"""The mail server goes away while bookings are confirmed and declined.

Given the booking saga and the notifier running against an SMTP server of their own,
when the SMTP server stops, bookings are paid (or declined) meanwhile, and it starts again,
then the e-mails of the outage wait (the notifier keeps them, it does not drop them) and go
out once it is back, and every e-mail, before, during and after the outage, arrives once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from process_managers.notifier import SENT
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
    own_stack,
    saw_log,
    wait_final,
    wait_for_emails,
    wait_until_consumed,
)
from ticketblitz.embedded import EmbeddedStack, StackEndpoints

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def smtp() -> Iterator[EmbeddedStack]:
    with own_stack(smtp=True) as stack:
        yield stack


@pytest.fixture
def system(endpoints: StackEndpoints, stack_dir: Path, smtp: EmbeddedStack) -> Iterator[SagaSystem]:
    with running_system(
        endpoints, stack_dir / "smtp-down", smtp_port=smtp.endpoints.smtp_port
    ) as s:
        yield s


def test_emails_wait_for_the_mail_server_and_each_goes_out_once(
    system: SagaSystem, smtp: EmbeddedStack, caplog: pytest.LogCaptureFixture
):
    assert system.endpoints.kafka_bootstrap is not None
    mailbox = smtp.mailbox
    show_id = show_starting(system.api, in_days(30), seats=20)
    before = book_paid(system, show_id, [VISA, VISA])
    wait_for_emails(mailbox, emails_due(system.store, before))

    smtp.stop_server("smtp")
    during = book_paid(system, show_id, [VISA, DECLINED, VISA, DECLINED])
    wait_final(system, during)
    wait_until(
        lambda: saw_log(caplog, "process_managers.notifier", "mail server unavailable"),
        30,
        "the notifier to find the mail server down",
    )
    held_back = emails_due(system.store, during)
    assert not emails_by_event(mailbox, held_back)  # nothing could go out

    smtp.start_server("smtp")
    after = book_paid(system, show_id, [VISA])
    wait_final(system, after)
    expected = emails_due(system.store, before + during + after)
    wait_for_emails(mailbox, expected)
    wait_until_consumed(system, system.endpoints.kafka_bootstrap)

    received = emails_by_event(mailbox)
    print(f"{len(expected)} e-mails, {len(held_back)} of them held back during the outage")
    assert received == {event_id: 1 for event_id in expected}
    with system.store.connection() as conn:
        rows = conn.execute("SELECT event_id::text, status FROM sent_emails").fetchall()
    assert dict(rows) == {event_id: SENT for event_id in expected}
