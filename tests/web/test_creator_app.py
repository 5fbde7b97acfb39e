"""The creator's app end to end, in a real Chromium against a real ``thotto serve --demo``
process, at desktop and phone widths: tokens made and revoked, a Reddit account linked through
the sandbox's consent page, then flagged by the publisher and linked again, the time zone, signing
out everywhere, the admins' pages, and keyboard use and labels on every page."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import httpx

from tests.web.conftest import PASSWORD, WAIT_MS, ThottoApp, expect, set_password, sign_in

PAGES = ("/", "/accounts", "/tokens", "/settings")


def assert_labelled(page) -> None:
    """Every control a person can reach has a name a screen reader reads out."""
    unnamed = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button, a[href]')]
        .filter(e => e.type !== 'hidden' && !e.hidden && e.offsetParent !== null)
        .filter(e => {
            const labelled = (e.labels && [...e.labels].some(l => l.textContent.trim()))
                || (e.getAttribute('aria-label') || '').trim()
                || ((e.tagName === 'BUTTON' || e.tagName === 'A') && e.textContent.trim());
            return !labelled;
        }).map(e => e.outerHTML.slice(0, 120))""")
    assert unnamed == [], unnamed
    assert page.locator("main#main").count() == 1
    assert page.get_by_role("heading", level=1).count() == 1


def assert_fits(page) -> None:
    """Nothing is wider than the window (no sideways scrolling on a phone)."""
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], width


def link_account_through_consent(page, app: ThottoApp, reddit_name: str) -> None:
    with app.sandbox() as sandbox:
        assert sandbox.post("/_sandbox/config", json={"authorize_as": reddit_name}).status_code == 200
    page.goto(f"{app.url}/accounts")
    page.get_by_role("button", name="Link a Reddit account").click()
    page.wait_for_url(re.compile(r"/accounts$"))
    assert page.get_by_role("status").inner_text() == f"u/{reddit_name} is linked."


