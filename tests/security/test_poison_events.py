"""Finding 2, one request froze a read model for everyone: a NUL in `payment_method` or a show's
title was accepted, written to the log, and stopped the projection that tried to store it;
`quantity: "2"` and `true` were taken for numbers.

Now every text is checked at the edge (commands/text.py), numbers are strict, and the read
side survives what an old log may still hold: NUL is stored as U+FFFD, amounts are held within
their column, and an event a read model really cannot apply is retried, shown in
`GET /projections`, `/metrics` and `ticketblitz projections failures`, then skipped as a dead
letter while the others keep up (infra/log_follower.py).

Each test runs against a system of its own (a fresh database, its app and projection runners)
on the session's real servers, so that the events forged here reach no other test's log."""

from __future__ import annotations

import json
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from eventsourcing.utils import get_topic
from typer.testing import CliRunner

from commands.text import BIDI_CONTROLS
from domain.booking import Booking
from domain.inventory import SeatInventory
from domain.show import Show
from http_shell.container import Container
from infra.log_follower import NEVER_SKIP, LogFollower, LoggedEvent
from projections.rebuild import Rebuild
from tests.e2e.conftest import Api, served, settings_for_tests
from tests.e2e.saga_support import new_database, wait_until
from ticketblitz.bootstrap import bootstrap
from ticketblitz.cli import app as cli
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration

KEEP_UP_SECONDS = 60.0
BIGINT_MAX = 2**63 - 1

# Every character that must not get into a one-line text: C0 and C1 controls, DEL, the bidi
# controls, line and paragraph separators, and a lone surrogate (not UTF-8 at all).
POISON = sorted(
    {chr(c) for c in range(0x20)}
    | {chr(c) for c in range(0x7F, 0xA0)}
    | set(BIDI_CONTROLS)
    | {"\u2028", "\u2029", "\ud800"}
)
MULTILINE_OK = {"\t", "\n", "\r", "\u2028", "\u2029"} | set(BIDI_CONTROLS)


@dataclass
class System:
    container: Container
    api: Api
    database_url: str
    admin: dict[str, str]

    @property
    def http(self) -> httpx.Client:
        return self.api.http

    def head(self) -> int:
        return self.container.store.head_position()


@pytest.fixture
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[System]:
    assert endpoints.database_url is not None
    url = new_database(endpoints.database_url)
    data_dir = stack_dir / f"poison-{uuid4().hex[:8]}"
    container = bootstrap(settings_for_tests(endpoints, data_dir, database_url=url))
    assert container.read_side is not None
    container.read_side.start_runners()
    try:
        with served(container) as api:
            yield System(container, api, url, api.admin())
    finally:
        container.close()


def show_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Night of Jazz",
        "description": "Quartet, two sets.",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": "2031-03-01T20:00:00+01:00",
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 10}]}
        ],
    }
    body.update(changes)
    return body


def assert_invalid(answer: httpx.Response) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["errors"], answer.text


def projections(system: System) -> dict[str, Any]:
    answer = system.http.get("/projections")
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def all_caught_up(system: System) -> dict[str, Any] | None:
    """The /projections report once every read model has applied the whole log, none is stopped
    on an event and no other log follower is either; else None."""
    report = projections(system)
    models = report["projections"]
    if report["failing_followers"] or any(p["failing"] or p["lag_events"] for p in models):
        return None
    return report


def read_model(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in report["projections"] if p["name"] == name)
    return found


# --- (a) the requests of the report are refused, and write nothing --------------------------


