"""`audit verify`: one scan of the whole log that rebuilds every aggregate, checks the rules at
every point (audit/invariants.py) and checks the stored records against the hash chain (and,
given a root, proves the log up to the root's position unchanged).

The scan reads the raw records in big keyset pages on a thread of its own while this thread
decodes, hashes and checks the previous page.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter

from audit.hash_chain import (
    GENESIS,
    Root,
    chain_entries,
    chain_head,
    link,
    wait_for_chain,
)
from audit.invariants import (
    CHECKS,
    DEFAULT_REFUND_GRACE,
    UNDECODABLE,
    Invariants,
    RevenueSnapshot,
    RevenueSource,
    RevenueUnavailableError,
    Violation,
)
from audit.presale_invariants import install as install_presale_rules
from audit.records import head_position
from audit.waitlist_invariants import install as install_waitlist_rules
from infra.decoding import Decoder, Row, read_rows
from infra.event_store import PostgresEventStore

install_waitlist_rules(CHECKS)  # waiting lists: no offer skipping an entry, no seat owed sold
install_presale_rules(CHECKS)  # presale codes: never beyond max_uses, no hold without a valid one

# Hash chain findings.
CHANGED = "record-changed"
DELETED = "record-deleted"
INSERTED = "record-inserted"
UNCHAINED = "record-not-chained"
ROOT_MISMATCH = "root-mismatch"

Progress = Callable[[int, int, int], None]
"""Called after each page with (position reached, last position to scan, events so far)."""


@dataclass
class VerifyReport:
    head: int
    events: int = 0
    streams: int = 0
    seconds: float = 0.0
    violations: list[Violation] = field(default_factory=list)
    violation_count: int = 0
    chain_head: int | None = None  # None: no hash chain in this database
    unchained: int = 0  # records after the chain's head (not yet chained)
    root: Root | None = None
    revenue: RevenueSnapshot | None = None  # what the revenue was compared with, if anything
    revenue_note: str | None = None  # why it was not compared
    pending: list[Violation] = field(default_factory=list)  # refunds due, maybe in flight
    pending_count: int = 0
    refund_grace: timedelta = DEFAULT_REFUND_GRACE
    mismatches: int = 0  # payments the system recorded as mismatches (not violations)

    @property
    def ok(self) -> bool:
        return self.violation_count == 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Page:
    rows: list[Row]
    links: list[tuple[int, bytes]]  # the chain's entries for the same range of positions


class _ChainCheck:
    """Walks the records and the stored chain side by side (merge on position)."""

    def __init__(self, head: int, root: Root | None, strict: bool, findings: Invariants) -> None:
        self.head = head  # the follower's position when the scan started
        self.root = root
        self.strict = strict  # records after the chain's head are findings (with a root)
        self.findings = findings
        self.recomputed = GENESIS  # the chain over the records as they are now
        self.resynced = GENESIS  # the stored chain's previous link: locates each difference
        self.at_root: bytes = GENESIS
        self.stored_at_root: bytes | None = None
        self.unchained = 0

    def page(self, rows: list[Row], links: list[tuple[int, bytes]]) -> None:
        i = j = 0
        end = 1 << 63
        report = self.findings.report
        root_position = -1 if self.root is None else self.root.position
        while i < len(rows) or j < len(links):
            row_at = rows[i][0] if i < len(rows) else end
            link_at = links[j][0] if j < len(links) else end
            if row_at == link_at:
                row, stored = rows[i], links[j][1]
                previous, self.recomputed = self.recomputed, link(self.recomputed, row)
                # Each record is judged against the stored link before it, so that after a
                # difference the next ones are still located (one hash while all agree).
                if self.recomputed != stored and (
                    self.resynced == previous or link(self.resynced, row) != stored
                ):
                    report(row_at, row[1], CHANGED, "the record differs from the one chained")
                self.resynced = stored
                if row_at == root_position:
                    self.stored_at_root = stored
                i += 1
                j += 1
            elif row_at < link_at:
                row = rows[i]
                self.recomputed = link(self.recomputed, row)
                if row_at <= self.head:
                    report(row_at, row[1], INSERTED, "a record the hash chain never covered")
                else:
                    self.unchained += 1
                    if self.strict:
                        report(
                            row_at,
                            row[1],
                            UNCHAINED,
                            "a record after the hash chain's head (inserted directly, or the "
                            "chain follower has not run since: seal first)",
                        )
                i += 1
            else:
                report(link_at, None, DELETED, "the hash chain covers a record that is missing")
                self.resynced = links[j][1]
                if link_at == root_position:
                    self.stored_at_root = links[j][1]
                j += 1
            if min(row_at, link_at) <= root_position:
                self.at_root = self.recomputed

    def finish(self) -> None:
        if self.root is None:
            return
        if self.at_root != self.root.hash:
            stored = self.stored_at_root
            why = (
                "the stored chain agrees with the root: see the records reported"
                if stored == self.root.hash
                else "the stored chain differs too (chain table rewritten?)"
                if stored is not None
                else "no record or chain link at that position"
            )
            self.findings.report(
                self.root.position,
                None,
                ROOT_MISMATCH,
                f"the log up to position {self.root.position} does not hash to the root ({why})",
            )


def verify(
    store: PostgresEventStore,
    root: Root | None = None,
    revenue: RevenueSource | None = None,
    page_size: int = 10_000,
    progress: Progress | None = None,
    chain_wait_seconds: float = 5.0,
    max_kept: int = 1000,
    now: datetime | None = None,
    refund_grace: timedelta = DEFAULT_REFUND_GRACE,
) -> VerifyReport:
    """Replay the whole log once: rules at every point, hash chain, root, revenue; then the
    refunds due at its end (a refund due for less than `refund_grace` before `now`, default
    the time of the call, is pending: it may be in flight)."""
    started = time.perf_counter()
    # The cyclic collector is paused for the whole scan and until the aggregates are freed
    # (by reference counting, when `_verify` returns): enabled while they are alive, its first
    # collection would walk every object the scan kept (0.1 s per 40,000 events).
    with _gc_paused():
        report = _verify(
            store,
            root,
            revenue,
            page_size,
            progress,
            chain_wait_seconds,
            max_kept,
            now,
            refund_grace,
        )
    report.seconds = time.perf_counter() - started
    return report


def _verify(
    store: PostgresEventStore,
    root: Root | None,
    revenue: RevenueSource | None,
    page_size: int,
    progress: Progress | None,
    chain_wait_seconds: float,
    max_kept: int,
    now: datetime | None,
    refund_grace: timedelta,
) -> VerifyReport:
    now = datetime.now(UTC) if now is None else now  # the log read is the one as of the call
    snapshot: RevenueSnapshot | None = None
    revenue_note = "no revenue source given"
    with store.connection() as conn:
        if revenue is not None:
            try:
                snapshot = revenue.snapshot(conn)
            except RevenueUnavailableError as why:
                revenue_note = str(why)
        head = head_position(conn)
        chained = (
            wait_for_chain(conn, head, chain_wait_seconds) if root is not None else chain_head(conn)
        )
    if root is not None and chained is None:
        raise ValueError(f"no hash chain in this database: run `ticketblitz audit seal` ({root})")
    upto = max(head, chained or 0, root.position if root else 0)
    checks = Invariants(max_kept)
    chain = (
        _ChainCheck(chained, root, strict=root is not None, findings=checks)
        if chained is not None
        else None
    )
    replay = _Replay(Decoder(store.app.mapper), checks)
    pending = snapshot  # compared once the scan has passed its position
    with _pages(store, upto, page_size, with_links=chain is not None) as pages:
        for page in pages:
            if chain is not None:
                chain.page(page.rows, page.links)
            rows = page.rows
            if pending is not None and rows and rows[-1][0] > pending.position:
                split = bisect_right(rows, pending.position, key=itemgetter(0))
                replay.rows(rows[:split])
                checks.compare_revenue(pending)
                pending, rows = None, rows[split:]
            replay.rows(rows)
            if progress is not None and page.rows:
                progress(page.rows[-1][0], upto, checks.events)
    if pending is not None:
        checks.compare_revenue(pending)
    checks.finish(now, refund_grace)
    if chain is not None:
        chain.finish()
    checks.violations.sort(key=lambda v: v.position)
    return VerifyReport(
        head=head,
        events=checks.events,
        streams=len(checks.aggregates),
        violations=checks.violations,
        violation_count=checks.violation_count,
        chain_head=chained,
        unchained=0 if chain is None else chain.unchained,
        root=root,
        revenue=snapshot,
        revenue_note=revenue_note if snapshot is None else None,
        pending=checks.pending,
        pending_count=checks.pending_count,
        refund_grace=refund_grace,
        mismatches=checks.mismatches,
    )


class _Replay:
    """Decode and apply records: the hot loop of the scan."""

    def __init__(self, decoder: Decoder, checks: Invariants) -> None:
        self._decode = decoder.event
        self._checks = checks

    def rows(self, rows: list[Row]) -> None:
        decode, apply = self._decode, self._checks.apply
        for row in rows:
            try:
                event = decode(row)
            except Exception as error:  # any record that does not decode is a finding
                message = f"{type(error).__name__}: {error}"
                self._checks.report(row[0], row[1], UNDECODABLE, message)
                continue
            apply(row[0], event)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during the scan: it makes millions of short-lived objects
    (freed by reference counting, no cycles) while keeping every aggregate alive, so each
    collection would walk the growing heap again, about a third of the scan's time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _pages(
    store: PostgresEventStore, upto: int, page_size: int, with_links: bool
) -> Iterator[Iterator[_Page]]:
    """The records (and chain links) up to `upto`, page by page, read one page ahead."""
    ready: queue.Queue[_Page | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def read_ahead() -> None:
        try:
            with store.connection() as conn:
                after = 0
                while not stop.is_set():
                    rows = read_rows(conn, after, page_size, upto)
                    last = rows[-1][0] if len(rows) == page_size else upto
                    links = chain_entries(conn, after, last) if with_links else []
                    _put(_Page(rows, links))
                    if len(rows) < page_size:
                        break
                    after = last
            _put(None)
        except BaseException as error:  # handed to the consumer, which raises it
            _put(error)

    def _put(item: _Page | BaseException | None) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def consume() -> Iterator[_Page]:
        while True:
            item = ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    reader = threading.Thread(target=read_ahead, name="audit-verify-reader", daemon=True)
    reader.start()
    try:
        yield consume()
    finally:
        stop.set()
        reader.join(timeout=10)
