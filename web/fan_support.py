"""What the fan pages share: the read side, and command errors in words a fan understands."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from fastapi import Request
from psycopg_pool import PoolTimeout

from http_shell.problems import response_for
from projections.read_side import ReadSide
from web.seatmap import seat_label
from web.session import PageError, container_of

T = TypeVar("T")


def read_side(request: Request) -> ReadSide:
    read = container_of(request).read_side
    if read is None:
        raise PageError(503, "Unavailable", "This page is not served here right now.")
    return read


async def reading(function: Callable[..., T], *args: Any) -> T:
    """A read-model query off the event loop; an unreachable database is a 503 page."""
    try:
        return await asyncio.to_thread(function, *args)
    except (psycopg.OperationalError, PoolTimeout) as error:
        raise PageError(
            503, "Busy right now", "We could not load this page; please try again shortly."
        ) from error


def problem_of(error: Exception) -> tuple[int, str, dict[str, Any]]:
    """The API's mapping of an error (status, type, fields): one mapping for both."""
    response = response_for(error)
    body: dict[str, Any] = json.loads(bytes(response.body))
    kind = str(body.get("type", "")).rsplit("/", 1)[-1]
    return response.status_code, kind, body


def fan_message(error: Exception) -> tuple[int, str]:
    """A command's error as a sentence for the page (and the status to answer with)."""
    status, kind, body = problem_of(error)
    if kind == "seats-unavailable":
        labels = [seat_label(s) for s in body.get("seats") or []]
        which = "; ".join(labels) if labels else "Some of these seats"
        verb = "was" if len(labels) == 1 else "were"
        return status, f"Sorry, {which} {verb} just taken by someone else. Please pick again."
    if kind == "ticket-limit-reached":
        left = body.get("remaining")
        more = f" You can still get {left}." if isinstance(left, int) and left > 0 else ""
        return status, f"You have reached this show's limit of tickets per fan.{more}"
    messages = {
        "not-enough-tickets": "There are not enough tickets left there. Try fewer tickets "
        "or another section.",
        "sale-not-open": "Tickets for this show are not on sale right now.",
        "too-many-lapsed-holds": "Several of your holds on this show lapsed. Please try again "
        "a little later.",
        "rate-limited": "Too many tries in a short time. Please wait a moment.",
        "payment-declined": "Your card was declined. Nothing was charged and your seats were "
        "released; pick them again to retry with another card.",
        "payment-refunded": "The payment went through but the booking could not be confirmed "
        "(the show changed meanwhile); you have been refunded in full.",
        "payment-not-ready": "Your booking is still being prepared. Please try again.",
        "unknown-payment-method": "That card could not be used. Please try another card.",
        "payment-rejected": "That card could not be used. Please try another card.",
        "payments-unavailable": "Payments are unavailable for a moment. Please try again.",
        "unknown-seats": "Some of those seats do not exist on this map. Please pick again.",
        "unknown-section": "There is no such section. Please pick again.",
        "illegal-transition": "This booking cannot be changed any more.",
        "presale-code-required": "This show is in presale: a presale code is needed.",
        "queue-required": "This on-sale has a waiting room: join the queue, and book once you "
        "are let in.",
        "tickets-available": "Tickets are available: you can book them now instead.",
        "already-waiting": "You are on this show's waiting list already.",
        "not-found": "We could not find that.",
        "forbidden": "That is not yours to change.",
        "unavailable": "We are very busy right now. Please try again in a moment.",
    }
    if kind in messages:
        return status, messages[kind]
    if status == 422:
        return status, "Please check your choice: " + str(body.get("detail", "it is not valid"))
    if status >= 500:
        return status, "Something went wrong on our side. Please try again in a moment."
    return status, str(body.get("detail", "That did not work."))
