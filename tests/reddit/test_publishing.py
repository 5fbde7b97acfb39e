"""Publishing through the engine to the sandbox: at its time, effectively once, through faults.

Real time and real HTTP: the sandbox and the engine share one Trio run, and a virtual clock
would jump forward while HTTP bytes are in flight. Posts are scheduled a second or two ahead.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import msgspec
import pytest
import trio

from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET
from thotto.app import open_app
from thotto.config import Settings
from thotto.engine.jobs import JobState, utcnow
from thotto.scheduler.records import NewPost, NewUser, PostContent, PostStatus, Tier
from thotto.usecases.accounts import link_with_password
from thotto.services import REDDIT_BREAKER


@contextlib.asynccontextmanager
async def publishing_engine(sandbox, tmp_path):
    settings = Settings(
        data_dir=str(tmp_path / "thotto"), reddit_url=sandbox.url, reddit_client_id=CLIENT_ID,
        reddit_client_secret=CLIENT_SECRET, reddit_requests_per_minute=6000, shutdown_grace_seconds=1,
        lease_seconds=10, sweep_interval_seconds=0.5,
    )
    async with open_app(settings) as app:
        app.scheduler.publisher.reconcile_settle_seconds = 0.5
        # Outages in these tests last seconds, not minutes.
        app.services.breakers.configure("reddit.*", REDDIT_BREAKER.with_(open_seconds=1))
        user = await app.store.create_user(NewUser(name="creator", tier=Tier.PRO))
        account = await link_with_password(app.scheduler, user.id, "creator_acct", "secret-password")
        yield app, user, account


async def schedule(app, user, account, *, seconds=1.0, **content):
    content.setdefault("subreddit", "test")
    content.setdefault("title", "Hello from Thotto")
    content.setdefault("text", "body")
    post = NewPost(user_id=user.id, account_id=account.id, content=PostContent(**content),
                   scheduled_for=utcnow() + timedelta(seconds=seconds))
    (stored,) = await app.scheduler.schedule_posts([post])
    return stored


async def wait_for_status(app, post_id, *statuses, timeout=15.0):
    with trio.fail_after(timeout):
        while (post := await app.store.get_post(post_id)).status not in statuses:
            await trio.sleep(0.05)
    return post


async def test_a_scheduled_post_publishes_at_its_time_with_its_url(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        post = await schedule(app, user, account, seconds=1.5)
        published = await wait_for_status(app, post.id, PostStatus.PUBLISHED)
    (record,) = await sandbox.posts()
    assert (record["subreddit"], record["title"], record["author"]) == ("test", "Hello from Thotto", "creator_acct")
    assert record["created_utc"] >= post.scheduled_for.timestamp() - 1  # not before its time
    assert published.reddit_id == record["id"]
    assert published.reddit_url.endswith(record["permalink"])


async def test_a_connection_dropped_after_reddit_accepted_is_reconciled_not_reposted(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        await sandbox.faults(drop_after_accept=1)
        post = await schedule(app, user, account)
        published = await wait_for_status(app, post.id, PostStatus.PUBLISHED)
        job = await app.engine.get(post.job_id)
    records = await sandbox.posts()
    assert len(records) == 1 and published.reddit_id == records[0]["id"]
    assert job.attempt >= 2  # the first attempt's outcome was unknown


async def test_a_last_attempt_whose_reply_is_lost_looks_again_instead_of_failing_a_live_post(sandbox, tmp_path):
    """With no attempt left, failing now could report a post that is live as failed: the
    publisher waits for the listing to settle and finds it."""
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        await sandbox.faults(drop_after_accept=1)
        new = NewPost(user_id=user.id, account_id=account.id, scheduled_for=utcnow() + timedelta(seconds=0.5),
                      content=PostContent(subreddit="test", title="Only one try", text="body"))
        (post,) = await app.store.create_posts([new], max_attempts=1)
        published = await wait_for_status(app, post.id, PostStatus.PUBLISHED, PostStatus.FAILED)
    (record,) = await sandbox.posts()
    assert published.status is PostStatus.PUBLISHED and published.reddit_id == record["id"]


async def test_a_last_attempt_that_reached_nothing_fails_saying_so(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        await sandbox.faults(errors=[{"status": 504, "path": "/api/submit", "count": 1}])
        new = NewPost(user_id=user.id, account_id=account.id, scheduled_for=utcnow() + timedelta(seconds=0.5),
                      content=PostContent(subreddit="test", title="Gateway timeout", text="body"))
        (post,) = await app.store.create_posts([new], max_attempts=1)
        failed = await wait_for_status(app, post.id, PostStatus.PUBLISHED, PostStatus.FAILED)
    assert await sandbox.posts() == []
    assert failed.status is PostStatus.FAILED and "nothing was published" in failed.error
    assert failed.armed_at is None  # known not to be on Reddit: free to reschedule


async def test_a_crash_between_submit_and_record_is_reconciled(sandbox, tmp_path, monkeypatch):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        store = app.store
        real_record = store.record_publication
        crashes = []

        async def crash_once(*args, **kwargs):
            if not crashes:
                crashes.append(True)
                raise RuntimeError("process died before recording the post")
            return await real_record(*args, **kwargs)

        monkeypatch.setattr(store, "record_publication", crash_once)
        post = await schedule(app, user, account)
        published = await wait_for_status(app, post.id, PostStatus.PUBLISHED)
    records = await sandbox.posts()
    assert len(records) == 1 and published.reddit_id == records[0]["id"]


async def test_a_reddit_outage_defers_posts_and_kills_none(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        await sandbox.faults(errors=[{"status": 503, "rate": 1.0}])
        posts = [await schedule(app, user, account, title=f"Post {i}", seconds=0.5) for i in range(3)]
        await trio.sleep(4)
        breakers = app.services.breakers.snapshot()
        states = [(await app.store.get_post(p.id)).status for p in posts]
        assert PostStatus.FAILED not in states
        assert any(b.state != "closed" for b in breakers.values())
        await sandbox.faults()  # Reddit is back
        for post in posts:
            await wait_for_status(app, post.id, PostStatus.PUBLISHED, timeout=60)
    assert sorted(r["title"] for r in await sandbox.posts()) == ["Post 0", "Post 1", "Post 2"]


async def test_a_rate_limit_defers_without_spending_attempts(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        await sandbox.faults(ratelimit={"count": 2, "seconds": 1})
        post = await schedule(app, user, account)
        published = await wait_for_status(app, post.id, PostStatus.PUBLISHED)
        job = await app.engine.get(published.job_id)
    assert job.attempt == 1
    assert len(await sandbox.posts()) == 1


async def test_a_refused_post_fails_with_reddits_reason(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        post = await schedule(app, user, account, seconds=2)
        await sandbox.control("POST", "/_sandbox/subreddits", json=[{"name": "test", "state": "banned"}])
        failed = await wait_for_status(app, post.id, PostStatus.FAILED)
        job = await app.engine.get(post.job_id)
    assert job.state is JobState.DEAD and job.attempt == 1
    assert "SUBREDDIT_NOEXIST" in failed.error  # what Reddit answers for a banned subreddit
    assert await sandbox.posts() == []


async def test_a_refused_login_flags_the_account_for_relinking(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        await sandbox.faults(errors=[{"status": 401, "path": "/api/submit"}])
        post = await schedule(app, user, account)
        failed = await wait_for_status(app, post.id, PostStatus.FAILED)
        flagged = await app.store.get_account(account.id)
    assert flagged.needs_relink
    assert "link the account again" in failed.error


async def test_scheduling_refuses_a_post_that_breaks_a_known_rule(sandbox, tmp_path):
    from thotto.errors import RuleViolation

    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        with pytest.raises(RuleViolation) as refused:
            await schedule(app, user, account, subreddit="links_only")
        assert refused.value.field == "kind"
        assert (await app.store.list_posts(user.id)).posts == []


async def test_the_weekly_community_sync_refreshes_known_rules(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        await schedule(app, user, account, subreddit="test", seconds=3600)  # learns r/test
        assert (await app.store.get_subreddit_rules("test")).allows_self
        await sandbox.control("POST", "/_sandbox/subreddits",
                              json=[{"name": "test", "submission_type": "link"}])
        assert await app.scheduler.sync_communities() == 1
        assert not (await app.store.get_subreddit_rules("test")).allows_self
        status = await app.engine.cron_status("community-sync")
    assert status.schedule == "0 2 * * 1" and status.next_run_at.weekday() == 0


async def test_rules_are_served_from_the_cache_until_the_sync_rewrites_them(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        await schedule(app, user, account, subreddit="test", seconds=3600)
        cache = app.services.cache
        loads = cache.stats().misses
        await schedule(app, user, account, subreddit="test", title="Second", seconds=3600)
        assert cache.stats().misses == loads  # the second scheduling hit the cache
        await sandbox.control("POST", "/_sandbox/subreddits", json=[{"name": "test", "submission_type": "link"}])
        await app.scheduler.sync_communities()  # rewrites r/test's rules and evicts them
        from thotto.errors import RuleViolation
        with pytest.raises(RuleViolation):
            await schedule(app, user, account, subreddit="test", title="Third", seconds=3600)


async def test_a_transient_subreddit_noexist_does_not_kill_the_post(sandbox, tmp_path):
    # Reddit sends SUBREDDIT_NOEXIST now and then for subreddits that exist: three in a row
    # (more than the client's own second try) cost the post an attempt, not its life.
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        app.scheduler.publisher.client.config = msgspec.structs.replace(
            app.scheduler.publisher.client.config, subreddit_noexist_pause=0.05)
        await sandbox.faults(submit_errors=[{"type": "SUBREDDIT_NOEXIST", "count": 3}])
        post = await schedule(app, user, account)
        published = await wait_for_status(app, post.id, PostStatus.PUBLISHED)
        job = await app.engine.get(post.job_id)
    (record,) = await sandbox.posts()
    assert published.reddit_id == record["id"] and job.attempt == 2
