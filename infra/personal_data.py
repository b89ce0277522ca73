"""Personal data out of the permanent log: crypto-shredding (docs/PRIVACY.md).

Every person (a subject: an account id, or the id an invited e-mail address derives) has a
random AES-256-GCM data key in `personal_data_keys`, a table beside the event log and never
part of it. The e-mail, name and password hash in the events that carry them are stored
encrypted with their subject's key (`SealingMapper` picks those fields, `SealedText` encrypts
them during the JSON transcoding). Erasure deletes the key: the stored ciphertext stays as it
was (the log is append-only and its hash chain hashes the stored bytes), but nobody can read
it any more; decoding it yields a placeholder (`ERASED` for names, "" for e-mails and hashes).

Integration events on Kafka carry the same people's e-mails and names; `seal_people` /
`unseal_people` encrypt them with the same keys at the JSON boundary, so records kept by Kafka
become unreadable too once the key is gone.

Events stored before this existed hold plain strings; they still load (a plain value decodes as
itself) and stay readable after an erasure: docs/PRIVACY.md says what that leaves.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import psycopg
import psycopg.conninfo
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    OperationalError,
    StoredEvent,
    Transcoding,
)
from psycopg_pool import ConnectionPool

from domain.account import ERASED, Account
from domain.door import DoorList, Ticket

KEYS_TABLE = "personal_data_keys"
ERASED_TABLE = "personal_data_erased"  # subjects whose key was destroyed: they get no new one
KEYS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (subject_id uuid PRIMARY KEY, "
    "data_key bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    f"CREATE TABLE IF NOT EXISTS {ERASED_TABLE} (subject_id uuid PRIMARY KEY, "
    "erased_at timestamptz NOT NULL DEFAULT now())",
)
_DDL_LOCK = 0x70646B657973  # serializes the CREATE TABLE across processes starting together
KEY_CACHE_SECONDS = 5.0  # how long another process may still read an erased person's data
KEY_CACHE_SIZE = 50_000
NONCE_BYTES = 12
SEALED_PREFIX = "pd1:"  # a sealed value on Kafka: pd1:<subject hex>:<base64 nonce+ciphertext>


class KeyRing(Protocol):
    def key_for(self, subject: UUID) -> bytes:
        """The subject's data key, made on first use. An erased subject gets a key that is
        kept nowhere: what is written about them after their erasure is unreadable at once."""
        ...

    def find(self, subject: UUID) -> bytes | None:
        """The subject's data key (None: never made, or destroyed)."""
        ...

    def destroy(self, subject: UUID) -> bool:
        """Forget the subject's key for good; True if there was one."""
        ...

    def close(self) -> None: ...


class MemoryKeyRing:
    """Keys in this process only: for the in-memory (POPO) application of the unit tests."""

    def __init__(self) -> None:
        self._keys: dict[UUID, bytes] = {}

        self._erased: set[UUID] = set()

    def key_for(self, subject: UUID) -> bytes:
        if subject in self._erased:
            return AESGCM.generate_key(bit_length=256)
        return self._keys.setdefault(subject, AESGCM.generate_key(bit_length=256))

    def find(self, subject: UUID) -> bytes | None:
        return self._keys.get(subject)

    def destroy(self, subject: UUID) -> bool:
        self._erased.add(subject)
        return self._keys.pop(subject, None) is not None

    def close(self) -> None:
        self._keys.clear()


