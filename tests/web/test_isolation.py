"""A second user sees none of the first one's tokens, accounts or admin pages, in the pages or by
guessing addresses: another's object is not found (404), exactly like one that does not exist,
and stays as it was."""

from __future__ import annotations

import re

from tests.web.conftest import set_password
from tests.web.test_creator_app import link_account_through_consent


def post_form(page, path: str) -> int:
    """POST a page's form to ``path`` from this browser, with its own session's CSRF token."""
    return page.evaluate("""async (path) => (await fetch(path, {method: "POST",
        body: new URLSearchParams({csrf: thotto.csrfToken()})})).status""", path)


def test_a_second_user_sees_and_reaches_nothing_of_the_first(thotto_app, desktop, phone):
    set_password(desktop, thotto_app.new_user("first_user"))
    link_account_through_consent(desktop, thotto_app, "first_users_reddit")
    account_id = desktop.locator("tr[data-account]").get_attribute("data-account")
    desktop.goto(f"{thotto_app.url}/tokens")
    desktop.get_by_label("Name").fill("firsts-token")
    desktop.get_by_role("button", name="Create token").click()
    token = desktop.locator("#new-token").inner_text().strip()
    token_id = desktop.locator("tr[data-token]").get_attribute("data-token")

    set_password(phone, thotto_app.new_user("second_user"))
    phone.goto(f"{thotto_app.url}/accounts")
    assert phone.locator("tr[data-account]").count() == 0 and "first_users_reddit" not in phone.content()
    phone.goto(f"{thotto_app.url}/tokens")
    assert phone.locator("tr[data-token]").count() == 0 and "firsts-token" not in phone.content()

    assert post_form(phone, f"/tokens/{token_id}/revoke") == 404
    assert post_form(phone, f"/accounts/{account_id}/unlink") == 404
    assert post_form(phone, "/tokens/999999/revoke") == 404  # the same as one that does not exist
    assert post_form(phone, "/accounts/99999999999999999999/unlink") == 404
    assert post_form(phone, "/admin/users/1/password-link") == 404
    phone.goto(f"{thotto_app.url}/admin/users")
    assert phone.get_by_role("heading", name="Not found").is_visible()
    through_api = phone.evaluate("""async (id) => {
        const accounts = await thotto.api("GET", "/api/accounts");
        const tokens = await thotto.api("GET", "/api/tokens");
        const unlink = await fetch("/api/accounts/" + id, {method: "DELETE", headers: {"X-CSRF-Token": thotto.csrfToken()}});
        return {accounts: accounts.length, tokens: tokens.length, unlink: unlink.status};
    }""", account_id)
    assert through_api == {"accounts": 0, "tokens": 0, "unlink": 404}

    with thotto_app.api(token) as api:  # the first user's token and account are untouched
        assert api.get("/api/me").json()["name"] == "first_user"
        assert [a["redditUsername"] for a in api.get("/api/accounts").json()] == ["first_users_reddit"]
    desktop.goto(f"{thotto_app.url}/accounts")
    assert desktop.locator("tr[data-account]").count() == 1
    desktop.goto(f"{thotto_app.url}/set-password/not-a-link")
    assert "unknown" in desktop.get_by_role("alert").inner_text()
    desktop.goto(f"{thotto_app.url}/static/..%2Fsessions.py")
    assert desktop.get_by_role("heading", name="Not found").is_visible()
    desktop.goto(f"{thotto_app.url}/sign-in?next=//elsewhere.example/")
    assert re.search(r"/$", desktop.url) and "elsewhere" not in desktop.url  # signed in: straight home
