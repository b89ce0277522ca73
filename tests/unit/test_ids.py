"""Deterministic ids: looking up or creating twice lands on the same stream."""

from __future__ import annotations

from uuid import uuid4

from domain.ids import booking_id_for_request, inventory_id_for


def test_a_show_has_one_inventory_stream():
    show_id = uuid4()

    assert inventory_id_for(show_id) == inventory_id_for(show_id)
    assert inventory_id_for(show_id) != show_id
    assert inventory_id_for(show_id) != inventory_id_for(uuid4())


def test_a_retried_booking_request_targets_the_same_booking():
    customer_id = uuid4()

    first = booking_id_for_request(customer_id, "key-1")

    assert booking_id_for_request(customer_id, "key-1") == first
    assert booking_id_for_request(customer_id, "key-2") != first
    assert booking_id_for_request(uuid4(), "key-1") != first
