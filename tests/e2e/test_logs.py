"""Logs an operator can search: JSON lines with the request id (and the show in play).

Given `ticketblitz serve` run as in production (output to a file, not a terminal) on the
session's servers, when clients send requests with and without an `X-Request-ID`,
then every line it writes is a JSON object with an ISO 8601 UTC timestamp, level, logger and
message; each request's lines carry its request id, which the answer's `X-Request-ID` names;
a client's valid id is kept, a hostile one (spaces, too long, non-ASCII, two of them) is
replaced by a fresh id and never reaches the log; the show a path names is in its lines.
And with tracing on (`OTEL_EXPORTER_OTLP_ENDPOINT`), a request's lines carry its trace id,
the very trace exported over OTLP.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from http_shell.container import Container
from tests.conftest import write_api_env
from tests.e2e.saga_support import wait_until
from ticketblitz.http_server import free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "ticketblitz")
NEW_ID = re.compile(r"[0-9a-f]{32}")


class ServedCli:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def lines(self) -> list[dict[str, Any]]:
        """Every line so far, each parsed as JSON (a line that is not JSON fails the test)."""
        text = self.log.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def lines_of(self, request_id: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("request_id") == request_id]


@pytest.fixture(scope="module")
def served(container: Container, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedCli]:
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    env = write_api_env(container.settings) | {"TICKETBLITZ_LOG_FORMAT": "auto"}  # a file: JSON
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            return httpx.get(url + "/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, 60, "`ticketblitz serve` to answer")
        yield ServedCli(url, log)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_every_line_is_json_with_a_utc_timestamp_level_logger_and_message(served: ServedCli):
    assert httpx.get(served.url + "/healthz").status_code == 200
    lines = wait_until(served.lines, 30, "log lines")
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= set(line), line
        stamp = datetime.fromisoformat(line["timestamp"])
        assert stamp.utcoffset() == timedelta(0), line
        assert line["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, line
    # the embedded servers' chatter is not there (nothing of pgserver's initdb, at INFO)
    assert not [line for line in lines if line["logger"].startswith("pgserver")]


def test_a_valid_request_id_is_kept_echoed_and_in_every_line_of_the_request(served: ServedCli):
    request_id = f"client-{uuid4().hex[:12]}.retry_1"
    r = httpx.get(served.url + "/api/v1/shows", headers={"X-Request-ID": request_id})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == request_id
    lines = wait_until(lambda: served.lines_of(request_id), 30, "the request's log line")
    assert any("GET /api/v1/shows" in line["message"] for line in lines), lines


def test_a_request_without_an_id_gets_a_new_one(served: ServedCli):
    first = httpx.get(served.url + "/healthz").headers["x-request-id"]
    second = httpx.get(served.url + "/healthz").headers["x-request-id"]
    assert NEW_ID.fullmatch(first) and NEW_ID.fullmatch(second) and first != second
    wait_until(lambda: served.lines_of(second), 30, "the request's log line")


@pytest.mark.parametrize(
    "hostile",
    [
        [b"id with spaces"],
        [b"x" * 65],
        [b""],
        [b'fake\\n{"level":"ERROR"}'],
        ["caf\u00e9".encode()],  # non-ASCII bytes
        [b"one-id", b"another-id"],  # two of them
    ],
    ids=["spaces", "too-long", "empty", "json-injection", "non-ascii", "two-values"],
)
def test_a_hostile_request_id_is_replaced_and_never_logged(served: ServedCli, hostile: list[bytes]):
    headers = [(b"X-Request-ID", value) for value in hostile]
    r = httpx.get(served.url + "/api/v1/shows", headers=headers)
    assert r.status_code == 200, r.text
    replaced = r.headers["x-request-id"]
    assert NEW_ID.fullmatch(replaced), replaced
    lines = wait_until(lambda: served.lines_of(replaced), 30, "the request's log line")
    assert lines
    text = served.log.read_text(errors="replace")
    given = [value.decode(errors="replace") for value in hostile if value]
    assert not [value for value in given if value in text]


def test_the_show_a_path_names_is_in_the_requests_lines(served: ServedCli):
    show_id = str(uuid4())
    request_id = f"show-{uuid4().hex[:8]}"
    r = httpx.get(f"{served.url}/api/v1/shows/{show_id}", headers={"X-Request-ID": request_id})
    assert r.status_code == 404
    assert r.headers["x-request-id"] == request_id  # problem+json answers name it too
    lines = wait_until(lambda: served.lines_of(request_id), 30, "the request's log line")
    assert {line.get("show_id") for line in lines} == {show_id}


class OtlpSink:
    """A tiny OTLP/HTTP receiver: keeps the trace ids of the spans POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.trace_ids: set[str] = set()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        sink.trace_ids |= {span.trace_id.hex() for span in scope.spans}
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_traced_requests_log_their_trace_id_and_export_the_trace(
    container: Container, tmp_path: Path
):
    sink = OtlpSink()
    port = free_port()
    log = tmp_path / "traced.log"
    env = write_api_env(container.settings) | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # milliseconds between exports
    }
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    traced = ServedCli(f"http://127.0.0.1:{port}", log)
    try:

        def answered() -> bool:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                return httpx.get(traced.url + "/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answered, 60, "`ticketblitz serve` to answer")
        request_id = f"traced-{uuid4().hex[:8]}"
        r = httpx.get(traced.url + "/api/v1/shows", headers={"X-Request-ID": request_id})
        assert r.status_code == 200
        lines = wait_until(lambda: traced.lines_of(request_id), 30, "the request's log line")
        trace_ids = {line.get("trace_id") for line in lines}
        (trace_id,) = trace_ids
        assert trace_id and re.fullmatch(r"[0-9a-f]{32}", trace_id), lines
        assert all(re.fullmatch(r"[0-9a-f]{16}", line["span_id"]) for line in lines)
        wait_until(lambda: trace_id in sink.trace_ids, 30, "the trace exported over OTLP")
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        sink.close()
