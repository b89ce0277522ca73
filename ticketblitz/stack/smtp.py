"""The embedded SMTP server (``aiosmtpd``, a thread of this process) and its :class:`Mailbox`."""

from __future__ import annotations

import email
import email.policy
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ticketblitz.stack.processes import LOOPBACK, free_port

if TYPE_CHECKING:
    from aiosmtpd.controller import Controller

_log = logging.getLogger(__name__)


class Mailbox:
    """The messages the embedded SMTP server received: one ``.eml`` file per message.

    Any process can read them: the server writes each file under a temporary name and
    renames it into place, so a reader never sees a half-written message. File names
    start with the arrival time in nanoseconds, so sorting the names sorts by arrival.
    Each message gets two headers from the SMTP envelope prepended: ``X-MailFrom`` and
    ``X-RcptTo`` (comma separated; it includes Bcc recipients, which are not in the headers).
    """

    _sequence = itertools.count()

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def deliver(self, raw: bytes) -> Path:
        """Store one raw RFC 5322 message atomically and return its file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{next(self._sequence):06d}-{uuid.uuid4().hex[:8]}.eml"
        final = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        with open(temporary, "wb") as out:
            out.write(raw)
        os.replace(temporary, final)
        return final

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.name.endswith(".eml"))
        except FileNotFoundError:
            return []

    def messages(self) -> list[EmailMessage]:
        """Every stored message, parsed, oldest first."""
        found: list[EmailMessage] = []
        for path in self._files():
            try:
                raw = path.read_bytes()
            except FileNotFoundError:  # cleared meanwhile by someone else
                continue
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
        return found

    def wait_for(
        self,
        predicate: Callable[[EmailMessage], bool],
        timeout: float = 10.0,
        *,
        poll_interval: float = 0.05,
    ) -> EmailMessage:
        """The oldest message for which ``predicate`` is true, polling until ``timeout`` s.

        Raises ``TimeoutError`` if no stored message matches in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages()
            for message in messages:
                if predicate(message):
                    return message
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no message in {self.directory} matched within {timeout} s "
                    f"({len(messages)} message(s) there)"
                )
            time.sleep(poll_interval)

    def clear(self) -> None:
        """Delete every stored message."""
        for path in self._files():
            path.unlink(missing_ok=True)


class _MailDropHandler:
    """aiosmtpd handler: every message received goes to a :class:`Mailbox`."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        rcpt_tos = ", ".join(str(r) for r in envelope.rcpt_tos)
        prefix = f"X-MailFrom: {envelope.mail_from}\r\nX-RcptTo: {rcpt_tos}\r\n"
        try:
            self.mailbox.deliver(prefix.encode("utf-8") + bytes(content))
        except OSError as error:
            _log.exception("could not store a received message")
            return f"451 Requested action aborted: {error.strerror or error}"
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1, in a thread of this process; every message lands in ``mailbox``."""

    def __init__(self, mailbox: Mailbox, timeout: float) -> None:
        self.mailbox = mailbox
        self.timeout = timeout
        self.port: int | None = None  # kept across a restart
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def pid(self) -> int | None:
        return None  # not a process of its own

    def launch(self) -> None:
        from aiosmtpd.controller import Controller

        port = self.port = self.port or free_port()
        self.mailbox.directory.mkdir(parents=True, exist_ok=True)
        # server_hostname avoids socket.getfqdn(), which can stall for seconds without DNS.
        controller = Controller(
            _MailDropHandler(self.mailbox),
            hostname=LOOPBACK,
            port=port,
            server_hostname="localhost",
            ready_timeout=self.timeout,
        )
        try:
            controller.start()
        except Exception as error:
            raise RuntimeError(
                f"embedded smtp did not start on {LOOPBACK}:{port}: {error!r}"
            ) from error
        self._controller = controller

    def wait_ready(self, deadline: float) -> None:
        """Nothing to wait for: :meth:`launch` returns once the server accepts connections."""

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop(no_assert=True)
