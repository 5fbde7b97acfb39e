"""Reddit's request budget, counted per OAuth app (client id) as Reddit counts it (docs/reddit.md,
"Rate limits"): by the sandbox and by Thotto's limiter alike, and waited for without spending a
post's attempt or tripping a breaker. Real time and real HTTP (see test_publishing.py)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import trio

from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET, make_config
from thotto.breaker import BreakerState
from thotto.config import Settings
from thotto.app import open_app
from thotto.engine.jobs import AttemptOutcome, utcnow
from thotto.scheduler.records import NewPost, NewUser, PostContent, PostStatus, Tier
from thotto.reddit import RedditClient
from thotto.usecases.accounts import link_with_password


async def test_one_budget_is_counted_per_app_across_all_its_accounts(sandbox):
    async with RedditClient(make_config(sandbox.url)) as app, \
            RedditClient(make_config(sandbox.url, client_id="another-app")) as other_app:
        alice = app.account_from_password("alice", "alice-password")
        bob = app.account_from_password("bob", "bob-password")
        carol = other_app.account_from_password("carol", "carol-password")
        await alice.me()
        await bob.me()
        # Bob's answer counts Alice's request: one budget for the app, not one per user.
        assert app.limiter.last.used == 2
        await alice.me()
        assert app.limiter.last.used == 3
        # Another app has its own budget, whoever its users are.
        await carol.me()
        assert other_app.limiter.last.used == 1
    assert alice.client.limiter is bob.client.limiter  # one limiter spaces the app's requests


BUDGET = 10  # requests per window, for the app
WINDOW = 4.0  # seconds
ACCOUNTS, POSTS_EACH = 3, 4


async def test_posts_beyond_the_budget_wait_for_it_without_spending_attempts(sandbox, tmp_path):
    """More posts due at once than the budget allows: they go out at the budget's pace, Reddit
    never has to refuse one (no 429), none spends an attempt, and no breaker trips."""
    await sandbox.configure(rate_budget=BUDGET, rate_window=WINDOW)
    settings = Settings(
        data_dir=str(tmp_path / "thotto"), reddit_url=sandbox.url, reddit_client_id=CLIENT_ID,
        # 80 % of the app's budget: a margin for requests that arrive closer than they were sent.
        reddit_client_secret=CLIENT_SECRET, reddit_requests_per_minute=0.8 * BUDGET * 60 / WINDOW,
        shutdown_grace_seconds=1, lease_seconds=10, sweep_interval_seconds=0.5)
    async with open_app(settings) as app:
        reddit = app.services.reddit
        # Slots further than a second away are not waited for in the job: it is deferred until
        # then (the default is 30 s; the window here is 4 s).
        reddit.config = msgspec.structs.replace(reddit.config, max_queue_seconds=1.0)
        user = await app.store.create_user(NewUser(name="creator", tier=Tier.PRO))
        accounts = [await link_with_password(app.scheduler, user.id, f"acct_{i}", "pw") for i in range(ACCOUNTS)]
        due = utcnow() + timedelta(seconds=8)  # scheduling reads the subreddit's rules: 3 requests
        posts = await app.scheduler.schedule_posts([
            NewPost(user_id=user.id, account_id=account.id, scheduled_for=due,
                    content=PostContent(subreddit="test", title=f"post {i} of {account.id}", text="x"))
            for account in accounts for i in range(POSTS_EACH)])
        with trio.fail_after(90):
            while {(await app.store.get_post(p.id)).status for p in posts} != {PostStatus.PUBLISHED}:
                await trio.sleep(0.2)
        histories = [await app.engine.attempts(p.job_id) for p in posts]
        jobs = [await app.engine.get(p.job_id) for p in posts]
        breakers = [app.services.breakers[f"reddit.client.{CLIENT_ID}"],
                    *(app.services.breakers[f"reddit.account.acct_{i}"] for i in range(ACCOUNTS))]
    outcomes = [attempt.outcome for history in histories for attempt in history]
    waits = [attempt.error or "" for history in histories for attempt in history
             if attempt.outcome is AttemptOutcome.DEFERRED]
    # 3 links, 3 rule reads and 12 submissions against 10 a window: the budget, not Reddit, held some back.
    assert any("rate limit is spent" in reason for reason in waits)
    assert not any("429" in reason for reason in waits)  # Thotto kept within it: never refused
    assert AttemptOutcome.RETRY not in outcomes
    assert {job.attempt for job in jobs} == {1}  # deferrals refund their attempt
    assert {breaker.state for breaker in breakers} == {BreakerState.CLOSED}
    assert len(await sandbox.posts()) == ACCOUNTS * POSTS_EACH
