"""How a show writer answers its callers: a thread's Future, or an event loop's future.

An event loop is woken once per batch (one `call_soon_threadsafe` for all the answers it
awaits), not once per command: on a hot on-sale one batch answers a hundred requests of the
same loop, and each wake-up is a system call and a pass through the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

Answer = tuple["Reply", bool, Any]  # (to whom, ok, result or error)


class Reply:
    """Where one command's answer goes; answered at most once."""

    answered = False

    def send(self, ok: bool, value: Any) -> None:
        raise NotImplementedError


class ThreadReply(Reply):
    """`answer`, if given, turns (result, position) into what the future gives, on the
    writer's thread as it answers: one future per command instead of a second one chained
    with `then` (a future costs a condition, a lock and a callback; check-in counts them)."""

    def __init__(self, answer: Callable[[Any], Any] | None = None) -> None:
        self.future: Future[Any] = Future()
        self._answer = answer

    def send(self, ok: bool, value: Any) -> None:
        if ok and self._answer is not None:
            try:
                value = self._answer(value)
            except BaseException as error:
                ok, value = False, error
        if ok:
            self.future.set_result(value)
        else:
            self.future.set_exception(value)


class LoopReply(Reply):
    """Created on the event loop's thread (the loop that will await it)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Any] = self.loop.create_future()

    def send(self, ok: bool, value: Any) -> None:  # on the loop's thread only
        if self.future.done():  # the caller gave up (cancelled); the outcome stands
            return
        if ok:
            self.future.set_result(value)
        else:
            self.future.set_exception(value)


def deliver(answers: Iterable[Answer]) -> None:
    """Answer each reply not yet answered; loop replies in one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
    for answer in answers:
        reply = answer[0]
        if reply.answered:
            continue
        reply.answered = True
        if isinstance(reply, LoopReply):
            by_loop.setdefault(reply.loop, []).append(answer)
        else:
            reply.send(answer[1], answer[2])
    for loop, batch in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_send_all, batch)


def _send_all(answers: list[Answer]) -> None:
    for reply, ok, value in answers:
        reply.send(ok, value)
