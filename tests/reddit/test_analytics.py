"""Engagement analytics through the engine and the sandbox: the analytics run reads scores and
comments through each post's own account, skips a failing account, and invalidates the cached
optimal times, which switch from the community prior to our own engagement."""

from __future__ import annotations

from datetime import timedelta

import trio

from tests.reddit.test_publishing import publishing_engine, schedule, wait_for_status
from thotto.scheduler.records import PostStatus
from thotto.usecases.accounts import link_with_password
from thotto.vault import Password


async def test_the_analytics_run_reads_engagement_and_refreshes_optimal_times(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        other = await link_with_password(app.scheduler, user.id, "other_acct", "other-password")
        posts = [await schedule(app, user, account, title=f"Post {n}", seconds=0.5)
                 for n in range(5)]
        theirs = await schedule(app, user, other, title="Theirs", seconds=0.5)
        for post in [*posts, theirs]:
            await wait_for_status(app, post.id, PostStatus.PUBLISHED)
        published = [await app.store.get_post(post.id) for post in posts]

        before = await app.scheduler.optimal_times("test")  # nothing read yet: the prior, now cached
        assert before.source == "community" and len(before.slots) == 10

        # The other account's login now fails: its post is skipped, the rest still read.
        sealed = app.services.vault.seal(Password(username="other_acct", password="wrong"))
        await app.store.set_account_token(other.id, sealed)
        app.scheduler.publisher.forget(other.id)
        await sandbox.control("POST", "/_sandbox/engagement", json={
            post.reddit_id: {"score": 10 * n, "num_comments": n} for n, post in enumerate(published)})

        assert await app.scheduler.refresh_engagement() == 5
        readings = await app.store.subreddit_engagement("test")
        assert sorted((r.post_id, r.score, r.comments) for r in readings) == [
            (post.id, 10 * n, n) for n, post in enumerate(published)]
        now = app.clock.now()
        unread = await app.store.posts_to_refresh(now - timedelta(days=1), now - timedelta(seconds=30))
        assert [p.id for p in unread] == [theirs.id]

        after = await app.scheduler.optimal_times("test")  # the run invalidated the cached answer
        assert after.source == "engagement" and after.slots[0].score == 100.0
        assert sum(slot.posts for slot in after.slots) == 5
        assert {(s.weekday, s.hour) for s in after.slots} <= {
            (r.published_at.weekday(), r.published_at.hour) for r in readings}

        assert await app.scheduler.refresh_engagement() == 0  # all read moments ago
        status = await app.engine.cron_status("analytics")
    assert status.schedule == "17 * * * *" and status.next_run_at.minute == 17


async def test_the_analytics_run_does_not_hold_up_publishing(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        await sandbox.faults(errors=[{"status": 503, "path": "/api/info"}])
        post = await schedule(app, user, account, seconds=0.5)
        await wait_for_status(app, post.id, PostStatus.PUBLISHED)
        with trio.fail_after(10):
            assert await app.scheduler.refresh_engagement() == 0  # Reddit failing: skipped, logged
        assert (await app.scheduler.optimal_times("test")).source == "community"
