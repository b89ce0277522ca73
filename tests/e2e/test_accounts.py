"""Accounts and roles against the real servers: the caller's own account (`/me`: read, rename,
new password), the admin's list and commands (role, deactivate, reactivate), and tokens that
follow the account at once: a new role counts from the next request, a deactivation or a new
password refuses every earlier token, whatever the token claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest

from audit.replay import replay_stream
from audit.verify import verify
from http_shell.container import Container
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, TEST_JWT_SECRET
from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
ACCOUNT_FIELDS = {"account_id", "email", "name", "role", "active", "created_at"}


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    kind: str = response.json()["type"]
    return kind.rsplit("/", 1)[-1]


def register(api: Api, name: str = "Fan", email: str | None = None) -> dict[str, Any]:
    """A new customer: its e-mail, id, the position of its registration and its headers."""
    email = email or f"fan-{uuid4().hex[:12]}@example.com"
    r = api.http.post("/auth/register", json={"email": email, "password": PASSWORD, "name": name})
    assert r.status_code == 201, r.text
    token = api.token_for(email, PASSWORD)
    return {
        "email": email,
        "account_id": r.json()["account_id"],
        "position": r.json()["position"],
        "headers": {"Authorization": f"Bearer {token}"},
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(api: Api, email: str, password: str) -> httpx.Response:
    return api.http.post("/auth/token", json={"email": email, "password": password})


def show_body() -> dict[str, Any]:
    return {
        "title": f"Accounts Night {uuid4().hex[:6]}",
        "description": "A show scheduled by whoever may.",
        "category": "jazz",
        "venue": "Blue Hall",
        "starts_at": (datetime.now(UTC) + timedelta(days=60)).isoformat(),
        "currency": "EUR",
        "price_tiers": [{"code": "STD", "price_cents": 4500}],
        "sections": [
            {"code": "A", "kind": "seated", "tier": "STD", "rows": [{"label": "1", "seats": 4}]}
        ],
    }


def set_role(api: Api, account_id: str, role: Any) -> httpx.Response:
    return api.http.post(
        f"/admin/accounts/{account_id}/role", json={"role": role}, headers=api.admin()
    )


# --- the caller's own account ---------------------------------------------------------------


def test_me_is_the_callers_account_as_it_is_now_and_a_rename_shows_at_once(api: Api) -> None:
    fan = register(api, name="Ann")

    me = api.http.get("/me", headers=fan["headers"])

    assert me.status_code == 200, me.text
    body = me.json()
    assert set(body) == ACCOUNT_FIELDS
    assert body["account_id"] == fan["account_id"]
    assert (body["email"], body["name"], body["role"], body["active"]) == (
        fan["email"],
        "Ann",
        "customer",
        True,
    )
    assert datetime.fromisoformat(body["created_at"]) <= datetime.now(UTC)

    renamed = api.http.patch("/me", json={"name": "Ann Lee"}, headers=fan["headers"])

    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Ann Lee"
    assert api.http.get("/me", headers=fan["headers"]).json()["name"] == "Ann Lee"
    # GET /me/bookings (the query API) still answers on the same token.
    bookings = api.http.get("/me/bookings", headers=fan["headers"])
    assert bookings.status_code == 200, bookings.text
    assert bookings.json()["items"] == []


def test_a_new_password_refuses_every_earlier_token_and_answers_a_fresh_one(api: Api) -> None:
    fan = register(api)
    second_device = bearer(api.token_for(fan["email"], PASSWORD))

    wrong = api.http.post(
        "/me/password",
        json={"current": "not my password", "new": "a new passphrase"},
        headers=fan["headers"],
    )
    short = api.http.post(
        "/me/password", json={"current": PASSWORD, "new": "short"}, headers=fan["headers"]
    )

    assert (wrong.status_code, problem_type(wrong)) == (422, "wrong-password")
    assert (short.status_code, problem_type(short)) == (422, "validation-error")
    assert api.http.get("/me", headers=fan["headers"]).status_code == 200  # nothing changed

    changed = api.http.post(
        "/me/password",
        json={"current": PASSWORD, "new": "a new passphrase"},
        headers=fan["headers"],
    )

    assert changed.status_code == 200, changed.text
    fresh = bearer(changed.json()["access_token"])
    for old in (fan["headers"], second_device):
        refused = api.http.get("/me", headers=old)
        assert (refused.status_code, problem_type(refused)) == (401, "unauthorized")
        assert api.http.get("/me/bookings", headers=old).status_code == 401
    assert api.http.get("/me", headers=fresh).status_code == 200
    old_password = login(api, fan["email"], PASSWORD)
    assert (old_password.status_code, problem_type(old_password)) == (401, "invalid-credentials")
    relogged = bearer(api.token_for(fan["email"], "a new passphrase"))
    assert api.http.get("/me", headers=relogged).json()["account_id"] == fan["account_id"]


# --- the admin's list and details ------------------------------------------------------------


def test_the_admin_lists_accounts_by_text_and_role_page_by_page(api: Api) -> None:
    marker = uuid4().hex[:10]
    first = register(api, name=f"Quentin {marker}")
    second = register(api, email=f"{marker}-two@example.com")
    third = register(api, name=f"Olga {marker.upper()}")
    promoted = set_role(api, third["account_id"], "organizer")
    assert promoted.status_code == 200, promoted.text
    after = promoted.json()["position"]
    admin = api.admin()

    found = api.http.get(f"/admin/accounts?q={marker.upper()}&after={after}", headers=admin)

    assert found.status_code == 200, found.text
    items = found.json()["items"]
    ids = [item["account_id"] for item in items]
    # Newest first, whatever the case of the text.
    assert ids == [third["account_id"], second["account_id"], first["account_id"]]
    assert all(set(item) == ACCOUNT_FIELDS for item in items)
    assert items[0]["role"] == "organizer" and items[1]["role"] == "customer"
    assert found.json()["next_cursor"] is None

    organizers = api.http.get(f"/admin/accounts?q={marker}&role=organizer", headers=admin)
    assert [i["account_id"] for i in organizers.json()["items"]] == [third["account_id"]]

    page_one = api.http.get(f"/admin/accounts?q={marker}&limit=2", headers=admin).json()
    assert [i["account_id"] for i in page_one["items"]] == ids[:2]
    assert page_one["next_cursor"]
    page_two = api.http.get(
        "/admin/accounts",
        params={"q": marker, "limit": 2, "cursor": page_one["next_cursor"]},
        headers=admin,
    ).json()
    assert [i["account_id"] for i in page_two["items"]] == ids[2:]
    assert page_two["next_cursor"] is None

    one = api.http.get(f"/admin/accounts/{third['account_id']}?after={after}", headers=admin)
    assert one.status_code == 200, one.text
    assert {k: one.json()[k] for k in ACCOUNT_FIELDS} == items[0]
    unknown = api.http.get(f"/admin/accounts/{uuid4()}", headers=admin)
    assert (unknown.status_code, problem_type(unknown)) == (404, "not-found")


def test_the_admins_search_text_is_taken_literally(api: Api) -> None:
    admin = api.admin()
    register(api, name="Robert'); DROP TABLE accounts; --")

    for text in ["' OR 1=1 --", "%", "_", "\\", "%' OR ''='"]:
        r = api.http.get("/admin/accounts", params={"q": text, "limit": 100}, headers=admin)
        assert r.status_code == 200, (text, r.text)
        for item in r.json()["items"]:  # only accounts that really hold the text
            assert text.lower() in (item["email"] + "\n" + item["name"]).lower(), (text, item)

    injected = api.http.get("/admin/accounts", params={"q": "drop table"}, headers=admin)
    assert [i["name"] for i in injected.json()["items"]][:1] == [
        "Robert'); DROP TABLE accounts; --"
    ]
    bad: list[dict[str, str | int]] = [
        {"role": "root"},
        {"limit": 0},
        {"limit": 101},
        {"cursor": "not a cursor"},
        {"q": "a\x00b"},
        {"q": "x" * 201},
    ]
    for params in bad:
        r = api.http.get("/admin/accounts", params=params, headers=admin)
        assert r.status_code == 422, (params, r.text)


# --- roles and deactivation count at once -------------------------------------------------


def test_a_new_role_counts_from_the_next_request_on_the_token_already_issued(api: Api) -> None:
    fan = register(api)

    as_customer = api.http.post("/shows", json=show_body(), headers=fan["headers"])
    assert (as_customer.status_code, problem_type(as_customer)) == (403, "forbidden")

    assert set_role(api, fan["account_id"], "organizer").status_code == 200
    as_organizer = api.http.post("/shows", json=show_body(), headers=fan["headers"])
    assert as_organizer.status_code == 201, as_organizer.text
    assert api.http.get("/me", headers=fan["headers"]).json()["role"] == "organizer"

    assert set_role(api, fan["account_id"], "customer").status_code == 200
    demoted = api.http.post("/shows", json=show_body(), headers=fan["headers"])
    assert (demoted.status_code, problem_type(demoted)) == (403, "forbidden")

    assert set_role(api, fan["account_id"], "admin").status_code == 200
    as_admin = api.http.get("/admin/accounts?limit=1", headers=fan["headers"])
    assert as_admin.status_code == 200, as_admin.text


def test_deactivation_refuses_the_accounts_tokens_at_once_until_it_logs_in_again(
    api: Api,
) -> None:
    fan = register(api)
    assert api.http.get("/me", headers=fan["headers"]).status_code == 200

    deactivated = api.http.post(
        f"/admin/accounts/{fan['account_id']}/deactivate", headers=api.admin()
    )

    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["active"] is False
    for method, path in [("GET", "/me"), ("GET", "/me/bookings"), ("PATCH", "/me")]:
        r = api.http.request(method, path, json={"name": "Still me"}, headers=fan["headers"])
        assert (r.status_code, problem_type(r)) == (401, "unauthorized"), (method, path)
    refused = login(api, fan["email"], PASSWORD)
    assert (refused.status_code, problem_type(refused)) == (401, "account-deactivated")
    guessed = login(api, fan["email"], "a wrong guess")  # says nothing without the password
    assert (guessed.status_code, problem_type(guessed)) == (401, "invalid-credentials")
    again = api.http.post(f"/admin/accounts/{fan['account_id']}/deactivate", headers=api.admin())
    assert again.status_code == 200 and again.json()["active"] is False
    listed = api.http.get(
        f"/admin/accounts/{fan['account_id']}?after={again.json()['position']}",
        headers=api.admin(),
    )
    assert listed.json()["active"] is False

    reactivated = api.http.post(
        f"/admin/accounts/{fan['account_id']}/reactivate", headers=api.admin()
    )

    assert reactivated.status_code == 200, reactivated.text
    assert reactivated.json()["active"] is True
    assert api.http.get("/me", headers=fan["headers"]).status_code == 401  # stays revoked
    fresh = bearer(api.token_for(fan["email"], PASSWORD))
    assert api.http.get("/me", headers=fresh).json()["active"] is True


def test_an_admin_can_neither_demote_nor_deactivate_themself(api: Api) -> None:
    second_admin = api.new_account("admin")
    own_id = second_admin["account_id"]
    mine = {"Authorization": second_admin["Authorization"]}

    demote = api.http.post(
        f"/admin/accounts/{own_id}/role", json={"role": "customer"}, headers=mine
    )
    deactivate = api.http.post(f"/admin/accounts/{own_id}/deactivate", headers=mine)

    assert (demote.status_code, problem_type(demote)) == (409, "own-account")
    assert (deactivate.status_code, problem_type(deactivate)) == (409, "own-account")
    me = api.http.get("/me", headers=mine).json()
    assert (me["role"], me["active"]) == ("admin", True)
    # Another admin may.
    assert set_role(api, own_id, "door").status_code == 200
    assert api.http.get("/admin/accounts", headers=mine).status_code == 403


def test_new_account_gives_each_role_a_working_token(api: Api) -> None:
    for role in ["customer", "organizer", "door", "admin"]:
        account = api.new_account(role)
        me = api.http.get("/me", headers={"Authorization": account["Authorization"]})
        assert me.json()["role"] == role, me.text
        assert me.json()["email"] == account["email"]


# --- who may ------------------------------------------------------------------------------


def admin_requests(account_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/admin/accounts", None),
        ("GET", f"/admin/accounts/{account_id}", None),
        ("POST", f"/admin/accounts/{account_id}/role", {"role": "admin"}),
        ("POST", f"/admin/accounts/{account_id}/deactivate", None),
        ("POST", f"/admin/accounts/{account_id}/reactivate", None),
    ]


def test_only_admins_use_the_admin_account_endpoints(api: Api) -> None:
    victim = register(api)
    for role in ["customer", "organizer", "door"]:
        caller = {"Authorization": api.new_account(role)["Authorization"]}
        for method, path, body in admin_requests(victim["account_id"]):
            r = api.http.request(method, path, json=body, headers=caller)
            assert (r.status_code, problem_type(r)) == (403, "forbidden"), (role, method, path)
    for method, path, body in admin_requests(victim["account_id"]):
        r = api.http.request(method, path, json=body)
        assert (r.status_code, problem_type(r)) == (401, "unauthorized"), (method, path)
    me = api.http.get("/me", headers=victim["headers"]).json()
    assert (me["role"], me["active"]) == ("customer", True)


def test_admin_commands_refuse_unknown_accounts_and_roles(api: Api) -> None:
    fan = register(api)
    admin = api.admin()

    for path in ["role", "deactivate", "reactivate"]:
        r = api.http.post(f"/admin/accounts/{uuid4()}/{path}", json={"role": "door"}, headers=admin)
        assert (r.status_code, problem_type(r)) == (404, "not-found"), path
    for role in ["root", "Admin", "", None, 1, ["admin"]]:
        r = set_role(api, fan["account_id"], role)
        assert (r.status_code, problem_type(r)) == (422, "validation-error"), role
    not_an_id = api.http.post("/admin/accounts/not-an-id/deactivate", headers=admin)
    assert not_an_id.status_code == 422
    assert api.http.get("/me", headers=fan["headers"]).json()["role"] == "customer"


# --- hostile input ------------------------------------------------------------------------


def test_names_are_one_line_of_safe_text_and_me_is_only_the_caller(api: Api) -> None:
    fan = register(api, name="Ann")
    other = register(api, name="Bob")

    for name in ["Ann\x00", "Ann\nLee", "Ann\u202eeL", "\x1b[31mAnn", "", "A" * 101]:
        r = api.http.patch("/me", json={"name": name}, headers=fan["headers"])
        assert (r.status_code, problem_type(r)) == (422, "validation-error"), repr(name)
    huge = api.http.patch("/me", json={"name": "A" * 10_000_000}, headers=fan["headers"])
    assert huge.status_code == 413, huge.text[:200]
    elsewhere = api.http.patch(
        "/me", json={"name": "Mallory", "account_id": other["account_id"]}, headers=fan["headers"]
    )
    assert elsewhere.status_code == 422
    password = api.http.post(
        "/me/password",
        json={"current": PASSWORD, "new": "hijacked password", "account_id": other["account_id"]},
        headers=fan["headers"],
    )
    assert password.status_code == 422
    mine = api.http.get("/me", params={"account_id": other["account_id"]}, headers=fan["headers"])
    assert mine.json()["account_id"] == fan["account_id"]

    assert api.http.get("/me", headers=fan["headers"]).json()["name"] == "Ann"
    assert api.http.get("/me", headers=other["headers"]).json()["name"] == "Bob"
    assert api.token_for(other["email"], PASSWORD)


def forged(account_id: str | UUID, secret: str = TEST_JWT_SECRET, **claims: Any) -> dict[str, str]:
    """A token signed with `secret` (the server's by default) claiming whatever is asked."""
    now = datetime.now(UTC)
    payload = {
        "iss": "ticketblitz",  # the server's issuer and audience (infra/tokens.py)
        "aud": "ticketblitz-api",
        "sub": str(account_id),
        "role": "admin",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        **claims,
    }
    return bearer(jwt.encode(payload, secret, algorithm="HS256"))


def test_a_token_is_believed_for_its_account_never_for_the_role_it_claims(api: Api) -> None:
    fan = register(api)

    as_admin = forged(fan["account_id"], role="admin", gen=0)

    me = api.http.get("/me", headers=as_admin)
    assert me.status_code == 200 and me.json()["role"] == "customer"
    for method, path, body in admin_requests(fan["account_id"]):
        r = api.http.request(method, path, json=body, headers=as_admin)
        assert (r.status_code, problem_type(r)) == (403, "forbidden"), (method, path)
    assert api.http.post("/shows", json=show_body(), headers=as_admin).status_code == 403

    for headers in [
        forged(uuid4()),  # no such account
        forged(fan["account_id"], gen=1),  # a generation the account never had
        forged(fan["account_id"], gen="0"),
        forged(fan["account_id"], gen=-1),
        forged(fan["account_id"], secret="another-secret-that-is-long-enough-0123456789"),
        forged(fan["account_id"], exp=datetime.now(UTC) - timedelta(seconds=5)),
    ]:
        r = api.http.get("/me", headers=headers)
        assert (r.status_code, problem_type(r)) == (401, "unauthorized"), headers


def test_the_password_hash_is_in_no_answer_and_not_in_the_read_model(
    api: Api, container: Container
) -> None:
    fan = register(api)
    changed = api.http.patch("/me", json={"name": "Hash Free"}, headers=fan["headers"])
    admin = api.admin()
    after = changed.json()["position"]

    answers = [
        api.http.get("/me", headers=fan["headers"]),
        changed,
        api.http.get("/admin/accounts", params={"q": fan["email"], "after": after}, headers=admin),
        api.http.get(f"/admin/accounts/{fan['account_id']}?after={after}", headers=admin),
        set_role(api, fan["account_id"], "door"),
    ]

    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert "argon2" not in answer.text and "password" not in answer.text, answer.text
    assert container.read_side is not None
    with container.read_side.models.connection() as conn:
        columns = conn.execute("SELECT * FROM read.accounts LIMIT 0")
        assert {c.name for c in columns.description or []} == ACCOUNT_FIELDS


# --- the log --------------------------------------------------------------------------------


def test_every_account_event_replays_with_its_fields_and_the_audit_passes(
    api: Api, container: Container
) -> None:
    fan = register(api)
    admin = api.admin()
    steps = [
        api.http.patch("/me", json={"name": "Logged Ann"}, headers=fan["headers"]),
        set_role(api, fan["account_id"], "organizer"),
        api.http.post(f"/admin/accounts/{fan['account_id']}/deactivate", headers=admin),
        api.http.post(f"/admin/accounts/{fan['account_id']}/reactivate", headers=admin),
    ]
    assert [s.status_code for s in steps] == [200] * 4, [s.text for s in steps]
    fresh = bearer(api.token_for(fan["email"], PASSWORD))
    changed = api.http.post(
        "/me/password", json={"current": PASSWORD, "new": "another passphrase"}, headers=fresh
    )
    assert changed.status_code == 200, changed.text

    replay = replay_stream(container.store, UUID(fan["account_id"]))

    assert replay.aggregate == "Account"
    assert [e.type for e in replay.events] == [
        "Account.Registered",
        "Account.Renamed",
        "Account.RoleChanged",
        "Account.Deactivated",
        "Account.Reactivated",
        "Account.PasswordChanged",
    ]
    assert replay.events[1].payload == {"name": "Logged Ann"}
    assert replay.events[2].payload == {"role": "organizer"}
    assert replay.events[3].payload == {} and replay.events[4].payload == {}
    assert replay.state is not None
    assert (replay.state["role"], replay.state["active"], replay.state["session_generation"]) == (
        "organizer",
        True,
        2,
    )
    report = verify(container.store, refund_grace=timedelta(minutes=15))
    assert report.violation_count == 0, [str(v) for v in report.violations]


def test_the_configured_admin_still_logs_in(api: Api) -> None:
    token = api.token_for(ADMIN_EMAIL, ADMIN_PASSWORD)
    me = api.http.get("/me", headers=bearer(token)).json()
    assert (me["email"], me["role"], me["active"]) == (ADMIN_EMAIL, "admin", True)
