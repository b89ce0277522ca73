"""localstripe for compose.yaml's `stripe` service: on every IPv4 address (localstripe's own
start binds IPv6 only, which fails where a container has IPv6 off), its objects kept in
STATE_FILE (a volume: payments outlive the container, as the bookings that name them do),
and TicketBlitz's webhook registered before the first request.

`ticketblitz up` registers the webhook of the embedded emulator itself
(infra/payments.register_emulator_webhook); `ticketblitz serve` leaves webhooks to the
payment provider's configuration, which for the emulator is this start.

Environment: WEBHOOK_URL (the command API's /api/v1/payments/stripe/webhook), WEBHOOK_SECRET
(TICKETBLITZ_STRIPE_WEBHOOK_SECRET's value), WEBHOOK_EVENTS (comma-separated event types),
STATE_FILE (/data/localstripe.pickle), PORT (8420).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from aiohttp import web
from localstripe import resources
from localstripe.server import app
from localstripe.webhooks import register_webhook

WEBHOOK_ID = "ticketblitz"  # infra/payments.EMULATOR_WEBHOOK_ID


def keep_state_in(path: Path) -> None:
    """localstripe pickles its store to /tmp/localstripe.pickle after every change; here to
    `path` instead, through a temporary file, so a crash mid-write never leaves half a state."""

    def load(store: dict[str, Any]) -> None:
        try:
            with path.open("rb") as state:
                old = pickle.load(state)
        except FileNotFoundError:
            return
        store.clear()
        store.update(old)

    def dump(store: dict[str, Any]) -> None:
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as state:
            pickle.dump(dict(store), state, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(path)

    resources.Store.try_load_from_disk = load
    resources.Store.dump_to_disk = dump


def main() -> None:
    keep_state_in(Path(os.environ.get("STATE_FILE", "/data/localstripe.pickle")))
    resources.store.try_load_from_disk()
    events = [e.strip() for e in os.environ.get("WEBHOOK_EVENTS", "").split(",") if e.strip()]
    register_webhook(
        WEBHOOK_ID, os.environ["WEBHOOK_URL"], os.environ["WEBHOOK_SECRET"], events or None
    )
    web.run_app(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8420")))


if __name__ == "__main__":
    main()
