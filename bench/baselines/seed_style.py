"""The seed-style design, as the baseline: a relational `seats` table, one transaction per booking
that locks the seats it takes with `SELECT ... FOR UPDATE`, marks them held and inserts the
booking row. No events, no aggregates, no group commit: every booking is its own commit.

Chosen seats lock exactly those rows (in map order, so two bookings never deadlock) and fail
with `seats-unavailable` if any is taken. Best-available locks the first free seats in map
order with a blocking `SELECT ... FOR UPDATE` (mode "wait", the default: the seed's design;
every booking queues on the same front seats, re-checks them once the first commits, and retries
when it got fewer) or with `FOR UPDATE SKIP LOCKED` (mode "skip-locked": a stronger plain-SQL
variant the seed did not have, for a conservative ratio). If fewer free seats than asked are
left, `not-enough-tickets` with the number available.

The same request and answer shapes as `POST /api/v1/bookings` (same pydantic request model,
same JWT check, same problem+json errors), so bench/loadgen.py drives it unchanged.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID, uuid4

import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from bench.common import PRICE_CENTS, SECTION, Layout
from commands.errors import ConcurrencyError
from commands.models import BookingRequest
from domain.errors import (
    CapacityExceededError,
    DomainError,
    SeatsUnavailableError,
    UnknownSeatsError,
)
from http_shell.problems import response_for
from infra.tokens import InvalidTokenError, Principal, TokenService

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS seed;
CREATE TABLE IF NOT EXISTS seed.seats (
    show_id uuid NOT NULL,
    seat_id text NOT NULL,
    row_no int NOT NULL,
    seat_no int NOT NULL,
    price_cents int NOT NULL,
    status text NOT NULL DEFAULT 'free',
    booking_id uuid,
    PRIMARY KEY (show_id, seat_id)
);
CREATE INDEX IF NOT EXISTS seats_free_in_map_order
    ON seed.seats (show_id, row_no, seat_no) WHERE status = 'free';
CREATE TABLE IF NOT EXISTS seed.bookings (
    booking_id uuid PRIMARY KEY,
    show_id uuid NOT NULL,
    customer_id uuid NOT NULL,
    seats text[] NOT NULL,
    amount_cents int NOT NULL,
    currency text NOT NULL,
    status text NOT NULL,
    hold_expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""

CHOSEN_SQL = (
    "SELECT seat_id, status, price_cents FROM seed.seats "
    "WHERE show_id = %s AND seat_id = ANY(%s) ORDER BY row_no, seat_no FOR UPDATE"
)
BEST_SQL = {
    "wait": (
        "SELECT seat_id, status, price_cents FROM seed.seats WHERE show_id = %s "
        "AND status = 'free' ORDER BY row_no, seat_no LIMIT %s FOR UPDATE"
    ),
    "skip-locked": (
        "SELECT seat_id, status, price_cents FROM seed.seats WHERE show_id = %s "
        "AND status = 'free' ORDER BY row_no, seat_no LIMIT %s FOR UPDATE SKIP LOCKED"
    ),
}
MODES = tuple(BEST_SQL)


class _Short(Exception):
    """Best-available locked fewer free seats than asked (others hold the rest for now)."""


class SeedStyleBookings:
    def __init__(
        self,
        database_url: str,
        pool_size: int = 16,
        mode: str = "wait",
        hold_minutes: float = 60.0,
    ) -> None:
        if mode not in BEST_SQL:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.hold = timedelta(minutes=hold_minutes)
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            database_url,
            min_size=pool_size,
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=True,
        )
        self.pool.wait()
        self.retries = 0

    def close(self) -> None:
        self.pool.close()

    def setup(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(SCHEMA_SQL)  # type: ignore[arg-type]

    def create_show(self, layout: Layout) -> UUID:
        show_id = uuid4()
        with self.pool.connection() as conn, conn.cursor() as cur:
            with cur.copy(
                "COPY seed.seats (show_id, seat_id, row_no, seat_no, price_cents) FROM STDIN"
            ) as copy:
                for row_no, (label, count) in enumerate(layout.rows, start=1):
                    for n in range(1, count + 1):
                        copy.write_row((show_id, f"{SECTION}-{label}-{n}", row_no, n, PRICE_CENTS))
            cur.execute("ANALYZE seed.seats")
        return show_id

    def book(
        self, show_id: UUID, customer_id: UUID, seats: list[str] | None, quantity: int | None
    ) -> dict[str, Any]:
        """One booking, one transaction; the answer in the shape of the real API."""
        for _ in range(1000):
            try:
                return self._try_book(show_id, customer_id, seats, quantity)
            except _Short:
                self.retries += 1
                assert quantity is not None
                free = self.free_seats(show_id)
                if free < quantity:
                    raise CapacityExceededError(None, quantity, free) from None
                time.sleep(0.001)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                self.retries += 1
        raise ConcurrencyError("seats kept changing; try again")

    def _try_book(
        self, show_id: UUID, customer_id: UUID, seats: list[str] | None, quantity: int | None
    ) -> dict[str, Any]:
        booking_id = uuid4()
        until = datetime.now(UTC) + self.hold
        with self.pool.connection() as conn, conn.transaction():
            if seats is not None:
                rows = conn.execute(CHOSEN_SQL, (show_id, seats)).fetchall()
                if len(rows) != len(seats):
                    known = {r[0] for r in rows}
                    raise UnknownSeatsError([s for s in seats if s not in known])
                taken = [r[0] for r in rows if r[1] != "free"]
                if taken:
                    raise SeatsUnavailableError(taken)
            else:
                assert quantity is not None
                rows = conn.execute(BEST_SQL[self.mode], (show_id, quantity)).fetchall()
                if len(rows) < quantity:
                    raise _Short
            got = [r[0] for r in rows]
            amount = sum(int(r[2]) for r in rows)
            conn.execute(
                "UPDATE seed.seats SET status = 'held', booking_id = %s "
                "WHERE show_id = %s AND seat_id = ANY(%s)",
                (booking_id, show_id, got),
            )
            conn.execute(
                "INSERT INTO seed.bookings (booking_id, show_id, customer_id, seats, "
                "amount_cents, currency, status, hold_expires_at) "
                "VALUES (%s, %s, %s, %s, %s, 'EUR', 'held', %s)",
                (booking_id, show_id, customer_id, got, amount, until),
            )
        return {
            "booking_id": str(booking_id),
            "show_id": str(show_id),
            "status": "held",
            "seats": got,
            "general": {},
            "amount_cents": amount,
            "currency": "EUR",
            "hold_expires_at": until.isoformat(),
            "position": 0,
        }

    def free_seats(self, show_id: UUID) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM seed.seats WHERE show_id = %s AND status = 'free'",
                (show_id,),
            ).fetchone()
        return int(row[0]) if row else 0

    def verify(self, show_id: UUID, holds: list[tuple[str, list[str]]]) -> dict[str, Any]:
        """Zero oversell: every seat held by exactly one booking, and the bookings are exactly
        the successful answers with the seats they announced."""
        with self.pool.connection() as conn:
            seat_rows = conn.execute(
                "SELECT seat_id, status, booking_id FROM seed.seats WHERE show_id = %s",
                (show_id,),
            ).fetchall()
            bookings = conn.execute(
                "SELECT booking_id, seats FROM seed.bookings WHERE show_id = %s", (show_id,)
            ).fetchall()
        holder = {seat: str(b) for seat, status, b in seat_rows if status != "free"}
        claimed: dict[str, str] = {}
        double = 0
        for booking_id, booked in bookings:
            for seat in booked:
                if seat in claimed or holder.get(seat) != str(booking_id):
                    double += 1
                claimed[seat] = str(booking_id)
        answered = {b: sorted(s) for b, s in holds}
        stored = {str(b): sorted(s) for b, s in bookings}
        free = sum(1 for _, status, _ in seat_rows if status == "free")
        return {
            "seats": len(seat_rows),
            "free_left": free,
            "bookings_stored": len(bookings),
            "successes_answered": len(holds),
            "double_booked_seats": double,
            "answers_match_store": answered == stored,
            "ok": double == 0 and answered == stored and len(claimed) == len(holder),
        }


_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def principal(request: Request, credentials: Credentials) -> Principal:
    """The customer behind the bearer token, checked with the app's token service (the same
    check for every baseline, as in the real app)."""
    if credentials is None:
        raise InvalidTokenError("no bearer token")
    tokens: TokenService = request.app.state.tokens
    return tokens.verify(credentials.credentials)


CustomerDep = Annotated[Principal, Depends(principal)]


def _place_booking(body: BookingRequest, customer: CustomerDep, request: Request) -> JSONResponse:
    bookings: SeedStyleBookings = request.app.state.bookings
    try:
        held = bookings.book(body.show_id, customer.account_id, body.seats, body.quantity)
    except (DomainError, ConcurrencyError) as error:
        return response_for(error)
    return JSONResponse(held, status_code=201)


def _health() -> dict[str, str]:
    return {"status": "ok"}


async def _unauthorized(_: Request, error: Exception) -> JSONResponse:
    return response_for(error)


def create_baseline_app(bookings: SeedStyleBookings, tokens: TokenService) -> FastAPI:
    """The seed-style booking endpoint behind the same framework, auth and error mapping
    (a sync endpoint: FastAPI runs it in its thread pool, one pooled connection each)."""
    app = FastAPI(title="seed-style baseline")
    app.state.bookings = bookings
    app.state.tokens = tokens
    app.add_api_route("/api/v1/bookings", _place_booking, methods=["POST"], status_code=201)
    app.add_api_route("/health", _health, methods=["GET"])
    app.add_exception_handler(InvalidTokenError, _unauthorized)
    return app
