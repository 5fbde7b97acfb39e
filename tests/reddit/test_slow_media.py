"""A slow confirmation is not an outage (issue #13): image posts Reddit is still processing are
deferred and reconciled, never counted against the breakers, and never posted twice; a post whose
processing Reddit failed ends with Reddit's reason instead of being uploaded again (issue #15).

Real time and real HTTP, like test_publishing: the sandbox's media processing takes seconds.
Images come from the media library (the store), as every image post's do."""

from __future__ import annotations

import msgspec
import trio

from tests.reddit.test_publishing import publishing_engine, schedule, wait_for_status
from tests.support.images import png
from thotto.scheduler.records import MediaKind, MediaRef, NewMedia, PostKind, PostStatus


async def uploaded(app, user) -> int:
    """A PNG in the user's media library: its id."""

    async def chunks():
        yield png(orientation=1)

    media = await app.store.create_media(NewMedia(user_id=user.id, kind=MediaKind.PNG, width=64, height=48),
                                            chunks())
    return media.id


def quick_confirmations(app, **overrides) -> None:
    """Wait briefly for the websocket, look briefly after, then again every half second
    (defaults: 30 s, 30 s)."""
    reddit = app.scheduler.publisher.client
    reddit.config = msgspec.structs.replace(reddit.config, media_confirm_seconds=0.2,
                                            media_pending_seconds=0.5, **overrides)


async def test_slow_image_posts_are_deferred_not_counted_as_failures(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        quick_confirmations(app)
        await sandbox.configure(media_delay=5)
        media = [MediaRef(media_id=await uploaded(app, user)) for _ in range(4)]
        posts = [await schedule(app, user, account, seconds=0.3, title=f"Picture {i}", text=None,
                                kind=PostKind.IMAGE, media=[media[i]]) for i in range(4)]
        with trio.fail_after(10):  # until every post is accepted and still processing
            while len(await sandbox.posts()) < 4:
                await trio.sleep(0.05)
        await trio.sleep(1.5)  # several looks and deferrals each, far past the reconcile settle
        breakers = app.services.breakers.snapshot()
        waiting = [await app.store.get_post(post.id) for post in posts]
        assert PostStatus.FAILED not in {post.status for post in waiting}
        assert breakers and all(b.state == "closed" and b.failures == 0 for b in breakers.values())
        for post in posts:
            published = await wait_for_status(app, post.id, PostStatus.PUBLISHED, timeout=20)
            assert published.reddit_url
        jobs = [await app.engine.get(post.job_id) for post in posts]
        breakers = app.services.breakers.snapshot()
    records = await sandbox.posts()
    assert sorted(record["title"] for record in records) == [f"Picture {i}" for i in range(4)]
    assert all(job.attempt == 1 for job in jobs)  # deferrals spend no attempt
    assert all(b.state == "closed" and b.failures == 0 for b in breakers.values())


async def test_an_image_post_whose_processing_failed_ends_with_reddits_reason(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        quick_confirmations(app)
        await sandbox.faults(media_failures=1)  # Reddit accepts it, then processing fails
        media_id = await uploaded(app, user)
        post = await schedule(app, user, account, seconds=0.3, title="Broken picture", text=None,
                              kind=PostKind.IMAGE, media=[MediaRef(media_id=media_id)])
        failed = await wait_for_status(app, post.id, PostStatus.PUBLISHED, PostStatus.FAILED, timeout=20)
        job = await app.engine.get(post.job_id)
        breakers = app.services.breakers.snapshot()
    assert failed.status is PostStatus.FAILED and "could not process the image" in failed.error, failed.error
    assert job.attempt == 1  # not uploaded again
    assert await sandbox.posts() == []
    assert all(b.failures == 0 for b in breakers.values())
