"""The pages' cookie sessions answer to the account as it is now: deactivating an account, or
changing its password, ends its browser sessions at once; and the session cookie is HttpOnly
and SameSite=Lax (Secure only over TLS: this test server speaks plain HTTP)."""

from __future__ import annotations

import re
from uuid import uuid4

import httpx
import pytest

from tests.e2e.conftest import Api

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def logged_in(api: Api) -> tuple[httpx.Client, dict[str, str]]:
    """A browser-like client logged in through the login page as a new fan."""
    fan = api.new_customer()
    browser = httpx.Client(base_url=api.server_url, timeout=30)
    page = browser.get("/login")
    token = TOKEN.search(page.text)
    assert page.status_code == 200 and token, page.text
    answer = browser.post(
        "/login", data={"email": fan["email"], "password": PASSWORD, "csrf_token": token[1]}
    )
    assert answer.status_code == 303, answer.text
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("tb_session="))
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower().replace("samesite", "")
    assert browser.get("/me").status_code == 200
    return browser, fan


def test_a_deactivated_accounts_browser_session_stops_working_at_once(api: Api):
    browser, fan = logged_in(api)
    r = api.http.post(f"/admin/accounts/{fan['account_id']}/deactivate", headers=api.admin())
    assert r.status_code == 200, r.text

    answer = browser.get("/me")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=/me")
    browser.close()


def test_a_password_change_ends_the_other_browser_sessions(api: Api):
    browser, fan = logged_in(api)
    r = api.http.post(
        "/me/password",
        json={"current": PASSWORD, "new": f"new {uuid4().hex}"},
        headers={"Authorization": fan["Authorization"]},
    )
    assert r.status_code == 200, r.text
    assert browser.get("/me").status_code == 303
    browser.close()


def test_a_login_form_without_its_csrf_token_is_refused(api: Api):
    fan = api.new_customer()
    with httpx.Client(base_url=api.server_url, timeout=30) as browser:
        browser.get("/login")
        answer = browser.post("/login", data={"email": fan["email"], "password": PASSWORD})
        assert answer.status_code == 403
        assert "tb_session" not in answer.cookies
