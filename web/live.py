"""The live seat map: `GET /shows/{id}/seats/events`, Server-Sent Events of seat changes.

One feed per process (`SeatFeed`) follows the seat-map read model for every show somebody is
watching and fans each change out to all of that show's connected clients: when the read
model's position moves, it reads each watched show's seats once (one query per show, not per
client), compares them with what it sent last and sends the difference, labelled with the
read model's log position (the event's `id`). A client that reconnects with `Last-Event-ID`
(or first connects with `?since=`, the position its page was rendered at) and has missed
changes gets the seats as they are now in one `snapshot` event, labelled likewise; so no
change is lost across a reconnect. Each stream ends after STREAM_SECONDS (the browser
reconnects at once, resuming from its last id), so servers can be stopped cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request
from starlette.responses import StreamingResponse

from projections.positions import lowest
from projections.read_side import ReadSide
from projections.registry import SEAT_MAP
from web.session import PageError, container_of

POLL_SECONDS = 0.2  # how often the feed looks at the read model's position
KEEPALIVE_SECONDS = 15.0
STREAM_SECONDS = 300.0
QUEUE_SIZE = 64  # a client this far behind is dropped (it reconnects and gets a snapshot)

router = APIRouter()
Seats = dict[str, str]  # seat -> status
Available = dict[str, int]  # section -> tickets available


@dataclass
class ShowState:
    position: int
    seats: Seats
    available: Available


@dataclass
class Watch:
    clients: set[asyncio.Queue[str | None]] = field(default_factory=set)
    state: ShowState | None = None


def load_state(read: ReadSide, show_id: UUID) -> ShowState | None:
    position = lowest(read.positions.current(), [SEAT_MAP])
    found = read.models.seat_map(show_id)
    if found is None:
        return None
    sections, seats = found
    return ShowState(
        position,
        {seat: status for _, _, seat, _, status in seats},
        {s["section"]: int(s["available"]) for s in sections},
    )


def message(kind: str, position: int, seats: Seats, available: Available) -> str:
    data = json.dumps({"seats": seats, "available": available, "position": position})
    return f"id: {position}\nevent: {kind}\ndata: {data}\n\n"


class SeatFeed:
    """Follows the seat map for the shows being watched in this process."""

    def __init__(self, read: ReadSide) -> None:
        self._read = read
        self._watches: dict[UUID, Watch] = {}
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, show_id: UUID, since: int | None) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_SIZE)
        watch = self._watches.setdefault(show_id, Watch())
        if watch.state is None:
            watch.state = await asyncio.to_thread(load_state, self._read, show_id)
            if watch.state is None:
                self._forget(show_id)
                raise PageError(404, "Show not found", "There is no such show.")
        state = watch.state
        if since is None or since < state.position:
            queue.put_nowait(message("snapshot", state.position, state.seats, state.available))
        watch.clients.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow())
        return queue

    def unsubscribe(self, show_id: UUID, queue: asyncio.Queue[str | None]) -> None:
        watch = self._watches.get(show_id)
        if watch is not None:
            watch.clients.discard(queue)
            if not watch.clients:
                self._forget(show_id)

    def _forget(self, show_id: UUID) -> None:
        self._watches.pop(show_id, None)

    async def _follow(self) -> None:
        seen = -1
        while self._watches:
            await asyncio.sleep(POLL_SECONDS)
            try:
                positions = await asyncio.to_thread(self._read.positions.current)
                position = lowest(positions, [SEAT_MAP])
                if position == seen:
                    continue
                for show_id in list(self._watches):
                    await self._refresh(show_id)
                seen = position
            except Exception:  # the database is away: keep the clients, try again later
                await asyncio.sleep(1.0)

    async def _refresh(self, show_id: UUID) -> None:
        new = await asyncio.to_thread(load_state, self._read, show_id)
        watch = self._watches.get(show_id)
        if watch is None or new is None:
            return
        old = watch.state
        watch.state = new
        if old is None:
            return
        seats = {s: st for s, st in new.seats.items() if old.seats.get(s) != st}
        available = {s: n for s, n in new.available.items() if old.available.get(s) != n}
        if not seats and not available:
            return
        text = message("seats", new.position, seats, available)
        for queue in list(watch.clients):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:  # too slow: end its stream; it resumes by snapshot
                watch.clients.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)


def seat_feed(request: Request) -> SeatFeed:
    state = request.app.state
    feed: SeatFeed | None = getattr(state, "seat_feed", None)
    if feed is None:
        read = container_of(request).read_side
        if read is None:
            raise PageError(503, "Unavailable", "Seat maps are not served by this process.")
        feed = state.seat_feed = SeatFeed(read)
    return feed


@router.get("/shows/{show_id}/seats/events")
async def seat_events(
    show_id: UUID,
    request: Request,
    since: int | None = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """The show's seat changes as Server-Sent Events (`snapshot`, then `seats` events whose
    data is `{"seats": {seat: status}, "available": {section: n}, "position": n}`)."""
    resume = since
    if last_event_id is not None and last_event_id.strip().isdigit():
        resume = int(last_event_id.strip())
    feed = seat_feed(request)
    queue = await feed.subscribe(show_id, resume)

    async def stream() -> AsyncIterator[str]:
        ends = time.monotonic() + STREAM_SECONDS
        try:
            yield "retry: 1000\n\n"
            while time.monotonic() < ends:
                try:
                    text = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if text is None:
                    return
                yield text
        finally:
            feed.unsubscribe(show_id, queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
