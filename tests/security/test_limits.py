"""Finding 6, limits that could be walked around: chunked bodies over the body limit, per-address
limits fooled by X-Forwarded-For, and wrong passwords from strangers locking the owner out.

Reproduced against the real app and servers; the address resolution and the body counting are
also specified without servers."""

from __future__ import annotations

import asyncio
import http.client
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx
import pytest
import redis
from fastapi import FastAPI, Request
from starlette.types import Message

from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from http_shell.container import Container
from http_shell.deps import limit_key, resolve_client_address
from http_shell.problems import install_problem_handlers
from infra.settings import Settings
from tests.e2e.conftest import Api, settings_for_tests
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints
from ticketblitz.http_server import BackgroundServer
from ticketblitz.web import MAX_BODY_BYTES, BodySizeLimit, create_app

pytestmark = pytest.mark.integration

MB = 1024 * 1024
PASSWORD = "correct horse battery"


# --- Bodies: the limit holds for chunked bodies and lying Content-Lengths --------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the server's socket took before the answer came


def post_chunked(
    base_url: str,
    path: str,
    head: bytes,
    total: int,
    headers: dict[str, str] | None = None,
    chunk: int = 64 * 1024,
) -> Answer:
    """POST `head` padded with spaces to `total` bytes, chunked (no Content-Length), the way a
    client streams a generator; stop sending as soon as the server answers or stops reading."""
    url = urlsplit(base_url + path)
    assert url.hostname is not None and url.port is not None
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    try:
        lines = [
            f"POST {url.path} HTTP/1.1",
            f"Host: {url.hostname}:{url.port}",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sent = 0
        try:
            for piece in _pieces(head, total, chunk):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                if select.select([sock], [], [], 0)[0]:
                    break  # answered before the body ended
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server stopped reading: its answer is waiting in the socket
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        found = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, found, body, sent)
    finally:
        sock.close()


def _pieces(head: bytes, total: int, chunk: int) -> Iterator[bytes]:
    yield head
    left = total - len(head)
    padding = b" " * chunk
    while left > 0:
        yield padding[: min(chunk, left)]
        left -= chunk


def assert_too_large(answer: Answer) -> None:
    assert answer.status == 413, answer.body[:300]
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert b"payload-too-large" in answer.body


def registration(email: str) -> bytes:
    return b'{"email": "%s", "password": "%s", "name": "Fan"}' % (email.encode(), PASSWORD.encode())


def test_a_chunked_10_mb_booking_is_refused_and_books_nothing(api: Api, container: Container):
    show = api.new_show()
    customer = api.new_customer()
    head = b'{"show_id": "%s", "quantity": 1}' % show.encode()
    answer = post_chunked(
        api.base_url, "/bookings", head, 10 * MB, {"Authorization": customer["Authorization"]}
    )
    assert_too_large(answer)
    inventory = container.store.get(inventory_id_for(UUID(show)), SeatInventory)
    assert not inventory.claims  # nothing held
    # The same booking, small and chunked, is taken: chunked bodies are not refused as such.
    small = post_chunked(
        api.base_url, "/bookings", head, len(head), {"Authorization": customer["Authorization"]}
    )
    assert small.status == 201, small.body


def test_a_chunked_10_mb_registration_is_refused_and_creates_no_account(api: Api):
    email = f"big-{uuid4().hex[:12]}@example.com"
    answer = post_chunked(api.base_url, "/auth/register", registration(email), 10 * MB)
    assert_too_large(answer)
    login = api.http.post("/auth/token", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401  # no such account
    again = api.http.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": "Fan"}
    )
    assert again.status_code == 201, again.text  # not 409: the e-mail was never registered


def test_a_chunked_100_mb_webhook_is_refused_before_it_is_read_whole(api: Api):
    signature = f"t={int(time.time())},v1={'0' * 64}"
    head = b'{"id": "evt_big", "type": "payment_intent.succeeded", "data": {}}'
    answer = post_chunked(
        api.base_url, "/payments/stripe/webhook", head, 100 * MB, {"Stripe-Signature": signature}
    )
    assert_too_large(answer)
    # The server answered with most of the body never sent: it stopped reading near the limit
    # (kernel buffers on both ends take a few MB more than it read).
    assert answer.sent < 32 * MB, answer.sent


def test_a_content_length_that_lies_about_a_chunked_body_creates_nothing(api: Api):
    """Content-Length says 40 bytes, the chunked body carries 10 MB: refused either way."""
    email = f"liar-{uuid4().hex[:12]}@example.com"
    answer = post_chunked(
        api.base_url, "/auth/register", registration(email), 10 * MB, {"Content-Length": "40"}
    )
    assert answer.status in (400, 413), answer.body[:300]
    login = api.http.post("/auth/token", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401


def _body_reader() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"length": len(await request.body())}

    app.add_middleware(BodySizeLimit)
    return app


