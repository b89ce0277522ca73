"""The workers of `ticketblitz workers` (and `up`): payment saga, hold expiry, sale windows,
show cancellation, reschedule notices, account deactivation, waiting-list offers, Kafka relay
and notifier, each on its own thread. Everything they have done is in PostgreSQL (follower
positions, task tables) or acknowledged by Kafka (committed offsets), so a worker process killed
at any moment resumes where it stopped when it is started again."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from commands.ports import EventLog
from http_shell.container import Container
from infra.clock import utc_now
from infra.kafka import KafkaPublisher, group_consumer
from infra.log_follower import LogFollower, PageHandler
from infra.mailer import SmtpMailer
from process_managers.account_deactivation import AccountDeactivation, AccountDeactivationTasks
from process_managers.hold_expiry import HoldDeadlines, HoldExpiry
from process_managers.integration_events import (
    BOOKINGS,
    TICKETS,
    WAITLIST,
    IntegrationEvents,
    topic_names,
)
from process_managers.kafka_relay import KafkaRelay
from process_managers.notifier import Notifier
from process_managers.payment_saga import PaymentSaga, PaymentSagaTasks
from process_managers.reschedule_notices import RescheduleNotices, RescheduleNoticeTasks
from process_managers.sale_windows import SaleWindows, SaleWindowTasks
from process_managers.show_cancellation import ShowCancellation, ShowCancellationTasks
from process_managers.ticket_mail import TicketAttachments
from process_managers.waitlist_offers import WaitlistOffers, WaitlistOfferTasks

log = logging.getLogger(__name__)

RESTART_BACKOFF = 0.5  # seconds before a failed worker restarts, doubled while it keeps failing
HEALTHY_RUN_SECONDS = 60.0  # a failure after a run this long is a first failure again

Loop = Callable[[threading.Event], None]


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Worker:
    name: str
    run: Loop
    setup: Callable[[], None]
    close: Callable[[], None] = _nothing  # after its thread ended


class Workers:
    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def names(self) -> list[str]:
        return [w.name for w in self.workers]

    def start(self) -> Workers:
        for worker in self.workers:  # one by one: concurrent CREATE TABLE IF NOT EXISTS races
            try:
                worker.setup()
            except psycopg.Error as error:
                log.warning("%s: setup failed (%s); its thread retries", worker.name, error)
        for worker in self.workers:
            thread = threading.Thread(
                target=self._supervise, args=(worker,), name=worker.name, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _supervise(self, worker: Worker) -> None:
        """Keep the worker running: a failure it did not handle is logged and it restarts,
        after a pause that grows while it keeps failing (not after a long healthy run)."""
        backoff = RESTART_BACKOFF
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                worker.run(self._stop)
            except Exception:
                if time.monotonic() - started >= HEALTHY_RUN_SECONDS:
                    backoff = RESTART_BACKOFF
                log.exception("worker %s failed; restarting in %.1fs", worker.name, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def request_stop(self) -> None:
        """Ask every worker to stop (safe from a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        for worker in self.workers:
            worker.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (or `timeout`); True once stopping."""
        return self._stop.wait(timeout)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)


class AppendListener:
    """LISTENs on the event store's append channel and wakes every follower it was asked for:
    an idle follower reacts to a commit at once, not at its next poll (which stays, should a
    notification be missed)."""

    def __init__(self, store: EventLog) -> None:
        self._store = store
        self._wakes: list[threading.Event] = []

    def wake_event(self) -> threading.Event:
        wake = threading.Event()
        self._wakes.append(wake)
        return wake

    def run(self, stop: threading.Event) -> None:
        channel = self._store.append_channel()
        while not stop.is_set():
            try:
                with self._store.connection() as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    try:
                        while not stop.is_set():
                            for _ in conn.notifies(timeout=0.5, stop_after=1):
                                for wake in self._wakes:
                                    wake.set()
                    finally:
                        with contextlib.suppress(psycopg.Error):
                            conn.execute("UNLISTEN *")
            except psycopg.Error as error:
                log.warning("append listener: %s; the followers poll meanwhile", error)
                stop.wait(1.0)


def build_workers(container: Container) -> Workers:
    settings = container.settings
    store = container.store
    poll = settings.worker_poll_seconds
    timeout = settings.command_timeout_seconds
    listener = AppendListener(store)

    def follower(
        name: str,
        handler: PageHandler,
        close: Callable[[], None] = _nothing,
        after_page: Callable[[], None] | None = None,
    ) -> Worker:
        log_follower = LogFollower(store, handler, poll_interval=poll, after_page=after_page)
        wake = listener.wake_event()
        return Worker(name, lambda stop: log_follower.run(stop, wake), log_follower.setup, close)

    # The saga's executor looks for due tasks as soon as its follower armed some.
    saga_wake = threading.Event()
    saga = PaymentSaga(
        store,
        container.payments,
        container.gateway,
        settings.saga_threads,
        poll,
        timeout,
        wake=saga_wake,
    )
    expiry = HoldExpiry(store, container.payments, utc_now, poll, timeout)
    # A sale opens within half a second of its time: no need to ask the database 20 times a
    # second, as the payment saga does.
    windows = SaleWindows(store, container.shows, max(poll, 0.5), timeout)
    cancellation = ShowCancellation(store, container.bookings, poll, timeout)
    # Rare events, nobody waiting at a screen: a quarter of a second is soon enough.
    notices = RescheduleNotices(store, container.bookings, max(poll, 0.25), timeout)
    deactivation = AccountDeactivation(store, container.bookings, max(poll, 0.25), timeout)
    assert container.waitlist is not None  # built by ticketblitz.bootstrap
    offers = WaitlistOffers(store, container.waitlist, poll, timeout)
    workers = [
        follower("payment-saga-log", PaymentSagaTasks(), after_page=saga_wake.set),
        Worker("payment-saga", saga.run, saga.setup),
        follower("hold-expiry-log", HoldDeadlines()),
        Worker("hold-expiry", expiry.run, expiry.setup),
        follower("sale-windows-log", SaleWindowTasks()),
        Worker("sale-windows", windows.run, windows.setup),
        follower("show-cancellation-log", ShowCancellationTasks()),
        Worker("show-cancellation", cancellation.run, cancellation.setup),
        follower("reschedule-notices-log", RescheduleNoticeTasks()),
        Worker("reschedule-notices", notices.run, notices.setup),
        follower("account-deactivation-log", AccountDeactivationTasks()),
        Worker("account-deactivation", deactivation.run, deactivation.setup),
        follower("waitlist-offers-log", WaitlistOfferTasks()),
        Worker("waitlist-offers", offers.run, offers.setup),
    ]
    workers.append(Worker("append-listener", listener.run, _nothing))
    # Each follower and executor may hold a connection (two while it follows and listens), the
    # saga one per thread; the relay, notifier, hash chain and recommender come on top.
    store.reserve_connections(2 * len(workers) + settings.saga_threads + 8)
    if settings.kafka_bootstrap is None:
        log.warning("no Kafka configured: integration events and e-mails are off")
        return Workers(workers)
    topics = topic_names(settings.kafka_topic_prefix)
    publisher = KafkaPublisher(
        settings.kafka_bootstrap,
        list(topics.values()),
        settings.kafka_partitions,
        settings.kafka_publish_timeout_seconds,
    )
    cached = settings.relay_cached_aggregates
    relay = KafkaRelay(IntegrationEvents(store, max_cached=cached), publisher, topics)
    workers.append(follower("kafka-relay", relay, publisher.close))
    if settings.smtp_host is None:
        log.warning("no SMTP server configured: e-mails are off")
        return Workers(workers)
    mailer = SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_from,
        settings.smtp_user,
        None if settings.smtp_password is None else settings.smtp_password.get_secret_value(),
        settings.smtp_starttls,
        settings.smtp_timeout_seconds,
    )
    signer = container.ticket_signer
    notifier = Notifier(
        store,
        mailer,
        lambda: group_consumer(settings, settings.kafka_notifier_group, "ticketblitz-notifier"),
        # tickets: the receiver of a transfer; waitlist: the fan offered seats
        [topics[BOOKINGS], topics[TICKETS], topics[WAITLIST]],
        container.mail_suggestions,
        # The booking-confirmed e-mail carries the tickets (PDF) and a calendar invite.
        attach=None if signer is None else TicketAttachments(signer),
        public_url=settings.public_url,  # the waiting-list offer's link to pay
    )
    workers.append(Worker("notifier", notifier.run, notifier.setup, notifier.close))
    return Workers(workers)
