"""Check-in at the door: a scanned ticket secret is verified, then admitted by the show's writer.

Admissions are decided by the show's writer against its DoorList (domain/door.py), in the same
serialized batches as holds: two gates scanning one ticket at the same instant admit it once.
The secret is checked before anything is queued (the TicketSigner: forged or altered secrets
never reach the writer), and must name this show.

Offline gates scan with the offline kit (public keys, void list) and upload their scans later
(`upload_scans`): the scans are verified, sorted by when they were made (then by upload order)
and decided in chunks of CHUNK scans, one writer decision per chunk, so the first scan of a
ticket wins across gates. A later scan of an admitted ticket is a duplicate, reported with both
gates and times. Scan times come from the gates' clocks: a time more than MAX_CLOCK_SKEW in the
future, or that much before the show's first ticket was issued, is refused (`invalid-time`);
within the skew it is clamped to now (or to that first issue).

Who may scan: door staff (role `door`, any show: a venue's scanners are not tied to shows),
admins, and the show's own organiser.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, Field

from commands.errors import (
    CommandError,
    ForbiddenError,
    InvalidTicketSecretError,
    NotFoundError,
)
from commands.models import Command
from commands.ports import Clock, EventStore, SignedTicket, TicketSigner
from commands.show_writer import ShowBatch, ShowWriters
from commands.text import SafeLine
from domain.account import ADMIN, DOOR, ORGANIZER
from domain.door import ALREADY_ADMITTED, Admission, DoorList
from domain.errors import UnknownTicketError
from domain.show import Show

CHUNK = 500  # offline scans per writer decision
MAX_OFFLINE_SCANS = 5000
MAX_CLOCK_SKEW = timedelta(minutes=2)
MAX_SECRET_CHARS = 512
SCANNER_ROLES = frozenset({DOOR, ORGANIZER, ADMIN})

# What a scan of an offline batch can answer, beyond the door's own answers (domain/door.py).
INVALID_SECRET = "invalid-secret"
WRONG_SHOW = "wrong-show"
UNKNOWN_TICKET = "unknown-ticket"
INVALID_TIME = "invalid-time"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Label = Annotated[SafeLine, Field(min_length=1, max_length=64), AfterValidator(_not_blank)]
Secret = Annotated[str, Field(min_length=1, max_length=MAX_SECRET_CHARS)]


class Scan(Command):
    secret: Secret = Field(description="what the ticket's QR code holds (`TB1.…`)")
    gate: Label = Field(description="the gate (one line, 1 to 64 characters)")
    scan_id: Label = Field(
        description="the scanner's id for this scan (1 to 64 characters, unique per scan, e.g. "
        "a UUID): the same scan id of the same ticket replays its first answer"
    )


class OfflineScan(Scan):
    scanned_at: AwareDatetime = Field(description="when the gate scanned it (ISO 8601, zoned)")


class ScanTicket(Command):
    show_id: UUID
    scan: Scan


class UploadScans(Command):
    show_id: UUID
    scans: list[OfflineScan] = Field(min_length=1, max_length=MAX_OFFLINE_SCANS)


class WrongShowError(CommandError):
    """A genuine secret of another show's ticket."""

    def __init__(self, show_id: UUID) -> None:
        super().__init__("this ticket is for another show")
        self.show_id = show_id


@dataclass(frozen=True)
class Scanner:
    """Who scans: door staff, an organiser or an admin (their account's current role)."""

    account_id: UUID
    role: str


@dataclass(frozen=True)
class ScanAnswer:
    """The door's answer to one scan. `at` and `gate`: the ticket's admission (for
    ALREADY_ADMITTED the first one); `replayed`: the scan id was answered before."""

    result: str  # admitted, already-admitted, void
    ticket_id: UUID
    seat: str | None
    section: str
    holder_name: str
    at: datetime | None
    gate: str | None
    replayed: bool
    position: int = 0

    @classmethod
    def of(cls, admission: Admission, position: int = 0) -> ScanAnswer:
        ticket = admission.ticket
        return cls(
            result=admission.result,
            ticket_id=ticket.ticket_id,
            seat=ticket.seat,
            section=ticket.section,
            holder_name=ticket.holder_name,
            at=admission.at,
            gate=admission.gate,
            replayed=admission.replayed,
            position=position,
        )


