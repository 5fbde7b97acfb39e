"""OAuth against the sandbox over HTTP: script and web flows, token caching, 401 handling."""

import base64
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio

from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, USER_AGENT, make_config
from thotto.config import load_settings
from thotto.engine.errors import ConfigError
from thotto.errors import RedditAuthError
from thotto.reddit import RedditClient, RedditConfig, user_agent


class RecordingTransport(httpx.AsyncHTTPTransport):
    """The real transport, keeping every request it sends."""

    def __init__(self):
        super().__init__()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request):
        self.requests.append(request)
        return await super().handle_async_request(request)


class FakeClock:
    """A clock the test moves by hand (the client's token clock is injectable)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def authorize(reddit: RedditClient, **options) -> str:
    """Visit the authorize URL like a browser and return the code from the redirect."""
    state = reddit.new_state()
    url = reddit.authorize_url(state, **options)
    async with httpx.AsyncClient() as browser:
        response = await browser.get(url)
    assert response.status_code == 302
    redirect = urlsplit(response.headers["location"])
    query = parse_qs(redirect.query)
    assert f"{redirect.scheme}://{redirect.netloc}{redirect.path}" == REDIRECT_URI
    assert query["state"] == [state]
    return query["code"][0]


async def test_script_app_password_grant_over_the_wire(sandbox):
    transport = RecordingTransport()
    async with RedditClient(make_config(sandbox.url), transport=transport) as reddit:
        account = reddit.account_from_password("alice", "alice-password")
        me = await account.me()
    assert me.name == "alice" and account.username == "alice"
    token_request, me_request = transport.requests
    assert token_request.url.path == "/api/v1/access_token"
    assert token_request.headers["authorization"] == "Basic " + base64.b64encode(
        f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_request.content.decode()) == {
        "grant_type": ["password"], "username": ["alice"], "password": ["alice-password"]}
    assert me_request.headers["authorization"].startswith("bearer ")
    assert all(request.headers["user-agent"] == USER_AGENT for request in transport.requests)
    assert me_request.url.params["raw_json"] == "1"


async def test_web_app_flow_authorize_exchange_and_refresh(sandbox, reddit):
    url = reddit.authorize_url("xyz")
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == "/api/v1/authorize"
    assert query == {"client_id": [CLIENT_ID], "response_type": ["code"], "state": ["xyz"],
                     "redirect_uri": [REDIRECT_URI], "duration": ["permanent"],
                     "scope": ["identity submit read history flair"]}

    account = await reddit.link_with_code(await authorize(reddit))
    assert account.refresh_token
    assert account.scopes == ("identity", "submit", "read", "history", "flair")
    assert (await account.me()).name == "sandbox_user"
    assert account.token_requests == 0  # the code exchange's token is used first

    # Later, in another process: only the refresh token is kept.
    again = reddit.account_from_refresh_token(account.refresh_token)
    assert (await again.me()).name == "sandbox_user"
    assert again.token_requests == 1


async def test_a_code_works_once(sandbox, reddit):
    code = await authorize(reddit)
    await reddit.exchange_code(code)
    with pytest.raises(RedditAuthError) as caught:
        await reddit.exchange_code(code)
    assert caught.value.error_type == "invalid_grant"


async def test_a_temporary_authorization_cannot_be_linked(sandbox, reddit):
    code = await authorize(reddit, duration="temporary")
    with pytest.raises(RedditAuthError, match="duration=permanent"):
        await reddit.link_with_code(code)


async def test_the_authorize_page_can_name_the_user(sandbox, reddit):
    await sandbox.configure(authorize_as="bob_the_poster")
    account = await reddit.link_with_code(await authorize(reddit))
    assert (await account.me()).name == "bob_the_poster"


async def test_wrong_password_is_a_token_response_with_error(sandbox, reddit):
    await reddit.account_from_password("carol", "right").me()  # creates the account
    with pytest.raises(RedditAuthError) as caught:
        await reddit.account_from_password("carol", "wrong").me()
    assert caught.value.error_type == "invalid_grant"
    assert "link the account again" in str(caught.value)


async def test_wrong_client_secret_is_refused(sandbox, reddit):
    await reddit.account_from_password("alice", "pw").me()  # the sandbox learns the app's secret
    async with RedditClient(make_config(sandbox.url, client_secret="stolen")) as impostor:
        with pytest.raises(RedditAuthError, match="app's credentials") as caught:
            await impostor.account_from_password("alice", "pw").me()
    assert caught.value.error_type == "invalid_client" and caught.value.status == 401


async def requests_after(account, clock: FakeClock, seconds: float) -> int:
    """Move the token clock on, make a request, and count the token requests so far."""
    clock.now += seconds
    await account.me()
    return account.token_requests


async def test_token_is_cached_until_expires_in_minus_the_margin(sandbox):
    await sandbox.configure(token_lifetime=120)
    clock = FakeClock()
    config = make_config(sandbox.url, token_margin_seconds=30)
    async with RedditClient(config, clock=clock) as reddit:
        account = reddit.account_from_password("alice", "pw")
        assert await requests_after(account, clock, 0) == 1
        assert await requests_after(account, clock, 89) == 1  # valid for 120 - 30 = 90 s
        assert await requests_after(account, clock, 2) == 2
        # expires_in is read from every response, never assumed.
        await sandbox.configure(token_lifetime=1000)
        assert await requests_after(account, clock, 91) == 3
        assert await requests_after(account, clock, 969) == 3
        assert await requests_after(account, clock, 2) == 4


async def test_a_short_lived_token_keeps_at_least_half_its_life(sandbox):
    await sandbox.configure(token_lifetime=10)
    clock = FakeClock()
    async with RedditClient(make_config(sandbox.url, token_margin_seconds=60), clock=clock) as reddit:
        account = reddit.account_from_password("alice", "pw")
        assert [await requests_after(account, clock, seconds) for seconds in (0, 4.9, 0.2)] == [1, 1, 2]


async def test_concurrent_requests_share_one_token_request(sandbox, alice):
    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(alice.me)
    assert alice.token_requests == 1


async def test_401_refreshes_once_and_retries(sandbox, reddit):
    account = await reddit.link_with_code(await authorize(reddit))
    await account.me()
    await sandbox.faults(expire_tokens=True)  # Reddit forgot the token before expires_in
    assert (await account.me()).name == "sandbox_user"
    assert account.token_requests == 1  # one refresh-token grant


async def test_script_app_401_gets_a_new_password_grant(sandbox, alice):
    await alice.me()
    await sandbox.faults(expire_tokens=True)
    await alice.me()
    assert alice.token_requests == 2


async def test_persistent_401_means_the_account_needs_relinking(sandbox, alice):
    await alice.me()
    await sandbox.faults(errors=[{"status": 401, "path": "/api/v1/me"}])
    with pytest.raises(RedditAuthError, match="link the account again") as caught:
        await alice.me()
    assert caught.value.status == 401 and caught.value.error_type == "UNAUTHORIZED"
    assert alice.token_requests == 2  # exactly one refresh


async def test_revoked_refresh_token_is_an_auth_error(sandbox, reddit):
    account = await reddit.link_with_code(await authorize(reddit))
    await sandbox.faults(expire_tokens=True, revoke_refresh_tokens=True)
    with pytest.raises(RedditAuthError) as caught:
        await account.me()
    assert caught.value.error_type == "invalid_grant"


async def test_web_flow_needs_a_redirect_uri(sandbox):
    async with RedditClient(make_config(sandbox.url, redirect_uri=None)) as reddit:
        with pytest.raises(ConfigError, match="redirect"):
            reddit.authorize_url("state")
        with pytest.raises(ConfigError, match="redirect"):
            await reddit.exchange_code("code")


def test_config_from_settings_points_both_hosts_at_reddit_url():
    settings = load_settings(environ={
        "THOTTO_REDDIT_URL": "http://127.0.0.1:8765/", "THOTTO_REDDIT_CLIENT_ID": "app",
        "THOTTO_REDDIT_CLIENT_SECRET": "s", "THOTTO_REDDIT_USER_AGENT_USERNAME": "thotto_dev",
        "THOTTO_REDDIT_REQUESTS_PER_MINUTE": "50"})
    config = RedditConfig.from_settings(settings)
    assert config.token_url == config.api_url == "http://127.0.0.1:8765"
    assert config.user_agent.startswith("python:thotto:") and config.user_agent.endswith("(by /u/thotto_dev)")
    assert config.requests_per_minute == 50

    defaults = RedditConfig.from_settings(load_settings(environ={"THOTTO_REDDIT_CLIENT_ID": "app"}))
    assert (defaults.token_url, defaults.api_url) == ("https://www.reddit.com", "https://oauth.reddit.com")
    with pytest.raises(ConfigError, match="THOTTO_REDDIT_CLIENT_ID"):
        RedditConfig.from_settings(load_settings(environ={}))
    with pytest.raises(ConfigError, match="THOTTO_REDDIT_USER_AGENT_PLATFORM"):
        load_settings(environ={"THOTTO_REDDIT_USER_AGENT_PLATFORM": "has:colon"})


def test_user_agent_format():
    assert user_agent("python", "thotto", "1.2.3", "someone") == "python:thotto:1.2.3 (by /u/someone)"
    assert user_agent("linux", "thotto", "1.2.3", None) == "linux:thotto:1.2.3"


async def test_missing_scope_means_linking_again(sandbox, reddit):
    account = await reddit.link_with_code(await authorize(reddit, scopes=("identity",)))
    assert (await account.me()).name == "sandbox_user"
    with pytest.raises(RedditAuthError) as caught:
        await account.submit("test", "Not allowed", text="x")
    assert (caught.value.error_type, caught.value.status) == ("insufficient_scope", 403)
    assert await sandbox.posts() == []
