"""Hot reads: seat maps and show pages computed once per change, answered with an ETag.

Each process keeps the answers it served lately (`HotReads`, keyed like the Redis cache:
`seats:<show>`, `show:<show>`): the JSON body, its strong ETag and the read-model position it
was read at (its label). One listener per process follows the read models: when their position
moves, it asks the event log which shows had events of the types the catalog and the seat map
follow in between, and drops those shows' answers that are older than the change. The next
request loads the answer once (one load per key at a time; through Redis, so a load in one
process serves the others) and every request until the next change of that show is answered
from memory: before FastAPI's routing and dependencies even (`HotReadsRoute`), which cost far
more than the answer itself.

An answer keeps its label while its show does not change (holds on other shows move the read
models' position on but leave this show's bytes, and so its ETag, alone). Read-your-writes
holds: an answer labelled L is served only for `after` <= L and only while the listener has
seen no event of its show after L; a 304 only when the client's tag is that answer's. When
the listener cannot follow (the database is away) for STALE_SECONDS, the memory is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from domain.ids import inventory_id_for
from domain.inventory import SeatInventory
from domain.show import Show
from http_shell.conditional import CACHE_CONTROL, JSON, entity_tag, none_match
from http_shell.problems import ProblemError
from infra.event_store import EVENTS_TABLE
from projections.positions import lowest
from projections.read_side import ReadSide
from projections.registry import CATALOG, PROJECTIONS, SEAT_MAP
from read_api.deps import caught_up, query

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often the listener looks at the read models' position
STALE_SECONDS = 3.0  # the memory is not used once the listener has not followed for this long
IDLE_SECONDS = 60.0  # an answer nobody asked for this long is dropped
LINGER_SECONDS = 30.0  # the listener stops when it has had nothing to follow for this long
MAX_ANSWERS = 2000
MAX_SCAN = 50_000  # further behind than this: forget everything rather than scan
MAX_CHANGES = 20_000  # shows remembered as changed before the memory starts afresh
MODELS = (CATALOG, SEAT_MAP)
# The aggregates whose events the catalog and the seat map follow: a show's own events and
# its seat inventory's (tests/unit/test_hot_reads.py checks nothing else changes them).
FOLLOWED_AGGREGATES: tuple[type[Any], ...] = (Show, SeatInventory)

Loader = Callable[[ReadSide, UUID, int], bytes | None]


def followed_topics() -> list[str]:
    """The log topics of the events that change a show page or a seat map."""
    return sorted(
        f"{event.__module__}:{event.__qualname__}"
        for name in MODELS
        for event in PROJECTIONS[name].handlers
    )


_CHANGES = (
    f"SELECT originator_id, max(notification_id) FROM {EVENTS_TABLE} "
    "WHERE notification_id > %s AND notification_id <= %s AND topic = ANY(%s) "
    "GROUP BY originator_id"
)
_GENERATIONS = (
    "SELECT projection, generation FROM read.generations "
    "WHERE state = 'active' AND projection = ANY(%s) ORDER BY projection"
)


@dataclass(frozen=True)
class HotResource:
    """A read answered from memory: `<kind>:<show>` in memory and Redis, loaded by `load`."""

    kind: str
    load: Loader  # blocking: run on a worker thread
    models: tuple[str, ...] = MODELS
    missing: str = "show"

    def key(self, show_id: UUID | str) -> str:
        return f"{self.kind}:{show_id}"


@dataclass(frozen=True, slots=True)
class Answer:
    show_id: UUID
    position: int  # the read-model position it was read at
    body: bytes
    etag: str

    @classmethod
    def of(cls, show_id: UUID, position: int, body: bytes) -> Answer:
        return cls(show_id, position, body, entity_tag(body))


class HotReads:
    """The answers of one process, kept current by one listener (an asyncio task)."""

    def __init__(self, read: ReadSide) -> None:
        self.read = read
        self._answers: dict[str, Answer] = {}
        self._used: dict[str, float] = {}
        self._flights: dict[str, asyncio.Future[tuple[Answer, str] | None]] = {}
        self._changed: dict[UUID, int] = {}  # show or inventory -> its last change in view
        self._inventories: dict[UUID, UUID] = {}  # show -> its inventory's id
        self._since: int | None = None  # the listener has seen every change after this
        self._seen = 0  # ... up to this position
        self._followed_at = float("-inf")
        self._generations: list[tuple[str, int]] | None = None
        self._topics = followed_topics()
        self._task: asyncio.Task[None] | None = None
        self._asked_at = time.monotonic()

    # --- answering -----------------------------------------------------------------------

    def current(self, key: str, after: int | None) -> Answer | None:
        """The answer in memory for `key`, if it is current and reflects `after`."""
        answer = self._answers.get(key)
        if answer is None or (after is not None and after > answer.position):
            return None
        now = time.monotonic()
        if now - self._followed_at > STALE_SECONDS:
            return None
        self._used[key] = now
        return answer

    def cache_state(self) -> str:
        """X-Cache of an answer from memory: `bypass` while Redis is away, as for loads."""
        return "hit" if self.read.cache.enabled else "bypass"

    async def answer(
        self, resource: HotResource, show_id: UUID, after: int | None
    ) -> tuple[Answer, str]:
        """The current answer and its X-Cache: from memory, else loaded once for everyone
        asking at the same time. Raises the problems of the read (404, 503, 422)."""
        key = resource.key(show_id)
        found = self.current(key, after)
        if found is not None:
            return found, self.cache_state()
        self._follow()
        flight = self._flights.get(key)
        if flight is not None:
            shared = await asyncio.shield(flight)
            if shared is not None and (after is None or shared[0].position >= after):
                return shared
        mine: asyncio.Future[tuple[Answer, str] | None] | None = None
        if key not in self._flights:
            mine = self._flights[key] = asyncio.get_running_loop().create_future()
        try:
            loaded = await self._load(resource, show_id, after)
        except BaseException:
            if mine is not None:
                mine.set_result(None)  # the others load for themselves
            raise
        finally:
            if mine is not None and self._flights.get(key) is mine:
                del self._flights[key]
        if mine is not None:
            mine.set_result(loaded)
        return loaded

    async def _load(
        self, resource: HotResource, show_id: UUID, after: int | None
    ) -> tuple[Answer, str]:
        read, key = self.read, resource.key(show_id)
        at_least = after
        if self._since is not None:  # no entry older than a change already seen
            at_least = max(after or 0, self._last_change(show_id)) or after
        hit = await asyncio.to_thread(read.cache.get, key, at_least)
        if hit is not None:
            answer = Answer.of(show_id, hit.position, hit.body)
            self._offer(key, answer)
            return answer, "hit"
        position = await caught_up(read, resource.models, after)
        body = await query(resource.load, read, show_id, position)
        if body is None:
            raise ProblemError(404, "not-found", f"{resource.missing} not found")
        await asyncio.to_thread(read.cache.put, key, position, body)
        answer = Answer.of(show_id, position, body)
        self._offer(key, answer)
        return answer, "miss" if read.cache.enabled else "bypass"

    def _offer(self, key: str, answer: Answer) -> None:
        """Keep an answer if it is known to be current: read after the listener began and
        after its show's last change the listener has seen (later changes it will see)."""
        if self._since is None or answer.position < self._since:
            return
        if answer.position < self._last_change(answer.show_id):
            return
        held = self._answers.get(key)
        if held is not None and held.position > answer.position:
            return
        if held is None and len(self._answers) >= MAX_ANSWERS:
            return
        self._answers[key] = answer
        self._used[key] = time.monotonic()

    def _last_change(self, show_id: UUID) -> int:
        inventory = self._inventories.get(show_id)
        if inventory is None:
            inventory = self._inventories[show_id] = inventory_id_for(show_id)
        return max(self._changed.get(show_id, 0), self._changed.get(inventory, 0))

    # --- following -----------------------------------------------------------------------

    def _follow(self) -> None:
        self._asked_at = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        try:
            while self._answers or time.monotonic() - self._asked_at < LINGER_SECONDS:
                try:
                    await self._look()
                except Exception as error:  # the database is away: try again shortly
                    log.debug("hot reads: cannot follow the read models: %s", error)
                    await asyncio.sleep(1.0)
                await asyncio.sleep(POLL_SECONDS)
        finally:
            self._forget()

    async def _look(self) -> None:
        positions = await asyncio.to_thread(self.read.positions.current)
        target = lowest(positions, MODELS)
        if self._since is None or not 0 <= target - self._seen <= MAX_SCAN:
            self._start_afresh(target, await asyncio.to_thread(self._active_generations))
        elif target > self._seen:
            changes, generations = await asyncio.to_thread(self._changes, self._seen, target)
            if generations != self._generations:  # a read model was rebuilt: start afresh
                self._start_afresh(target, generations)
            else:
                self._apply(changes, target)
        self._followed_at = time.monotonic()
        self._drop_idle()

    def _start_afresh(self, position: int, generations: list[tuple[str, int]]) -> None:
        self._answers.clear()
        self._used.clear()
        self._changed.clear()
        self._since = self._seen = position
        self._generations = generations

    def _apply(self, changes: Collection[tuple[UUID, int]], position: int) -> None:
        for originator, at in changes:
            self._changed[originator] = max(at, self._changed.get(originator, 0))
        for key, answer in list(self._answers.items()):
            if self._last_change(answer.show_id) > answer.position:
                del self._answers[key]
                self._used.pop(key, None)
        self._seen = position
        if len(self._changed) > MAX_CHANGES:  # all applied: remember only later ones
            self._changed.clear()
            self._since = position

    def _drop_idle(self) -> None:
        idle = time.monotonic() - IDLE_SECONDS
        for key in [k for k, used in self._used.items() if used < idle]:
            self._answers.pop(key, None)
            del self._used[key]
        if len(self._inventories) > 2 * MAX_ANSWERS:
            self._inventories.clear()

    def _forget(self) -> None:
        self._answers.clear()
        self._used.clear()
        self._changed.clear()
        self._since = None
        self._generations = None
        self._followed_at = float("-inf")

    def _changes(
        self, after: int, upto: int
    ) -> tuple[list[tuple[UUID, int]], list[tuple[str, int]]]:
        """The shows and inventories with followed events in (after, upto], with the last
        position of each, and the read models' generations (in one snapshot)."""
        with self.read.models.connection() as conn, conn.transaction():
            rows = conn.execute(_CHANGES, (after, upto, self._topics)).fetchall()
            generations = conn.execute(_GENERATIONS, (list(MODELS),)).fetchall()
        return [(r[0], int(r[1])) for r in rows], [(g[0], int(g[1])) for g in generations]

    def _active_generations(self) -> list[tuple[str, int]]:
        with self.read.models.connection() as conn:
            rows = conn.execute(_GENERATIONS, (list(MODELS),)).fetchall()
        return [(r[0], int(r[1])) for r in rows]


