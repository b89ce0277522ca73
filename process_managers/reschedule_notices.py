"""Reschedule notices: when a show is rescheduled, each of its ticket holders (bookings paid or
confirmed) hears of the new date once, and that they may cancel with a full refund until then
(`POST /bookings/{id}/cancel` refunds a paid booking before the show's start, which is the new
start from the reschedule on).

Design: the shape of show cancellation (process_managers/show_cancellation.py): a task table fed
from the log, an executor that works through the show's writer in batches, and the e-mail made
from a booking event by the notifier. The notice is a booking event (`Booking.RescheduleAnnounced`)
rather than an e-mail sent straight from here: the log then says who was told what (`audit
replay`), the booking refuses a second notice of the same reschedule, and the e-mail rides the
notifier's existing exactly-once path (one integration event id per domain event, deduplicated
by `sent_emails`). Sending e-mails from this executor instead would need a second SMTP outbox
with its own crash window.

- `RescheduleNoticeTasks` follows the log. In each page's transaction it keeps
  `reschedule_bookings` (booking, show, the log position of its `Booking.Placed`) of the
  bookings that are not over (a cancellation, decline or expiry removes the row), and a
  `Show.Rescheduled` arms a row of `reschedule_notice_tasks`: one per reschedule (the show's
  version after it), with its log position and both starts. Holds are decided by the show's
  writer under the show's lock, as are reschedules, so every booking placed before the
  reschedule is in the log before it: once the task is visible, so are they. Bookings placed
  after it were bought at the new date: the executor leaves them out (by position).
  (A table of its own, not show cancellation's `show_bookings`: another follower's table may
  lag behind this follower's task.)
- `RescheduleNotices` executes due tasks (`scheduling.TaskTable`, an advisory lock per
  reschedule). It takes the show's rows placed before the reschedule in booking id order,
  `batch` at a time, and sends each batch as one command (AnnounceReschedule) through the show's
  writer: each booking that is paid or confirmed and was not told of this reschedule (nor of a
  later one) records `RescheduleAnnounced`; the others are left alone, so a batch redone after a
  crash adds nothing. Only after the command committed does the task record its progress (the
  last booking id done); it is deleted when none is left. A notice is never sent after the new
  start (nothing left to decide then).
- Two reschedules are two tasks: each ticket holder gets one e-mail per reschedule (a notice
  still pending when a later reschedule was already announced is skipped: it would tell a date
  that no longer holds). A booking paid after its notices went out learns the date from its
  confirmation e-mail.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid5

import psycopg

from commands.models import AnnounceReschedule
from domain.booking import BookingEvents, event_name
from domain.ids import TICKETBLITZ_NAMESPACE
from domain.show import Show
from infra.log_follower import LoggedEvent, PageHandler
from process_managers.scheduling import BatchExecutor

log = logging.getLogger(__name__)

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS reschedule_bookings (
    booking_id uuid PRIMARY KEY,
    show_id uuid NOT NULL,
    placed_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS reschedule_bookings_show ON reschedule_bookings (show_id, booking_id);
CREATE TABLE IF NOT EXISTS reschedule_notice_tasks (
    notice_id uuid PRIMARY KEY,
    show_id uuid NOT NULL,
    show_version integer NOT NULL,
    rescheduled_at bigint NOT NULL,
    starts_at timestamptz NOT NULL,
    previous_starts_at timestamptz NOT NULL,
    done_through uuid,
    due_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX IF NOT EXISTS reschedule_notice_tasks_due ON reschedule_notice_tasks (due_at)
"""

# After these a booking is over: it holds no tickets to be told about.
OVER = frozenset({BookingEvents.CANCELLED, BookingEvents.PAYMENT_FAILED, BookingEvents.EXPIRED})
SHOW_RESCHEDULED = event_name(Show, "Rescheduled")


def notice_id_for(show_id: UUID, show_version: int) -> UUID:
    """One task per reschedule: the show and its version after the `Rescheduled`."""
    return uuid5(TICKETBLITZ_NAMESPACE, f"reschedule-notice:{show_id}:{show_version}")