class PostgresKeyRing:
    """Keys in `personal_data_keys`, cached a short while (KEY_CACHE_SECONDS): an erasure is
    immediate in the process that erased, and within that time in every other process."""

    def __init__(self, conninfo: str, cache_seconds: float = KEY_CACHE_SECONDS) -> None:
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            open=True,
            check=ConnectionPool.check_connection,
            timeout=5,
        )
        self._cache_seconds = cache_seconds
        # None: the subject is erased (key_for gives each value a key kept nowhere).
        self._cache: OrderedDict[UUID, tuple[bytes | None, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._run(_create_table)
        install(self)

    def _run(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        try:
            with self._pool.connection() as conn:
                return work(conn)
        except (psycopg.OperationalError, TimeoutError) as error:
            raise OperationalError(f"personal data keys unavailable: {error}") from error

    def _cached(self, subject: UUID) -> tuple[bytes | None] | None:
        """(the key or None if erased), or None when not cached (or no longer)."""
        with self._lock:
            found = self._cache.get(subject)
            if found is None:
                return None
            if time.monotonic() - found[1] > self._cache_seconds:
                del self._cache[subject]
                return None
            return (found[0],)

    def _remember(self, subject: UUID, key: bytes | None) -> None:
        with self._lock:
            self._cache[subject] = (key, time.monotonic())
            self._cache.move_to_end(subject)
            while len(self._cache) > KEY_CACHE_SIZE:
                self._cache.popitem(last=False)

    def key_for(self, subject: UUID) -> bytes:
        found = self._cached(subject)
        if found is not None:
            return AESGCM.generate_key(bit_length=256) if found[0] is None else found[0]
        fresh = AESGCM.generate_key(bit_length=256)

        def upsert(conn: psycopg.Connection[Any]) -> bytes | None:
            # One round trip whether the key exists or not; a racing writer's key wins for both.
            # No row: the subject was erased (then `fresh` is kept nowhere).
            row = conn.execute(
                f"INSERT INTO {KEYS_TABLE} (subject_id, data_key) SELECT %(s)s, %(k)s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {ERASED_TABLE} WHERE subject_id = %(s)s) "
                "ON CONFLICT (subject_id) DO UPDATE SET data_key = "
                f"{KEYS_TABLE}.data_key RETURNING data_key",
                {"s": subject, "k": fresh},
            ).fetchone()
            return None if row is None else bytes(row[0])

        key: bytes | None = self._run(upsert)
        self._remember(subject, key)
        return fresh if key is None else key

    def find(self, subject: UUID) -> bytes | None:
        found = self._cached(subject)
        if found is not None:
            return found[0]

        def select(conn: psycopg.Connection[Any]) -> bytes | None:
            row = conn.execute(
                f"SELECT data_key FROM {KEYS_TABLE} WHERE subject_id = %s", (subject,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        key: bytes | None = self._run(select)
        if key is not None:
            self._remember(subject, key)
        return key

    def destroy(self, subject: UUID) -> bool:
        with self._lock:
            self._cache.pop(subject, None)

        def delete(conn: psycopg.Connection[Any]) -> bool:
            with conn.transaction():
                conn.execute(
                    f"INSERT INTO {ERASED_TABLE} (subject_id) VALUES (%s) ON CONFLICT DO NOTHING",
                    (subject,),
                )
                cur = conn.execute(f"DELETE FROM {KEYS_TABLE} WHERE subject_id = %s", (subject,))
                return cur.rowcount > 0

        destroyed: bool = self._run(delete)
        return destroyed

    def close(self) -> None:
        uninstall(self)
        self._pool.close()


def _create_table(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        for statement in KEYS_DDL:
            conn.execute(statement)  # type: ignore[arg-type]


def key_ring_for(env: Mapping[str, str] | Any) -> KeyRing:
    """The application's key ring: in its PostgreSQL database, or in memory for the library's
    in-memory persistence (unit tests)."""
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        return MemoryKeyRing()
    conninfo = psycopg.conninfo.make_conninfo(
        dbname=env.get("POSTGRES_DBNAME"),
        host=env.get("POSTGRES_HOST"),
        port=env.get("POSTGRES_PORT"),
        user=env.get("POSTGRES_USER"),
        password=env.get("POSTGRES_PASSWORD") or None,
        connect_timeout=env.get("POSTGRES_CONNECT_TIMEOUT") or "3",
    )
    return PostgresKeyRing(conninfo)


# The key rings open in this process, for integration events, whose JSON is made and read
# far from any event store: sealed with the newest ring, opened with whichever holds the key
# (one in production; the tests run several systems, each its own database, in one process).
_open_rings: list[KeyRing] = []
_rings_lock = threading.Lock()


def install(ring: KeyRing) -> None:
    with _rings_lock:
        _open_rings.append(ring)


def uninstall(ring: KeyRing) -> None:
    with _rings_lock:
        if ring in _open_rings:
            _open_rings.remove(ring)


def installed() -> KeyRing | None:
    """The ring integration events are sealed with (None: no database in this process)."""
    with _rings_lock:
        return _open_rings[-1] if _open_rings else None


def _rings() -> list[KeyRing]:
    with _rings_lock:
        return list(reversed(_open_rings))


# --- encryption ------------------------------------------------------------------------------


def encrypt(key: bytes, subject: UUID, text: str) -> bytes:
    """nonce || AES-GCM(text), bound to the subject (associated data): a ciphertext copied
    into another person's field does not decrypt."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, text.encode(), subject.bytes)


def decrypt(key: bytes | None, subject: UUID, sealed: bytes) -> str | None:
    """The text, or None when the key is gone (or another one: a key made after an erasure)."""
    if key is None:
        return None
    try:
        clear = AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], subject.bytes)
    except (InvalidTag, ValueError):
        return None
    return clear.decode()


@dataclass(frozen=True, slots=True)
class Sealed:
    """A personal value on its way into the store: `SealedText` encrypts it for `subject`;
    `placeholder` is what it reads as once the subject is erased."""

    subject: UUID
    text: str
    placeholder: str


class SealedText(Transcoding):
    """A Sealed value as `[subject hex, base64(nonce + ciphertext), placeholder]`; decoded
    back into the plain string, or the placeholder when its key is gone."""

    type = Sealed
    name = "personal"

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    def encode(self, obj: Sealed) -> list[str]:
        key = self._ring.key_for(obj.subject)
        sealed = encrypt(key, obj.subject, obj.text)
        return [obj.subject.hex, base64.b64encode(sealed).decode(), obj.placeholder]

    def decode(self, data: list[str]) -> str:
        subject = UUID(data[0])
        clear = decrypt(self._ring.find(subject), subject, base64.b64decode(data[1]))
        return data[2] if clear is None else clear


class SealedTicket(Transcoding):
    """A DoorList snapshot's Ticket (as infra.event_store's "door_ticket" array) with its
    holder's name sealed for the holder. Old snapshots hold the plain name: read as is."""

    type = Ticket
    name = "door_ticket"

    def encode(self, obj: Ticket) -> tuple[Any, ...]:
        name = Sealed(UUID(obj.holder), obj.holder_name, ERASED)
        return (
            obj.booking,
            obj.seat,
            obj.section,
            obj.holder,
            name,
            obj.status,
            obj.admitted_at,
            obj.gate,
            obj.transfers,
        )

    def decode(self, data: list[Any]) -> Ticket:
        return Ticket(*data)


def register_personal_data(transcoder: JSONTranscoder, ring: KeyRing) -> None:
    """After the application's own transcodings: SealedTicket replaces the plain one."""
    transcoder.register(SealedText(ring))
    transcoder.register(SealedTicket())


# --- which fields are personal ---------------------------------------------------------------

Sealer = Callable[[dict[str, Any]], None]


def _fields(subject_of: Callable[[dict[str, Any]], UUID], **placeholders: str) -> Sealer:
    def seal(state: dict[str, Any]) -> None:
        subject = subject_of(state)
        for field, placeholder in placeholders.items():
            value = state.get(field)
            if isinstance(value, str):
                state[field] = Sealed(subject, value, placeholder)

    return seal


def _issued(state: dict[str, Any]) -> None:
    holder: UUID = state["holder_id"]
    state["tickets"] = [
        {**t, "holder_name": Sealed(holder, t["holder_name"], ERASED)}
        if isinstance(t.get("holder_name"), str)
        else t
        for t in state["tickets"]
    ]


def _own(state: dict[str, Any]) -> UUID:
    subject: UUID = state["originator_id"]
    return subject


PERSONAL_FIELDS: Mapping[type, Sealer] = {
    Account.Registered: _fields(_own, email="", name=ERASED, password_hash=""),  # type: ignore[attr-defined]
    Account.Renamed: _fields(_own, name=ERASED),  # type: ignore[attr-defined]
    Account.PasswordChanged: _fields(_own, password_hash=""),  # type: ignore[attr-defined]
    Account.PasswordHashChanged: _fields(_own, password_hash=""),  # type: ignore[attr-defined]
    DoorList.TicketsIssued: _issued,  # type: ignore[attr-defined]
    DoorList.TicketTransferred: _fields(lambda s: s["to_holder_id"], to_holder_name=ERASED),  # type: ignore[attr-defined]
}


class SealingMapper(Mapper[UUID]):
    """The library's mapper, with each personal field of an event wrapped as Sealed before it
    is transcoded (the domain event itself is left as it was)."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        seal = PERSONAL_FIELDS.get(type(domain_event))
        if seal is None:
            return super().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        seal(state)
        copy: Any = object.__new__(type(domain_event))
        object.__setattr__(copy, "__dict__", state)
        return super().to_stored_event(copy)


# --- integration events (Kafka) --------------------------------------------------------------

PEOPLE = ("customer", "holder", "previous_holder")  # the payload's persons, each with an `id`
PERSONAL_KEYS = {"email": "", "name": ERASED}


def seal_people(payload: dict[str, Any], ring: KeyRing | None = None) -> dict[str, Any]:
    """The payload with each person's e-mail and name encrypted for them (`pd1:...`). Without
    a key ring in this process (unit tests of the contract) the payload is left as it is."""
    ring = ring or installed()
    if ring is None:
        return payload
    out = dict(payload)
    for role in PEOPLE:
        person = out.get(role)
        if not isinstance(person, dict) or not person.get("id"):
            continue
        subject = UUID(str(person["id"]))
        sealed = dict(person)
        for field in PERSONAL_KEYS:
            value = person.get(field)
            if isinstance(value, str) and value and not value.startswith(SEALED_PREFIX):
                token = encrypt(ring.key_for(subject), subject, value)
                sealed[field] = f"{SEALED_PREFIX}{subject.hex}:{base64.b64encode(token).decode()}"
        out[role] = sealed
    return out


def unseal_people(payload: dict[str, Any], ring: KeyRing | None = None) -> dict[str, Any]:
    """The payload as built: sealed e-mails and names decrypted, or their placeholder ("" for
    an e-mail: nobody is mailed) when the person was erased or no key ring is at hand."""
    rings = [ring] if ring is not None else _rings()
    out = dict(payload)
    for role in PEOPLE:
        person = out.get(role)
        if not isinstance(person, dict):
            continue
        opened = dict(person)
        for field, placeholder in PERSONAL_KEYS.items():
            value = person.get(field)
            if isinstance(value, str) and value.startswith(SEALED_PREFIX):
                opened[field] = _open(value, placeholder, rings)
        out[role] = opened
    return out


def _open(value: str, placeholder: str, rings: list[KeyRing]) -> str:
    try:
        subject_hex, token = value[len(SEALED_PREFIX) :].split(":", 1)
        subject = UUID(subject_hex)
        sealed = base64.b64decode(token)
    except ValueError:
        return placeholder
    for ring in rings:
        clear = decrypt(ring.find(subject), subject, sealed)
        if clear is not None:
            return clear
    return placeholder


# --- erasure ---------------------------------------------------------------------------------


class StoreEraser:
    """commands.accounts.PersonalDataEraser over PostgreSQL: the e-mails sent to the address
    are kept (the notifier's deduplication needs their rows) but no longer name it; then the
    person's key is destroyed."""

    def __init__(
        self,
        ring: KeyRing,
        connect: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
    ) -> None:
        self._ring = ring
        self._connect = connect

    def forget(self, account_id: UUID, email: str) -> None:
        if email:
            with self._connect() as conn:
                found = conn.execute("SELECT to_regclass('sent_emails')").fetchone()
                if found is not None and found[0] is not None:
                    conn.execute(
                        "UPDATE sent_emails SET recipient = %s "
                        "WHERE position(lower(%s) in lower(recipient)) > 0",
                        (ERASED, email),
                    )
        self._ring.destroy(account_id)
