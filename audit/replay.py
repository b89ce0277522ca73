"""`audit replay`: one stream's events and its aggregate rebuilt from them, at a point in time
or at a version. From the log alone: no snapshots, no read models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from audit.records import payload_of, state_of, stream_rows, type_name
from infra.decoding import Decoder, Row
from infra.event_store import PostgresEventStore


class StreamNotFoundError(LookupError):
    def __init__(self, stream_id: UUID) -> None:
        super().__init__(f"no events in stream {stream_id}")
        self.stream_id = stream_id


class ReplayError(Exception):
    """The stream's events do not rebuild an aggregate (the log was tampered with?)."""


@dataclass(frozen=True)
class StreamEvent:
    position: int
    version: int
    time: datetime
    type: str
    payload: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "version": self.version,
            "time": self.time.isoformat(),
            "type": self.type,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class Replay:
    stream_id: UUID
    aggregate: str  # the aggregate's class, e.g. "Booking"
    events: list[StreamEvent]  # those applied: up to the version or the time asked for
    later: int  # events of the stream after that point
    state: dict[str, Any] | None  # None: the stream did not exist yet at that point
    version: int  # 0 when it did not exist yet

    def as_json(self) -> dict[str, Any]:
        return {
            "stream_id": str(self.stream_id),
            "aggregate": self.aggregate,
            "version": self.version,
            "later_events": self.later,
            "events": [e.as_json() for e in self.events],
            "state": self.state,
        }


def _stream_event(row: Row, event: Any) -> StreamEvent:
    return StreamEvent(row[0], row[2], event.timestamp, type_name(event), payload_of(event))


def replay_stream(
    store: PostgresEventStore,
    stream_id: UUID,
    as_of: datetime | None = None,
    version: int | None = None,
) -> Replay:
    """Apply the stream's events in order, stopping before the first one later than `as_of`
    or beyond `version` (both None: the whole stream)."""
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError("as_of must carry a time zone")
    with store.connection() as conn:
        rows = stream_rows(conn, stream_id)
    if not rows:
        raise StreamNotFoundError(stream_id)
    decode = Decoder(store.app.mapper).event
    aggregate: Any = None
    applied: list[StreamEvent] = []
    kind = ""
    for index, row in enumerate(rows):
        event = decode(row)
        if not kind:
            kind = event.originator_topic.rsplit(":", 1)[-1]
        if (version is not None and row[2] > version) or (
            as_of is not None and event.timestamp > as_of
        ):
            return Replay(
                stream_id,
                kind,
                applied,
                len(rows) - index,
                None if aggregate is None else state_of(aggregate),
                0 if aggregate is None else aggregate.version,
            )
        try:
            aggregate = event.mutate(aggregate)
        except Exception as error:  # a stored event that does not apply: say where
            raise ReplayError(
                f"stream {stream_id}: {type_name(event)} at position {row[0]} does not apply "
                f"({type(error).__name__}: {error}); `ticketblitz audit verify` reports more"
            ) from error
        applied.append(_stream_event(row, event))
    return Replay(stream_id, kind, applied, 0, state_of(aggregate), aggregate.version)


def stream_events(
    store: PostgresEventStore, stream_id: UUID, after_version: int = 0, limit: int = 100
) -> tuple[list[StreamEvent], bool]:
    """A page of a stream's events after a version: (the events, whether more follow)."""
    with store.connection() as conn:
        rows = stream_rows(conn, stream_id, after_version, limit + 1)
        if not rows and not stream_rows(conn, stream_id, 0, 1):
            raise StreamNotFoundError(stream_id)
    decode = Decoder(store.app.mapper).event
    events = [_stream_event(row, decode(row)) for row in rows[:limit]]
    return events, len(rows) > limit
