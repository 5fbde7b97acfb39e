"""Linking a Reddit account over real HTTP (issue #13): a link goes only to the Thotto user who
started it and whose browser (or whose own person, through the verification code) consented.
A consent completed by another person, a replayed state, an expired state and a state from
another user link nothing, and each refusal says why.

The sandbox's consent page consents at once as the user named by ``username`` in the URL."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.api.conftest import api_settings, serving
from tests.support.chaos_process import JumpingClock


async def consent(start: dict, reddit_user: str) -> dict:
    """A browser (with no Thotto cookies) opens the consent URL and consents as ``reddit_user``;
    returns the query Reddit sends back to the callback."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(start["authorizeUrl"] + f"&username={reddit_user}")
    assert answer.status_code == 302, answer.text
    return {key: values[0] for key, values in parse_qs(urlsplit(answer.headers["location"]).query).items()}


async def start_link(client: httpx.AsyncClient) -> dict:
    response = await client.post("/api/accounts/link")
    assert response.status_code == 200, response.text
    return response.json()


async def linked_names(client: httpx.AsyncClient) -> set[str]:
    return {account["redditUsername"] for account in (await client.get("/api/accounts")).json()}


async def test_the_browser_that_started_a_link_finishes_it(api):
    started = await api.premium.client.post("/api/accounts/link")  # this client keeps cookies, like a browser
    cookie = started.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/api/accounts/callback" in cookie
    start = started.json()
    back = await consent(start, "web_linked")
    assert back["state"] == start["state"]
    response = await api.premium.client.get("/api/accounts/callback", params=back)
    assert response.status_code == 200, response.text
    assert response.json()["redditUsername"] == "web_linked"
    assert await linked_names(api.premium.client) == {"premium_acct", "web_linked"}
    assert not [name for name in api.premium.client.cookies if name.startswith("thotto_link_")]


async def test_a_consent_completed_by_another_person_links_nothing(api):
    """The issue's report: pro starts a link and hands the consent URL to someone else, who
    consents as u/alice_r. Their callback links nothing, says so, and names who would get the
    account; pro cannot finish it without the code shown only to the person who consented."""
    start = await start_link(api.pro.client)
    back = await consent(start, "alice_r")
    async with api.client() as someone_else:
        page = await someone_else.get("/api/accounts/callback", params=back,
                                      headers={"accept": "text/html"})
    assert page.status_code == 202
    assert "Nothing is linked yet" in page.text and "<strong>pro</strong>" in page.text
    assert await linked_names(api.pro.client) == {"pro_acct"}
    for code in ("", "AAAA-BBBB-CCCC"):
        attempt = await api.pro.client.post("/api/accounts/link/complete", json={
            "state": start["state"], "secret": start["secret"], "verificationCode": code})
        assert attempt.status_code == 422 and attempt.json()["field"] == "verificationCode", attempt.text
    assert await linked_names(api.pro.client) == {"pro_acct"}


async def test_an_api_client_completes_with_the_code_its_person_was_shown(api):
    async with api.client(api.premium.token) as script:  # a fresh client: no cookie reaches the browser
        start = await start_link(script)
        assert start["secret"] and start["expiresAt"]
        back = await consent(start, "script_linked")
        async with api.client() as browser:
            pending = await browser.get("/api/accounts/callback", params=back)
        assert pending.status_code == 202, pending.text
        body = pending.json()
        assert body["linkTo"] == "premium" and "/api/accounts/link/complete" in body["detail"]
        early = {"state": start["state"], "secret": start["secret"]}
        typed = body["verificationCode"].lower().replace("-", " ")  # as a person may type it
        done = await script.post("/api/accounts/link/complete", json={**early, "verificationCode": typed})
        assert done.status_code == 200, done.text
        assert done.json()["redditUsername"] == "script_linked"
    assert await linked_names(api.premium.client) == {"premium_acct", "script_linked"}


async def test_completing_before_reddit_answered_is_a_conflict_that_says_what_to_do(api):
    start = await start_link(api.premium.client)
    early = await api.premium.client.post("/api/accounts/link/complete", json={
        "state": start["state"], "secret": start["secret"], "verificationCode": "AAAA-BBBB-CCCC"})
    assert early.status_code == 409 and "open authorizeUrl" in early.json()["detail"]


