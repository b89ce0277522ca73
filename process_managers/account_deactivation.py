"""Account deactivation releases unpaid holds: when an account is deactivated, each of its
bookings that is held or awaiting payment is cancelled ("account deactivated") and its seats go
back on sale. Paid and confirmed bookings stay the customer's.

Design: the shape of show cancellation (process_managers/show_cancellation.py), a task table fed
from the log, never from a read model (which may lag and miss the last holds).

- `AccountDeactivationTasks` follows the log. In each page's transaction it keeps
  `unpaid_bookings` (booking, customer, show) of the bookings nothing was paid for yet: a
  `Booking.Placed` adds its row, a payment, cancellation, decline or expiry removes it. An
  `Account.Deactivated` records the account in `deactivated_accounts` and arms its row of
  `account_deactivation_tasks`; an `Account.Reactivated` removes both (a task not run by then
  has nothing left to do). A hold whose customer is deactivated already (one in flight when
  the account was deactivated) re-arms the task: it is released too. Every re-arming bumps the
  task's `generation`, so a task re-armed while it ran runs again.
- `AccountDeactivation` executes due tasks (`scheduling.TaskTable`, an advisory lock per
  account). A task reads the account's rows and sends them, per show and `batch` at a time, as
  one command each (CancelUnpaidBookings) through that show's writer: the bookings of the
  customer it finds held or awaiting payment are cancelled and their seats released in one
  transaction; others (paid meanwhile, over already) are left alone, so a task redone after a
  crash cancels nothing twice. A customer has few unpaid holds (the per-show ticket cap and the
  lapsed-hold limit see to it), so a task simply redoes all its batches after a crash rather than
  record its progress. The rows are deleted by the follower, as the cancellations reach the log.
- Money: a hold cancelled while its payment was in flight is paid late and refunded by the
  payment saga, as for any cancelled booking. The customer is e-mailed about each cancellation
  like any other (the reason names the deactivation).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg

from commands.models import CancelUnpaidBookings
from domain.account import Account
from domain.booking import BookingEvents, event_name
from infra.log_follower import LoggedEvent, PageHandler
from process_managers.scheduling import BatchExecutor

log = logging.getLogger(__name__)

ACCOUNT_DEACTIVATED = "account deactivated"  # the reason recorded on each cancelled booking

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS unpaid_bookings (
    booking_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    show_id uuid NOT NULL
);
CREATE INDEX IF NOT EXISTS unpaid_bookings_customer ON unpaid_bookings (customer_id, show_id);
CREATE TABLE IF NOT EXISTS deactivated_accounts (
    account_id uuid PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS account_deactivation_tasks (
    account_id uuid PRIMARY KEY,
    generation bigint NOT NULL DEFAULT 1,
    due_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX IF NOT EXISTS account_deactivation_tasks_due ON account_deactivation_tasks (due_at)
"""

# After these nothing of the booking is unpaid and open: a deactivation leaves it alone.
SETTLED = frozenset(
    {
        BookingEvents.PAYMENT_SUCCEEDED,
        BookingEvents.CANCELLED,
        BookingEvents.PAYMENT_FAILED,
        BookingEvents.EXPIRED,
    }
)
DEACTIVATED = event_name(Account, "Deactivated")
REACTIVATED = event_name(Account, "Reactivated")

ARM = (
    "INSERT INTO account_deactivation_tasks (account_id) SELECT unnest(%s::uuid[]) "
    "ON CONFLICT (account_id) DO UPDATE SET due_at = now(), attempts = 0, "
    "generation = account_deactivation_tasks.generation + 1"
)