@dataclass(frozen=True)
class OfflineResult:
    """One uploaded scan's outcome. `scanned_at`: as recorded (clamped when it was ahead);
    `admitted_at`/`admitted_gate`: the ticket's admission (this scan's, or the first one)."""

    index: int  # its place in the upload
    scan_id: str
    gate: str
    scanned_at: datetime
    result: str  # admitted, already-admitted, void, invalid-secret, wrong-show, ...
    ticket_id: UUID | None = None
    seat: str | None = None
    section: str | None = None
    holder_name: str | None = None
    admitted_at: datetime | None = None
    admitted_gate: str | None = None
    replayed: bool = False
    clamped: bool = False
    detail: str | None = None


@dataclass(frozen=True)
class UploadAnswer:
    show_id: UUID
    results: list[OfflineResult]  # in upload order
    position: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def duplicates(self) -> list[OfflineResult]:
        return [r for r in self.results if r.result == ALREADY_ADMITTED]


@dataclass
class _Verified:
    index: int
    scan: OfflineScan
    ticket: SignedTicket
    at: datetime
    clamped: bool


class CheckinCommands:
    def __init__(
        self,
        store: EventStore,
        writers: ShowWriters,
        signer: TicketSigner,
        clock: Clock,
        max_skew: timedelta = MAX_CLOCK_SKEW,
    ) -> None:
        self._store = store
        self._writers = writers
        self._signer = signer
        self._clock = clock
        self._max_skew = max_skew
        # A show's organiser never changes: remembered, so an organiser's scans load no show.
        self._organizers: OrderedDict[UUID, UUID | None] = OrderedDict()
        self._lock = threading.Lock()

    # --- who may scan ---

    def authorize(self, show_id: UUID, by: Scanner) -> None:
        """Door staff and admins scan any show, an organiser only their own (ForbiddenError);
        blocking for an organiser's first scan of a show (it loads the show)."""
        if by.role in (DOOR, ADMIN):
            return
        if by.role != ORGANIZER:
            raise ForbiddenError("only door staff, the show's organiser or an admin may scan")
        if self._organizer_of(show_id) != by.account_id:
            raise ForbiddenError("only door staff, the show's organiser or an admin may scan")

    def _organizer_of(self, show_id: UUID) -> UUID | None:
        with self._lock:
            if show_id in self._organizers:
                self._organizers.move_to_end(show_id)
                return self._organizers[show_id]
        organizer = self._store.get(show_id, Show).organizer_id  # NotFoundError: 404
        with self._lock:
            self._organizers[show_id] = organizer
            while len(self._organizers) > 10_000:
                self._organizers.popitem(last=False)
        return organizer

    def verify(self, show_id: UUID, secret: str) -> SignedTicket:
        """What the secret names; InvalidTicketSecretError, or WrongShowError for a ticket of
        another show."""
        signed = self._signer.verify(secret)
        if signed.show_id != show_id:
            raise WrongShowError(signed.show_id)
        return signed

    # --- one scan, online ---

    def scan(self, command: ScanTicket, by: Scanner) -> Future[ScanAnswer]:
        """Admit the ticket the secret names: `admitted` once, then `already-admitted` (when
        and where), `void` for a cancelled, refunded or transferred ticket; the same scan id
        replays the first answer. A ticket this show never issued: UnknownTicketError."""
        self.authorize(command.show_id, by)
        signed = self.verify(command.show_id, command.scan.secret)
        scan, at = command.scan, self._clock()

        def decide(batch: ShowBatch) -> Admission:
            return batch.door_list().admit(signed.ticket_id, scan.gate, scan.scan_id, at)

        return self._writers.for_show(command.show_id).submit_then(decide, _scan_answer)

    # --- scans made offline, uploaded later ---

    def upload_scans(self, command: UploadScans, by: Scanner) -> Future[UploadAnswer]:
        """Decide a gate's offline scans: the earliest scan of a ticket is its admission (by
        `scanned_at`, then upload order), later ones are duplicates (`already-admitted` with
        the first admission's gate and time). Answers every scan, in upload order."""
        self.authorize(command.show_id, by)
        if not self._store.exists(command.show_id):
            raise NotFoundError("show", command.show_id)
        now = self._clock()
        results: list[OfflineResult | None] = [None] * len(command.scans)
        verified: list[_Verified] = []
        for index, scan in enumerate(command.scans):
            try:
                signed = self.verify(command.show_id, scan.secret)
            except InvalidTicketSecretError:
                results[index] = _refused(index, scan, INVALID_SECRET, "the secret does not verify")
                continue
            except WrongShowError:
                results[index] = _refused(index, scan, WRONG_SHOW, "a ticket of another show")
                continue
            if scan.scanned_at > now + self._max_skew:
                detail = f"scanned more than {self._max_skew} in the future"
                results[index] = _refused(index, scan, INVALID_TIME, detail, signed.ticket_id)
                continue
            at, clamped = (now, True) if scan.scanned_at > now else (scan.scanned_at, False)
            verified.append(_Verified(index, scan, signed, at, clamped))
        verified.sort(key=lambda v: (v.at, v.index))
        writer = self._writers.for_show(command.show_id)
        chunks = [verified[i : i + CHUNK] for i in range(0, len(verified), CHUNK)]
        futures = [writer.submit(self._decide_chunk(chunk)) for chunk in chunks]
        return _gathered(command.show_id, results, futures, self._store)

    def _decide_chunk(self, chunk: Sequence[_Verified]) -> _ChunkDecision:
        return _ChunkDecision(chunk, self._max_skew)


