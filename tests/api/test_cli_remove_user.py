"""``thotto user remove`` as a user runs it (SQLite, the server stopped)."""

from __future__ import annotations

import json

from tests.api.test_cli import run


async def test_user_remove_revokes_tokens_and_refuses_the_last_admin(tmp_path):
    assert (await run("init", cwd=tmp_path)).returncode == 0
    assert (await run("user", "add", "bob", "--tier", "pro", cwd=tmp_path)).returncode == 0
    assert (await run("token", "create", "--user", "bob", cwd=tmp_path)).returncode == 0

    result = await run("user", "remove", "bob", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) | {"id": 0} == {"id": 0, "name": "bob", "posts_cancelled": 0,
                                                      "tokens_revoked": 1, "accounts_unlinked": 0}
    users = json.loads((await run("user", "list", "--json", cwd=tmp_path)).stdout)
    assert [user["name"] for user in users] == ["admin"]

    refused = await run("user", "remove", "admin", cwd=tmp_path)
    assert refused.returncode == 2 and "last admin" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    missing = await run("user", "remove", "bob", cwd=tmp_path)
    assert missing.returncode == 2 and "bob" in missing.stderr


async def test_admin_commands_that_fail_say_so_in_one_line(tmp_path):
    assert (await run("init", cwd=tmp_path)).returncode == 0
    for args in (("token", "revoke", "999"), ("user", "set-tier", "nobody", "pro")):
        result = await run(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("thotto: ") and len(result.stderr.strip().splitlines()) == 1
