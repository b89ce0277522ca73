"""Ticket transfers: a ticket's holder gives it to another account, named by e-mail.

Decided by the show's writer, like holds, check-ins and refunds, so a transfer and a scan (or
a refund) of the same ticket are serialized: the old ticket is void, and its successor valid,
from the transaction on, and a refund after it voids the successor (domain/door.py).

The receiver is `account_id_for(email)`: the account registered with that address, or the one
it will register as (an invitation: the ticket is theirs once they register; until then it
names the address). The receiver's e-mail is the notifier's, from the log
(process_managers/transfer_mail.py).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Annotated
from uuid import UUID

from pydantic import EmailStr, Field

from commands.errors import NotFoundError
from commands.futures import then
from commands.models import Command
from commands.ports import Clock, EventStore
from commands.show_writer import ShowBatch, ShowWriters
from domain.account import Account
from domain.door import DEFAULT_MAX_TRANSFERS, DoorTicket
from domain.errors import UnknownTicketError
from domain.ids import account_id_for, transferred_ticket_id_for
from domain.transfers import check_giver, check_receiver, check_transfers_open

# An address as registration takes it (pydantic's EmailStr: one line, no CR/LF, at most 254).
ReceiverEmail = Annotated[EmailStr, Field(max_length=254)]


class TransferTicket(Command):
    ticket_id: UUID
    show_id: UUID  # the ticket's show (its door list); a ticket of another show is unknown
    email: ReceiverEmail
    actor_id: UUID
    actor_is_admin: bool = Field(default=False, strict=True)


@dataclass(frozen=True)
class Receiver:
    account_id: UUID
    name: str  # what the ticket prints: the account's name, or the invited address
    registered: bool


@dataclass(frozen=True)
class TicketTransferred:
    previous_ticket_id: UUID
    ticket_id: UUID
    show_id: UUID
    seat: str | None
    section: str
    holder_id: UUID
    holder_name: str
    invited: bool  # no account has the address yet: the ticket waits for its registration
    transfers: int  # how often this place changed hands, this transfer included
    replayed: bool = False  # the same transfer was made before (a retry): nothing changed
    position: int = 0


class TransferCommands:
    def __init__(
        self,
        store: EventStore,
        writers: ShowWriters,
        clock: Clock,
        max_transfers: int = DEFAULT_MAX_TRANSFERS,
    ) -> None:
        self._store = store
        self._writers = writers
        self._clock = clock
        self.max_transfers = max_transfers

    def receiver(self, email: str) -> Receiver:
        """Who an address names: its account, or the account it will register as."""
        account_id = account_id_for(email)
        try:
            account = self._store.get(account_id, Account)
        except NotFoundError:
            return Receiver(account_id, email.strip().lower(), registered=False)
        return Receiver(account_id, account.name, registered=True)

    def transfer_ticket(self, command: TransferTicket) -> Future[TicketTransferred]:
        """Void the ticket and issue its successor to the receiver, in one transaction of the
        show's writer. Blocking (it reads the receiver's account): call it off the event loop."""
        receiver = self.receiver(command.email)
        future = self._writers.for_show(command.show_id).submit(self._decision(command, receiver))
        return then(future, lambda done: _with_position(*done))

    def _decision(
        self, command: TransferTicket, receiver: Receiver
    ) -> Callable[[ShowBatch], TicketTransferred]:
        def decide(batch: ShowBatch) -> TicketTransferred:
            door = batch.door_list()
            ticket = door.ticket(command.ticket_id)
            if ticket is None:
                raise UnknownTicketError(command.ticket_id)
            successor = door.ticket(transferred_ticket_id_for(command.ticket_id))
            if successor is not None and successor.holder_id == receiver.account_id:
                # A retry of a transfer that went through (its answer was lost): the same
                # answer, if the caller may see it; nothing is recorded.
                check_giver(ticket, command.actor_id, command.actor_is_admin)
                return _answer(command, successor, receiver, replayed=True)
            check_giver(ticket, command.actor_id, command.actor_is_admin)
            check_receiver(ticket, receiver.account_id)
            check_transfers_open(batch.show(), self._clock())
            new = door.transfer(
                command.ticket_id, receiver.account_id, receiver.name, self.max_transfers
            )
            return _answer(command, new, receiver)

        return decide


def _answer(
    command: TransferTicket, new: DoorTicket, receiver: Receiver, replayed: bool = False
) -> TicketTransferred:
    return TicketTransferred(
        previous_ticket_id=command.ticket_id,
        ticket_id=new.ticket_id,
        show_id=command.show_id,
        seat=new.seat,
        section=new.section,
        holder_id=new.holder_id,
        holder_name=new.holder_name,
        invited=not receiver.registered,
        transfers=new.transfers,
        replayed=replayed,
    )


def _with_position(done: TicketTransferred, position: int) -> TicketTransferred:
    return replace(done, position=position)
