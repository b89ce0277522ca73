"""The Stripe adapter through the official SDK against the localstripe emulator."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from commands.errors import InvalidWebhookError, PaymentGatewayUnavailableError
from infra.payments import StripeGateway
from tests.e2e.saga_support import DECLINED, VISA, WEBHOOK_SECRET, refunds_of, signed
from tests.e2e.saga_support import stripe_client as client_for
from ticketblitz.embedded import StackEndpoints
from ticketblitz.http_server import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(endpoints: StackEndpoints) -> StripeGateway:
    return StripeGateway("sk_test_gateway", WEBHOOK_SECRET, endpoints.stripe_api_base)


def test_a_confirmed_intent_is_charged_once_however_often_it_is_confirmed(
    gateway: StripeGateway, endpoints: StackEndpoints
):
    booking_id = uuid4()
    intent = gateway.create_intent(booking_id, 4500, "EUR")

    first = gateway.confirm_intent(booking_id, intent, VISA)
    again = gateway.confirm_intent(booking_id, intent, VISA)

    assert (first.outcome, first.amount_cents, first.intent_id) == ("succeeded", 4500, intent)
    assert again == first
    charged = client_for(endpoints).v1.payment_intents.retrieve(intent)
    assert charged.status == "succeeded" and charged.amount == 4500


def test_a_declined_card_is_a_result_with_its_reason(gateway: StripeGateway):
    booking_id = uuid4()
    intent = gateway.create_intent(booking_id, 3000, "EUR")

    declined = gateway.confirm_intent(booking_id, intent, DECLINED)

    assert (declined.outcome, declined.reason) == ("failed", "Your card was declined.")
    assert gateway.confirm_intent(booking_id, intent, DECLINED).outcome == "failed"
    assert gateway.intent_result(booking_id, intent).outcome == "failed"


def test_a_refund_is_made_once(gateway: StripeGateway, endpoints: StackEndpoints):
    booking_id = uuid4()
    intent = gateway.create_intent(booking_id, 4500, "EUR")
    gateway.confirm_intent(booking_id, intent, VISA)

    refund = gateway.refund(booking_id, intent, 4500)

    assert gateway.refund(booking_id, intent, 4500) == refund
    assert [(r.id, r.amount) for r in refunds_of(client_for(endpoints), intent)] == [(refund, 4500)]


def test_webhooks_are_verified_and_read(gateway: StripeGateway):
    booking_id = uuid4()
    intent = {"id": "pi_x", "status": "succeeded", "amount": 4500}
    event = {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": {**intent, "metadata": {"booking_id": str(booking_id)}}},
    }
    payload = json.dumps(event).encode()

    result = gateway.parse_webhook(payload, signed(payload))

    assert result is not None
    assert (result.booking_id, result.intent_id, result.outcome) == (
        booking_id,
        "pi_x",
        "succeeded",
    )
    with pytest.raises(InvalidWebhookError):
        gateway.parse_webhook(payload, signed(payload, "whsec_someone_else"))
    with pytest.raises(InvalidWebhookError):
        gateway.parse_webhook(payload, None)
    with pytest.raises(InvalidWebhookError):
        gateway.parse_webhook(b"not json", signed(b"not json"))
    other = json.dumps({**event, "type": "customer.created"}).encode()
    assert gateway.parse_webhook(other, signed(other)) is None
    foreign = json.dumps({**event, "data": {"object": intent}}).encode()
    assert gateway.parse_webhook(foreign, signed(foreign)) is None  # not one of our intents


def test_an_unreachable_stripe_is_a_transient_error():
    nowhere = StripeGateway("sk_test_x", WEBHOOK_SECRET, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PaymentGatewayUnavailableError):
        nowhere.create_intent(uuid4(), 100, "EUR")
