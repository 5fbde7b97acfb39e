"""Fixtures: a sandbox served over real HTTP on a free port, its control API, and clients."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import trio

from thotto.reddit import RedditClient, RedditConfig
from thotto.reddit.sandbox import SandboxConfig, serve_sandbox

CLIENT_ID = "thotto-test-app"
CLIENT_SECRET = "test-secret"
REDIRECT_URI = "http://127.0.0.1:9/callback"
USER_AGENT = "python:thotto-tests:0.1.0 (by /u/thotto_dev)"


class SandboxServer:
    """A sandbox run in the test's nursery: start, stop (graceful, as a cancellation), restart
    on the same data directory, and its control API."""

    def __init__(self, nursery: trio.Nursery, data_dir: Path, config: SandboxConfig,
                 tls: tuple[str, str] | None = None, clock: Callable[[], float] = time.time):
        self.nursery = nursery
        self.clock = clock
        """The sandbox's wall clock (Unix seconds): dates posts, ends media processing."""
        self.data_dir = data_dir
        self.config = config
        self.tls = tls
        """(certificate, key) to serve HTTPS; the certificate is its own CA."""
        self.port = 0
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._stopped = trio.Event()
        self.port = await self.nursery.start(self._run, self.port)

    async def _run(self, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            with trio.CancelScope() as self._scope:
                await serve_sandbox("127.0.0.1", port, self.data_dir, config=self.config,
                                    clock=self.clock, grace_seconds=0.5, tls=self.tls,
                                    task_status=task_status)
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()
        await self._stopped.wait()

    async def control(self, method: str, path: str, json=None) -> httpx.Response:
        verify = ssl.create_default_context(cafile=self.tls[0]) if self.tls else True
        async with httpx.AsyncClient(base_url=self.url, timeout=10, verify=verify) as http:
            response = await http.request(method, path, json=json)
        response.raise_for_status()
        return response

    async def faults(self, **faults) -> None:
        await self.control("POST", "/_sandbox/faults", json=faults)

    async def configure(self, **config) -> None:
        await self.control("POST", "/_sandbox/config", json=config)

    async def posts(self) -> list[dict]:
        return (await self.control("GET", "/_sandbox/posts")).json()["posts"]


@pytest.fixture
async def sandbox(nursery, tmp_path) -> SandboxServer:
    # A large budget, so that tests other than the rate-limit ones never wait for it.
    server = SandboxServer(nursery, tmp_path / "sandbox", SandboxConfig(rate_budget=100_000))
    await server.start()
    return server


def make_config(url: str, **overrides) -> RedditConfig:
    values = dict(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, user_agent=USER_AGENT,
                  token_url=url, api_url=url, redirect_uri=REDIRECT_URI,
                  requests_per_minute=60_000, timeout_seconds=5.0,
                  image_lookup_delays=(0.05, 0.1, 0.2))
    values.update(overrides)
    return RedditConfig(**values)


@pytest.fixture
async def reddit(sandbox) -> AsyncIterator[RedditClient]:
    async with RedditClient(make_config(sandbox.url)) as client:
        yield client


@pytest.fixture
def alice(reddit):
    """A script-app account (password grant; the sandbox creates it on first use)."""
    return reddit.account_from_password("alice", "alice-password")
