"""The one logging setup (infra/logs.py) and request ids (http_shell/request_ids.py), without
servers: formats, the ids in play, the embedded servers' chatter, hostile ids."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from http_shell.request_ids import ids_in_path, request_id_for
from infra.logs import configure_logging, log_context


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_json_lines_carry_the_ids_in_play_and_a_utc_timestamp():
    out = io.StringIO()  # not a terminal: JSON
    configure_logging(level="INFO", stream=out)
    with log_context(request_id="req-1", show_id="show-1"):
        with log_context(booking_id="booking-1"):
            logging.getLogger("ticketblitz.test").info("held %d seats", 2)
        logging.getLogger("ticketblitz.test").warning("after")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "held 2 seats" and first["level"] == "INFO"
    assert first["logger"] == "ticketblitz.test"
    assert (first["request_id"], first["show_id"], first["booking_id"]) == (
        "req-1",
        "show-1",
        "booking-1",
    )
    assert "booking_id" not in second and second["request_id"] == "req-1"
    assert datetime.fromisoformat(first["timestamp"]).utcoffset() == timedelta(0)


def test_an_exception_stays_on_one_json_line():
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    try:
        raise ValueError("bad\nworse")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (line,) = out.getvalue().splitlines()
    assert "ValueError: bad" in json.loads(line)["exception"]


def test_a_terminal_gets_a_short_line_with_the_time():
    out = Terminal()
    configure_logging(level="INFO", stream=out)
    with log_context(request_id="abc"):
        logging.getLogger("ticketblitz.cli").info("up")
    line = out.getvalue().strip()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} INFO  ticketblitz\.cli: up \[request abc\]", line)


@pytest.mark.parametrize("level, shown", [("INFO", False), ("DEBUG", True)])
def test_the_embedded_servers_chatter_is_debug(level: str, shown: bool):
    out = io.StringIO()
    configure_logging(level=level, fmt="json", stream=out)
    logging.getLogger("pgserver").info("initdb: creating directory")
    logging.getLogger("ticketblitz.stack.postgres").info("leaving postgres running")
    logging.getLogger("ticketblitz.stack.postgres").warning("pg_ctl stop failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    chatter = [line for line in lines if line["level"] == "DEBUG"]
    assert len(chatter) == (2 if shown else 0)
    assert [line["message"] for line in lines if line["level"] == "WARNING"] == [
        "pg_ctl stop failed"
    ]


def test_chatty_libraries_log_warnings_only():
    configure_logging(level="INFO", stream=io.StringIO())
    for name in ("kafka", "stripe"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING


def scope(*values: bytes) -> dict[str, object]:
    return {"headers": [(b"x-request-id", v) for v in values]}


def test_a_plain_request_id_is_kept_anything_else_replaced():
    assert request_id_for(scope(b"abc.DEF_1-2")) == "abc.DEF_1-2"
    assert request_id_for(scope(b"a" * 64)) == "a" * 64
    for hostile in ([b"a" * 65], [b""], [b"a b"], [b"a\nb"], ["é".encode()], [b"a", b"b"], []):
        replaced = request_id_for(scope(*hostile))
        assert re.fullmatch(r"[0-9a-f]{32}", replaced), hostile


def test_the_show_and_booking_in_a_path():
    show, booking = "0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert ids_in_path(f"/api/v1/shows/{show}/seats") == (show, None)
    assert ids_in_path(f"/api/v1/bookings/{booking}") == (None, booking)
    assert ids_in_path(f"/api/v1/shows/{show}x") == (None, None)
    assert ids_in_path("/api/v1/shows") == (None, None)
