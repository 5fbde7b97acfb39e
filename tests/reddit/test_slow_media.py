"""A slow confirmation is not an outage (issue #13): image posts Reddit is still processing are
deferred and reconciled, never counted against the breakers, and never posted twice.

Real time and real HTTP, like test_publishing: the sandbox's media processing takes seconds."""

from __future__ import annotations

import msgspec
import trio

from tests.reddit.test_publishing import publishing_engine, schedule, wait_for_status
from tests.reddit.test_submit import PNG
from thotto.messages import PostKind, PostStatus


async def test_slow_image_posts_are_deferred_not_counted_as_failures(sandbox, tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    async with publishing_engine(sandbox, tmp_path) as (engine, user, account):
        reddit = engine.publisher.client
        # Look briefly after submitting, then again every half second (defaults: 7.5 s, 30 s).
        reddit.config = msgspec.structs.replace(reddit.config, image_lookup_delays=(0.05, 0.1),
                                                media_pending_seconds=0.5)
        await sandbox.configure(media_delay=5)
        posts = [await schedule(engine, user, account, seconds=0.3, title=f"Picture {i}", text=None,
                                kind=PostKind.IMAGE, image_path=str(image)) for i in range(4)]
        with trio.fail_after(10):  # until every post is accepted and still processing
            while len(await sandbox.posts()) < 4:
                await trio.sleep(0.05)
        await trio.sleep(1.5)  # several looks and deferrals each, far past the reconcile settle
        breakers = engine.services.breakers.snapshot()
        waiting = [await engine.store.get_post(post.id) for post in posts]
        assert PostStatus.FAILED not in {post.status for post in waiting}
        assert breakers and all(b.state == "closed" and b.failures == 0 for b in breakers.values())
        for post in posts:
            published = await wait_for_status(engine, post.id, PostStatus.PUBLISHED, timeout=20)
            assert published.reddit_url
        jobs = [await engine.get(post.job_id) for post in posts]
        breakers = engine.services.breakers.snapshot()
    records = await sandbox.posts()
    assert sorted(record["title"] for record in records) == [f"Picture {i}" for i in range(4)]
    assert all(job.attempt == 1 for job in jobs)  # deferrals spend no attempt
    assert all(b.state == "closed" and b.failures == 0 for b in breakers.values())


async def test_an_image_post_whose_processing_failed_is_submitted_again_once_settled(sandbox, tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    async with publishing_engine(sandbox, tmp_path) as (engine, user, account):
        reddit = engine.publisher.client
        reddit.config = msgspec.structs.replace(reddit.config, image_lookup_delays=(0.05,),
                                                media_pending_seconds=0.3)
        engine.publisher.media_settle_seconds = 1.5  # ten minutes in production
        await sandbox.faults(media_failures=1)  # Reddit accepts it, then processing fails
        post = await schedule(engine, user, account, seconds=0.3, title="Second try", text=None,
                              kind=PostKind.IMAGE, image_path=str(image))
        published = await wait_for_status(engine, post.id, PostStatus.PUBLISHED, timeout=20)
        breakers = engine.services.breakers.snapshot()
    (record,) = await sandbox.posts()  # the failed one never existed; the second try did
    assert (record["title"], record["id"]) == ("Second try", published.reddit_id)
    assert all(b.failures == 0 for b in breakers.values())
