"""Attacks on presale codes: another organiser's show, guessing codes, hostile code text.

Decision on guessing: a wrong code answers 422 `code-invalid` with its reason (`unknown`,
`revoked`, `not yet valid`, `expired`, `wrong tier`), as the fan needs to know what to fix.
That a revoked or future code exists is told only to someone who already typed it; finding one
by guessing is hopeless: generated codes are 12 characters of 31 symbols (59 bits), and
bookings are rate-limited per customer. Organisers choosing their own codes should choose long
ones (at least 4 characters are required). Every guess writes nothing and never holds a seat.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from domain.ids import inventory_id_for, presale_codes_id_for
from http_shell.container import Container
from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def show_of(api: Api, organiser: dict[str, str]) -> str:
    body: dict[str, Any] = {
        "title": f"Presale night {uuid4().hex[:6]}",
        "category": "rock",
        "venue": "Blue Hall",
        "starts_at": "2027-03-01T20:00:00+01:00",
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 10}]}
        ],
    }
    auth = {"Authorization": organiser["Authorization"]}
    r = api.http.post("/shows", json=body, headers=auth)
    assert r.status_code == 201, r.text
    show_id: str = r.json()["show_id"]
    r = api.http.post(f"/shows/{show_id}/open-sale", headers=auth)
    assert r.status_code == 200, r.text
    return show_id


def auth(person: dict[str, str]) -> dict[str, str]:
    return {"Authorization": person["Authorization"]}


def kind_of(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith(PROBLEM), response.text
    return str(response.json()["type"]).rsplit("/", 1)[-1]


def test_another_organiser_may_neither_create_list_nor_revoke_codes(api: Api):
    owner, intruder = api.new_account("organizer"), api.new_account("organizer")
    show_id = show_of(api, owner)
    r = api.http.post(
        f"/shows/{show_id}/codes", json={"codes": ["OWNERS1"], "max_uses": 5}, headers=auth(owner)
    )
    assert r.status_code == 201, r.text

    created = api.http.post(
        f"/shows/{show_id}/codes", json={"count": 5, "max_uses": 100}, headers=auth(intruder)
    )
    listed = api.http.get(f"/shows/{show_id}/codes", headers=auth(intruder))
    revoked = api.http.delete(f"/shows/{show_id}/codes/OWNERS1", headers=auth(intruder))

    for response in (created, listed, revoked):
        assert response.status_code == 403, response.text
        assert kind_of(response) == "forbidden"
    mine = api.http.get(f"/shows/{show_id}/codes", headers=auth(owner)).json()
    assert [(c["code"], c["revoked"]) for c in mine["items"]] == [("OWNERS1", False)]
    unknown = api.http.get(f"/shows/{uuid4()}/codes", headers=auth(owner))
    assert unknown.status_code == 404 and kind_of(unknown) == "not-found"


def test_guessed_codes_are_refused_and_hold_nothing(api: Api, container: Container):
    owner = api.new_account("organizer")
    show_id = show_of(api, owner)
    r = api.http.post(
        f"/shows/{show_id}/codes", json={"count": 3, "max_uses": 5}, headers=auth(owner)
    )
    assert r.status_code == 201, r.text
    real = {c["code"] for c in r.json()["codes"]}
    assert all(len(c) == 12 and c.isalnum() and c.isupper() for c in real)
    inventory_version = container.store.version_of(inventory_id_for(UUID(show_id)))
    fan = api.new_customer()

    guesses = [f"GUESS{n:04d}" for n in range(60)] + ["AAAAAAAAAAAA", "000000000000"]
    answers = [
        api.http.post(
            "/bookings", json={"show_id": show_id, "quantity": 1, "code": g}, headers=auth(fan)
        )
        for g in guesses
        if g not in real
    ]

    assert {(a.status_code, kind_of(a)) for a in answers} == {(422, "code-invalid")}
    assert {a.json()["reason"] for a in answers} == {"unknown"}
    assert container.store.version_of(inventory_id_for(UUID(show_id))) == inventory_version


@pytest.mark.parametrize(
    "code",
    [
        "FAN\x00CLUB",  # NUL
        "FAN\nCLUB",
        "FAN\u202eCLUB",  # bidirectional override
        "ﬁnale-club",  # upper-cases to ASCII ("FINALE-CLUB") but is not
        "FANCLUB" * 100,
        "<script>x</script>",
        "' OR 1=1 --",
        "",
        "ABC",
        12345678,
        ["FANCLUB1"],
    ],
)
def test_hostile_code_text_is_a_validation_error_and_writes_nothing(api: Api, code: Any):
    owner = api.new_account("organizer")
    show_id = show_of(api, owner)
    fan = api.new_customer()

    booking = api.http.post(
        "/bookings", json={"show_id": show_id, "quantity": 1, "code": code}, headers=auth(fan)
    )
    created = api.http.post(
        f"/shows/{show_id}/codes", json={"codes": [code], "max_uses": 1}, headers=auth(owner)
    )

    for response in (booking, created):
        assert response.status_code == 422, response.text
        assert kind_of(response) == "validation-error"
    listed = api.http.get(f"/shows/{show_id}/codes", headers=auth(owner)).json()
    assert listed["total"] == 0


def test_huge_or_repeated_code_lists_are_refused(api: Api, container: Container):
    owner = api.new_account("organizer")
    show_id = show_of(api, owner)
    too_many = [f"CODE{n:05d}" for n in range(1001)]
    for body in (
        {"codes": too_many, "max_uses": 1},
        {"count": 1001, "max_uses": 1},
        {"codes": ["TWICE1", "twice1"], "max_uses": 1},
        {"codes": ["FANCLUB1"], "count": 2, "max_uses": 1},
        {"codes": ["FANCLUB1"], "max_uses": 0},
        {"codes": ["FANCLUB1"], "max_uses": 1, "discount_percent": 10, "price_cents": 100},
        {"codes": ["FANCLUB1"], "max_uses": "1"},
    ):
        r = api.http.post(f"/shows/{show_id}/codes", json=body, headers=auth(owner))
        assert r.status_code == 422, (body, r.text)
    r = api.http.post(
        f"/shows/{show_id}/codes",
        json={"codes": ["FANCLUB1"], "max_uses": 1, "tiers": ["VIP"]},
        headers=auth(owner),
    )
    assert r.status_code == 422 and kind_of(r) == "invalid-codes", r.text
    assert container.store.version_of(presale_codes_id_for(UUID(show_id))) is None
