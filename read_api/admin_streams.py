"""Admin: a stream's events straight from the event log (audits, support), not a read model."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, Query
from pydantic import BaseModel

from audit.replay import StreamNotFoundError, stream_events
from commands.errors import StoreUnavailableError
from http_shell.deps import AdminUser, ContainerDep
from http_shell.problems import ProblemError

router = APIRouter(tags=["admin"])


class StreamEventPublic(BaseModel):
    position: int
    version: int
    time: datetime
    type: str
    payload: dict[str, Any]


class StreamEventsPage(BaseModel):
    stream_id: UUID
    events: list[StreamEventPublic]
    next_after_version: int | None  # pass as `after_version` for the next page


@router.get(
    "/admin/streams/{stream_id}/events",
    response_model=StreamEventsPage,
    responses={404: {"description": "no such stream"}},
)
def get_stream_events(
    stream_id: UUID,
    _: AdminUser,
    container: ContainerDep,
    after_version: Annotated[int, Query(ge=0, description="events after this version")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
) -> StreamEventsPage:
    """A stream's events in version order (position, version, time, type, payload), as stored
    (old events upcast to their current shape). Admins only."""
    try:
        events, more = stream_events(container.store, stream_id, after_version, limit)
    except StreamNotFoundError:
        raise ProblemError(404, "not-found", f"no stream {stream_id}") from None
    except psycopg.OperationalError as error:
        raise StoreUnavailableError(str(error)) from error
    return StreamEventsPage(
        stream_id=stream_id,
        events=[StreamEventPublic(**vars(e)) for e in events],
        next_after_version=events[-1].version if more else None,
    )
