"""Signing in, in a real Chromium against a real Thotto process: a new user sets a password from
the link ``thotto user add`` printed, the rules are shown beside the field, the session cookie
is HttpOnly and SameSite, sign-in refuses a wrong password and then too many, and the first
start's link signs the admin in."""

from __future__ import annotations

import re

from tests.web.conftest import PASSWORD, session_cookie, set_password, sign_in, start_thotto, stop


def test_a_new_user_sets_a_password_from_the_printed_link_then_signs_in(thotto_app, page, screenshot):
    name = f"newcomer_{page.viewport_name}"
    link = thotto_app.new_user(name)
    page.goto(link)
    assert page.get_by_role("heading", name="Set your password").is_visible()
    page.get_by_label("New password").fill("short")
    page.get_by_label("The same password again").fill("short")
    page.get_by_role("button", name="Set password and sign in").click()
    error = page.locator("#f-password-error")
    assert "at least 10 characters" in error.inner_text()
    assert page.get_by_label("New password").get_attribute("aria-invalid") == "true"
    set_password(page, link)
    assert page.get_by_role("heading", name=f"Hello, {name}").is_visible()
    assert page.get_by_role("status").inner_text() == "Your password is set; you are signed in."
    cookie = session_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    page.get_by_role("button", name=re.compile("Sign out")).click()
    page.wait_for_url(re.compile(r"/sign-in$"))
    assert session_cookie(page) is None
    page.goto(link)  # a link works once
    assert "already used" in page.get_by_role("alert").inner_text()
    page.goto(f"{thotto_app.url}/sign-in")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.locator("#f-password-error").inner_text() == "The user name or the password is wrong"
    screenshot(page, "sign-in")
    sign_in(page, thotto_app, name)
    assert page.get_by_role("heading", name=f"Hello, {name}").is_visible()


def test_a_page_needs_a_session_and_comes_back_after_signing_in(thotto_app, desktop):
    link = thotto_app.new_user("returning")
    desktop.goto(f"{thotto_app.url}/settings")
    desktop.wait_for_url(re.compile(r"/sign-in\?next=/settings$"))
    set_password(desktop, link)
    desktop.context.clear_cookies()
    desktop.goto(f"{thotto_app.url}/settings")
    desktop.get_by_label("User name").fill("returning")
    desktop.get_by_label("Password").fill(PASSWORD)
    desktop.get_by_role("button", name="Sign in").click()
    desktop.wait_for_url(re.compile(r"/settings$"))


def test_the_first_starts_link_signs_the_admin_in(thotto_app, desktop):
    set_password(desktop, thotto_app.admin_link)
    assert desktop.get_by_role("heading", name="Hello, admin").is_visible()
    nav = desktop.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Operator").is_visible()


def test_the_api_refuses_a_change_with_the_cookie_but_without_the_csrf_token(thotto_app, desktop):
    set_password(desktop, thotto_app.new_user("csrf_check"))
    answers = desktop.evaluate("""async () => {
        const bare = await fetch("/api/tokens", {method: "POST", headers: {"Content-Type": "application/json"},
                                                 body: JSON.stringify({name: "forged"})});
        const read = await fetch("/api/me");
        const made = await thotto.api("POST", "/api/tokens", {name: "from-the-page"});
        return {bareStatus: bare.status, bare: await bare.json(), me: (await read.json()).name, made: made.name};
    }""")
    assert answers["bareStatus"] == 403 and "CSRF" in answers["bare"]["detail"]
    assert answers["me"] == "csrf_check" and answers["made"] == "from-the-page"
    tokens = desktop.evaluate("async () => (await thotto.api('GET', '/api/tokens')).map(t => t.name)")
    assert tokens == ["from-the-page"]


def test_sign_in_attempts_are_limited_per_user_name_with_a_clear_message(tmp_path, desktop):
    app = start_thotto(tmp_path, THOTTO_SIGN_IN_FAILURES_PER_USER="3")
    try:
        for attempt in range(4):
            desktop.goto(f"{app.url}/sign-in")
            desktop.get_by_label("User name").fill("admin")
            desktop.get_by_label("Password").fill(f"wrong password {attempt}")
            with desktop.expect_response(re.compile(r"/sign-in$")) as answer:
                desktop.get_by_role("button", name="Sign in").click()
        assert answer.value.status == 429 and int(answer.value.headers["retry-after"]) > 60
        message = desktop.locator("[data-form-error]").inner_text()
        assert "Too many failed sign-ins for this user name" in message and "try again in" in message
    finally:
        stop(app.process)
