"""The client's connection pools (thotto/reddit/client.py, HTTP_SHARDS): accounts are spread over
them, and each account's requests, its token grant included, all go through its own."""

from __future__ import annotations

import time


async def test_each_account_sends_all_its_requests_through_one_pool_of_its_own(reddit, alice):
    bob = reddit.account_from_password("bob", "bob-password")
    assert alice.pool is not bob.pool
    sent = {alice.pool: [], bob.pool: []}
    for pool, paths in sent.items():

        async def note(request, paths=paths):
            paths.append(request.url.path)

        pool.event_hooks = {"request": [note]}
    since = time.time() - 60
    await alice.submit("test", "Alice's post", text="body")
    await bob.submit("test", "Bob's post", text="body")
    assert await alice.find_submission("test", "Alice's post", since=since) is not None
    assert sent[alice.pool] == ["/api/v1/access_token", "/api/submit", "/user/alice/submitted"]
    assert sent[bob.pool] == ["/api/v1/access_token", "/api/submit"]