class _ChunkDecision:
    """One writer decision over a chunk of verified offline scans (earliest first)."""

    def __init__(self, chunk: Sequence[_Verified], max_skew: timedelta) -> None:
        self._chunk = chunk
        self._max_skew = max_skew

    def __call__(self, batch: ShowBatch) -> list[OfflineResult]:
        door = batch.door_list()
        return [self._one(door, v) for v in self._chunk]

    def _one(self, door: DoorList, v: _Verified) -> OfflineResult:
        scan = v.scan
        at, clamped = v.at, v.clamped
        first_issue = door.created_on  # no ticket of this show existed before
        if at < first_issue - self._max_skew:
            detail = "scanned before the show's first ticket was issued"
            return _refused(v.index, scan, INVALID_TIME, detail, v.ticket.ticket_id)
        if at < first_issue:
            at, clamped = first_issue, True
        try:
            admission = door.admit(v.ticket.ticket_id, scan.gate, scan.scan_id, at)
        except UnknownTicketError:
            detail = "no such ticket in this show's door list"
            return _refused(v.index, scan, UNKNOWN_TICKET, detail, v.ticket.ticket_id)
        ticket = admission.ticket
        return OfflineResult(
            index=v.index,
            scan_id=scan.scan_id,
            gate=scan.gate,
            scanned_at=at,
            result=admission.result,
            ticket_id=ticket.ticket_id,
            seat=ticket.seat,
            section=ticket.section,
            holder_name=ticket.holder_name,
            admitted_at=admission.at,
            admitted_gate=admission.gate,
            replayed=admission.replayed,
            clamped=clamped,
        )


def _scan_answer(done: tuple[Admission, int]) -> ScanAnswer:
    return ScanAnswer.of(*done)


def _refused(
    index: int, scan: OfflineScan, result: str, detail: str, ticket_id: UUID | None = None
) -> OfflineResult:
    return OfflineResult(
        index=index,
        scan_id=scan.scan_id,
        gate=scan.gate,
        scanned_at=scan.scanned_at,
        result=result,
        ticket_id=ticket_id,
        detail=detail,
    )


def _gathered(
    show_id: UUID,
    results: list[OfflineResult | None],
    futures: list[Future[tuple[list[OfflineResult], int]]],
    store: EventStore,
) -> Future[UploadAnswer]:
    """One future for the whole upload: every chunk's results in upload order, the position
    of the last commit. A chunk that failed (e.g. the store went away) fails the upload: its
    scans were not recorded, so uploading again is safe (the others replay)."""
    out: Future[UploadAnswer] = Future()
    if not futures:
        out.set_result(_answer(show_id, results, store.head_position()))
        return out
    remaining = [len(futures)]
    lock = threading.Lock()

    def done(_: Future[tuple[list[OfflineResult], int]]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        try:
            position = 0
            for future in futures:
                decided, at = future.result()
                position = max(position, at)
                for result in decided:
                    results[result.index] = result
            out.set_result(_answer(show_id, results, position))
        except BaseException as error:
            out.set_exception(error)

    for future in futures:
        future.add_done_callback(done)
    return out


def _answer(show_id: UUID, results: list[OfflineResult | None], position: int) -> UploadAnswer:
    final = [r for r in results if r is not None]
    counts: dict[str, int] = {}
    for result in final:
        counts[result.result] = counts.get(result.result, 0) + 1
    return UploadAnswer(show_id, final, position, counts)
