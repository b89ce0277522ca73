"""One logging setup for every `ticketblitz` process.

JSON lines when stderr is not a terminal (or `TICKETBLITZ_LOG_FORMAT=json`): one object per
line with `timestamp` (ISO 8601, UTC), `level`, `logger`, `message` and, when in play,
`request_id`, `trace_id`/`span_id` (while a span is recording), `show_id`, `booking_id` and
`exception`. On a terminal (or `TICKETBLITZ_LOG_FORMAT=text`): a short line with the time.

The ids come from context variables: the HTTP middleware (http_shell/request_ids.py) sets
the request id and the show or booking named by the path, and anyone may bind more with
`log_context(...)` for a block of work. The embedded servers' chatter (pgserver's initdb,
the stack's start and stop) is logged at DEBUG: shown only with `TICKETBLITZ_LOG_LEVEL=DEBUG`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, TextIO

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
SHOW_ID: ContextVar[str | None] = ContextVar("show_id", default=None)
BOOKING_ID: ContextVar[str | None] = ContextVar("booking_id", default=None)
_CONTEXT = {"request_id": REQUEST_ID, "show_id": SHOW_ID, "booking_id": BOOKING_ID}

# Loggers of the embedded servers and their launcher: below WARNING, their lines are DEBUG.
EMBEDDED_LOGGERS = ("pgserver", "ticketblitz.embedded", "ticketblitz.stack", "aiohttp.access")
# Libraries that log a line per request, message or partition: warnings and errors only.
CHATTY_LOGGERS = ("kafka", "stripe", "mail.log", "httpx", "httpcore")

FORMATS = ("auto", "json", "text")


@contextmanager
def log_context(
    *, request_id: str | None = None, show_id: str | None = None, booking_id: str | None = None
) -> Iterator[None]:
    """Every log line of this block (and of the threads it hands its context to) carries
    the ids given; ids not given keep their outer value."""
    tokens: list[tuple[ContextVar[str | None], Token[str | None]]] = []
    for name, value in (
        ("request_id", request_id),
        ("show_id", show_id),
        ("booking_id", booking_id),
    ):
        if value is not None:
            var = _CONTEXT[name]
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _trace_ids() -> tuple[str, str] | None:
    """The current span's trace and span ids (hex), if OpenTelemetry is tracing."""
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - the API ships with our dependencies
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class ContextFilter(logging.Filter):
    """Puts the ids in play on every record (as attributes both formatters read)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        if getattr(record, "trace_id", None) is None:
            ids = _trace_ids()
            record.trace_id, record.span_id = ids if ids else (None, None)
        return True


class EmbeddedAtDebug(logging.Filter):
    """Demotes the embedded servers' informational lines to DEBUG, and drops them unless the
    handler's threshold lets DEBUG through."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or not _is_embedded(record.name):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.threshold <= logging.DEBUG


def _is_embedded(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in EMBEDDED_LOGGERS)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ids only when they are in play."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "trace_id", "span_id", "show_id", "booking_id"):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class HumanFormatter(logging.Formatter):
    """`12:04:05.123 INFO  ticketblitz.cli: message [request 3f2a…]` (local time)."""

    def __init__(self) -> None:
        text = "%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s: %(message)s"
        super().__init__(text, "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{text} [request {request_id}]" if request_id else text


def chosen_format(stream: TextIO, wanted: str | None = None) -> str:
    """`json` or `text`: as asked (`TICKETBLITZ_LOG_FORMAT`), else text on a terminal."""
    wanted = (wanted or os.environ.get("TICKETBLITZ_LOG_FORMAT") or "auto").strip().lower()
    if wanted not in FORMATS:
        wanted = "auto"
    if wanted != "auto":
        return wanted
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def chosen_level(wanted: str | int | None = None) -> int:
    """`TICKETBLITZ_LOG_LEVEL` (a name such as DEBUG or WARNING), INFO by default."""
    if isinstance(wanted, int):
        return wanted
    name = (wanted or os.environ.get("TICKETBLITZ_LOG_LEVEL") or "INFO").strip().upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.INFO


def configure_logging(
    level: str | int | None = None, fmt: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one handler in the chosen format; returns it."""
    out = stream if stream is not None else sys.stderr
    threshold = chosen_level(level)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if chosen_format(out, fmt) == "json" else HumanFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(EmbeddedAtDebug(threshold))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    handler.setLevel(threshold)
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(max(threshold, logging.WARNING))
    logging.captureWarnings(True)
    return handler
