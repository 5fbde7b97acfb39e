"""Revoking a token, lowering a tier and removing a user take effect in every process within 1 s,
with Redis and without it (then over Postgres LISTEN/NOTIFY), whether done through one server's
API or through the ``thotto`` command.

Two real Thotto servers (``tests.support.chaos_process --serve-api``, role ``api``) share one
private Postgres; each test warms the second server's cache with a token, changes something
through the first server (or the CLI), then polls the second with a 1 s deadline.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import trio
from cryptography.fernet import Fernet

from tests.chaos.harness import ROOT, _reap, _wait_for_line, child_env, free_port
from thotto.usecases.tokens import mint
from thotto.scheduler.records import NewAccount, NewUser, Role, Tier
from thotto.store import open_store

pytestmark = pytest.mark.postgres

# The promise. Polling starts once the change has returned (the API's answer, the CLI's exit).
DEADLINE = 1.0


@dataclass
class Server:
    process: subprocess.Popen
    url: str

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"authorization": f"Bearer {token}"}, timeout=10)


@dataclass
class Cluster:
    dsn: str
    env: dict[str, str]
    first: Server
    second: Server
    tmp: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """``thotto ARGS`` as an operator runs it, from a machine with its own data dir."""
        data_dir = self.tmp / "cli"
        data_dir.mkdir(exist_ok=True)
        env = child_env({**self.env, "THOTTO_DATA_DIR": str(data_dir)})
        return subprocess.run([sys.executable, "-m", "thotto.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    async def run_cli(self, *args: str) -> dict:
        result = await trio.to_thread.run_sync(lambda: self.cli(*args, "--json"))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


async def start_server(env: dict[str, str], tmp: Path, name: str) -> Server:
    port = free_port()
    log = tmp / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.chaos_process", "--serve-api"], cwd=ROOT,
        env=child_env({**env, "THOTTO_DATA_DIR": str(tmp / name), "THOTTO_API_PORT": str(port)}),
        stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
    )
    try:
        await _wait_for_line(process, "ready", 60, f"server {name}", log)
    except BaseException:
        _reap(process)
        raise
    return Server(process, f"http://127.0.0.1:{port}")


@pytest.fixture(params=["postgres-only", "redis"])
async def cluster(request, postgres_dsn, tmp_path) -> AsyncIterator[Cluster]:
    env = {"THOTTO_DATABASE_URL": postgres_dsn, "THOTTO_ROLE": "api", "THOTTO_API_HOST": "127.0.0.1",
           "THOTTO_ENCRYPTION_KEY": Fernet.generate_key().decode(), "THOTTO_LOG_LEVEL": "INFO",
           "THOTTO_API_REQUESTS_PER_MINUTE": "60000", "THOTTO_API_BURST": "1000"}
    if request.param == "redis":
        env["THOTTO_REDIS_URL"] = request.getfixturevalue("redis_url")
        env["THOTTO_REDIS_NAMESPACE"] = f"t{uuid.uuid4().hex[:12]}"
    servers: list[Server] = []
    try:
        for name in ("first", "second"):
            servers.append(await start_server(env, tmp_path, name))
        yield Cluster(postgres_dsn, env, servers[0], servers[1], tmp_path)
    finally:
        for server in servers:
            _reap(server.process)


@contextlib.asynccontextmanager
async def store_of(cluster: Cluster):
    async with open_store(cluster.dsn) as store:
        yield store


async def make_user(cluster: Cluster, name: str, tier: Tier = Tier.PRO, role: Role = Role.USER,
                    tokens: int = 1) -> tuple[int, list[tuple[int, str]]]:
    """A user (with a linked account, so they could schedule) and ``tokens`` of their tokens."""
    async with store_of(cluster) as store:
        user = await store.create_user(NewUser(name=name, tier=tier, role=role))
        await store.create_account(NewAccount(user_id=user.id, reddit_username=f"{name}_r",
                                              refresh_token_encrypted=b"sealed"))
        minted = [await mint(store, None, user.id, f"t{i}") for i in range(tokens)]
    return user.id, [(record.id, token) for record, token in minted]


async def status(server: Server, token: str, method: str = "GET", path: str = "/api/me", **body) -> int:
    async with server.client(token) as client:
        return (await client.request(method, path, **body)).status_code


async def until_refused(server: Server, token: str) -> float:
    """Poll ``GET /api/me`` until 401; the seconds it took. Fails past the deadline."""
    started = trio.current_time()
    with trio.fail_after(DEADLINE):
        while await status(server, token) != 401:
            await trio.sleep(0.02)
    return trio.current_time() - started


def post_body() -> dict:
    when = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    return {"json": {"subreddit": "test", "title": f"Post {uuid.uuid4().hex[:8]}", "text": "x",
                     "scheduledFor": when}}


async def test_a_revoked_token_is_refused_by_the_other_process_within_1s(cluster):
    _, [(first_id, first), (second_id, second)] = await make_user(cluster, "alice", tokens=2)
    for token in (first, second):
        assert await status(cluster.second, token) == 200  # cached in the second server

    # Revoked through the first server's API (the token revokes itself).
    assert await status(cluster.first, first, "DELETE", f"/api/tokens/{first_id}") == 200
    # Minting checks the store: nothing is minted with it anywhere, even at once.
    assert await status(cluster.second, first, "POST", "/api/tokens", json={"name": "sneaky"}) == 401
    await until_refused(cluster.second, first)
    assert await status(cluster.second, second) == 200  # cached again (the revocation evicted it)

    # Revoked through the CLI, which used to leave it valid in running servers.
    assert (await cluster.run_cli("token", "revoke", str(second_id)))["revoked_at"]
    await until_refused(cluster.second, second)
    assert await status(cluster.first, second) == 401


async def test_tier_changes_and_removals_reach_the_other_process_within_1s(cluster):
    pro_id, [(_, pro)] = await make_user(cluster, "pro")
    _, [(_, admin)] = await make_user(cluster, "root", Tier.PREMIUM, Role.ADMIN)
    assert await status(cluster.second, pro, "POST", "/api/scheduled-posts", **post_body()) == 201

    # Lowered to free through the first server: the second stops letting them schedule.
    assert await status(cluster.first, admin, "PUT", f"/api/users/{pro_id}/tier", json={"tier": "free"}) == 200
    with trio.fail_after(DEADLINE):
        while await status(cluster.second, pro, "POST", "/api/scheduled-posts", **post_body()) != 403:
            await trio.sleep(0.02)

    # Raised again through the CLI: the second server lets them schedule again...
    assert (await cluster.run_cli("user", "set-tier", "pro", "pro"))["tier"] == "pro"
    with trio.fail_after(DEADLINE):
        while await status(cluster.second, pro, "POST", "/api/scheduled-posts", **post_body()) != 201:
            await trio.sleep(0.02)
    # ...and lowered through the CLI: it stops them again.
    assert (await cluster.run_cli("user", "set-tier", "pro", "starter"))["tier"] == "starter"
    with trio.fail_after(DEADLINE):
        while await status(cluster.second, pro, "POST", "/api/scheduled-posts", **post_body()) != 403:
            await trio.sleep(0.02)

    # Removed through the first server's API.
    assert await status(cluster.first, admin, "DELETE", f"/api/users/{pro_id}") == 200
    await until_refused(cluster.second, pro)

    # Removed through the CLI.
    _, [(_, other)] = await make_user(cluster, "other")
    assert await status(cluster.second, other) == 200
    removed = await cluster.run_cli("user", "remove", "other")
    assert removed["tokens_revoked"] == 1
    await until_refused(cluster.second, other)
