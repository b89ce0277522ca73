"""Issue 17 hardening, on the real servers: every token names its issuer and audience and the
APIs check both (a token signed with the right secret but minted by or for someone else is
401), and an admin asking for recommendations is told why there are none.

(Tokens die on a password change and on a deactivation: test_organiser_attacks.py,
test_an_old_token_is_dead_after_a_password_change_and_after_a_deactivation.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration


def token(account_id: str, **claims: Any) -> dict[str, str]:
    """A token signed with the server's secret, with the server's claims unless overridden
    (None leaves a claim out)."""
    now = datetime.now(UTC)
    payload: dict[str, Any] = {
        "iss": "ticketblitz",
        "aud": "ticketblitz-api",
        "sub": account_id,
        "role": "customer",
        "gen": 0,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return {"Authorization": f"Bearer {jwt.encode(payload, TEST_JWT_SECRET, algorithm='HS256')}"}


def test_issued_tokens_name_their_issuer_and_audience(api: Api):
    fan = api.new_customer()
    claims = jwt.decode(fan["Authorization"].split()[1], options={"verify_signature": False})
    assert (claims["iss"], claims["aud"]) == ("ticketblitz", "ticketblitz-api")
    assert api.http.get("/me", headers=token(fan["account_id"])).status_code == 200


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": None},
        {"aud": None},
        {"iss": "someone-else"},
        {"aud": "another-api"},
        {"aud": ["another-api", "yet-another"]},
    ],
    ids=["no-issuer", "no-audience", "other-issuer", "other-audience", "other-audiences"],
)
def test_tokens_of_another_issuer_or_audience_are_refused(api: Api, claims: dict[str, Any]):
    fan = api.new_customer()
    forged = token(fan["account_id"], **claims)

    for answer in (
        api.http.get("/me", headers=forged),
        api.http.get("/me/recommendations", headers=forged),
        api.http.post("/shows", json={}, headers=forged),
    ):
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["type"].endswith("unauthorized")


def test_an_admin_asking_for_recommendations_is_told_they_are_for_customers(api: Api):
    r = api.http.get("/me/recommendations", headers=api.admin())

    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"].endswith("forbidden")
    assert problem["detail"] == (
        "recommendations are for customers, made from their bookings; this admin account"
        " books no tickets and has none"
    )  # not "only customers can book"