def test_a_poisoned_payment_method_is_refused_and_writes_nothing(system: System):
    show_id = system.api.new_show(rows=1, seats_per_row=10)
    fan = system.api.new_customer()
    headers = {"Authorization": fan["Authorization"]}
    head = system.head()
    for method in ("pm_\u0000", "pm_card_visa\u202e", "pm_card_visa\n", "card", "pm_" + "x" * 97):
        body = {"show_id": show_id, "quantity": 1, "payment_method": method}
        assert_invalid(system.http.post("/bookings", json=body, headers=headers))
    assert system.head() == head
    mine = system.http.get("/me/bookings", headers=headers)
    assert mine.status_code == 200 and mine.json()["items"] == []

    held = system.http.post("/bookings", json={"show_id": show_id, "quantity": 1}, headers=headers)
    assert held.status_code == 201, held.text
    booking_id = held.json()["booking_id"]
    head = system.head()
    for method in ("pm_\u0000", "pm_card_visa\u202e"):
        paid = system.http.post(
            f"/bookings/{booking_id}/pay", json={"payment_method": method}, headers=headers
        )
        assert_invalid(paid)
    assert system.head() == head
    assert system.container.store.get(UUID(booking_id), Booking).payment_method is None


@pytest.mark.parametrize("field", ["title", "description", "venue", "category"])
@pytest.mark.parametrize("poison", ["Jazz\u0000Night", "cod\u202eexe.doc"])
def test_a_show_with_nul_or_a_bidi_override_is_refused(system: System, field: str, poison: str):
    head = system.head()
    answer = system.http.post("/shows", json=show_body(**{field: poison}), headers=system.admin)
    if field == "description" and "\u202e" in poison:
        # A description may hold right-to-left text; only controls are refused in it.
        assert answer.status_code == 201, answer.text
        return
    assert_invalid(answer)
    assert system.head() == head


@pytest.mark.parametrize("quantity", ["2", True, 2.5])
def test_a_quantity_must_be_a_json_integer(system: System, quantity: object):
    show_id = system.api.new_show(rows=1, seats_per_row=10)
    fan = system.api.new_customer()
    head = system.head()
    body = {"show_id": show_id, "quantity": quantity}
    answer = system.http.post(
        "/bookings", json=body, headers={"Authorization": fan["Authorization"]}
    )
    assert_invalid(answer)
    assert answer.json()["errors"][0]["loc"][-1] == "quantity"
    assert system.head() == head


def test_numbers_in_a_show_are_strict_too(system: System):
    tiers = [{"code": "STD", "price_cents": "4500"}]
    assert_invalid(
        system.http.post("/shows", json=show_body(price_tiers=tiers), headers=system.admin)
    )
    rows = [{"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": True}]}]
    assert_invalid(system.http.post("/shows", json=show_body(sections=rows), headers=system.admin))


# --- (b) every text field of every command, fuzzed with control characters ------------------