def _call(app: FastAPI, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """One request through the ASGI app: (status, chunks the app pulled from the client)."""
    pulled = 0
    status: list[int] = []

    async def receive() -> Message:
        nonlocal pulled
        if pulled == len(chunks):
            return {"type": "http.disconnect"}
        pulled += 1
        more = pulled < len(chunks)
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": more}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    return status[0], pulled


@pytest.mark.parametrize(
    "headers",
    [[(b"transfer-encoding", b"chunked")], [(b"content-length", b"10")]],
    ids=["chunked", "content-length-lies"],
)
def test_the_body_is_counted_as_it_streams_in_and_never_read_past_the_limit(headers):
    chunks = [b" " * MB] * 100
    status, pulled = _call(_body_reader(), chunks, headers)
    assert status == 413
    assert pulled == 1  # the first megabyte passed the limit: the other 99 were never read


def test_bodies_up_to_the_limit_pass_in_any_framing():
    chunks = [b" " * (MAX_BODY_BYTES // 4)] * 4
    assert _call(_body_reader(), chunks, [(b"transfer-encoding", b"chunked")]) == (200, 4)
    declared = [(b"content-length", str(MAX_BODY_BYTES + 1).encode())]
    assert _call(_body_reader(), [b" "], declared)[0] == 413  # refused before reading


# --- Client addresses: X-Forwarded-For only from trusted proxies -----------------------------

PROXY = (ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("203.0.113.9", ["198.51.100.1"], (), "203.0.113.9"),  # none trusted by default
        ("203.0.113.9", ["198.51.100.1"], PROXY, "203.0.113.9"),  # an untrusted peer
        ("127.0.0.1", ["198.51.100.1"], (), "127.0.0.1"),  # loopback is not trusted either
        ("127.0.0.1", ["198.51.100.1"], PROXY, "198.51.100.1"),
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], PROXY, "198.51.100.1"),  # left: the client's
        ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], PROXY, "198.51.100.1"),  # two headers
        ("10.0.0.2", ["198.51.100.1, 10.0.0.1"], PROXY, "198.51.100.1"),  # a chain of proxies
        ("10.0.0.2", ["10.0.0.3"], PROXY, "10.0.0.3"),  # nothing but proxies
        ("127.0.0.1", [], PROXY, "127.0.0.1"),  # a proxy that forwarded nothing
        ("127.0.0.1", ["6.6.6.6, not-an-ip"], PROXY, "127.0.0.1"),  # garbage ends the walk
        ("127.0.0.1", ["198.51.100.1:5123"], PROXY, "198.51.100.1"),
        ("127.0.0.1", ["[2001:db8::1]:443"], PROXY, "2001:db8::1"),
        ("::ffff:10.0.0.2", ["198.51.100.1"], PROXY, "198.51.100.1"),  # IPv4-mapped peer
        (None, ["198.51.100.1"], PROXY, "unknown"),
    ],
)
def test_the_client_address_is_the_peer_unless_a_trusted_proxy_forwards_it(
    peer, forwarded, trusted, client
):
    assert resolve_client_address(peer, forwarded, trusted) == client


def test_ipv6_clients_are_limited_per_slash_64():
    assert (
        limit_key("2001:db8:1:2:aaaa::1")
        == limit_key("2001:db8:1:2:bbbb::2")
        == ("2001:db8:1:2::/64")
    )
    assert limit_key("198.51.100.1") == "198.51.100.1"


def test_trusted_proxies_are_read_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("TICKETBLITZ_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")
    assert Settings().trusted_proxies == (
        ip_network("127.0.0.1/32"),
        ip_network("10.0.0.0/8"),
        ip_network("::1/128"),
    )
    monkeypatch.delenv("TICKETBLITZ_TRUSTED_PROXIES")
    assert Settings().trusted_proxies == ()


# --- Apps with low login limits, each on a Redis database of its own --------------------------


@dataclass
class LimitedApi:
    api: Api
    redis: redis.Redis

    def fresh(self) -> Api:
        """The app with every bucket full and no known address."""
        self.redis.flushdb()
        return self.api


def _limited(
    endpoints: StackEndpoints, data_dir: Path, database: int, **overrides: object
) -> Iterator[LimitedApi]:
    assert endpoints.redis_url is not None
    redis_url = endpoints.redis_url.rsplit("/", 1)[0] + f"/{database}"
    container = bootstrap(settings_for_tests(endpoints, data_dir, redis_url=redis_url, **overrides))
    server = BackgroundServer(create_app(container)).start()
    client = redis.Redis.from_url(redis_url)
    yield LimitedApi(Api(server.url + "/api/v1"), client)
    client.close()
    server.stop()
    container.close()


