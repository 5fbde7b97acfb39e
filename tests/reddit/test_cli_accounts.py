"""The CLI for self-hosters: create a user, link a Reddit account with a script app's password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio

from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET
from thotto.store import open_store
from thotto.vault import Password, Vault

ROOT = Path(__file__).resolve().parents[2]


def thotto(*args: str, cwd: Path, env: dict, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thotto.cli", *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


async def test_user_add_then_account_link_stores_the_password_encrypted(sandbox, tmp_path):
    env = {**os.environ, "THOTTO_REDDIT_URL": sandbox.url, "THOTTO_REDDIT_CLIENT_ID": CLIENT_ID,
           "THOTTO_REDDIT_CLIENT_SECRET": CLIENT_SECRET}
    await trio.to_thread.run_sync(lambda: thotto("migrate", cwd=tmp_path, env=env))  # a new installation
    added = await trio.to_thread.run_sync(lambda: thotto("user", "add", "alice", "--tier", "pro",
                                                         cwd=tmp_path, env=env))
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "user alice (id 1, tier pro, role user) created"
    linked = await trio.to_thread.run_sync(lambda: thotto(
        "account", "link", "--user", "alice", "--reddit-username", "alice_r", "--password-stdin",
        cwd=tmp_path, env=env, stdin="hunter2\n"))
    assert linked.returncode == 0, linked.stderr
    assert "u/alice_r linked to alice" in linked.stdout and "hunter2" not in linked.stdout
    async with open_store(str(tmp_path / "thotto-data" / "thotto.db")) as store:
        (account,) = await store.list_accounts(1)
    assert b"hunter2" not in account.refresh_token_encrypted
    vault = Vault.for_settings(str(tmp_path / "thotto-data"), None)
    assert vault.open(account.refresh_token_encrypted) == Password(username="alice_r", password="hunter2")


async def test_cli_mistakes_are_one_line_and_exit_2(tmp_path):
    env = {**os.environ}
    await trio.to_thread.run_sync(lambda: thotto("migrate", cwd=tmp_path, env=env))
    cases = [
        (("account", "link", "--user", "nobody", "--reddit-username", "bob", "--password-stdin"),
         "thotto: No user named 'nobody'"),
    ]
    await trio.to_thread.run_sync(lambda: thotto("user", "add", "alice", cwd=tmp_path, env=env))
    cases.append((("user", "add", "alice"), "thotto: The user name 'alice' is taken"))
    for args, message in cases:
        result = await trio.to_thread.run_sync(lambda: thotto(*args, cwd=tmp_path, env=env, stdin="pw\n"))
        assert (result.returncode, result.stderr.strip()) == (2, message)