def fuzzed_requests(
    show_id: str, booking_id: str
) -> Iterator[tuple[str, str, str, dict[str, Any], set[str]]]:
    """(field, method-and-path, who, body, characters that field accepts) for each text field
    of each command, with a placeholder `{c}` for the poison character."""
    register = {"email": "fan-{u}@example.com", "password": "correct horse", "name": "Fan"}
    yield "name", "/auth/register", "anyone", {**register, "name": "Fan{c}Club"}, set()
    yield (
        "email",
        "/auth/register",
        "anyone",
        {**register, "email": "fan{c}-{u}@example.com"},
        set(),
    )
    # A password is hashed, never logged: any character but a lone surrogate (not text).
    password = {**register, "password": "correct {c} horse"}
    yield "password", "/auth/register", "anyone", password, set(POISON) - {"\ud800"}
    for field in ("title", "category", "venue"):
        yield field, "/shows", "admin", show_body(**{field: "Jazz{c}Night"}), set()
    yield "description", "/shows", "admin", show_body(description="two{c}sets"), MULTILINE_OK
    yield "currency", "/shows", "admin", show_body(currency="EU{c}"), set()
    tier = [{"code": "ST{c}", "price_cents": 4500}]
    yield "tier code", "/shows", "admin", show_body(price_tiers=tier), set()
    for key, value in (("code", "A{c}"), ("tier", "STD{c}")):
        section: dict[str, Any] = {"code": "A", "kind": "seated", "tier": "STD", key: value}
        section["rows"] = [{"label": "1", "seats": 10}]
        yield f"section {key}", "/shows", "admin", show_body(sections=[section]), set()
    row = {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1{c}", "seats": 10}]}
    yield "row label", "/shows", "admin", show_body(sections=[row]), set()
    yield "cancel reason", f"/shows/{show_id}/cancel", "admin", {"reason": "sold{c}out"}, set()
    booking = {"show_id": show_id, "quantity": 1}
    yield "section", "/bookings", "fan", {**booking, "section": "A{c}"}, set()
    yield "seats", "/bookings", "fan", {"show_id": show_id, "seats": ["A-1-{c}"]}, set()
    method = {**booking, "payment_method": "pm_card_visa{c}"}
    yield "payment_method", "/bookings", "fan", method, set()
    pay = {"payment_method": "pm_{c}card_visa"}
    yield "payment_method (pay)", f"/bookings/{booking_id}/pay", "fan", pay, set()


def poisoned(value: Any, character: str) -> Any:
    if isinstance(value, str):
        return value.replace("{c}", character).replace("{u}", uuid4().hex[:10])
    if isinstance(value, dict):
        return {k: poisoned(v, character) for k, v in value.items()}
    if isinstance(value, list):
        return [poisoned(v, character) for v in value]
    return value


def strings_of(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_of(k, f"{path}.key")
            yield from strings_of(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_of(v, path)


def test_control_characters_in_every_text_field_never_reach_the_log(system: System):
    """Every character of POISON in every text field of every command: refused (422) unless
    the field may hold it; nothing refused is written, what is written is clean, and every read
    model keeps up with the log."""
    show_id = system.api.new_show(rows=2, seats_per_row=10)
    fan = system.api.new_customer()
    held = system.http.post(
        "/bookings", json={"show_id": show_id, "quantity": 1}, headers=fan_auth(fan)
    )
    assert held.status_code == 201, held.text
    before = system.head()
    who = {"anyone": {}, "admin": system.admin, "fan": fan_auth(fan)}
    refused: dict[str, int] = {}
    for field, path, role, template, accepted in fuzzed_requests(
        show_id, held.json()["booking_id"]
    ):
        for character in POISON:
            body = poisoned(template, character)
            # Escaped JSON (ensure_ascii): a lone surrogate travels as "\ud800", as an
            # attacker would send it.
            content = json.dumps(body).encode()
            headers = {**who[role], "content-type": "application/json"}
            answer = system.http.post(path, content=content, headers=headers)
            context = f"{field} with U+{ord(character):04X}: {answer.status_code} {answer.text}"
            assert answer.status_code < 500, context
            if character in accepted:
                assert answer.status_code in (200, 201, 202), context
            else:
                assert_invalid(answer)
                refused[field] = refused.get(field, 0) + 1
    assert set(refused) == {f for f, *_ in fuzzed_requests(show_id, "x")}  # each was tried

    store = system.container.store
    written = store.app.recorder.select_notifications(
        start=before, limit=10_000, inclusive_of_start=False
    )
    assert written, "the accepted requests (descriptions, passwords) wrote events"
    for notification in written:
        event = store.app.mapper.to_domain_event(notification)
        for path, text in strings_of(vars(event)):
            for character in text:
                category = unicodedata.category(character)
                assert category != "Cs", (path, text)
                assert category != "Cc" or character in "\t\n\r", (path, text)
                if not path.startswith(".description"):
                    assert category == "Cc" or character not in BIDI_CONTROLS, (path, text)
                    assert category != "Cc", (path, text)
            assert unicodedata.is_normalized("NFC", text), (path, text)

    wait_until(lambda: all_caught_up(system), KEEP_UP_SECONDS, "every read model to keep up")
    after = system.http.post(
        "/bookings", json={"show_id": show_id, "quantity": 2}, headers=fan_auth(fan)
    )
    assert after.status_code == 201, after.text
    seen = system.http.get(
        f"/bookings/{after.json()['booking_id']}",
        params={"after": after.json()["position"]},
        headers=fan_auth(fan),
    )
    assert seen.status_code == 200, seen.text


def fan_auth(fan: dict[str, str]) -> dict[str, str]:
    return {"Authorization": fan["Authorization"]}


# --- (c) what an old log may hold: events appended directly, bypassing the API --------------


def test_a_nul_in_an_old_show_event_is_stored_safely_and_the_catalog_keeps_up(system: System):
    show_id = uuid4()
    show = Show(
        show_id=show_id,
        title="Jazz\x00Night",
        description="two\x00sets",
        category="ja\x00zz",
        venue="Blue\x00Hall",
        starts_at=datetime(2031, 3, 1, 20, tzinfo=UTC),
        currency="EUR",
        price_tiers={"STD": 4500},
        sections=[
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 2}]}
        ],
    )
    position = system.container.store.save(show)

    answer = system.http.get(f"/shows/{show_id}", params={"after": position})
    assert answer.status_code == 200, answer.text
    details = answer.json()
    assert details["title"] == "Jazz\ufffdNight"
    assert details["description"] == "two\ufffdsets"
    assert (details["category"], details["venue"]) == ("ja\ufffdzz", "Blue\ufffdHall")
    report = wait_until(lambda: all_caught_up(system), KEEP_UP_SECONDS, "the read models")
    assert all(p["dead_letters"] == 0 for p in report["projections"])


