"""Runners: one log follower thread per read model, always on its active generation.

Idle followers wake up as soon as events are committed: the event store NOTIFYs a channel in
every append transaction, and a listener thread here wakes them all (they still poll every
`poll_interval`, should a notification be missed). A rebuild (projections/rebuild.py) may
switch a read model to a new generation at any time, from another process; a watcher thread
notices within `watch_interval` and moves that read model's runner to the new generation.

A generation built by another version of a projection (its fingerprint differs) is not
followed: its tables may not fit this code. With `rebuild_stale` the runners rebuild such read
models themselves (what `ticketblitz up` does); otherwise an operator runs
`ticketblitz projections rebuild`, which a rolling upgrade needs anyway.

An event a read model cannot apply is retried a few times and then skipped into
`follower_dead_letters` (infra/log_follower.py, `DEAD_LETTER`): one event never freezes a read
model for everyone. `GET /projections` and `ticketblitz projections failures` show both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable

import psycopg
from psycopg import sql

from commands.ports import EventLog
from infra.log_follower import DEAD_LETTER, LogFollower, PositionMovedError
from projections.base import EventReader, GenerationRetiredError, Projection
from projections.generations import active_generations, ensure_read_side, stale
from projections.positions import PositionWatch, active_positions
from projections.rebuild import Rebuild, RebuildBusyError
from projections.registry import projection_kinds

log = logging.getLogger(__name__)


class ProjectionRunners:
    def __init__(
        self,
        store: EventLog,
        names: Iterable[str] | None = None,
        page_size: int = 1000,
        poll_interval: float = 0.25,
        watch_interval: float = 0.1,
        rebuild_stale: bool = False,
    ) -> None:
        self.store = store
        self.kinds = projection_kinds(names)
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.watch_interval = watch_interval
        self.rebuild_stale = rebuild_stale
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running: dict[str, tuple[int, threading.Event, threading.Event]] = {}
        self._watch = PositionWatch(self._positions, max_age=0.0)
        self._reported_stale: dict[str, set[int]] = {}

    @property
    def names(self) -> list[str]:
        return [kind.kind for kind in self.kinds]

    def start(self) -> ProjectionRunners:
        with self.store.connection() as conn:
            ensure_read_side(conn, self.kinds)
            outdated = [kind.kind for kind in self.kinds if stale(conn, kind)]
        if outdated and self.rebuild_stale:
            self._spawn("projection-rebuild", self._rebuild, outdated)
        for kind in self.kinds:
            self._spawn(f"projection-{kind.kind}", self._follow, kind)
        self._spawn("projection-watcher", self._watch_generations)
        self._spawn("projection-listener", self._listen)
        return self

    def request_stop(self) -> None:
        """Ask the runners to stop after their current page (safe in a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._lock:
            for _, switched, wake in self._running.values():
                switched.set()
                wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def wait(self) -> None:
        """Block until stopped (the CLI's `projections run`)."""
        self._stop.wait()

    def alive(self) -> bool:
        """Whether every runner thread still runs (the ops port's /healthz); the rebuild of
        stale read models ends when done, and is not counted."""
        return bool(self._threads) and all(
            t.is_alive() for t in self._threads if t.name != "projection-rebuild"
        )

    def wait_for(
        self, position: int, names: Iterable[str] | None = None, timeout: float = 5.0
    ) -> bool:
        """Whether the named read models (all of ours by default) passed `position` in time."""
        wanted = list(names) if names is not None else self.names
        return self._watch.wait(wanted, position, timeout) is not None

    def _positions(self) -> dict[str, int]:
        with self.store.connection() as conn:
            return active_positions(conn)

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _follow(self, kind: type[Projection]) -> None:
        """Follow the active generation until it changes (or we stop), then the next one."""
        backoff = self.poll_interval
        while not self._stop.is_set():
            try:
                with self.store.connection() as conn:
                    generation = active_generations(conn).get(kind.kind)
                    outdated = stale(conn, kind)
                if generation is None:
                    raise GenerationRetiredError(kind.kind)
                if outdated:
                    self._wait_for_rebuild(kind, generation)
                    continue
                projection = kind(generation)
                follower = LogFollower(
                    self.store,
                    projection,
                    page_size=self.page_size,
                    poll_interval=self.poll_interval,
                    reader=EventReader(kind.topics()),
                    failure_policy=DEAD_LETTER,
                )
                follower.setup()
                switched, wake = threading.Event(), threading.Event()
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._running[kind.kind] = (generation, switched, wake)
                follower.run(switched, wake)
                backoff = self.poll_interval
            except GenerationRetiredError:
                self._stop.wait(self.watch_interval)  # switched meanwhile: look again
            except (psycopg.Error, PositionMovedError, OSError) as error:
                log.warning("projection %s: %s; retrying in %.1fs", kind.kind, error, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("projection %s failed; retrying in %.1fs", kind.kind, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _wait_for_rebuild(self, kind: type[Projection], generation: int) -> None:
        if generation not in self._reported_stale.setdefault(kind.kind, set()):
            self._reported_stale[kind.kind].add(generation)
            log.error(
                "read model %s (generation %s) was built by another version of its projection; "
                "not following it until `ticketblitz projections rebuild %s` replaces it",
                kind.kind,
                generation,
                kind.kind,
            )
        self._stop.wait(self.watch_interval * 10)

    def _rebuild(self, names: list[str]) -> None:
        """Rebuild stale read models (blue/green: the old tables serve meanwhile)."""
        while names and not self._stop.is_set():
            try:
                report = Rebuild(self.store, names).run()
                log.info("rebuilt stale read models: %s", report.generations)
                return
            except RebuildBusyError:
                pass  # another process rebuilds them: check that it finishes
            except (psycopg.Error, PositionMovedError, OSError) as error:
                log.warning("rebuilding %s: %s; retrying", ", ".join(names), error)
            self._stop.wait(1.0)
            try:
                with self.store.connection() as conn:
                    names = [kind.kind for kind in projection_kinds(names) if stale(conn, kind)]
            except psycopg.Error:
                continue

    def _watch_generations(self) -> None:
        while not self._stop.wait(self.watch_interval):
            try:
                with self.store.connection() as conn:
                    active = active_generations(conn)
            except psycopg.Error as error:
                log.warning("projection watcher: %s", error)
                continue
            with self._lock:
                for name, (generation, switched, wake) in self._running.items():
                    if active.get(name) != generation:
                        switched.set()
                        wake.set()

    def _listen(self) -> None:
        """Wake the followers whenever the event store announces an append."""
        channel = self.store.append_channel()
        while not self._stop.is_set():
            try:
                with self.store.connection() as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    try:
                        while not self._stop.is_set():
                            for _ in conn.notifies(timeout=0.5, stop_after=1):
                                self._wake_all()
                    finally:
                        with contextlib.suppress(psycopg.Error):
                            conn.execute("UNLISTEN *")
            except psycopg.Error as error:
                log.warning("projection listener: %s; the runners poll meanwhile", error)
                self._stop.wait(1.0)

    def _wake_all(self) -> None:
        with self._lock:
            for _, _, wake in self._running.values():
                wake.set()
