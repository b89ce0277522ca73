"""What the HTTP routes (and the workers) are given: the commands, the adapters, the read side
and the recommender, as `ticketblitz.bootstrap` assembles them."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from commands.accounts import AccountCommands
from commands.bookings import BookingCommands
from commands.checkins import CheckinCommands
from commands.payments import PaymentCommands
from commands.ports import BlobStore, PaymentGateway, TicketSigner
from commands.posters import PosterCommands
from commands.presale import PresaleCommands
from commands.seat_blocks import SeatBlockCommands
from commands.show_writer import ShowWriters
from commands.shows import ShowCommands
from commands.transfers import TransferCommands
from commands.waitlist import WaitlistCommands
from infra.event_store import PostgresEventStore
from infra.redis_guard import IdempotencyRecords, RateLimiter
from infra.settings import Settings
from infra.tokens import TokenService
from infra.waiting_room import Admissions, WaitingRoom
from projections.read_side import ReadSide
from recommender.pitch import PitchWriter
from recommender.queries import BookingSuggestions, Recommender


@dataclass
class Container:
    settings: Settings
    store: PostgresEventStore
    writers: ShowWriters
    shows: ShowCommands
    seat_blocks: SeatBlockCommands
    bookings: BookingCommands
    accounts: AccountCommands
    tokens: TokenService
    idempotency: IdempotencyRecords | None
    rate_limiter: RateLimiter
    gateway: PaymentGateway
    payments: PaymentCommands
    redis: redis.Redis | None = None
    read_side: ReadSide | None = None  # query side: read models, cache, projection runners
    recommender: Recommender | None = None  # None when this PostgreSQL has no pgvector
    pitch_writer: PitchWriter | None = None  # `?explain=true` on recommendations
    mail_suggestions: BookingSuggestions | None = None  # the notifier's "You may also like"
    blobs: BlobStore | None = None  # poster images (PostgreSQL or S3)
    posters: PosterCommands | None = None
    ticket_signer: TicketSigner | None = None  # signs and verifies ticket secrets (QR codes)
    transfers: TransferCommands | None = None  # tickets given to others
    checkins: CheckinCommands | None = None  # scans at the door (needs the ticket signer)
    waitlist: WaitlistCommands | None = None  # waiting lists of sold-out shows
    presale: PresaleCommands | None = None  # a show's presale codes
    waiting_room: WaitingRoom | None = None  # queues of announced on-sales (needs Redis)
    admissions: Admissions | None = None  # the waiting room's signed admissions to book

    def close(self) -> None:
        if self.read_side is not None:
            self.read_side.close()
        self.writers.close()
        self.store.close()
        if self.redis is not None:
            self.redis.close()
