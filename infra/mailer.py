"""Sending e-mail over SMTP (smtplib), in two phases so a caller can narrow the window in which
a crash leaves it unsure whether a message went out.

`prepare` does everything but the last step: it connects, names sender and recipient and
transmits the whole message, except the final "." that asks the server to deliver it. Until
that dot the server delivers nothing: a connection that drops, or an `abandon`, discards the
message. `deliver` sends the dot and reads the server's answer. Only a crash between those two
packets leaves the outcome unknown.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

SMTP_FAILURES = (smtplib.SMTPException, OSError)
# Set by whoever composes a message: what kind of e-mail it is, for the log line (no content).
KIND_HEADER = "X-TicketBlitz-Kind"
log = logging.getLogger(__name__)


class MailUnavailableError(Exception):
    """The SMTP server could not be reached or dropped the connection; retry later."""


class MailRejectedError(Exception):
    """The server refused the message (it delivered nothing)."""

    def __init__(self, code: int, reply: str) -> None:
        super().__init__(f"SMTP {code}: {reply}")
        self.code = code
        self.permanent = code >= 500


class PreparedMail:
    def __init__(self, connection: smtplib.SMTP, owner: SmtpMailer, message: EmailMessage) -> None:
        self._connection = connection
        self._owner = owner
        self._to = str(message["To"])
        self._kind = str(message.get(KIND_HEADER, "e-mail"))
        self._message_id = str(message["Message-ID"])

    def deliver(self) -> None:
        try:
            self._connection.send(b".\r\n")
            code, reply = self._connection.getreply()
        except SMTP_FAILURES as error:
            self._owner.disconnect()
            raise MailUnavailableError(str(error)) from error
        if code != 250:
            self._owner.disconnect()
            raise MailRejectedError(code, reply.decode(errors="replace"))
        log.info("sent %s to %s (%s)", self._kind, self._to, self._message_id)

    def abandon(self) -> None:
        """Drop the connection before the final dot: the server discards the message."""
        self._owner.disconnect()


class SmtpMailer:
    """One SMTP connection, reused between messages and re-opened after any failure."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.sender = sender
        self._host = host
        self._port = port
        self._user = user
        self._password = password
        self._starttls = starttls
        self._timeout = timeout_seconds
        self._connection: smtplib.SMTP | None = None

    def prepare(self, message: EmailMessage) -> PreparedMail:
        """Transmit `message` up to (not including) the final dot. A message without `Date` or
        `Message-ID` gets them here (mail clients sort and thread by them; spam filters mark
        mail without them)."""
        if message["Date"] is None:
            message["Date"] = format_datetime(datetime.now(UTC))
        if message["Message-ID"] is None:
            domain = parseaddr(self.sender)[1].rpartition("@")[2]
            message["Message-ID"] = make_msgid(domain=domain or None)
        data = re.sub(rb"(?m)^\.", b"..", message.as_bytes(policy=SMTP))
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        try:
            connection = self._connect()
            self._expect(connection.mail(self.sender), 250)
            self._expect(connection.rcpt(str(message["To"])), 250, 251)
            self._expect(connection.docmd("DATA"), 354)
            connection.send(data)
        except SMTP_FAILURES as error:
            self.disconnect()
            raise MailUnavailableError(str(error)) from error
        except MailRejectedError:
            self.disconnect()
            raise
        return PreparedMail(connection, self, message)

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            try:
                self._expect(self._connection.rset(), 250)
                return self._connection
            except (*SMTP_FAILURES, MailRejectedError):
                self.disconnect()
        connection = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        # The final dot goes out alone, right after the message: without this, Nagle's
        # algorithm holds it back until the server's delayed ACK (40 ms per e-mail).
        assert connection.sock is not None
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.ehlo()
        if self._starttls:
            connection.starttls()
            connection.ehlo()
        if self._user and self._password:
            connection.login(self._user, self._password)
        self._connection = connection
        return connection

    @staticmethod
    def _expect(answer: tuple[int, bytes], *codes: int) -> None:
        code, reply = answer
        if code not in codes:
            raise MailRejectedError(code, reply.decode(errors="replace"))

    def disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