def test_a_creator_makes_and_revokes_a_token_links_an_account_and_signs_out(thotto_app, page, screenshot):
    name = f"creator_{page.viewport_name}"
    set_password(page, thotto_app.new_user(name))
    for path in PAGES:
        page.goto(thotto_app.url + path)
        assert_labelled(page)
        assert_fits(page)

    page.goto(f"{thotto_app.url}/tokens")
    page.get_by_label("Name").fill("not a name!")
    page.get_by_role("button", name="Create token").click()
    assert "letters, digits" in page.locator("#f-name-error").inner_text()
    page.get_by_label("Name").fill("laptop-script")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token").inner_text().strip()
    assert token.startswith("thotto_")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=thotto_app.url)
    page.get_by_role("button", name="Copy token").click()
    expect(page.locator("#new-token-copied")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == token
    with thotto_app.api(token) as api:
        assert api.get("/api/me").json()["name"] == name
    page.goto(f"{thotto_app.url}/tokens")  # shown once: a new visit does not show it
    assert page.locator("#new-token").count() == 0
    row = page.locator("tr[data-token]", has_text="laptop-script")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():  # the page is at /tokens already: wait for the answer's page
        row.get_by_role("button", name="Revoke the token laptop-script").click()
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    assert page.locator("tr[data-token]").count() == 0
    with thotto_app.api(token) as api:
        assert api.get("/api/me").status_code == 401

    reddit_name = f"reddit_{page.viewport_name}"
    link_account_through_consent(page, thotto_app, reddit_name)
    row = page.locator("tr[data-account]", has_text=f"u/{reddit_name}")
    assert row.locator(".badge").inner_text() == "Linked"
    assert_fits(page)
    screenshot(page, "accounts")

    page.goto(f"{thotto_app.url}/settings")
    page.get_by_label("Your time zone").select_option("Asia/Tokyo")
    page.get_by_role("button", name="Save time zone").click()
    assert page.get_by_role("status").inner_text() == "Times are now shown in Asia/Tokyo."
    assert page.get_by_label("Your time zone").input_value() == "Asia/Tokyo"
    screenshot(page, "settings")
    page.goto(f"{thotto_app.url}/tokens")
    page.get_by_label("Name").fill("second")
    page.get_by_role("button", name="Create token").click()
    assert "JST" in page.locator("tr[data-token] td[data-label=Created]").first.inner_text()

    page.get_by_role("button", name=re.compile("^Sign out")).click()
    page.wait_for_url(re.compile(r"/sign-in$"))
    assert page.get_by_role("status").inner_text() == "You are signed out."
    page.goto(f"{thotto_app.url}/accounts")
    page.wait_for_url(re.compile(r"/sign-in\?next=/accounts$"))


def test_the_browsers_zone_is_offered_on_the_settings_page(thotto_app, browser):
    context = browser.new_context(timezone_id="America/New_York", viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        set_password(page, thotto_app.new_user("traveller"))
        page.goto(f"{thotto_app.url}/settings")
        offer = page.get_by_role("button", name="Use this browser's zone: America/New_York")
        offer.click()
        assert page.get_by_role("status").inner_text() == "Times are now shown in America/New_York."
    finally:
        context.close()


def test_signing_out_everywhere_ends_the_other_browsers_session(thotto_app, desktop, phone):
    set_password(desktop, thotto_app.new_user("two_devices"))
    sign_in(phone, thotto_app, "two_devices")
    phone.goto(f"{thotto_app.url}/settings")
    desktop.goto(f"{thotto_app.url}/settings")
    desktop.once("dialog", lambda dialog: dialog.accept())
    desktop.get_by_role("button", name="Sign out everywhere").click()
    desktop.wait_for_url(re.compile(r"/sign-in$"))
    assert "signed out everywhere (2 sessions ended)" in desktop.get_by_role("status").inner_text()
    phone.get_by_label("Your time zone").select_option("Europe/Paris")
    phone.get_by_role("button", name="Save time zone").click()
    phone.wait_for_url(re.compile(r"/sign-in\?next=/settings$"))  # the change was not made
    with httpx.Client(base_url=thotto_app.url, cookies={"thotto_session": "forged-or-ended"}) as client:
        assert client.get("/api/me").status_code == 401


def test_an_account_reddit_refuses_shows_as_needing_relinking_and_is_linked_again(thotto_app, desktop, screenshot):
    set_password(desktop, thotto_app.new_user("relinker"))
    link_account_through_consent(desktop, thotto_app, "relinker_r")
    desktop.goto(f"{thotto_app.url}/tokens")
    desktop.get_by_label("Name").fill("poster")
    desktop.get_by_role("button", name="Create token").click()
    token = desktop.locator("#new-token").inner_text().strip()
    with thotto_app.sandbox() as sandbox:
        revoked = sandbox.post("/_sandbox/faults", json={"expire_tokens": True, "revoke_refresh_tokens": True})
        assert revoked.status_code == 200, revoked.text
    with thotto_app.api(token) as api:
        when = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
        created = api.post("/api/scheduled-posts", json={"subreddit": "test", "title": "Needs its account",
                                                          "text": "hi", "scheduledFor": when})
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 60
        while not api.get("/api/accounts").json()[0]["needsRelink"]:
            assert time.monotonic() < deadline, "the publisher never flagged the account"
            time.sleep(0.2)
    desktop.goto(f"{thotto_app.url}/")
    assert "must be linked again" in desktop.get_by_role("alert").inner_text()
    desktop.goto(f"{thotto_app.url}/accounts")
    row = desktop.locator("tr[data-account]", has_text="u/relinker_r")
    assert row.locator(".badge").inner_text() == "Needs relinking"
    assert "must be linked again" in desktop.get_by_role("alert").first.inner_text()
    screenshot(desktop, "accounts-relink")
    row.get_by_role("button", name="Link u/relinker_r again").click()
    desktop.wait_for_url(re.compile(r"/accounts$"))
    assert desktop.locator("tr[data-account]", has_text="u/relinker_r").locator(".badge").inner_text() == "Linked"
    desktop.once("dialog", lambda dialog: dialog.accept())
    desktop.get_by_role("button", name="Unlink u/relinker_r").click()
    desktop.wait_for_url(re.compile(r"/accounts$"))
    assert "u/relinker_r is unlinked." in desktop.get_by_role("status").inner_text()
    assert desktop.locator("tr[data-account]").count() == 0


def test_admins_issue_links_and_change_tiers_and_reach_the_operator_dashboard(thotto_app, desktop, phone, screenshot):
    set_password(desktop, thotto_app.admin_link)
    desktop.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    desktop.wait_for_url(re.compile(r"/admin/users$"))
    assert_labelled(desktop)
    desktop.get_by_label("User name").fill("handed_a_link")
    desktop.get_by_role("button", name="Add user and issue a link").click()
    link = desktop.locator("#issued-link").inner_text().strip()
    assert "/set-password/" in link
    row = desktop.locator("tr[data-user='handed_a_link']")
    row.get_by_label("Tier of handed_a_link", exact=True).select_option("premium")
    row.get_by_role("button", name="Change the tier of handed_a_link").click()
    assert desktop.get_by_role("status").inner_text() == "handed_a_link is now on the premium tier."
    desktop.locator("tr[data-user='handed_a_link']").get_by_role("button", name=re.compile("Issue a set-password")).click()
    newer = desktop.locator("#issued-link").inner_text().strip()
    assert newer != link
    screenshot(desktop, "admin-users")

    phone.goto(link)  # the first link was replaced by the newer one
    assert "unknown or was replaced" in phone.get_by_role("alert").inner_text()
    set_password(phone, newer)
    phone.goto(f"{thotto_app.url}/admin/users")
    assert phone.get_by_role("heading", name="Not found").is_visible()
    nav = phone.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Users").count() == 0 and nav.get_by_role("link", name="Operator").count() == 0
    phone.goto(f"{thotto_app.url}/operator")  # a creator's session gets no data: the token form
    assert phone.locator("#signin").is_visible()
    with httpx.Client(base_url=thotto_app.url) as client:
        me = client.get("/api/me", headers={"authorization": f"Bearer {thotto_app.admin_token}"}).json()
        assert me["name"] == "admin"
    desktop.get_by_role("navigation", name="Main").get_by_role("link", name="Operator").click()
    desktop.wait_for_url(re.compile(r"/operator$"))
    desktop.wait_for_function("document.body.dataset.loaded === 'true'")
    assert desktop.locator("#app").is_visible() and not desktop.locator("#signin").is_visible()
    desktop.locator("#queues").wait_for()


def test_every_page_is_usable_from_the_keyboard(thotto_app, desktop):
    link = thotto_app.new_user("keyboard_only")
    desktop.goto(link)
    desktop.keyboard.press("Tab")
    assert desktop.evaluate("document.activeElement.textContent") == "Skip to content"
    desktop.keyboard.press("Enter")
    assert desktop.evaluate("document.activeElement.id") == "main"
    desktop.keyboard.press("Tab")
    assert desktop.evaluate("document.activeElement.name") == "password"
    desktop.keyboard.type(PASSWORD)
    desktop.keyboard.press("Tab")
    desktop.keyboard.type(PASSWORD)
    desktop.keyboard.press("Enter")
    desktop.wait_for_url(re.compile(r"/$"))
    desktop.goto(f"{thotto_app.url}/tokens")
    desktop.get_by_label("Name").focus()
    desktop.keyboard.type("typed-in")
    desktop.keyboard.press("Enter")
    assert desktop.locator("#new-token").inner_text().startswith("thotto_")
    for _ in range(40):  # Tab along the page to the token's Revoke button
        desktop.keyboard.press("Tab")
        if desktop.evaluate("document.activeElement.textContent.trim()") == "Revoke":
            break
    else:
        raise AssertionError("Tab never reached the Revoke button")
    assert desktop.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    desktop.once("dialog", lambda dialog: dialog.accept())
    # The page is already at /tokens, so waiting for that address would not wait for the revoke's
    # answer: wait for the navigation itself, then for the message (which retries until shown).
    with desktop.expect_navigation():
        desktop.keyboard.press("Enter")
    expect(desktop.get_by_role("status")).to_contain_text("is revoked")
