"""``thotto init``, ``thotto user add`` and ``thotto user password-link`` print one-time
set-password links (the first start's is in tests/web): each works once, and a new one replaces
the user's earlier one."""

from __future__ import annotations

import json
import re

from tests.api.test_cli import run
from thotto.store import open_store
from thotto.usecases.passwords import link_digest


def token_of(link: str) -> str:
    return link.rsplit("/set-password/", 1)[1]

async def test_init_and_user_add_print_links_and_a_new_link_replaces_the_old(tmp_path):
    init = await run("init", "--json", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    admin_link = json.loads(init.stdout)["password_link"]
    assert admin_link.startswith("http://127.0.0.1:8000/set-password/") and admin_link in init.stderr
    added = await run("user", "add", "bob", cwd=tmp_path)
    assert added.stdout.strip() == "user bob (id 2, tier free, role user) created"
    first = re.search(r"(http://\S+/set-password/\S+)", added.stderr)[1]
    assert "works once, for 24 hours" in added.stderr
    again = await run("user", "password-link", "bob", "--json", cwd=tmp_path)
    second = json.loads(again.stdout)["password_link"]
    assert second != first
    missing = await run("user", "password-link", "nobody", cwd=tmp_path)
    assert missing.returncode == 2 and "nobody" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    async with open_store(str(tmp_path / "thotto-data" / "thotto.db")) as store:
        assert await store.get_password_link(link_digest(token_of(first))) is None  # replaced
        newest = await store.get_password_link(link_digest(token_of(second)))
        assert newest.user_id == 2 and newest.used_at is None
        assert (await store.get_password_link(link_digest(token_of(admin_link)))).user_id == 1
