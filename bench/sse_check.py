"""The check of `bench reads`' SSE clients against the event log.

The log of the show's seat inventory is replayed into each seat's status by log position
(`LogSeats`). Every client's events (bench/sse_clients.py) are then walked in order: a
`snapshot` sets its whole state, a `seats` event changes the seats it names; after each event
the client's state must equal the seats the log has at that event's position (and its sections'
`available` the free seats there), positions must increase strictly, and its last state must
be the log's final one. Counted per client and event:

- out of order: an event whose position is not above the client's previous one (one at the
  same position counts as duplicated instead), or a `seats` event before any snapshot;
- lost: a seat the log changed between the client's previous position and this one whose
  status the client does not hold afterwards (also every change after its last event, if it
  never reached the final position);
- duplicated: a seat a `seats` event sets to the status the client already had;
- wrong: any other seat whose status differs from the log's (e.g. a change shown early);
- available wrong: a section whose `available` differs from the log's free seats.

Clients share their events (every client of a show gets the same texts), so states are
memoised by (previous state, event): the work grows with the distinct events, not the clients.
Latency: for every seat a client learns (a change between its previous position and this one),
the time it received the event minus the seat's change time by two clocks, both not later than
the commit: the event's timestamp (taken when the hold was decided, before its transaction
commits) and when the hold's request was sent; as 1 ms histograms, so 2,000 clients cost little.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

FREE, HELD, SOLD = "free", "held", "sold"


@dataclass
class Change:
    position: int
    seat: str
    status: str
    decided: float  # the event's timestamp (time.time() scale)
    sent: float | None  # when its hold's request was sent, if known


@dataclass
class LogSeats:
    """A show's seat statuses at every log position, replayed from its inventory's events."""

    seats: list[str]
    changes: list[Change] = field(default_factory=list)  # in log order
    _by_seat: dict[str, tuple[list[int], list[str]]] = field(default_factory=dict)
    _free: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)

    @classmethod
    def replay(
        cls,
        seats: Sequence[str],
        events: Iterable[tuple[int, Any]],
        inventory_id: UUID,
        sent_at: Mapping[str, float] | None = None,
    ) -> LogSeats:
        """`events`: (position, event) of the whole log in order; `sent_at`: booking id (hex)
        -> when its request was sent."""
        log = cls(list(seats))
        booked: dict[UUID, list[str]] = {}
        sent_at = sent_at or {}
        for position, event in events:
            if event.originator_id != inventory_id:
                continue
            kind = type(event).__name__
            stamp = event.timestamp.timestamp()
            booking = getattr(event, "booking_id", None)
            sent = sent_at.get(booking.hex) if booking is not None else None
            if kind == "SeatsHeld":
                booked[event.booking_id] = list(event.seats)
                log._add(position, event.seats, HELD, stamp, sent)
            elif kind == "SeatsSold":
                log._add(position, booked.get(event.booking_id, []), SOLD, stamp, sent)
            elif kind == "SeatsReleased":
                freed = event.seats if event.seats is not None else booked.get(event.booking_id)
                log._add(position, freed or [], FREE, stamp, sent)
            elif kind == "SeatsBlocked":
                log._add(position, event.seats, "blocked", stamp, None)
            elif kind == "SeatsUnblocked":
                log._add(position, event.seats, FREE, stamp, None)
        log._index()
        return log

    def _add(
        self, position: int, seats: Iterable[str], status: str, decided: float, sent: float | None
    ) -> None:
        self.changes.extend(Change(position, s, status, decided, sent) for s in seats)

    def _index(self) -> None:
        self._positions = [c.position for c in self.changes]
        for c in self.changes:
            positions, statuses = self._by_seat.setdefault(c.seat, ([], []))
            positions.append(c.position)
            statuses.append(c.status)
        free = Counter(section_of(s) for s in self.seats)
        current = dict.fromkeys(self.seats, FREE)
        self._free = {section: ([0], [n]) for section, n in free.items()}
        for c in self.changes:
            section = section_of(c.seat)
            free[section] += (c.status == FREE) - (current[c.seat] == FREE)
            current[c.seat] = c.status
            positions, counts = self._free[section]
            if positions[-1] == c.position:
                counts[-1] = free[section]
            else:
                positions.append(c.position)
                counts.append(free[section])

    def status(self, seat: str, position: int) -> str:
        found = self._by_seat.get(seat)
        if found is None:
            return FREE
        at = bisect.bisect_right(found[0], position)
        return found[1][at - 1] if at else FREE

    def state(self, position: int) -> dict[str, str]:
        return {s: self.status(s, position) for s in self.seats}

    def available(self, position: int) -> dict[str, int]:
        out = {}
        for section, (positions, counts) in self._free.items():
            out[section] = counts[bisect.bisect_right(positions, position) - 1]
        return out

    def changed(self, after: int, upto: int) -> dict[str, Change]:
        """Seats whose status at `upto` differs from `after`'s, with their first change in
        between (the one a client waits longest for)."""
        lo = bisect.bisect_right(self._positions, after)
        hi = bisect.bisect_right(self._positions, upto)
        first: dict[str, Change] = {}
        for c in self.changes[lo:hi]:
            first.setdefault(c.seat, c)
        return {s: c for s, c in first.items() if self.status(s, after) != self.status(s, upto)}

    @property
    def last_position(self) -> int:
        return self.changes[-1].position if self.changes else 0


def section_of(seat: str) -> str:
    return seat.split("-", 1)[0]


@dataclass
class Node:
    """A client's state after an event: its position, the seats it holds that differ from the
    log's there, and its sections' availability; and what reaching it counted."""

    position: int
    wrong_seats: dict[str, str | None]
    available: dict[str, int]
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    available_wrong: int = 0


@dataclass
class Verdict:
    clients: int = 0
    events: int = 0
    snapshots: int = 0
    reconnects: int = 0
    out_of_order: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    available_wrong: int = 0
    not_caught_up: int = 0  # clients whose last event is before the final position
    final_mismatch: int = 0  # clients whose last state differs from the final seat map
    deliveries: int = 0  # (client, seat change) pairs timed
    latency_decided: dict[str, float] = field(default_factory=dict)
    latency_sent: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        bad = self.out_of_order + self.lost + self.duplicated + self.wrong
        return bad + self.available_wrong + self.not_caught_up + self.final_mismatch == 0


class Checker:
    def __init__(self, log: LogSeats, payloads: Sequence[str]) -> None:
        self.log = log
        self.payloads = [json.loads(p) for p in payloads]
        self._nodes: dict[tuple[Any, ...], Node] = {}
        self._changed: dict[tuple[int, int], dict[str, Change]] = {}

    def changed(self, after: int, upto: int) -> dict[str, Change]:
        key = (after, upto)
        if key not in self._changed:
            self._changed[key] = self.log.changed(after, upto)
        return self._changed[key]

    def snapshot(self, index: int) -> Node:
        key = ("s", index)
        node = self._nodes.get(key)
        if node is None:
            data = self.payloads[index]
            position, seats = int(data["position"]), data["seats"]
            truth = self.log.state(position)
            wrong: dict[str, str | None] = {
                s: seats.get(s) for s in set(truth) | set(seats) if seats.get(s) != truth.get(s)
            }
            available = {k: int(v) for k, v in data["available"].items()}
            node = self._nodes[key] = Node(position, wrong, available, wrong=len(wrong))
            node.available_wrong = _differences(available, self.log.available(position))
        return node

    def diff(self, parent: Node, index: int) -> Node:
        key = (id(parent), index)
        node = self._nodes.get(key)
        if node is not None:
            return node
        data = self.payloads[index]
        position, seats = int(data["position"]), data["seats"]
        changed = self.changed(parent.position, position)
        wrong: dict[str, str | None] = {}
        lost = duplicated = other = 0
        for seat in set(changed) | set(seats) | set(parent.wrong_seats):
            before = parent.wrong_seats.get(seat, self.log.status(seat, parent.position))
            if seat in seats and seats[seat] == before:
                duplicated += 1
            after = seats.get(seat, before)
            if after != self.log.status(seat, position):
                wrong[seat] = after
                if seat in changed:
                    lost += 1
                else:
                    other += 1
        available = {**parent.available, **{k: int(v) for k, v in data["available"].items()}}
        node = Node(position, wrong, available, lost, duplicated, other)
        node.available_wrong = _differences(available, self.log.available(position))
        self._nodes[key] = node  # every node stays here: id(parent) keys stay unique
        return node

    def check(self, clients: Sequence[Mapping[str, Any]], final_position: int) -> Verdict:
        verdict = Verdict(clients=len(clients))
        timings: Counter[tuple[int, int, int]] = Counter()
        final_truth = self.log.state(final_position)
        for client in clients:
            verdict.reconnects += int(client.get("reconnects", 0))
            node: Node | None = None
            for position, kind, index, received in client["events"]:
                verdict.events += 1
                if node is not None and position <= node.position:
                    if position == node.position:
                        verdict.duplicated += 1
                    else:
                        verdict.out_of_order += 1
                    continue
                if kind == "s":
                    verdict.snapshots += 1
                    new = self.snapshot(index)
                elif node is None:
                    verdict.out_of_order += 1  # a change before the client had any state
                    continue
                else:
                    new = self.diff(node, index)
                verdict.lost += new.lost
                verdict.duplicated += new.duplicated
                verdict.wrong += new.wrong
                verdict.available_wrong += new.available_wrong
                if node is not None:
                    timings[(node.position, new.position, math.floor(received * 1000))] += 1
                node = new
            if node is None or node.position < final_position:
                verdict.not_caught_up += 1
                verdict.lost += len(self.changed(node.position if node else 0, final_position))
            elif any(
                node.wrong_seats.get(s, self.log.status(s, node.position)) != status
                for s, status in final_truth.items()
            ):
                verdict.final_mismatch += 1
        decided, sent = self._latencies(timings)
        verdict.deliveries = sum(decided.values())
        verdict.latency_decided = _summary(decided)
        verdict.latency_sent = _summary(sent)
        return verdict

    def _latencies(
        self, timings: Mapping[tuple[int, int, int], int]
    ) -> tuple[Counter[int], Counter[int]]:
        """Histograms (1 ms bins) of receive time minus change time, over every seat change
        every client learned, by both clocks."""
        decided: Counter[int] = Counter()
        sent: Counter[int] = Counter()
        by_window: dict[tuple[int, int], tuple[Counter[int], Counter[int]]] = {}
        for (after, upto, received_ms), count in timings.items():
            window = by_window.get((after, upto))
            if window is None:
                changes = self.changed(after, upto).values()
                window = by_window[(after, upto)] = (
                    Counter(math.floor(c.decided * 1000) for c in changes),
                    Counter(math.floor(c.sent * 1000) for c in changes if c.sent is not None),
                )
            for at, n in window[0].items():
                decided[received_ms - at] += n * count
            for at, n in window[1].items():
                sent[received_ms - at] += n * count
        return decided, sent


def _differences(ours: Mapping[str, int], truth: Mapping[str, int]) -> int:
    return sum(1 for k in set(ours) | set(truth) if ours.get(k) != truth.get(k))


def _summary(histogram: Counter[int]) -> dict[str, float]:
    """count, p50/p95/p99/max in ms of a 1 ms histogram (a bin's upper edge: conservative)."""
    total = sum(histogram.values())
    out: dict[str, float] = {"count": total}
    if not total:
        return {**out, "p50_ms": math.nan, "p95_ms": math.nan, "p99_ms": math.nan}
    bins = sorted(histogram.items())
    for p in (50, 95, 99):
        rank, seen = math.ceil(total * p / 100), 0
        for ms, n in bins:
            seen += n
            if seen >= rank:
                out[f"p{p}_ms"] = float(ms + 1)
                break
    out["max_ms"] = float(bins[-1][0] + 1)
    return out
