"""Images across processes (issue #15): with Postgres, an image uploaded through one process's API
is published by a worker in another (media live in the store, not on one machine's disk); and a
kill -9 between Reddit's accept and Thotto's record publishes the image once."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import trio
from cryptography.fernet import Fernet

from tests.chaos import faults
from tests.chaos.harness import free_port
from tests.support.images import png
from thotto.usecases.tokens import new_token, token_hash
from thotto.engine.jobs import utcnow
from thotto.scheduler.records import PostStatus
from thotto.store import open_store

pytestmark = pytest.mark.chaos


async def creator_token(chaos) -> str:
    """The scenario's creator (a pro with a linked account), and an API token for them."""
    async with chaos.app() as app:
        await chaos.link(app)
    token = new_token()
    async with open_store(chaos.database_url) as store:
        await store.create_token(chaos.user_id, "images", token_hash(token))
    return token


async def upload_and_schedule(url: str, token: str, title: str, seconds: float) -> dict:
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=15) as api:
        media = await api.post("/api/media", content=png(orientation=1), headers={"content-type": "image/png"})
        assert media.status_code == 201, media.text
        when = (utcnow() + timedelta(seconds=seconds)).isoformat()
        body = {"subreddit": "test", "title": title, "kind": "image", "mediaIds": [media.json()["id"]],
                "scheduledFor": when}
        response = await api.post("/api/scheduled-posts", json=body)
        assert response.status_code == 201, response.text
        return response.json()["posts"][0]


async def published_once(chaos, post_id: int, title: str, timeout: float = 60) -> None:
    async with open_store(chaos.database_url) as store:

        async def published() -> bool:
            return (await store.get_post(post_id)).status is PostStatus.PUBLISHED

        await chaos.wait_for(f"post {post_id} published", published, timeout=timeout)
        post = await store.get_post(post_id)
    records = [r for r in chaos.sandbox.record() if r["title"] == title]
    assert len(records) == 1, records
    assert records[0]["kind"] == "image" and records[0]["id"] == post.reddit_id


async def test_an_image_uploaded_through_one_process_is_published_by_another(make_chaos, postgres_dsn):
    # Two machines share the database and the key, nothing else.
    chaos = make_chaos(postgres_dsn, encryption_key=Fernet.generate_key().decode())
    token = await creator_token(chaos)
    port = free_port()
    api = chaos.thotto("api", serve_api=True, api_port=port, role="api")  # takes requests, runs no job
    await api.start()
    post = await upload_and_schedule(f"http://127.0.0.1:{port}", token, "Uploaded here, posted there", 2)
    await trio.sleep(3)  # due now, and the API process has no worker to publish it
    assert not chaos.sandbox.record()
    worker = chaos.thotto("worker", role="worker", data_dir=str(chaos.tmp_path / "elsewhere"))
    await worker.start()
    await published_once(chaos, post["id"], "Uploaded here, posted there")


async def test_a_kill_between_reddits_accept_and_the_record_publishes_the_image_once(make_chaos, postgres_dsn):
    chaos = make_chaos(postgres_dsn, reddit_reconcile_settle_seconds=2)
    token = await creator_token(chaos)
    port = free_port()
    thotto = chaos.thotto(serve_api=True, api_port=port)
    await thotto.start()
    await chaos.sandbox.faults(hold_after_accept=30)  # Reddit has it; Thotto does not know yet
    post = await upload_and_schedule(f"http://127.0.0.1:{port}", token, "Killed while Reddit answered", 3)
    await chaos.wait_for_record(1, timeout=90)
    await faults.kill_9(thotto)
    await chaos.sandbox.faults()
    await thotto.start()
    await published_once(chaos, post["id"], "Killed while Reddit answered")