class AccountDeactivationTasks:
    """PageHandler: the unpaid open bookings, and a task per deactivated account."""

    name = "account-deactivation"

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(TABLES_DDL)

    def handle(self, conn: psycopg.Connection[Any], page: Sequence[LoggedEvent]) -> None:
        unpaid: dict[UUID, tuple[UUID, UUID] | None] = {}  # booking -> (customer, show) or None
        active: dict[UUID, bool] = {}  # account -> active after this page
        for logged in page:
            name = logged.type_name
            event = logged.event
            if name == BookingEvents.PLACED:
                unpaid[event.originator_id] = (event.customer_id, event.show_id)
            elif name in SETTLED:
                unpaid[event.originator_id] = None
            elif name == DEACTIVATED:
                active[event.originator_id] = False
            elif name == REACTIVATED:
                active[event.originator_id] = True
        kept = [(booking, *row) for booking, row in unpaid.items() if row is not None]
        dropped = [booking for booking, row in unpaid.items() if row is None]
        if kept:
            conn.execute(
                "INSERT INTO unpaid_bookings (booking_id, customer_id, show_id) "
                "SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[]) ON CONFLICT DO NOTHING",
                tuple(map(list, zip(*kept, strict=True))),
            )
        if dropped:
            conn.execute("DELETE FROM unpaid_bookings WHERE booking_id = ANY(%s)", (dropped,))
        deactivated = [account for account, is_active in active.items() if not is_active]
        reactivated = [account for account, is_active in active.items() if is_active]
        if reactivated:
            conn.execute(
                "DELETE FROM deactivated_accounts WHERE account_id = ANY(%s)", (reactivated,)
            )
            conn.execute(
                "DELETE FROM account_deactivation_tasks WHERE account_id = ANY(%s)", (reactivated,)
            )
        if deactivated:
            conn.execute(
                "INSERT INTO deactivated_accounts (account_id) SELECT unnest(%s::uuid[]) "
                "ON CONFLICT DO NOTHING",
                (deactivated,),
            )
        # Holds that came in for an account deactivated already (earlier in the log).
        placed = [booking for booking, _customer, _show in kept]
        late = (
            conn.execute(
                "SELECT DISTINCT u.customer_id FROM unpaid_bookings u JOIN deactivated_accounts d "
                "ON d.account_id = u.customer_id WHERE u.booking_id = ANY(%s)",
                (placed,),
            ).fetchall()
            if placed
            else []
        )
        arm = set(deactivated) | {row[0] for row in late}
        if arm:
            conn.execute(ARM, (sorted(arm),))


class AccountDeactivation(BatchExecutor):
    """Executes due deactivation tasks: the account's unpaid bookings are cancelled."""

    task_table = "account_deactivation_tasks"
    task_key = "account_id"
    lock_kind = "account-deactivation"
    rearmable = True

    def tables(self) -> PageHandler:
        return AccountDeactivationTasks()

    def work(self, conn: psycopg.Connection[Any], item: UUID, stop: threading.Event | None) -> bool:
        return self.release_unpaid(conn, item, stop)

    def describe(self, item: UUID) -> str:
        return f"releasing the unpaid holds of account {item}"

    def release_unpaid(
        self, conn: psycopg.Connection[Any], account_id: UUID, stop: threading.Event | None = None
    ) -> bool:
        """Cancel the account's unpaid bookings, show by show, batch by batch (idempotent:
        safe to repeat); True when all were sent, False if asked to stop first."""
        per_show: dict[UUID, list[UUID]] = defaultdict(list)
        for booking_id, show_id in conn.execute(
            "SELECT booking_id, show_id FROM unpaid_bookings WHERE customer_id = %s "
            "ORDER BY show_id, booking_id",
            (account_id,),
        ).fetchall():
            per_show[show_id].append(booking_id)
        cancelled = 0
        for show_id, booking_ids in per_show.items():
            for start in range(0, len(booking_ids), self._batch):
                if stop is not None and stop.is_set():
                    return False
                command = CancelUnpaidBookings(
                    show_id=show_id,
                    customer_id=account_id,
                    booking_ids=booking_ids[start : start + self._batch],
                    reason=ACCOUNT_DEACTIVATED,
                )
                cancelled += self._bookings.cancel_unpaid(command).result(timeout=self._timeout)
        log.info("account %s deactivated: %d unpaid bookings cancelled", account_id, cancelled)
        return True
