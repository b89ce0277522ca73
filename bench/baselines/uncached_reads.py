"""The baseline of `bench reads`: the seat map queried straight from PostgreSQL per request.

The same framework (FastAPI under uvicorn), the same route and the same JSON as the query API's
`GET /api/v1/shows/{id}/seats` (the very statement the read models use to build it,
projections/queries.py `SEAT_MAP_JSON`, with the seat map's position read beside it), but no
cache, no ETag and no 304: every request, conditional or not, costs its queries and the full
body. A sync endpoint: FastAPI runs it in its thread pool, one pooled connection each.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool

from projections.positions import active_positions
from projections.queries import SEAT_MAP_JSON
from projections.registry import SEAT_MAP


class UncachedSeatMaps:
    def __init__(self, database_url: str, pool_size: int = 16) -> None:
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            database_url, min_size=pool_size, max_size=pool_size, kwargs={"autocommit": True}
        )

    def seat_map(self, show_id: UUID) -> bytes | None:
        with self._pool.connection() as conn:
            position = active_positions(conn).get(SEAT_MAP, 0)
            row = conn.execute(SEAT_MAP_JSON, {"show": show_id, "position": position}).fetchone()
        return None if row is None else str(row[0]).encode()

    def close(self) -> None:
        self._pool.close()


def _seat_map(show_id: UUID, request: Request) -> Response:
    body = request.app.state.seat_maps.seat_map(show_id)
    if body is None:
        return JSONResponse({"type": "not-found", "status": 404}, status_code=404)
    return Response(body, media_type="application/json")


def _health() -> dict[str, str]:
    return {"status": "ok"}


def create_uncached_app(seat_maps: UncachedSeatMaps) -> FastAPI:
    app = FastAPI(title="uncached seat-map baseline")
    app.state.seat_maps = seat_maps
    app.add_api_route("/api/v1/shows/{show_id}/seats", _seat_map, methods=["GET"])
    app.add_api_route("/health", _health, methods=["GET"])
    return app
