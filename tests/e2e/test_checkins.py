"""Check-in at the door over HTTP with the real servers and workers: a paid ticket is admitted
once (a second scan says when and where, a retry of the same scan replays), concurrent scans
from several gates admit it exactly once, forged, altered, other-show and void secrets are
refused, offline gates upload their scans (the first scan wins across gates, duplicates are
reported), only door staff, the show's organiser and admins scan, the figures equal the scans
and the log passes the audit."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.verify import verify
from domain.booking import CONFIRMED, REFUNDED
from domain.door import USED, DoorList
from domain.ids import door_list_id_for
from tests.e2e.saga_support import (
    VISA,
    SagaSystem,
    book,
    in_days,
    open_organisers_show,
    running_system,
    wait_until,
)
from ticketblitz.embedded import StackEndpoints

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(endpoints: StackEndpoints, stack_dir: Path) -> Iterator[SagaSystem]:
    with running_system(endpoints, stack_dir / "checkins", read_models=True) as started:
        yield started


@pytest.fixture(scope="module")
def organizer(system: SagaSystem) -> dict[str, str]:
    return system.api.new_account("organizer")


@pytest.fixture(scope="module")
def door(system: SagaSystem) -> dict[str, str]:
    return system.api.new_account("door")


def auth(account: dict[str, str]) -> dict[str, str]:
    return {"Authorization": account["Authorization"]}


def organisers_show(system: SagaSystem, organizer: dict[str, str]) -> str:
    return open_organisers_show(system.api, organizer, "Door night", seats=20)


def paid_tickets(system: SagaSystem, show_id: str, **request: Any) -> tuple[str, list[dict]]:
    """A fan pays for a booking of the show: its id and its tickets (with their secrets)."""
    fan = system.api.new_customer()
    held = book(system.api, fan, show_id, payment_method=VISA, **request)
    booking_id: str = held["booking_id"]
    system.wait_for_status(booking_id, {CONFIRMED}, timeout=40)
    r = system.api.http.get(
        f"/bookings/{booking_id}/tickets",
        params={"after": system.store.head_position()},
        headers=auth(fan),
    )
    assert r.status_code == 200, r.text
    tickets: list[dict] = r.json()["tickets"]
    assert tickets, r.text
    return booking_id, tickets


def scan(
    system: SagaSystem,
    show_id: str,
    secret: str,
    who: dict[str, str],
    gate: str = "North",
    scan_id: str | None = None,
) -> httpx.Response:
    body = {"secret": secret, "gate": gate, "scan_id": uuid4().hex if scan_id is None else scan_id}
    return system.api.http.post(f"/shows/{show_id}/checkins", json=body, headers=auth(who))


def problem_type(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    kind: str = r.json()["type"]
    return kind.rsplit("/", 1)[-1]


def test_a_paid_ticket_is_admitted_once_and_a_retry_replays(
    system: SagaSystem, organizer: dict[str, str], door: dict[str, str]
):
    """Given a paid seat; when door staff scan it at North; then it is admitted (ticket, seat,
    holder); a second scan at South says already admitted, at North, at the first time; the
    first scan sent again (same scan id) replays its answer."""
    show_id = organisers_show(system, organizer)
    _, tickets = paid_tickets(system, show_id, seats=["A-1-1"])
    ticket = tickets[0]

    first = scan(system, show_id, ticket["secret"], door, "North", "scan-1")
    again = scan(system, show_id, ticket["secret"], door, "South", "scan-2")
    retried = scan(system, show_id, ticket["secret"], door, "North", "scan-1")

    assert first.status_code == 200, first.text
    admitted = first.json()
    assert {k: admitted[k] for k in ("result", "ticket_id", "seat", "holder_name", "gate")} == {
        "result": "admitted",
        "ticket_id": ticket["ticket_id"],
        "seat": "A-1-1",
        "holder_name": "Fan",
        "gate": "North",
    }
    assert admitted["replayed"] is False
    assert again.status_code == 409, again.text
    assert problem_type(again) == "already-admitted"
    refusal = again.json()
    assert (refusal["result"], refusal["gate"], refusal["ticket_id"]) == (
        "already-admitted",
        "North",
        ticket["ticket_id"],
    )
    assert datetime.fromisoformat(refusal["at"]) == datetime.fromisoformat(admitted["at"])
    assert retried.status_code == 200, retried.text
    assert retried.headers.get("Idempotent-Replayed") == "true"
    assert {**retried.json(), "replayed": False, "position": 0} == {
        **admitted,
        "position": 0,
    }
    assert retried.json()["replayed"] is True
    door_list = system.store.get(door_list_id_for(UUID(show_id)), DoorList)
    assert door_list.ticket(UUID(ticket["ticket_id"])).status == USED  # type: ignore[union-attr]


def test_concurrent_scans_of_one_ticket_from_two_gates_admit_it_exactly_once(
    system: SagaSystem, organizer: dict[str, str], door: dict[str, str]
):
    show_id = organisers_show(system, organizer)
    _, tickets = paid_tickets(system, show_id, seats=["A-1-2"])
    secret = tickets[0]["secret"]
    url = f"{system.api.base_url}/shows/{show_id}/checkins"

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        url,
                        json={"secret": secret, "gate": f"Gate {i % 2}", "scan_id": f"c-{i}"},
                        headers=auth(door),
                    )
                    for i in range(16)
                )
            )

    answers = asyncio.run(all_at_once())

    assert sorted(a.status_code for a in answers) == [200] + [409] * 15, [a.text for a in answers]
    winner = next(a.json() for a in answers if a.status_code == 200)
    for refused in (a.json() for a in answers if a.status_code == 409):
        assert (refused["result"], refused["gate"]) == ("already-admitted", winner["gate"])
    events = system.store.get(door_list_id_for(UUID(show_id)), DoorList)
    admitted = [t for t in events.tickets.values() if t.status == USED]
    assert len(admitted) == 1


def forged(secret: str) -> str:
    """The same ticket, show and place, signed by a key that is not the deployment's."""
    version, kid, payload, _ = secret.split(".")
    signature = Ed25519PrivateKey.generate().sign(f"{version}.{kid}.{payload}".encode())
    return f"{version}.{kid}.{payload}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def altered(secret: str) -> str:
    """The place changed in the payload (the signature left as it was)."""
    version, kid, payload, signature = secret.split(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[-1] = ord("9") if raw[-1] != ord("9") else ord("8")
    changed = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    return f"{version}.{kid}.{changed}.{signature}"


def test_forged_altered_other_show_and_void_secrets_are_refused(
    system: SagaSystem, organizer: dict[str, str], door: dict[str, str]
):
    show_id = organisers_show(system, organizer)
    other_show = organisers_show(system, organizer)
    _, tickets = paid_tickets(system, show_id, seats=["A-1-3"])
    _, elsewhere = paid_tickets(system, other_show, seats=["A-1-3"])
    cancelled, void_tickets = paid_tickets(system, show_id, seats=["A-1-4"])
    r = system.api.http.post(f"/bookings/{cancelled}/cancel", headers=system.api.admin())
    assert r.status_code == 202, r.text
    system.wait_for_status(cancelled, {REFUNDED}, timeout=40)
    secret = tickets[0]["secret"]

    answers = {
        "forged": scan(system, show_id, forged(secret), door),
        "altered": scan(system, show_id, altered(secret), door),
        "truncated": scan(system, show_id, secret[:-5], door),
        "garbage": scan(system, show_id, "not a ticket", door),
        "other show": scan(system, show_id, elsewhere[0]["secret"], door),
        "void": scan(system, show_id, void_tickets[0]["secret"], door),
    }

    seen = {name: (r.status_code, problem_type(r)) for name, r in answers.items()}
    assert seen == {
        "forged": (422, "invalid-secret"),
        "altered": (422, "invalid-secret"),
        "truncated": (422, "invalid-secret"),
        "garbage": (422, "invalid-secret"),
        "other show": (422, "wrong-show"),
        "void": (409, "ticket-void"),
    }
    assert answers["void"].json()["result"] == "void"
    assert answers["other show"].json()["ticket_show_id"] == other_show
    # none of them admitted anything: the genuine ticket is still valid
    assert scan(system, show_id, secret, door).status_code == 200


def test_gate_and_scan_id_are_one_line_of_1_to_64_characters(
    system: SagaSystem, organizer: dict[str, str], door: dict[str, str]
):
    show_id = organisers_show(system, organizer)
    _, tickets = paid_tickets(system, show_id, seats=["A-1-5"])
    secret = tickets[0]["secret"]

    for gate, scan_id in [("", "s"), ("x" * 65, "s"), ("North\n", "s"), ("N", ""), ("N", " ")]:
        r = scan(system, show_id, secret, door, gate, scan_id)
        assert r.status_code == 422, (gate, scan_id, r.text)
    assert scan(system, show_id, secret, door, "x" * 64, "y" * 64).status_code == 200


def test_only_door_staff_the_shows_organiser_and_admins_scan(
    system: SagaSystem, organizer: dict[str, str], door: dict[str, str]
):
    """A fan and another organiser get 403; door staff, the organiser and an admin are let
    through (here to a 409: the ticket was admitted by the first of them); a door account
    cannot book."""
    show_id = organisers_show(system, organizer)
    _, tickets = paid_tickets(system, show_id, seats=["A-1-6"])
    secret = tickets[0]["secret"]
    api = system.api

    statuses = {
        name: scan(system, show_id, secret, who).status_code
        for name, who in {
            "fan": api.new_customer(),
            "other organiser": api.new_account("organizer"),
            "door": door,
            "organiser": organizer,
            "admin": {**api.admin(), "account_id": ""},
        }.items()
    }

    assert statuses == {
        "fan": 403,
        "other organiser": 403,
        "door": 200,
        "organiser": 409,
        "admin": 409,
    }
    r = api.http.post("/bookings", json={"show_id": show_id, "quantity": 1}, headers=auth(door))
    assert r.status_code == 403, r.text
    r = api.http.get(f"/shows/{show_id}/checkins/stats", headers=auth(api.new_customer()))
    assert r.status_code == 403, r.text


def wait_for_tickets_older_than(system: SagaSystem, show_id: str, age: timedelta) -> datetime:
    """The show's first ticket was issued `age` ago at least (offline scan times start there)."""
    door_list = system.store.get(door_list_id_for(UUID(show_id)), DoorList)
    return wait_until(
        lambda: (now := datetime.now(UTC)) > door_list.created_on + age and now,
        timeout=10,
        what="the tickets to age",
    )


def test_offline_gates_upload_their_scans_and_the_first_scan_wins(
    system: SagaSystem, organizer: dict[str, str], door: dict[str, str]
):
    """Given the offline kit (public keys, void list); when two gates upload scans made
    offline, a ticket scanned at both, the later scan uploaded first; then the earlier scan is
    its admission and the later one a duplicate naming both gates and times; a void ticket, a
    garbage secret and a time an hour ahead are refused; uploading again replays."""
    show_id = organisers_show(system, organizer)
    _, tickets = paid_tickets(system, show_id, section="GA", quantity=3)
    cancelled, void_tickets = paid_tickets(system, show_id, seats=["A-1-7"])
    r = system.api.http.post(f"/bookings/{cancelled}/cancel", headers=system.api.admin())
    assert r.status_code == 202, r.text
    system.wait_for_status(cancelled, {REFUNDED}, timeout=40)
    kit = system.api.http.get(
        f"/shows/{show_id}/checkins/offline-kit",
        params={"after": system.store.head_position()},
        headers=auth(door),
    )
    assert kit.status_code == 200, kit.text
    signer = system.container.ticket_signer
    assert signer is not None
    assert kit.json()["public_keys"] == signer.public_keys()
    assert kit.json()["void_ticket_ids"] == [void_tickets[0]["ticket_id"]]
    assert kit.json()["valid_tickets"] == 3
    now = wait_for_tickets_older_than(system, show_id, timedelta(seconds=5))
    early, late = now - timedelta(seconds=4), now - timedelta(seconds=2)
    [t0, t1, t2] = [t["secret"] for t in tickets]

    def offline(secret: str, gate: str, at: datetime, scan_id: str) -> dict[str, str]:
        return {"secret": secret, "gate": gate, "scan_id": scan_id, "scanned_at": at.isoformat()}

    scans = [
        offline(t0, "South", late, "s-1"),  # uploaded first, scanned later: a duplicate
        offline(t1, "South", late, "s-2"),
        offline(t0, "North", early, "n-1"),  # the first scan of t0
        offline(void_tickets[0]["secret"], "North", early, "n-2"),
        offline("TB1.garbage", "North", early, "n-3"),
        offline(t2, "North", now + timedelta(hours=1), "n-4"),
    ]
    url = f"/shows/{show_id}/checkins/batch"

    r = system.api.http.post(url, json={"scans": scans}, headers=auth(door))

    assert r.status_code == 200, r.text
    answer = r.json()
    assert [s["scan_id"] for s in answer["scans"]] == ["s-1", "s-2", "n-1", "n-2", "n-3", "n-4"]
    assert [s["result"] for s in answer["scans"]] == [
        "already-admitted",
        "admitted",
        "admitted",
        "void",
        "invalid-secret",
        "invalid-time",
    ]
    first = answer["scans"][2]
    assert (first["ticket_id"], first["admitted_gate"]) == (tickets[0]["ticket_id"], "North")
    assert datetime.fromisoformat(first["admitted_at"]) == early
    assert len(answer["duplicates"]) == 1
    duplicate = answer["duplicates"][0]
    assert (duplicate["ticket_id"], duplicate["gate"], duplicate["admitted_gate"]) == (
        tickets[0]["ticket_id"],
        "South",
        "North",
    )
    assert datetime.fromisoformat(duplicate["scanned_at"]) == late
    assert datetime.fromisoformat(duplicate["admitted_at"]) == early
    assert answer["counts"] == {
        "admitted": 2,
        "already-admitted": 1,
        "void": 1,
        "invalid-secret": 1,
        "invalid-time": 1,
    }

    again = system.api.http.post(url, json={"scans": scans}, headers=auth(door))
    assert again.status_code == 200, again.text
    assert [s["result"] for s in again.json()["scans"]] == [s["result"] for s in answer["scans"]]
    assert [s["replayed"] for s in again.json()["scans"]][1:3] == [True, True]
    online = scan(system, show_id, t1, door, "East")
    assert (online.status_code, online.json()["gate"]) == (409, "South")


def test_an_upload_is_at_most_5000_scans(system: SagaSystem, door: dict[str, str]):
    show_id = system.api.new_show()
    scan_body = {"secret": "x", "gate": "N", "scan_id": "s", "scanned_at": in_days(0).isoformat()}
    url = f"/shows/{show_id}/checkins/batch"

    too_many = system.api.http.post(url, json={"scans": [scan_body] * 5001}, headers=auth(door))
    none = system.api.http.post(url, json={"scans": []}, headers=auth(door))

    assert (too_many.status_code, none.status_code) == (422, 422)


def test_the_figures_equal_the_scans_and_the_log_passes_the_audit(
    system: SagaSystem, organizer: dict[str, str], door: dict[str, str]
):
    show_id = organisers_show(system, organizer)
    _, tickets = paid_tickets(system, show_id, section="GA", quantity=5)
    gates = ["North", "North", "South"]
    positions = []
    for ticket, gate in zip(tickets, gates, strict=False):
        r = scan(system, show_id, ticket["secret"], door, gate)
        assert r.status_code == 200, r.text
        positions.append(r.json()["position"])
    assert scan(system, show_id, tickets[0]["secret"], door, "South").status_code == 409
    uploaded = system.api.http.post(
        f"/shows/{show_id}/checkins/batch",
        json={
            "scans": [
                {
                    "secret": tickets[3]["secret"],
                    "gate": "Side",
                    "scan_id": "side-1",
                    "scanned_at": datetime.now(UTC).isoformat(),
                }
            ]
        },
        headers=auth(door),
    )
    assert uploaded.status_code == 200, uploaded.text

    r = system.api.http.get(
        f"/shows/{show_id}/checkins/stats",
        params={"after": uploaded.json()["position"]},
        headers=auth(organizer),
    )

    assert r.status_code == 200, r.text
    stats = r.json()
    assert stats["by_gate"] == {"North": 2, "South": 1, "Side": 1}
    assert (stats["admitted"], stats["valid_outside"], stats["void"]) == (4, 1, 0)
    assert sum(m["admitted"] for m in stats["by_minute"]) == 4
    per_gate: Counter[str] = Counter()
    for minute in stats["by_minute"]:
        per_gate.update(minute["by_gate"])
    assert dict(per_gate) == stats["by_gate"]

    report = verify(system.store, refund_grace=timedelta(minutes=15))
    assert report.violation_count == 0, [str(v) for v in report.violations]
