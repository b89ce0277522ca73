"""Request examples for the OpenAPI document: every operation that takes a JSON body shows one
that works as it is (times relative to when the document is built, so an example show is in
the future), so nobody has to assemble a `POST /shows` body from the schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

Examples = dict[str, dict[str, Any]]  # name -> {"summary", "value"}


def _at(days: float, hour: int = 20) -> str:
    moment = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return (moment + timedelta(days=days)).isoformat()


def _one(summary: str, value: dict[str, Any]) -> Examples:
    return {"example": {"summary": summary, "value": value}}


SHOW_ID = "3f1c2a4e-7b6d-4c1e-9a57-1f0b8a2d4c11"


def request_examples() -> dict[tuple[str, str], Examples]:
    """(method, path under /api/v1) -> named examples of its JSON body."""
    seated_show = {
        "title": "Swan Lake",
        "description": "The Royal Ballet, with the full orchestra.",
        "category": "ballet",
        "venue": "Opera House",
        "starts_at": _at(60),
        "time_zone": "Europe/London",
        "currency": "GBP",
        "price_tiers": [
            {"code": "STALLS", "price_cents": 8500},
            {"code": "STD", "price_cents": 4500},
        ],
        "sections": [
            {
                "code": "A",
                "kind": "seated",
                "tier": "STALLS",
                "rows": [{"label": "1", "seats": 12}, {"label": "2", "seats": 12}],
            },
            {"code": "GA", "kind": "general", "tier": "STD", "capacity": 200},
        ],
        "max_tickets_per_customer": 6,
        "sale_opens_at": _at(7, 10),
        "presale_opens_at": _at(6, 10),
        "queue_admits_per_minute": 300,
    }
    return {
        ("POST", "/auth/register"): _one(
            "a fan signs up",
            {"email": "fan@example.com", "password": "correct horse battery", "name": "Ann Fan"},
        ),
        ("POST", "/auth/token"): _one(
            "log in (the demo fan of `make run`)",
            {"email": "fan@demo.ticketblitz.dev", "password": "demo-fan-password"},
        ),
        ("PATCH", "/me"): _one("a new display name", {"name": "Ann B. Fan"}),
        ("DELETE", "/me"): _one(
            "forget me (the password, once more)", {"password": "correct horse battery"}
        ),
        ("POST", "/me/password"): _one(
            "change the password",
            {"current": "correct horse battery", "new": "staple battery horse"},
        ),
        ("POST", "/admin/accounts/{account_id}/role"): _one(
            "make an account an organiser", {"role": "organizer"}
        ),
        ("POST", "/shows"): _one(
            "a seated section and a standing one, a presale a day before the sale",
            seated_show,
        ),
        ("PATCH", "/shows/{show_id}"): {
            "reschedule": {
                "summary": "move the show (ticket holders are e-mailed once)",
                "value": {"starts_at": _at(67)},
            },
            "reprice": {
                "summary": "a new price for new holds (held and sold keep theirs)",
                "value": {"price_tiers": [{"code": "STD", "price_cents": 5000}]},
            },
            "waiting_room": {
                "summary": "let fans in at 600 a minute from the opening (null: no waiting room)",
                "value": {"queue_admits_per_minute": 600},
            },
        },
        ("POST", "/shows/{show_id}/cancel"): _one(
            "cancel the show (everyone refunded)", {"reason": "the lead dancer is injured"}
        ),
        ("POST", "/shows/{show_id}/seats/block"): _one(
            "hold seats back for the production",
            {"seats": ["A-1-1", "A-1-2"], "reason": "camera position"},
        ),
        ("POST", "/shows/{show_id}/seats/unblock"): _one(
            "put them back on sale", {"seats": ["A-1-1", "A-1-2"]}
        ),
        ("PUT", "/shows/{show_id}/sections/{code}/capacity"): _one(
            "a bigger standing area", {"capacity": 250}
        ),
        ("POST", "/bookings"): {
            "best_available": {
                "summary": "2 of the best seats anywhere",
                "value": {"show_id": SHOW_ID, "quantity": 2},
            },
            "chosen_seats": {
                "summary": "these seats, charged at once",
                "value": {
                    "show_id": SHOW_ID,
                    "seats": ["A-2-3", "A-2-4"],
                    "payment_method": "pm_card_visa",
                },
            },
            "presale": {
                "summary": "during the presale, with a code",
                "value": {"show_id": SHOW_ID, "section": "GA", "quantity": 2, "code": "FANCLUB-1"},
            },
            "waiting_room": {
                "summary": "while the waiting room is on, with the admission it gave you",
                "value": {
                    "show_id": SHOW_ID,
                    "quantity": 2,
                    # the `admission` of GET /shows/{show_id}/queue/{token} (shortened)
                    "admission": "eyJhbGciOiJIUzI1NiJ9.eyJzaG93IjoiLi4uIn0.c2lnbmF0dXJl",
                },
            },
        },
        ("POST", "/bookings/{booking_id}/pay"): _one(
            "pay with the emulator's test card (README: test payment methods)",
            {"payment_method": "pm_card_visa"},
        ),
        ("POST", "/shows/{show_id}/checkins"): _one(
            "a scan at the door (the secret is what the ticket's QR code holds)",
            {
                "secret": "<the ticket's secret, from GET /bookings/{id}/tickets>",
                "gate": "north-1",
                "scan_id": "north-1-000042",
            },
        ),
        ("POST", "/shows/{show_id}/checkins/batch"): _one(
            "what an offline gate scanned",
            {
                "scans": [
                    {
                        "secret": "<a ticket's secret>",
                        "gate": "north-2",
                        "scan_id": "north-2-000007",
                        "scanned_at": _at(60, 19),
                    }
                ]
            },
        ),
        ("POST", "/tickets/{ticket_id}/transfer"): _one(
            "give the ticket to a friend (they need an account)", {"email": "friend@example.com"}
        ),
        ("POST", "/shows/{show_id}/codes"): {
            "generated": {
                "summary": "100 single-use codes, 20 % off",
                "value": {"count": 100, "max_uses": 1, "discount_percent": 20},
            },
            "fan_club": {
                "summary": "the fan club's own code: 500 bookings, stalls at 60.00",
                "value": {
                    "codes": ["FANCLUB-1"],
                    "max_uses": 500,
                    "tiers": ["STALLS"],
                    "price_cents": 6000,
                    "valid_until": _at(8, 10),
                },
            },
        },
        ("POST", "/shows/{show_id}/waitlist"): _one(
            "wait for 2 tickets of section A", {"quantity": 2, "section": "A"}
        ),
    }


def add_request_examples(schema: dict[str, Any], prefix: str) -> None:
    """Put each operation's examples on its JSON request body in the OpenAPI `schema`."""
    examples = request_examples()
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            found = examples.get((method.upper(), path.removeprefix(prefix)))
            content = operation.get("requestBody", {}).get("content", {})
            if found is not None and "application/json" in content:
                content["application/json"]["examples"] = found
