"""Fixtures: Thotto serving its HTTP API on a free port (real sockets), publishing to a sandbox,
with users of every tier, each with a token and (pro and premium) a linked Reddit account."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import httpx
import pytest

from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET, sandbox  # noqa: F401 (a fixture)
from thotto.config import Settings

from thotto.scheduler.records import NewUser, Role, Tier
from thotto.usecases import tokens
from thotto.usecases.accounts import link_with_password
from thotto.app import App
from thotto.app import open_app

REDIRECT_URI = "http://127.0.0.1:9/api/accounts/callback"


@dataclass
class ApiUser:
    name: str
    id: int
    token: str
    client: httpx.AsyncClient


@dataclass
class Api:
    app: App
    url: str
    users: dict[str, ApiUser] = field(default_factory=dict)

    def __getattr__(self, name: str) -> ApiUser:
        try:
            return self.users[name]
        except KeyError:
            raise AttributeError(name) from None

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=15)


def api_settings(tmp_path, sandbox_url: str, **overrides) -> Settings:
    values = dict(
        data_dir=str(tmp_path / "thotto"), api_port=0, reddit_url=sandbox_url,
        reddit_client_id=CLIENT_ID, reddit_client_secret=CLIENT_SECRET, reddit_redirect_uri=REDIRECT_URI,
        reddit_requests_per_minute=6000, shutdown_grace_seconds=1, lease_seconds=10,
        sweep_interval_seconds=0.5, api_requests_per_minute=60_000, api_burst=1000,
    )
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def serving(settings: Settings, clock=None):
    """Thotto with its API, and users admin (premium), pro, premium, free and starter; pro and
    premium each have a linked account (pro_acct, premium_acct). ``clock``: the engine's."""
    async with open_app(settings, serve_api=True, clock=clock) as app, contextlib.AsyncExitStack() as stack:
        server = app.tree.api
        api = Api(app, server.url)
        for name, tier, role in [("admin", Tier.PREMIUM, Role.ADMIN), ("pro", Tier.PRO, Role.USER),
                                 ("premium", Tier.PREMIUM, Role.USER), ("free", Tier.FREE, Role.USER),
                                 ("starter", Tier.STARTER, Role.USER)]:
            user = await app.store.create_user(NewUser(name=name, tier=tier, role=role))
            _, token = await tokens.mint(app.store, app.services.cache, user.id, "tests")
            client = await stack.enter_async_context(api.client(token))
            api.users[name] = ApiUser(name, user.id, token, client)
            if name in ("pro", "premium") and app.scheduler.publisher is not None:
                await link_with_password(app.scheduler, user.id, f"{name}_acct", "secret-password")
        yield api


@pytest.fixture
async def api(sandbox, tmp_path):
    async with serving(api_settings(tmp_path, sandbox.url)) as api:
        yield api
