"""The web app's sessions over real HTTP (no browser): idle and absolute expiry, the cookie's
flags, CSRF on pages and on the API, forms sent from another site, a new password or a removal
ending sessions, the Bearer header winning over the cookie, set-password links that expire, and
sign-in limits per address."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager

import httpx

from tests.api.conftest import api_settings, serving
from tests.support.chaos_process import JumpingClock
from thotto.usecases import passwords
from thotto.web.sessions import COOKIE

PASSWORD = "a long enough password"


async def link_for(api, user_id: int) -> str:
    return await passwords.issue_password_link(api.app.store, api.app.settings, user_id, api.url,
                                               now=api.app.clock.now())


@asynccontextmanager
async def signed_in(api, name: str):
    """A browser-like client of ``name`` (an existing user) signed in with a new password."""
    user = await api.app.store.get_user_by_name(name)
    link = await link_for(api, user.id)
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as browser:
        done = await browser.post(link, data={"password": PASSWORD, "confirm": PASSWORD})
        assert done.status_code == 303 and done.headers["location"] == "/", done.text
        yield browser


async def csrf_of(browser: httpx.AsyncClient) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', (await browser.get("/")).text)[1]


async def test_a_session_ends_when_unused_too_long_and_after_its_absolute_lifetime(sandbox, tmp_path):
    clock = JumpingClock()
    settings = api_settings(tmp_path, sandbox.url, web_session_idle_hours=2, web_session_max_days=1)
    async with serving(settings, clock=clock) as api, signed_in(api, "pro") as browser:
        clock.jump(3600)  # used within the idle time: it lives on
        assert (await browser.get("/api/me")).json()["name"] == "pro"
        clock.jump(2 * 3600 + 1)
        assert (await browser.get("/api/me")).status_code == 401
        assert (await browser.get("/settings")).headers["location"] == "/sign-in?next=/settings"
    clock = JumpingClock()
    async with serving(api_settings(tmp_path / "2", sandbox.url, web_session_idle_hours=2,
                                    web_session_max_days=1), clock=clock) as api, signed_in(api, "pro") as browser:
        for _ in range(25):  # used every hour, it still ends a day after signing in
            clock.jump(3600)
            if (await browser.get("/api/me")).status_code == 401:
                break
        else:
            raise AssertionError("the session outlived web_session_max_days")
        assert _ == 23


async def test_the_cookie_is_httponly_lax_and_secure_behind_https(sandbox, tmp_path):
    settings = api_settings(tmp_path, sandbox.url, public_url="https://thotto.example")
    async with serving(settings) as api:
        user = await api.app.store.get_user_by_name("pro")
        async with httpx.AsyncClient(base_url=api.url) as browser:
            done = await browser.post(await link_for(api, user.id), data={"password": PASSWORD, "confirm": PASSWORD})
        cookie = next(value for value in done.headers.get_list("set-cookie") if value.startswith(COOKIE))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie and "Path=/" in cookie
    async with serving(api_settings(tmp_path / "plain", sandbox.url)) as api, signed_in(api, "pro") as browser:
        assert browser.cookies.get(COOKIE)


async def test_changes_need_the_csrf_token_and_must_come_from_this_site(api):
    async with signed_in(api, "pro") as browser:
        token = await csrf_of(browser)
        refused = await browser.post("/settings", data={"time_zone": "Europe/Paris"})
        assert refused.status_code == 403 and "CSRF" in refused.text
        forged = await browser.post("/settings", data={"time_zone": "Europe/Paris", "csrf": token},
                                    headers={"origin": "https://evil.example"})
        assert forged.status_code == 403 and "another site" in forged.text
        cross = await browser.post("/settings", data={"time_zone": "Europe/Paris", "csrf": token},
                                   headers={"sec-fetch-site": "cross-site"})
        assert cross.status_code == 403
        assert (await api.app.store.get_user_by_name("pro")).time_zone == "UTC"
        saved = await browser.post("/settings", data={"time_zone": "Europe/Paris", "csrf": token},
                                   headers={"origin": api.url})
        assert saved.status_code == 303 and (await api.app.store.get_user_by_name("pro")).time_zone == "Europe/Paris"
        wrong_zone = await browser.post("/settings", data={"time_zone": "Mars/Olympus", "csrf": token})
        assert wrong_zone.status_code == 422 and "not an IANA time zone" in wrong_zone.text
        api_refused = await browser.post("/api/tokens", json={"name": "x"}, headers={"x-csrf-token": "wrong"})
        assert api_refused.status_code == 403 and api_refused.json()["error"] == "Not allowed"
        api_form = await browser.post("/api/tokens", data={"csrf": token}, headers={"content-type": "application/x-www-form-urlencoded"})
        assert api_form.status_code == 400  # the CSRF field passed; the body is not the JSON the API takes
        assert (await browser.get("/api/me")).json()["timeZone"] == "Europe/Paris"


async def test_a_bearer_token_wins_over_the_cookie(api):
    async with signed_in(api, "pro") as browser:
        as_admin = await browser.get("/api/me", headers={"authorization": f"Bearer {api.admin.token}"})
        assert as_admin.json()["name"] == "admin"
        # With a token, no CSRF token is needed: another site cannot make a browser send a header.
        minted = await browser.post("/api/tokens", json={"name": "x"}, headers={"authorization": f"Bearer {api.pro.token}"})
        assert minted.status_code == 201


async def test_a_new_password_and_a_removal_end_every_session(api):
    async with signed_in(api, "pro") as first, signed_in(api, "premium") as other:
        user = await api.app.store.get_user_by_name("pro")
        again = await link_for(api, user.id)
        async with httpx.AsyncClient(base_url=api.url) as second:
            assert (await second.post(again, data={"password": PASSWORD + "!", "confirm": PASSWORD + "!"})).status_code == 303
            assert (await second.get("/api/me")).json()["name"] == "pro"
        assert (await first.get("/api/me")).status_code == 401
        assert (await api.admin.client.delete(f"/api/users/{api.premium.id}")).status_code == 200
        assert (await other.get("/api/me")).status_code == 401


async def test_a_set_password_link_expires_and_its_rules_are_said_beside_the_field(sandbox, tmp_path):
    clock = JumpingClock()
    async with serving(api_settings(tmp_path, sandbox.url, password_link_hours=1), clock=clock) as api:
        user = await api.app.store.get_user_by_name("pro")
        link = await link_for(api, user.id)
        async with httpx.AsyncClient(base_url=api.url) as browser:
            short = await browser.post(link, data={"password": "short", "confirm": "short"})
            assert short.status_code == 422 and 'id="f-password-error">Use at least 10 characters' in short.text
            different = await browser.post(link, data={"password": PASSWORD, "confirm": PASSWORD + "x"})
            assert different.status_code == 422 and 'id="f-confirm-error">This is not the same' in different.text
            clock.jump(3601)
            late = await browser.get(link)
            assert late.status_code == 410 and "expired" in late.text
            assert (await browser.post(link, data={"password": PASSWORD, "confirm": PASSWORD})).status_code == 410
        assert await api.app.store.get_password_hash(user.id) is None


async def test_sign_ins_are_limited_per_address_across_names_and_a_success_clears_the_names_count(sandbox, tmp_path):
    settings = api_settings(tmp_path, sandbox.url, sign_in_failures_per_user=3, sign_in_failures_per_address=5)
    async with serving(settings) as api:
        async with signed_in(api, "pro"):
            pass
        async with httpx.AsyncClient(base_url=api.url) as browser:
            for attempt in range(2):
                wrong = await browser.post("/sign-in", data={"name": "pro", "password": "nope nope nope"})
                assert wrong.status_code == 422 and "wrong" in wrong.text
            right = await browser.post("/sign-in", data={"name": "pro", "password": PASSWORD})
            assert right.status_code == 303
            browser.cookies.clear()  # signed out again (a signed-in browser's form needs its CSRF token)
            for attempt in range(2):  # the name's count started again; the address's did not
                assert (await browser.post("/sign-in", data={"name": "pro", "password": "no"})).status_code == 422
            stranger = await browser.post("/sign-in", data={"name": "nobody", "password": "guess guess"})
            assert stranger.status_code == 422
            blocked = await browser.post("/sign-in", data={"name": "premium", "password": "guess guess"})
            assert blocked.status_code == 429 and "this address" in blocked.text
            assert int(blocked.headers["retry-after"]) > 0


async def test_the_operator_dashboard_takes_an_admins_session_and_no_one_elses(api):
    async with signed_in(api, "admin") as admin, signed_in(api, "pro") as creator:
        admins = await admin.get("/operator")
        token = await csrf_of(admin)
        assert f'<meta name="csrf-token" content="{token}">' in admins.text
        creators = await creator.get("/operator")
        assert '<meta name="csrf-token" content="">' in creators.text
        assert (await creator.get("/api/monitoring/queue-metrics")).status_code == 403
        assert (await admin.get("/api/monitoring/queue-metrics")).status_code == 200
        assert (await admin.get("/")).status_code == 200
        assert (await httpx.AsyncClient(base_url=api.url).get("/")).headers["location"] == "/sign-in"


async def test_a_form_the_pages_do_not_send_is_refused_not_an_error(api):
    async with signed_in(api, "pro") as browser:
        token = await csrf_of(browser)
        upload = await browser.post("/settings", data={"csrf": token}, files={"time_zone": ("a.txt", b"x")})
        assert upload.status_code == 422 and "could not be read" in upload.text
        many = await browser.post("/settings", content="&".join(f"f{i}=1" for i in range(300)),
                                  headers={"content-type": "application/x-www-form-urlencoded"})
        assert many.status_code == 422
        huge = await browser.post("/sign-in", data={"name": "pro", "password": "x" * 70_000})
        assert huge.status_code == 422 and "over 64 KB" in huge.text

