"""The live seat map: `GET /shows/{id}/seats/events`, Server-Sent Events of seat changes.

One feed per process (`SeatFeed`) follows the seat-map read model for every show somebody is
watching and fans each change out to all of that show's connected clients: while a show is
watched it looks at the read model's position every POLL_SECONDS (one small query, whoever
watches; nothing at all while nobody does), and when it moved it reads each watched show's
seats once (one statement per show, not per client) together with the position they are at,
so the label is exactly the state it names. It compares them with what it sent last and
formats the difference once, labelled with that position (the event's `id`); each client only
gets the same text put on its queue.

A client that connects (with `?since=`, the position its page was rendered at) or reconnects
(with `Last-Event-ID`) behind the feed gets the seats as they are now in one `snapshot` event,
labelled likewise; one ahead of the feed (its page was read after the feed's last look, or in
another process) waits until the feed has passed its position and then gets a snapshot too:
diffs are only ever sent to a client known to hold exactly the state they start from. A client
too slow to take its events (QUEUE_SIZE behind) is dropped: its stream ends, the browser
reconnects with its last id and resumes by snapshot. So no change is lost or reordered across
a reconnect. Each stream ends after STREAM_SECONDS (the browser reconnects at once, resuming
from its last id), so servers can be stopped cleanly.

With several API processes (`serve --workers N`) each process has its own feed: one position
poll and one seat query per watched show and change per process, whatever its clients. All
feeds label with the same log positions, so a browser may reconnect to any process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request
from starlette.responses import StreamingResponse

from projections.base import ACTIVE
from projections.positions import lowest
from projections.read_side import ReadSide
from projections.registry import SEAT_MAP
from web.session import PageError, container_of

POLL_SECONDS = 0.1  # how often the feed looks at the read model's position while watched
KEEPALIVE_SECONDS = 15.0
STREAM_SECONDS = 300.0
QUEUE_SIZE = 64  # a client this far behind is dropped (it reconnects and gets a snapshot)

# A show's seats and sections with the seat map's position, in one statement: one snapshot of
# the database, so the position labels exactly these seats (the projection moves its position
# in the transaction that changes them).
SEATS_AT_POSITION = """
SELECT (SELECT coalesce(max(f.position), 0) FROM read.generations g
          JOIN follower_positions f ON f.name = g.follower
         WHERE g.projection = %(projection)s AND g.state = %(active)s),
       (SELECT json_object_agg(seat, status ORDER BY ordinal)
          FROM read.seats WHERE show_id = %(show)s),
       (SELECT json_object_agg(section, available ORDER BY ordinal)
          FROM read.show_sections WHERE show_id = %(show)s)
"""

router = APIRouter()
Seats = dict[str, str]  # seat -> status
Available = dict[str, int]  # section -> tickets available
Client = asyncio.Queue[bytes | None]


@dataclass
class ShowState:
    position: int
    seats: Seats
    available: Available
    _snapshot: bytes | None = None

    def snapshot(self) -> bytes:
        """The `snapshot` event of this state, formatted once whoever asks."""
        if self._snapshot is None:
            self._snapshot = message("snapshot", self.position, self.seats, self.available)
        return self._snapshot


@dataclass
class Watch:
    clients: set[Client] = field(default_factory=set)
    # Clients ahead of the feed: the position they hold; they get a snapshot once passed.
    waiting: dict[Client, int] = field(default_factory=dict)
    state: ShowState | None = None
    loading: asyncio.Lock = field(default_factory=asyncio.Lock)  # one load at a time

    def __bool__(self) -> bool:
        return bool(self.clients or self.waiting)


def load_state(read: ReadSide, show_id: UUID) -> ShowState | None:
    """The show's seats as the seat map has them now, and the position they are at."""
    params: dict[str, Any] = {"show": show_id, "projection": SEAT_MAP, "active": ACTIVE}
    with read.models.connection() as conn:
        row = conn.execute(SEATS_AT_POSITION, params).fetchone()
    if row is None or row[2] is None:
        return None
    position, seats, available = row
    return ShowState(int(position), seats or {}, {k: int(v) for k, v in available.items()})


