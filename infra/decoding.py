"""Reading the event log fast: raw rows of the events table in global order (keyset pages on
notification_id), decoded into the same domain events as the application's mapper makes.

Followers that read many events (projection rebuilds, catch-up, the audit) use this instead of
the library's notification objects and mapper: decoding is most of their cost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any
from uuid import UUID

import orjson
import psycopg
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent, UUIDAsHex
from eventsourcing.utils import resolve_topic

from infra.event_store import EVENTS_TABLE, TRACEPARENT_COLUMN

Row = tuple[int, UUID, int, str, bytes]
"""(notification_id, originator_id, originator_version, topic, state): a record as stored."""

SELECT_ROWS = (
    f"SELECT notification_id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE}"
)


def read_rows(
    conn: psycopg.Connection[Any], after: int, limit: int, upto: int | None = None
) -> list[Row]:
    """Up to `limit` records after position `after` (and not beyond `upto`), in log order."""
    if upto is None:
        sql = f"{SELECT_ROWS} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        params: tuple[int, ...] = (after, limit)
    else:
        sql = (
            f"{SELECT_ROWS} WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        )
        params = (after, upto, limit)
    rows: list[Row] = conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
    return rows


def read_traceparents(conn: psycopg.Connection[Any], after: int, upto: int) -> dict[int, str]:
    """The trace contexts stored beside the events after `after` up to `upto`, by position
    (events stored without one, untraced, are left out). Not part of `Row`: the audit's hash
    chain covers what an event says, not who was tracing it."""
    rows = conn.execute(
        f"SELECT notification_id, {TRACEPARENT_COLUMN} FROM {EVENTS_TABLE} "
        f"WHERE notification_id > %s AND notification_id <= %s "
        f"AND {TRACEPARENT_COLUMN} IS NOT NULL",
        (after, upto),
    ).fetchall()
    return {int(position): str(traceparent) for position, traceparent in rows}


def read_traceparent(conn: psycopg.Connection[Any], stream_id: UUID, version: int) -> str | None:
    """The trace context stored beside one event of a stream, if any."""
    row = conn.execute(
        f"SELECT {TRACEPARENT_COLUMN} FROM {EVENTS_TABLE} "
        "WHERE originator_id = %s AND originator_version = %s",
        (stream_id, version),
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


FOLLOWER_CACHED_UUIDS = 10_000  # for followers that live long: 2 MB at most, not 90


class _NotPlain(Exception):
    """orjson's reading may differ from json's (a float, or an integer too big for it)."""


class _FastTranscoder(JSONTranscoder):
    """The application's transcodings, decoded with a tighter hook and repeated UUIDs shared
    (they are immutable): the same objects as the library's decoder, about twice as fast."""

    def __init__(self, like: JSONTranscoder, max_cached_uuids: int) -> None:
        super().__init__()
        self._max_cached_uuids = max_cached_uuids
        for transcoding in like.names.values():
            self.register(transcoding)
        self._decoders: dict[str, Callable[[Any], Any]] = {
            name: t.decode for name, t in self.names.items()
        }
        if type(self.names.get(UUIDAsHex.name)) is UUIDAsHex:
            self._decoders[UUIDAsHex.name] = self._uuid
        self._uuids: dict[str, UUID] = {}
        # The C scanner json.loads runs, minus two layers of Python around it.
        decoder = json.JSONDecoder(object_hook=self._hook)
        self._scan: Callable[[str, int], tuple[Any, int]] = make_scanner(decoder)  # type: ignore[arg-type]

    def decode(self, data: bytes) -> Any:
        try:
            return self._tagged(orjson.loads(data))
        except (orjson.JSONDecodeError, _NotPlain):
            # What orjson refuses (NaN, lone surrogates ...) or reads otherwise than json does
            # (an integer beyond 64 bits becomes a float: any float goes this way) is scanned
            # the slow way, which decides as before whether and how the record decodes.
            return self._scanned(data)

    def _scanned(self, data: bytes) -> Any:
        text = data.decode("utf8")
        decoded, end = self._scan(text, 0)
        if end != len(text):
            raise ValueError(f"extra data after the JSON document at character {end}")
        return decoded

    def _tagged(self, value: Any) -> Any:
        """orjson's plain document with the transcodings' tagged objects decoded, innermost
        first (what `_hook` does during the scan); containers are changed in place. About a
        third cheaper than the scan with a Python hook per object."""
        kind = type(value)
        if kind is dict:
            if len(value) == 2:
                name = value.get("_type_")
                if name is not None and "_data_" in value:
                    decode = self._decoders.get(name)
                    data = self._tagged(value["_data_"])
                    if decode is None:
                        return self._decode_obj({"_type_": name, "_data_": data})
                    return decode(data)
            for key, item in value.items():
                inner = type(item)
                if inner is dict or inner is list:
                    value[key] = self._tagged(item)
                elif inner is float:
                    raise _NotPlain
            return value
        if kind is list:
            for index, item in enumerate(value):
                inner = type(item)
                if inner is dict or inner is list:
                    value[index] = self._tagged(item)
                elif inner is float:
                    raise _NotPlain
        elif kind is float:
            raise _NotPlain
        return value

    def _hook(self, d: dict[str, Any]) -> Any:
        if len(d) == 2:
            name = d.get("_type_")
            if name is not None and "_data_" in d:
                decode = self._decoders.get(name)
                if decode is None:
                    return self._decode_obj(d)  # raises the library's error
                return decode(d["_data_"])
        return d

    def _uuid(self, data: str) -> UUID:
        found = self._uuids.get(data)
        if found is None:
            if len(self._uuids) >= self._max_cached_uuids:
                self._uuids.clear()
            found = self._uuids[data] = UUID(data)
        return found


class Decoder:
    """Records to domain events as the application's Mapper makes them: the same transcodings,
    topics and upcasting. Without a cipher or compressor configured it takes the mapper's
    steps itself (the StoredEvent and the error wrapping cost as much as the decoding);
    otherwise it calls the mapper."""

    def __init__(self, mapper: Mapper[UUID], max_cached_uuids: int = 500_000) -> None:
        """`max_cached_uuids`: a whole-log scan (the audit) gains from many; a follower that
        runs for months keeps few (each costs about 180 bytes)."""
        self._mapper = mapper
        transcoder = mapper.transcoder
        self._direct = (
            isinstance(transcoder, JSONTranscoder) and not mapper.cipher and not mapper.compressor
        )
        self._decode = (
            _FastTranscoder(transcoder, max_cached_uuids).decode
            if isinstance(transcoder, JSONTranscoder)
            else transcoder.decode
        )
        self._classes: dict[str, tuple[type, int]] = {}

    def event(self, row: Row) -> Any:
        if not self._direct:
            return self._mapper.to_domain_event(StoredEvent(row[1], row[2], row[3], row[4]))
        # Mapper.to_domain_event of eventsourcing 9.5.6, step by step.
        found = self._classes.get(row[3])
        if found is None:
            cls = resolve_topic(row[3])
            found = self._classes[row[3]] = (cls, getattr(cls, "class_version", 1))
        cls, class_version = found
        state: dict[str, Any] = self._decode(row[4])
        state["originator_id"] = row[1]  # a UUID already (uuid column): nothing to convert
        state["originator_version"] = row[2]
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event: Any = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event