@pytest.fixture(scope="module")
def direct(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[LimitedApi]:
    """No trusted proxies (the default): the socket peer is the client."""
    yield from _limited(endpoints, stack_dir / "limits-direct", 11, rate_limit_login_per_minute=5)


@pytest.fixture(scope="module")
def proxied(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[LimitedApi]:
    """Behind a proxy on 127.0.0.1 (`TICKETBLITZ_TRUSTED_PROXIES=127.0.0.1`)."""
    yield from _limited(
        endpoints,
        stack_dir / "limits-proxied",
        12,
        trusted_proxies="127.0.0.1",
        rate_limit_login_per_minute=8,
        rate_limit_login_pair_per_minute=3,
        rate_limit_login_account_per_hour=20,
    )


def log_in(api: Api, email: str, password: str, address: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    return api.http.post(
        "/auth/token", json={"email": email, "password": password}, headers=headers
    )


def assert_throttled(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"].endswith("/rate-limited")
    assert int(answer.headers["Retry-After"]) >= 1


def register(api: Api) -> str:
    email = f"owner-{uuid4().hex[:12]}@example.com"
    r = api.http.post("/auth/register", json={"email": email, "password": PASSWORD, "name": "Fan"})
    assert r.status_code == 201, r.text
    return email


def test_rotating_forwarded_for_does_not_evade_the_address_limit(direct: LimitedApi):
    api = direct.fresh()
    answers = [
        log_in(api, f"guess-{uuid4().hex[:8]}@example.com", "wrong-password", f"203.0.113.{n}")
        for n in range(1, 8)
    ]
    assert [a.status_code for a in answers[:5]] == [401] * 5
    for answer in answers[5:]:
        assert_throttled(answer)


def test_a_trusted_proxy_forwards_the_client_address(proxied: LimitedApi):
    api = proxied.fresh()
    guesses = [
        log_in(api, f"guess-{uuid4().hex[:8]}@example.com", "wrong-password", "203.0.113.10")
        for _ in range(9)
    ]
    assert [a.status_code for a in guesses[:8]] == [401] * 8
    assert_throttled(guesses[8])
    # Another client behind the proxy has a bucket of its own...
    other = log_in(api, f"guess-{uuid4().hex[:8]}@example.com", "wrong", "203.0.113.11")
    assert other.status_code == 401
    # ...and the client cannot get out of its own by writing addresses the proxy appends to.
    spoofed = log_in(
        api, f"guess-{uuid4().hex[:8]}@example.com", "wrong", "198.51.100.99, 203.0.113.10"
    )
    assert_throttled(spoofed)


def test_strangers_guessing_do_not_lock_the_owner_out(proxied: LimitedApi):
    api = proxied.fresh()
    email = register(api)
    home = "198.51.100.7"
    assert log_in(api, email, PASSWORD, home).status_code == 200  # home becomes known
    strangers = [log_in(api, email, f"guess-{n}-wrong", f"203.0.113.{n}") for n in range(1, 21)]
    assert [a.status_code for a in strangers] == [401] * 20
    # The ceiling of failures for the e-mail is reached: new addresses wait...
    assert_throttled(log_in(api, email, "guess-21-wrong", "203.0.113.21"))
    assert_throttled(log_in(api, email, PASSWORD, "198.51.100.8"))
    # ...but the owner logs in from home, again and again.
    for _ in range(3):
        answer = log_in(api, email, PASSWORD, home)
        assert answer.status_code == 200, answer.text
        assert answer.json()["access_token"]


def test_a_guesser_at_one_address_is_slowed_down_alone(proxied: LimitedApi):
    api = proxied.fresh()
    email = register(api)
    home = "198.51.100.7"
    assert log_in(api, email, PASSWORD, home).status_code == 200
    guesses = [log_in(api, email, f"guess-{n}-wrong", "203.0.113.50") for n in range(4)]
    assert [a.status_code for a in guesses[:3]] == [401] * 3
    assert_throttled(guesses[3])
    assert "from this address" in guesses[3].json()["detail"]
    assert_throttled(log_in(api, email, PASSWORD, "203.0.113.50"))  # even the right password
    assert log_in(api, email, "another-wrong", "203.0.113.51").status_code == 401
    assert log_in(api, email, PASSWORD, home).status_code == 200
    # A success clears the failures of its own pair only.
    assert log_in(api, email, PASSWORD, "203.0.113.52").status_code == 200
    assert_throttled(log_in(api, email, PASSWORD, "203.0.113.50"))