def message(kind: str, position: int, seats: Seats, available: Available) -> bytes:
    """An event as the bytes every client is sent (encoded once, not once per client)."""
    data = json.dumps({"seats": seats, "available": available, "position": position})
    return f"id: {position}\nevent: {kind}\ndata: {data}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"


class SeatFeed:
    """Follows the seat map for the shows being watched in this process."""

    def __init__(self, read: ReadSide) -> None:
        self._read = read
        self._watches: dict[UUID, Watch] = {}
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, show_id: UUID, since: int | None) -> Client:
        queue: Client = asyncio.Queue(QUEUE_SIZE)
        watch = self._watches.setdefault(show_id, Watch())
        watch.waiting[queue] = -1  # counts as watching while the first state loads
        try:
            async with watch.loading:
                if watch.state is None:
                    watch.state = await asyncio.to_thread(load_state, self._read, show_id)
        except BaseException:
            self.unsubscribe(show_id, queue)
            raise
        del watch.waiting[queue]
        state = watch.state
        if state is None:
            self.unsubscribe(show_id, queue)
            raise PageError(404, "Show not found", "There is no such show.")
        if since is None or since < state.position:
            queue.put_nowait(state.snapshot())
            watch.clients.add(queue)
        elif since == state.position:
            watch.clients.add(queue)  # it holds this very state: the diffs follow
        else:
            watch.waiting[queue] = since
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow())
        return queue

    def unsubscribe(self, show_id: UUID, queue: Client) -> None:
        watch = self._watches.get(show_id)
        if watch is not None:
            watch.clients.discard(queue)
            watch.waiting.pop(queue, None)
            if not watch:
                self._watches.pop(show_id, None)

    def watched(self) -> dict[UUID, int]:
        """Clients per watched show (for tests and diagnostics)."""
        return {show: len(w.clients) + len(w.waiting) for show, w in self._watches.items()}

    async def _follow(self) -> None:
        seen = -1
        kept_alive = time.monotonic()
        while self._watches:
            await asyncio.sleep(POLL_SECONDS)
            if time.monotonic() - kept_alive >= KEEPALIVE_SECONDS:
                # One comment line to every client now and then, from here rather than a
                # timer per client and event: proxies keep the connections open.
                kept_alive = time.monotonic()
                for watch in list(self._watches.values()):
                    self._send(watch, KEEPALIVE, waiting_too=True)
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
        watch = self._watches.get(show_id)
        if watch is None:
            return
        async with watch.loading:
            new = await asyncio.to_thread(load_state, self._read, show_id)
            old = watch.state
            if new is None or old is None or new.position <= old.position:
                return  # deleted, not loaded yet, or nothing new
            watch.state = new
        seats = {s: st for s, st in new.seats.items() if old.seats.get(s) != st}
        available = {s: n for s, n in new.available.items() if old.available.get(s) != n}
        if seats or available:
            self._send(watch, message("seats", new.position, seats, available))
        if watch.waiting:
            self._release_waiting(watch, new)

    def _send(self, watch: Watch, text: bytes, waiting_too: bool = False) -> None:
        for queue in [*watch.clients, *(watch.waiting if waiting_too else ())]:
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:  # too slow: end its stream; it resumes by snapshot
                watch.clients.discard(queue)
                watch.waiting.pop(queue, None)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)

    @staticmethod
    def _release_waiting(watch: Watch, state: ShowState) -> None:
        """Clients the feed has now caught up with: in step from here on."""
        for queue, since in list(watch.waiting.items()):
            if since < 0 or since > state.position:
                continue  # still loading, or still ahead
            del watch.waiting[queue]
            if since < state.position:
                queue.put_nowait(state.snapshot())
            watch.clients.add(queue)


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

    async def stream() -> AsyncIterator[bytes]:
        ends = time.monotonic() + STREAM_SECONDS
        try:
            yield b"retry: 1000\n\n"
            # No timer per client: the feed sends every client a keep-alive line now and
            # then, so this wait always ends within KEEPALIVE_SECONDS.
            while time.monotonic() < ends:
                text = await queue.get()
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