def hot_reads_of(request: Request) -> HotReads | None:
    """This app's (process's) hot reads; None where it serves no read models."""
    return _hot_reads(request.app)


def _hot_reads(app: Any) -> HotReads | None:
    state = app.state
    hot: HotReads | None = getattr(state, "hot_reads", None)
    if hot is None:
        read: ReadSide | None = state.container.read_side
        if read is None:
            return None
        hot = state.hot_reads = HotReads(read)
    return hot


# --- the fast path -------------------------------------------------------------------------

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_AFTER = re.compile(rb"after=(\d{1,18})")
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


class _Route:
    """Stands for a route in the scope (metrics label answers by `scope["route"]`)."""

    def __init__(self, path: str) -> None:
        self.path = path


class HotReadsRoute:
    """Pure ASGI, before the routing: a GET of a hot read whose current answer is in memory
    is answered from it (200 or 304) with the headers the route would send; anything else
    (other query parameters, a body, an answer not in memory, an `after` it does not
    reflect) goes on to the route, which answers the same way and fills the memory.
    Inside the request-id and metrics middleware: those see these answers like any other."""

    def __init__(
        self, app: ASGIApp, api: FastAPI, prefix: str, resources: dict[str, HotResource]
    ) -> None:
        self.app = app
        self._api = api
        self._prefix = prefix + "/"
        # path suffix ("" for the show, "/seats"...) -> resource
        self._resources = resources
        suffixes = "|".join(re.escape(s) for s in resources if s)
        self._path = re.compile(f"{re.escape(self._prefix)}({_UUID})({suffixes})?")
        self._routes: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(self._prefix) and await self._answered(scope, path, send):
                return
        await self.app(scope, receive, send)

    async def _answered(self, scope: Scope, path: str, send: Send) -> bool:
        found = self._path.fullmatch(path)
        if found is None:
            return False
        show, suffix = found.group(1), found.group(2) or ""
        resource = self._resources.get(suffix)
        if resource is None:
            return False
        after: int | None = None
        query_string: bytes = scope.get("query_string", b"")
        if query_string:
            given = _AFTER.fullmatch(query_string)
            if given is None:
                return False
            after = int(given.group(1))
        tags: list[str] = []
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                tags.append(value.decode("latin-1"))
            elif name in _BODY_HEADERS:
                return False  # the route's body checks answer those
        hot = _hot_reads(self._api)
        if hot is None:
            return False
        answer = hot.current(resource.key(show), after)
        if answer is None:
            return False
        scope["route"] = self._route(path, suffix)
        scope["path_params"] = {"show_id": show}
        headers = [
            (b"etag", answer.etag.encode()),
            (b"cache-control", CACHE_CONTROL.encode()),
            (b"x-cache", hot.cache_state().encode()),
        ]
        if tags and none_match(", ".join(tags), answer.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return True
        headers += [
            (b"content-length", str(len(answer.body)).encode()),
            (b"content-type", JSON.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})
        return True

    def _route(self, path: str, suffix: str) -> Any:
        route = self._routes.get(suffix)
        if route is None:
            template = self._prefix + "{show_id}" + suffix
            route = next(
                (r for r in _all_routes(self._api.routes) if getattr(r, "path", None) == template),
                None,
            ) or _Route(template)
            self._routes[suffix] = route
        return route


def _all_routes(routes: Any) -> list[Any]:
    found: list[Any] = []
    for route in routes:
        found.append(route)
        with contextlib.suppress(AttributeError, TypeError):
            found.extend(_all_routes(route.routes))
    return found


def install_hot_reads(app: FastAPI, prefix: str, resources: dict[str, HotResource]) -> None:
    """Answer the hot reads under `prefix + "/<show id><suffix>"` before the routing."""
    app.add_middleware(HotReadsRoute, api=app, prefix=prefix, resources=resources)