class RescheduleNoticeTasks:
    """PageHandler: the bookings that are not over, and a task per reschedule."""

    name = "reschedule-notices"

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(TABLES_DDL)

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        live: dict[UUID, tuple[UUID, int] | None] = {}  # booking -> (show, placed at) or None
        notices: list[tuple[Any, ...]] = []
        for logged in page:
            name = logged.type_name
            event = logged.event
            if name == BookingEvents.PLACED:
                live[event.originator_id] = (event.show_id, logged.position)
            elif name in OVER:
                live[event.originator_id] = None
            elif name == SHOW_RESCHEDULED:
                show_id, version = event.originator_id, event.originator_version
                notices.append(
                    (
                        notice_id_for(show_id, version),
                        show_id,
                        version,
                        logged.position,
                        event.starts_at,
                        event.previous_starts_at,
                    )
                )
        kept = [(booking, *row) for booking, row in live.items() if row is not None]
        dropped = [booking for booking, row in live.items() if row is None]
        if kept:
            conn.execute(
                "INSERT INTO reschedule_bookings (booking_id, show_id, placed_at) "
                "SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::bigint[]) "
                "ON CONFLICT DO NOTHING",
                tuple(map(list, zip(*kept, strict=True))),
            )
        if dropped:
            conn.execute("DELETE FROM reschedule_bookings WHERE booking_id = ANY(%s)", (dropped,))
        if notices:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO reschedule_notice_tasks (notice_id, show_id, show_version, "
                    "rescheduled_at, starts_at, previous_starts_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (notice_id) DO NOTHING",
                    notices,
                )


class RescheduleNotices(BatchExecutor):
    """Executes due reschedule notices: the show's ticket holders are told, batch by batch."""

    task_table = "reschedule_notice_tasks"
    task_key = "notice_id"
    lock_kind = "reschedule-notice"

    def tables(self) -> PageHandler:
        return RescheduleNoticeTasks()

    def work(self, conn: psycopg.Connection[Any], item: UUID, stop: threading.Event | None) -> bool:
        return self.announce(conn, item, stop)

    def describe(self, item: UUID) -> str:
        return f"announcing reschedule {item}"

    def announce(
        self, conn: psycopg.Connection[Any], notice_id: UUID, stop: threading.Event | None = None
    ) -> bool:
        """Announce the reschedule to its ticket holders batch by batch (idempotent: safe to
        repeat); True once no booking is left, False if asked to stop first."""
        task = conn.execute(
            "SELECT show_id, show_version, starts_at, previous_starts_at "
            "FROM reschedule_notice_tasks WHERE notice_id = %s",
            (notice_id,),
        ).fetchone()
        if task is None:
            return True
        show_id, show_version, starts_at, previous_starts_at = task
        announced = 0
        while stop is None or not stop.is_set():
            rows = conn.execute(
                "SELECT b.booking_id FROM reschedule_bookings b JOIN reschedule_notice_tasks t "
                "USING (show_id) WHERE t.notice_id = %s AND b.placed_at < t.rescheduled_at "
                "AND (t.done_through IS NULL OR b.booking_id > t.done_through) "
                "ORDER BY b.booking_id LIMIT %s",
                (notice_id, self._batch),
            ).fetchall()
            if not rows:
                log.info(
                    "show %s rescheduled to %s: %d ticket holders told",
                    show_id,
                    starts_at.isoformat(),
                    announced,
                )
                return True
            booking_ids = [r[0] for r in rows]
            command = AnnounceReschedule(
                show_id=show_id,
                show_version=show_version,
                starts_at=starts_at,
                previous_starts_at=previous_starts_at,
                booking_ids=booking_ids,
            )
            announced += self._bookings.announce_reschedule(command).result(timeout=self._timeout)
            # Only once they are recorded: a crash before this line redoes a no-op batch.
            conn.execute(
                "UPDATE reschedule_notice_tasks SET done_through = %s WHERE notice_id = %s",
                (booking_ids[-1], notice_id),
            )
        return False
