"""A small combinator for the futures the show writers hand out."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def then(future: Future[T], transform: Callable[[T], R]) -> Future[R]:
    """A future of transform(result), carrying the original exception unchanged."""
    out: Future[R] = Future()

    def _done(done: Future[T]) -> None:
        error = done.exception()
        if error is not None:
            out.set_exception(error)
            return
        try:
            out.set_result(transform(done.result()))
        except BaseException as failure:
            out.set_exception(failure)

    future.add_done_callback(_done)
    return out
