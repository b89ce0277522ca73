"""The SMTP mailer against the embedded SMTP server: what every e-mail carries, what it logs."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from uuid import uuid4

import pytest

from infra.mailer import KIND_HEADER, SmtpMailer
from ticketblitz.embedded import Mailbox, StackEndpoints

pytestmark = pytest.mark.integration


def test_every_e_mail_gets_a_date_and_a_message_id_and_a_log_line_without_its_content(
    endpoints: StackEndpoints, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
):
    assert endpoints.smtp_host is not None and endpoints.smtp_port is not None
    mailer = SmtpMailer(endpoints.smtp_host, endpoints.smtp_port, "TicketBlitz <t@tb.example>")
    to = f"fan-{uuid4().hex[:8]}@example.com"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = mailer.sender, to, "Secret plans"
    message[KIND_HEADER] = "booking.confirmed"
    message.set_content("the body is nobody's business")
    with caplog.at_level(logging.INFO, logger="infra.mailer"):
        mailer.prepare(message).deliver()
    mailer.disconnect()

    got = mailbox.wait_for(lambda m: m["To"] == to)
    assert parsedate_to_datetime(str(got["Date"])).tzinfo is not None
    message_id = str(got["Message-ID"])
    assert message_id.startswith("<") and message_id.endswith("@tb.example>")
    lines = [r.getMessage() for r in caplog.records if r.name == "infra.mailer"]
    assert lines == [f"sent booking.confirmed to {to} ({got['Message-ID']})"]
    assert "Secret" not in lines[0] and "body" not in lines[0]


def test_a_message_that_has_its_own_date_and_id_keeps_them(
    endpoints: StackEndpoints, mailbox: Mailbox
):
    assert endpoints.smtp_host is not None and endpoints.smtp_port is not None
    mailer = SmtpMailer(endpoints.smtp_host, endpoints.smtp_port, "t@tb.example")
    to = f"fan-{uuid4().hex[:8]}@example.com"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = mailer.sender, to, "Hello"
    message["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    message["Message-ID"] = "<booking-1@tb.example>"
    message.set_content("hi")
    mailer.prepare(message).deliver()
    mailer.disconnect()
    got = mailbox.wait_for(lambda m: m["To"] == to)
    assert (str(got["Date"]), str(got["Message-ID"])) == (
        "Fri, 04 Dec 2026 10:00:00 +0000",
        "<booking-1@tb.example>",
    )
