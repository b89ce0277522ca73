"""What the benchmark's fans ask for: 1-4 seats, some chosen on the seat map, some best-available.

A fan who chooses seats picks them from what the fans of this load generator believe is still
free (a seat map that is a little stale: it learns only from its own answers, successes and
409s). A best-available request answered `not-enough-tickets` with nothing available means the
show is sold out; with fewer tickets left than asked, the fan asks for fewer next time.

A fan also keeps to the show's cap per customer (`max_tickets`): it never asks beyond it, so
every design stops each fan at the same point (the seed-style baseline has no cap of its own).
A `ticket-limit-reached` answer all the same (e.g. a cap lower than the fan was told) teaches
the fan its remaining share: with none left, it is done, though the show is not sold out.

Shared by the HTTP load generator (bench/loadgen.py) and the no-HTTP drivers (bench/commands.py),
so both designs see the same mix of requests.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

HELD = "held"
SEATS_UNAVAILABLE = "seats-unavailable"
NOT_ENOUGH = "not-enough-tickets"
TICKET_LIMIT = "ticket-limit-reached"


class SeatView:
    """The seats believed free; O(1) pick and removal. Thread-safe."""

    def __init__(self, rows: Sequence[Sequence[Any]], section: str = "A") -> None:
        self._free: list[str] = []
        self._index: dict[str, int] = {}
        self._row_size: dict[str, int] = {}
        self._section = section
        for label, count in rows:
            self._row_size[str(label)] = int(count)
            for n in range(1, int(count) + 1):
                self._index[f"{section}-{label}-{n}"] = len(self._free)
                self._free.append(f"{section}-{label}-{n}")
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._free)

    def take(self, seats: Sequence[str]) -> None:
        with self._lock:
            for seat in seats:
                i = self._index.pop(seat, None)
                if i is None:
                    continue
                last = self._free.pop()
                if last != seat:
                    self._free[i] = last
                    self._index[last] = i

    def pick(self, rng: random.Random, quantity: int) -> list[str]:
        """Up to `quantity` adjacent seats believed free, around a random free seat."""
        with self._lock:
            if not self._free:
                return []
            first = rng.choice(self._free)
            prefix, number = first.rsplit("-", 1)
            label = prefix.split("-", 1)[1]
            n = int(number)
            chosen = [first]
            up, down = n + 1, n - 1
            size = self._row_size[label]
            while len(chosen) < quantity and up <= size and f"{prefix}-{up}" in self._index:
                chosen.append(f"{prefix}-{up}")
                up += 1
            while len(chosen) < quantity and down >= 1 and f"{prefix}-{down}" in self._index:
                chosen.append(f"{prefix}-{down}")
                down -= 1
            return chosen


@dataclass
class Ask:
    seats: list[str] | None  # chosen seats, or None for best-available
    quantity: int

    def body(self, show_id: str) -> dict[str, Any]:
        if self.seats is not None:
            return {"show_id": show_id, "seats": self.seats}
        return {"show_id": show_id, "quantity": self.quantity}


@dataclass
class Fan:
    """One client's choices; `done` once it saw the show sold out or reached its share."""

    view: SeatView
    rng: random.Random
    chosen_ratio: float = 0.5
    max_quantity: int = 4
    max_tickets: int | None = None  # the show's cap per customer; None: no cap
    sold_out: bool = False
    capped: bool = False
    tickets: int = 0  # held by this fan
    _cap: int = field(default=0)

    def __post_init__(self) -> None:
        self._cap = self.max_quantity

    @property
    def done(self) -> bool:
        return self.sold_out or self.capped

    def next_ask(self) -> Ask:
        most = self._cap
        if self.max_tickets is not None:
            most = max(1, min(most, self.max_tickets - self.tickets))
        quantity = self.rng.randint(1, most)
        if self.rng.random() < self.chosen_ratio:
            seats = self.view.pick(self.rng, quantity)
            if seats:
                return Ask(seats, len(seats))
        return Ask(None, quantity)

    def learn(
        self,
        ask: Ask,
        kind: str,
        seats: Sequence[str] = (),
        available: int | None = None,
        remaining: int | None = None,
    ) -> None:
        """What the answer teaches: seats taken, fewer left, sold out, or the fan's share used."""
        if kind in (HELD, SEATS_UNAVAILABLE):
            self.view.take(seats)
        if kind == HELD:
            self.tickets += len(seats)
            if self.max_tickets is not None and self.tickets >= self.max_tickets:
                self.capped = True
        elif kind == NOT_ENOUGH and ask.seats is None:
            left = int(available or 0)
            if left <= 0:
                self.sold_out = True
            else:
                self._cap = max(1, min(self._cap, left))
        elif kind == TICKET_LIMIT:
            share = int(remaining or 0)
            if share <= 0:
                self.capped = True
            else:
                self._cap = max(1, min(self._cap, share))
