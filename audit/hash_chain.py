"""Tamper evidence: a hash chain over the global log, kept by a log follower.

Each stored record gets a link, sha256(previous link || notification_id || originator_id ||
originator_version || topic || state), kept in `audit_chain` (one row per record) in the same
transaction as the follower's position. `ticketblitz audit seal` brings the chain to the head
and prints its last link as HASH@POSITION: kept outside the database, that root later proves
the log up to POSITION unchanged (`ticketblitz audit verify --root HASH@POSITION`). Links are
per record, so a changed, deleted or inserted record is located, not only noticed.

What a chain cannot tell: a row appended directly after the last link is, to the chain, just
the next record; whoever runs the follower vouches for it. The invariants of `audit verify`
still judge what such a row says.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import Any

import psycopg

from commands.ports import EventLog
from infra.decoding import FOLLOWER_CACHED_UUIDS, Decoder, Row, read_rows
from infra.event_store import PostgresEventStore
from infra.log_follower import LogFollower, LoggedEvent, PositionMovedError, _lock_key

CHAIN_FOLLOWER = "audit-chain"
CHAIN_TABLE = "audit_chain"
GENESIS = bytes(32)  # the "previous link" of the first record

CHAIN_DDL = f"""
CREATE TABLE IF NOT EXISTS {CHAIN_TABLE} (
    position bigint PRIMARY KEY,
    hash bytea NOT NULL
)
"""


class ChainBrokenError(Exception):
    """The chain table does not end where the follower's position says it does."""


_HEAD = struct.Struct(">q16sqI")  # position, originator id, version, topic's length
_STATE_LENGTH = struct.Struct(">Q")
_topics: dict[str, bytes] = {}  # topic -> its UTF-8 bytes (a few dozen topics)


def link(previous: bytes, row: Row) -> bytes:
    """The chain's link for one stored record (fields length-prefixed: unambiguous)."""
    position, originator_id, version, topic, state = row
    topic_bytes = _topics.get(topic)
    if topic_bytes is None:
        topic_bytes = topic.encode()
        if len(_topics) < 10_000:  # a forged log's endless topics are not kept
            _topics[topic] = topic_bytes
    # One buffer built by struct (the bytes of the original b"".join of to_bytes fields).
    return sha256(
        b"".join(
            (
                previous,
                _HEAD.pack(position, originator_id.bytes, version, len(topic_bytes)),
                topic_bytes,
                _STATE_LENGTH.pack(len(state)),
                state,
            )
        )
    ).digest()


@dataclass(frozen=True)
class Root:
    """HASH@POSITION: the chain's link at a position, as `seal` prints it."""

    hash: bytes
    position: int

    def __str__(self) -> str:
        return f"{self.hash.hex()}@{self.position}"

    @classmethod
    def parse(cls, text: str) -> Root:
        found = re.fullmatch(r"\s*([0-9a-fA-F]{64})@([0-9]+)\s*", text)
        if found is None:
            raise ValueError(f"not a root: {text!r} (expected HASH@POSITION, HASH 64 hex digits)")
        return cls(bytes.fromhex(found.group(1)), int(found.group(2)))


class RawRecord:
    """A stored record as the chain follower sees it: the bytes, decoded only for the time."""

    def __init__(self, row: Row, decoder: Decoder) -> None:
        self.row = row
        self._decoder = decoder

    @property
    def timestamp(self) -> datetime:
        stamp: datetime = self._decoder.event(self.row).timestamp
        return stamp


class RawReader:
    """A LogFollower reader returning records undecoded (the chain hashes the stored bytes)."""

    def __init__(self, store: PostgresEventStore) -> None:
        self._decoder = Decoder(store.app.mapper, FOLLOWER_CACHED_UUIDS)

    def __call__(self, store: EventLog, after: int, limit: int) -> list[LoggedEvent]:
        with store.connection() as conn:
            rows = read_rows(conn, after, limit)
        return [LoggedEvent(row[0], RawRecord(row, self._decoder)) for row in rows]


def last_link(conn: psycopg.Connection[Any]) -> tuple[int, bytes]:
    row = conn.execute(
        f"SELECT position, hash FROM {CHAIN_TABLE} ORDER BY position DESC LIMIT 1"
    ).fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))


class HashChain:
    """The PageHandler: extends the chain by the page's records, in the page's transaction."""

    name = CHAIN_FOLLOWER

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(CHAIN_DDL)

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        position, previous = last_link(conn)
        followed = conn.execute(
            "SELECT position FROM follower_positions WHERE name = %s", (self.name,)
        ).fetchone()
        if followed is None or int(followed[0]) != position:
            # Someone edited the chain table: extending it would vouch for whatever it says.
            raise ChainBrokenError(
                f"{CHAIN_TABLE} ends at position {position} but the chain follower is at "
                f"{None if followed is None else followed[0]}: run `ticketblitz audit verify`"
            )
        links: list[tuple[int, bytes]] = []
        for logged in page:
            previous = link(previous, logged.event.row)
            links.append((logged.position, previous))
        with conn.cursor().copy(f"COPY {CHAIN_TABLE} (position, hash) FROM STDIN") as copy:
            for entry in links:
                copy.write_row(entry)


def chain_follower(store: PostgresEventStore, page_size: int = 5000) -> LogFollower:
    return LogFollower(store, HashChain(), page_size=page_size, reader=RawReader(store))


def seal(store: PostgresEventStore, page_size: int = 5000, attempts: int = 50) -> Root:
    """Chain every record up to the head; the root to keep outside the database. A chain
    follower running meanwhile (workers) is no conflict: whoever commits a page first wins,
    the other reads the position again."""
    follower = chain_follower(store, page_size)
    for attempt in range(attempts):
        try:
            follower.catch_up()
            break
        except PositionMovedError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
    with store.connection() as conn:
        position, previous = last_link(conn)
    return Root(previous, position)


def chain_head(conn: psycopg.Connection[Any]) -> int | None:
    """The follower's position: every record up to it must be in the chain (None: no chain)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (CHAIN_TABLE,)).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(
        "SELECT position FROM follower_positions WHERE name = %s", (CHAIN_FOLLOWER,)
    ).fetchone()
    return None if row is None else int(row[0])


def chain_entries(conn: psycopg.Connection[Any], after: int, upto: int) -> list[tuple[int, bytes]]:
    rows = conn.execute(
        f"SELECT position, hash FROM {CHAIN_TABLE} WHERE position > %s AND position <= %s "
        "ORDER BY position",
        (after, upto),
    ).fetchall()
    return [(int(p), bytes(h)) for p, h in rows]


def runner_active(conn: psycopg.Connection[Any]) -> bool:
    """Whether a chain follower runs somewhere (LogFollower.run holds an advisory lock)."""
    key = _lock_key(CHAIN_FOLLOWER) & 0xFFFF_FFFF_FFFF_FFFF
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
        (key >> 32, key & 0xFFFF_FFFF),
    ).fetchone()
    return bool(row and row[0])


def wait_for_chain(conn: psycopg.Connection[Any], position: int, timeout: float) -> int | None:
    """The chain's head; if a chain follower is running, once it has reached `position`
    (waiting at most `timeout` seconds): a record it is about to chain is not "unchained"."""
    head = chain_head(conn)
    if head is None or head >= position or not runner_active(conn):
        return head
    deadline = time.monotonic() + timeout
    while head is not None and head < position and time.monotonic() < deadline:
        time.sleep(0.05)
        head = chain_head(conn)
    return head