def test_an_amount_beyond_bigint_does_not_stop_the_sales_read_model(system: System):
    show_id = system.api.new_show(rows=1, seats_per_row=10)
    fan = system.api.new_customer()
    held = system.http.post(
        "/bookings", json={"show_id": show_id, "quantity": 1}, headers=fan_auth(fan)
    )
    assert held.status_code == 201, held.text
    store = system.container.store
    booking = store.get(UUID(held.json()["booking_id"]), Booking)
    booking._payment_succeeded(payment_intent_id="pi_forged", amount_cents=10**30)
    position = store.save(booking)

    stats = system.http.get(
        f"/shows/{show_id}/stats", params={"after": position}, headers=system.admin
    )
    assert stats.status_code == 200, stats.text
    assert stats.json()["paid_cents"] == BIGINT_MAX  # held at the column's bound, logged
    mine = system.http.get(
        f"/bookings/{booking.id}", params={"after": position}, headers=fan_auth(fan)
    )
    assert mine.status_code == 200 and mine.json()["paid_cents"] == BIGINT_MAX
    report = wait_until(lambda: all_caught_up(system), KEEP_UP_SECONDS, "the read models")
    assert all(p["dead_letters"] == 0 for p in report["projections"])


def forge_inventory_without_section_codes(system: System, show_id: UUID) -> int:
    """A SeatInventory.Created whose sections have no code: the aggregate could never have
    made it (its constructor reads the codes), so it is built as a bare event and appended."""
    inventory_id = uuid4()
    created: Any = SeatInventory.Created  # a bare event: mypy knows only the base's fields
    event = created(
        originator_topic=get_topic(SeatInventory),
        originator_id=inventory_id,
        originator_version=1,
        timestamp=datetime.now(UTC),
        inventory_id=inventory_id,
        show_id=show_id,
        currency="EUR",
        price_tiers={"STD": 4500},
        sections=[{"kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 2}]}],
        starts_at=None,
        max_tickets_per_customer=10,
    )
    recordings = system.container.store.app.events.put([event])
    return max(r.notification.id for r in recordings)


def test_an_event_a_read_model_cannot_apply_is_shown_then_skipped_and_others_keep_up(
    system: System, tmp_path: Path
):
    show_id = system.api.new_show(rows=1, seats_per_row=10)
    poison = forge_inventory_without_section_codes(system, UUID(show_id))
    fan = system.api.new_customer()
    held = system.http.post(
        "/bookings", json={"show_id": show_id, "quantity": 1}, headers=fan_auth(fan)
    )
    assert held.status_code == 201, held.text

    def seat_map_stopped() -> dict[str, Any] | None:
        seat_map = read_model(projections(system), "seat_map")
        return seat_map if seat_map["failing"] else None

    stopped = wait_until(seat_map_stopped, KEEP_UP_SECONDS, "the seat map to report its failure")
    assert stopped["failed_position"] == poison
    assert stopped["skips"] is True and stopped["failures"] >= 1
    assert "KeyError" in stopped["error"] and "code" in stopped["error"]
    metrics = system.http.get(system.api.base_url.removesuffix("/api/v1") + "/metrics")
    assert "ticketblitz_follower_failing{" in metrics.text

    # The others went on meanwhile: the booking placed after the poison is readable.
    booking = system.http.get(
        f"/bookings/{held.json()['booking_id']}",
        params={"after": held.json()["position"]},
        headers=fan_auth(fan),
    )
    assert booking.status_code == 200, booking.text

    report = wait_until(lambda: all_caught_up(system), KEEP_UP_SECONDS, "the seat map to skip it")
    assert read_model(report, "seat_map")["dead_letters"] == 1
    assert all(p["dead_letters"] == 0 for p in report["projections"] if p["name"] != "seat_map")
    seats = system.http.get(f"/shows/{show_id}/seats", params={"after": held.json()["position"]})
    assert seats.status_code == 200, seats.text
    taken = [s for sec in seats.json()["sections"] for r in sec["rows"] for s in r["seats"]]
    assert [s["status"] for s in taken].count("held") == 1

    env = {
        "TICKETBLITZ_DATA_DIR": str(tmp_path),
        "TICKETBLITZ_DATABASE_URL": system.database_url,
        "COLUMNS": "250",
    }
    listed = CliRunner().invoke(cli, ["projections", "failures"], env=env)
    assert listed.exit_code == 0, listed.output  # skipped: nobody is stopped any more
    assert f"{poison:,}" in listed.output and "seat_map@g1" in listed.output
    assert "KeyError" in listed.output

    # A rebuild replays the same event: it skips it at once and records it for its generation.
    rebuild = Rebuild(system.container.store, ["seat_map"]).run()
    assert rebuild.generations == {"seat_map": 2}
    rebuilt = wait_until(lambda: all_caught_up(system), KEEP_UP_SECONDS, "the rebuilt seat map")
    assert read_model(rebuilt, "seat_map")["generation"] == 2
    assert read_model(rebuilt, "seat_map")["dead_letters"] == 1
    seats = system.http.get(f"/shows/{show_id}/seats", params={"after": held.json()["position"]})
    taken = [s for sec in seats.json()["sections"] for r in sec["rows"] for s in r["seats"]]
    assert [s["status"] for s in taken].count("held") == 1


class SectionCodes:
    """A follower of the test's own that, like a process manager, never skips an event: it
    reads every inventory's section codes (the forged inventory has none)."""

    def __init__(self) -> None:
        self.name = f"test-never-skips-{uuid4().hex[:8]}"

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        return None

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        for logged in page:
            if isinstance(logged.event, SeatInventory.Created):
                assert all(section["code"] for section in logged.event.sections)


def test_a_follower_that_never_skips_stays_on_the_event_loudly(system: System, tmp_path: Path):
    show_id = system.api.new_show(rows=1, seats_per_row=10)
    poison = forge_inventory_without_section_codes(system, UUID(show_id))
    handler = SectionCodes()
    follower = LogFollower(system.container.store, handler, poll_interval=0.05)
    assert follower.failure_policy == NEVER_SKIP
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,), daemon=True)
    thread.start()
    try:

        def stuck() -> dict[str, Any] | None:
            failing = projections(system)["failing_followers"]
            mine = [f for f in failing if f["name"] == handler.name and f["failures"] >= 3]
            return mine[0] if mine else None

        failure = wait_until(stuck, KEEP_UP_SECONDS, "the follower to report its failure")
        assert failure["failed_position"] == poison and failure["skips"] is False
        assert "KeyError" in failure["error"]
        assert follower.position() < poison  # every event before it applied, not it

        env = {
            "TICKETBLITZ_DATA_DIR": str(tmp_path),
            "TICKETBLITZ_DATABASE_URL": system.database_url,
            "COLUMNS": "250",
        }
        listed = CliRunner().invoke(cli, ["projections", "failures"], env=env)
        assert listed.exit_code == 1, listed.output
        assert handler.name in listed.output and "stays until fixed" in listed.output
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert follower.position() < poison
