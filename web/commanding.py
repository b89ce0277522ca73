"""Running a command from a page (organiser console, door): submit it off the event loop,
await the show writer's outcome bounded in time, and say what went wrong in words a person
reads on the page (the API's problem types stay the API's)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from pydantic import ValidationError

from commands.errors import CommandError, StoreUnavailableError
from domain.account import ADMIN, Account
from domain.errors import DomainError
from http_shell.container import Container
from http_shell.problems import ProblemError
from web.organizer_forms import validation_messages

T = TypeVar("T")


class Refused(Exception):
    """A command refused or failed: `messages` say why, for the page."""

    def __init__(self, messages: list[str], status: int = 409) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages
        self.status = status


def is_admin(account: Account) -> bool:
    return bool(account.role == ADMIN)


async def submitted(
    container: Container, submit: Callable[..., Future[T]], *args: Any, timeout: float = 0
) -> T:
    """`submit(*args)` (blocking: it may load the show to check who asks) on a worker
    thread, then its outcome; shielded, so a browser that goes away cancels nothing queued."""
    future = await called(submit, *args)
    outcome = asyncio.wrap_future(future)
    wait = timeout or container.settings.command_timeout_seconds
    try:
        return await asyncio.wait_for(asyncio.shield(outcome), wait)
    except TimeoutError:
        outcome.add_done_callback(_nobody_waits)
        raise Refused(["This took too long; please try again in a moment."], 503) from None
    except Exception as error:  # every failure becomes a sentence
        raise refusal(error) from error


async def called(function: Callable[..., T], *args: Any) -> T:
    """A blocking command call (schedule, poster upload) on a worker thread, its errors as
    a Refused."""
    try:
        return await asyncio.to_thread(function, *args)
    except Refused:
        raise
    except Exception as error:  # every failure becomes a sentence
        raise refusal(error) from error


def refusal(error: Exception) -> Refused:
    match error:
        case ValidationError():
            return Refused(validation_messages(error), 422)
        case StoreUnavailableError():
            return Refused(["The system is unavailable right now; please try again."], 503)
        case ProblemError():
            return Refused([error.detail], error.status)
        case DomainError() | CommandError():
            return Refused([_sentence(str(error))], 409)
    raise error


def _sentence(text: str) -> str:
    text = text.strip() or "This was refused."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _nobody_waits(outcome: asyncio.Future[Any]) -> None:
    if not outcome.cancelled():
        outcome.exception()
