"""The Reddit scheduler: the product built on the job engine.

A :class:`Scheduler` checks and stores posts (:class:`~thotto.scheduler.posts.PostScheduler`),
links Reddit accounts, and installs into an engine (:meth:`~Scheduler.install`) the handlers that publish
posts and deliver webhooks; :meth:`~Scheduler.add_crons` adds its cron jobs (media retention,
community sync, engagement analytics). The engine never calls it: it only runs the jobs the
scheduler's handlers are registered for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from thotto.engine.engine import Engine
from thotto.engine.errors import DeferJob, JobError, StoreUnavailable, ThottoError
from thotto.scheduler import analytics, webhooks
from thotto.scheduler.community import fetch_rules
from thotto.scheduler.media import purge_unused_media
from thotto.scheduler.posts import PostScheduler, post_list_tag
from thotto.scheduler.publishing import Publisher
from thotto.scheduler.records import Account, NewPost, OptimalTimes, Post, SubredditRules
from thotto.scheduler.recurrence import schedule_next_occurrence
from thotto.services import Services
from thotto.store.base import POST_JOB_KIND

log = logging.getLogger("thotto.scheduler")

PUBLISH_TIMEOUT_SECONDS = 120.0


class Scheduler:
    """Reddit posts on the job engine. Build one per process with its shared services, then
    :meth:`install` it into the engine and :meth:`add_crons`."""

    def __init__(self, services: Services):
        self.services = services
        self.store = services.store
        self.settings = services.settings
        self.clock = services.clock
        self.posts = PostScheduler(self.store, services.clock.now,
                                   self._fetch_rules if services.reddit else None, services.cache)
        self.publisher: Publisher | None = None
        if services.reddit is not None:
            self.publisher = Publisher(self.store, services.reddit, services.vault,
                                       services.breakers, services.clock.now)
            self.publisher.reconcile_settle_seconds = self.settings.reddit_reconcile_settle_seconds
            self.publisher.on_published = self._after_publication
        self.webhook_sender = webhooks.Sender(self.settings, services.metrics)

    def install(self, engine: Engine) -> None:
        """Register the scheduler's handlers: publishing posts (with Reddit configured) and
        delivering webhooks."""
        if self.publisher is not None:
            engine.register_handler(POST_JOB_KIND, self.publisher.handle,
                                    timeout_seconds=PUBLISH_TIMEOUT_SECONDS, io_bound=True)
        engine.register_handler(webhooks.WEBHOOK_KIND, self.webhook_sender.handle,
                                timeout_seconds=webhooks.TIMEOUT_SECONDS * 2,
                                retry=webhooks.retry_policy(self.settings), io_bound=True)

    async def add_crons(self, engine: Engine) -> None:
        """Media retention (media no post uses, once ``media_retention_days`` old:
        :func:`thotto.scheduler.media.purge_unused_media`) daily at 03:30 UTC; with Reddit
        configured, the community sync weekly on Monday 02:00 UTC and the analytics job (published
        posts' engagement, see :meth:`refresh_engagement`) hourly at minute 17, off the hour's
        rush of posts."""

        async def media_retention() -> None:
            purged = await purge_unused_media(self.store, self.settings, self.clock.now())
            log.info("media retention: deleted %d media no post uses", purged)

        await engine.add_cron("media-retention", "30 3 * * *", media_retention)
        if self.publisher is not None:
            await engine.add_cron("community-sync", "0 2 * * 1", self.sync_communities)
            await engine.add_cron("analytics", "17 * * * *", self.refresh_engagement)

    # --- posts ----------------------------------------------------------

    async def schedule_posts(self, posts: Sequence[NewPost]) -> list[Post]:
        """Check and store posts to publish at their ``scheduled_for`` (see PostScheduler)."""
        return await self.posts.schedule(posts)

    async def sync_communities(self) -> int:
        """Refresh the stored rules of every known subreddit through a working linked account;
        returns how many were refreshed. A subreddit that fails to refresh keeps its old rules."""
        account = await self._any_working_account()
        if account is None:
            log.info("community sync: no linked Reddit account to read rules with")
            return 0
        refreshed = 0
        for known in await self.store.list_subreddit_rules():
            try:
                rules = await self._fetch_rules(account.id, known.display_name)
            except JobError as error:
                log.warning("community sync: r/%s not refreshed: %s", known.display_name, error)
                continue
            await self.posts.save_rules(rules)
            refreshed += 1
        return refreshed

    async def _after_publication(self, post: Post) -> None:
        """Schedule a published recurring post's next occurrence, exactly once (see
        :func:`thotto.scheduler.recurrence.schedule_next_occurrence`; the Publisher calls this again on
        every later run of the post's job, so a crash in between loses nothing)."""
        await self.services.cache.invalidate_tags(post_list_tag(post.user_id))
        try:
            if await schedule_next_occurrence(self.store, post, self.clock.now()) is not None:
                # A list read since the invalidation above may lack the next occurrence.
                await self.services.cache.invalidate_tags(post_list_tag(post.user_id))
            await self._announce_publication(post)
        except StoreUnavailable as error:
            # The post is out; try again when storage is back, without spending an attempt.
            raise DeferJob(f"post {post.id} is published; its next occurrence waits for the store",
                           until=self.clock.now() + timedelta(seconds=30)) from error
        except ThottoError:  # e.g. the account is gone: the series ends, the post stays published
            log.exception("post %d is published, but its next occurrence could not be scheduled",
                          post.id)

    async def _announce_publication(self, post: Post) -> None:
        """The ``post_published`` webhook (one live delivery per post, however often this runs:
        it runs again on every later run of the post's job)."""
        if not self.settings.alert_webhook_url:
            return
        recorded = post if post.reddit_url else await self.store.get_post(post.id)
        user = await self.store.get_user(post.user_id)
        await webhooks.announce(self.services, "post_published", {
            "post_id": post.id, "user_id": post.user_id, "user": user.name,
            "subreddit": post.content.subreddit, "title": post.content.title,
            "reddit_id": recorded.reddit_id, "reddit_url": recorded.reddit_url,
            "scheduled_for": post.scheduled_for.isoformat()}, dedupe_key=f"post_published:{post.id}")

    async def refresh_engagement(self) -> int:
        """Read published posts' scores and comments from Reddit and store them, then drop
        cached optimal times (the hourly ``analytics`` cron job; see
        :func:`thotto.scheduler.analytics.refresh_engagement`). Returns how many posts were updated."""
        assert self.publisher is not None
        return await analytics.refresh_engagement(self.store, self.publisher.reddit_account,
                                                  self.services.cache, self.clock.now)

    async def optimal_times(self, subreddit: str) -> OptimalTimes:
        """The best hours of the week (UTC) to post in ``subreddit``: from our published posts'
        engagement once there are enough of them, else a generic prior; cached for an hour and
        invalidated by every analytics run (see :func:`thotto.scheduler.analytics.optimal_times`)."""
        return await analytics.optimal_times(self.store, self.services.cache, subreddit,
                                             self.clock.now)

    async def _any_working_account(self) -> Account | None:
        for user in await self.store.list_users():
            for account in await self.store.list_accounts(user.id):
                if not account.needs_relink:
                    return account
        return None

    async def _fetch_rules(self, account_id: int, subreddit: str) -> SubredditRules:
        assert self.publisher is not None
        account = await self.store.get_account(account_id)
        return await fetch_rules(self.publisher.reddit_account(account), subreddit, self.clock.now)