async def test_a_replayed_state_links_nothing_more(api):
    start = await start_link(api.premium.client)
    back = await consent(start, "first_account")
    assert (await api.premium.client.get("/api/accounts/callback", params=back)).status_code == 200
    replays = [back, await consent(start, "second_account")]  # the same query, and a fresh consent
    async with api.client() as stranger:
        for query in replays:
            for client in (api.premium.client, stranger):
                replay = await client.get("/api/accounts/callback", params=query)
                assert replay.status_code == 422, replay.text
                assert replay.json()["field"] == "state" and "already used" in replay.json()["detail"]
    assert await linked_names(api.premium.client) == {"premium_acct", "first_account"}


async def test_a_replayed_callback_cannot_replace_a_held_consent(api):
    async with api.client(api.premium.token) as script:
        start = await start_link(script)
        async with api.client() as browser:
            first = await browser.get("/api/accounts/callback", params=await consent(start, "real_one"))
            assert first.status_code == 202
            replay = await browser.get("/api/accounts/callback", params=await consent(start, "intruder"))
        assert replay.status_code == 422 and "already arrived" in replay.json()["detail"]
        done = await script.post("/api/accounts/link/complete", json={
            "state": start["state"], "secret": start["secret"],
            "verificationCode": first.json()["verificationCode"]})
        assert done.json()["redditUsername"] == "real_one"
        again = await script.post("/api/accounts/link/complete", json={
            "state": start["state"], "secret": start["secret"],
            "verificationCode": first.json()["verificationCode"]})
        assert again.status_code == 422 and "already used" in again.json()["detail"]
    assert await linked_names(api.premium.client) == {"premium_acct", "real_one"}


async def test_an_expired_state_links_nothing(sandbox, tmp_path):
    clock = JumpingClock()
    async with serving(api_settings(tmp_path, sandbox.url), clock=clock) as api:
        start = await start_link(api.premium.client)
        back = await consent(start, "too_late")
        clock.jump(601)
        late = await api.premium.client.get("/api/accounts/callback", params=back)
        assert late.status_code == 422 and "expired" in late.json()["detail"], late.text
        async with api.client() as browser:
            assert (await browser.get("/api/accounts/callback", params=back)).status_code == 422
        assert await linked_names(api.premium.client) == {"premium_acct"}


async def test_a_state_from_another_user_is_refused(api):
    async with api.client(api.premium.token) as script:
        start = await start_link(script)
        pro_start = await start_link(api.pro.client)
        back = await consent(start, "mine")
        # pro's browser, carrying pro's own link secret under premium's link's cookie name,
        # is not the browser that started premium's link: nothing is linked to anyone.
        cookie = {"thotto_link_" + hashlib.sha256(start["state"].encode()).hexdigest()[:16]: pro_start["secret"]}
        async with api.client() as pro_browser:
            pro_browser.cookies.update(cookie)
            pending = await pro_browser.get("/api/accounts/callback", params=back)
        assert pending.status_code == 202 and pending.json()["linkTo"] == "premium"
        stolen = {"state": start["state"], "secret": start["secret"],
                  "verificationCode": pending.json()["verificationCode"]}
        theft = await api.pro.client.post("/api/accounts/link/complete", json=stolen)
        assert theft.status_code == 422 and theft.json()["field"] == "state"
        assert "another user" in theft.json()["detail"]
        assert await linked_names(api.pro.client) == {"pro_acct"}
        wrong_secret = await script.post("/api/accounts/link/complete",
                                         json={**stolen, "secret": pro_start["secret"]})
        assert wrong_secret.status_code == 422 and wrong_secret.json()["field"] == "secret"
        mine = await script.post("/api/accounts/link/complete", json=stolen)
        assert mine.status_code == 200 and mine.json()["redditUsername"] == "mine"
    assert await linked_names(api.premium.client) == {"premium_acct", "mine"}


async def test_forged_states_and_refused_consents_link_nothing(api):
    async with api.client() as anonymous:
        for params in ({"state": "forged", "code": "x"}, {"code": "x"}, {}):
            forged = await anonymous.get("/api/accounts/callback", params=params)
            assert forged.status_code == 422 and forged.json()["field"] == "state", params
    start = await start_link(api.premium.client)
    refused = await api.premium.client.get("/api/accounts/callback",
                                           params={"state": start["state"], "error": "access_denied"})
    assert refused.status_code == 422 and refused.json()["field"] == "code"
    after = await api.premium.client.get("/api/accounts/callback", params=await consent(start, "later"))
    assert after.status_code == 422 and "already used" in after.json()["detail"]
    assert await linked_names(api.premium.client) == {"premium_acct"}
