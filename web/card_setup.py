"""The card form's server side: a Stripe SetupIntent per checkout, whose client secret the page
gives Stripe.js (Elements) to turn the typed card into a PaymentMethod (`pm_...`) without the
card number ever reaching us. The page then posts that PaymentMethod to pay the booking
through the same command as the API (`POST /api/v1/bookings/{id}/pay`).

In the embedded stack, Stripe is the emulator, which serves a Stripe.js stand-in whose
Elements card field is a few plain inputs; the code path is the same as with the real one."""

from __future__ import annotations

import os
from typing import Any

import stripe

from infra.settings import Settings

# Stripe.js needs the account's publishable key; the emulator accepts any `pk_` key.
DEFAULT_PUBLISHABLE_KEY = "pk_test_ticketblitz"


def publishable_key() -> str:
    return os.environ.get("TICKETBLITZ_STRIPE_PUBLISHABLE_KEY", DEFAULT_PUBLISHABLE_KEY)


class CardSetupError(Exception):
    """Stripe could not prepare the card form (unreachable, refused)."""


def new_card_setup(settings: Settings) -> str:
    """A SetupIntent's client secret for one checkout (blocking: call off the event loop)."""
    base = settings.stripe_api_base
    addresses: Any = {"api": base.rstrip("/")} if base else None
    client = stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses=addresses,
        http_client=stripe.new_default_http_client(timeout=10),
    )
    try:
        params: Any = {"payment_method_types": ["card"], "usage": "on_session"}
        intent = client.v1.setup_intents.create(params=params)
    except stripe.StripeError as error:
        raise CardSetupError(str(error)) from error
    secret = intent.client_secret
    if not secret:
        raise CardSetupError("Stripe gave no client secret")
    return str(secret)
