"""Publishing a scheduled post to Reddit, effectively once (docs/architecture.md, "The life of a post").

The ``reddit.submit`` handler. Before it calls Reddit it durably *arms* the post (records when
the first attempt that may reach Reddit began). A later attempt that finds the post armed but
with no Reddit id recorded cannot know whether Reddit accepted the earlier submission (a crash,
a timeout, a connection dropped after Reddit accepted): it first *reconciles*, looking for the
post in the account's own submissions, and records it instead of posting again. Reddit's
listings can lag a moment behind a submission, so an armed post that was armed less than
``RECONCILE_SETTLE_SECONDS`` ago and is not listed yet is deferred and looked for again rather
than resubmitted. An image post Reddit accepted but is still processing is deferred, not
failed: it is looked for again and again for ``MEDIA_SETTLE_SECONDS`` before anything is
resubmitted, and no breaker counts it (a slow confirmation is not an outage).

Errors are the client's classes (``thotto.errors``): rate limits defer the job, 5xx and
timeouts retry it, permanent refusals dead-letter it with Reddit's reason, and a refused login
flags the account for re-linking.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import trio

from thotto.breaker import Breakers, BreakerState
from thotto.engine.errors import DeferJob, NotFound, PermanentJobError
from thotto.engine.handlers import JobContext
from thotto.errors import (
    RedditAuthError,
    RedditMediaPending,
    RedditOutcomeUnknown,
    RedditPermanent,
    RedditRateLimited,
    RedditRetryable,
)
from thotto.scheduler.records import Account, MediaRef, Post, PostKind
from thotto.reddit.client import ImageUpload, RedditAccount, RedditClient
from thotto.store.base import Store
from thotto.store.lifecycle import RECONCILE_SETTLE_SECONDS
from thotto.vault import Password, RefreshToken, Vault

log = logging.getLogger("thotto.publishing")

MEDIA_SETTLE_SECONDS = 600.0  # an accepted image post Reddit is still processing
CLOCK_SKEW_SECONDS = 120.0  # our clock against Reddit's created_utc
APP_REFUSED = "invalid_client"  # Reddit refused the OAuth app itself
# Errors that mean Reddit answered and did not take the post (RedditOutcomeUnknown, a
# RedditRetryable, is the exception: it may have).
REFUSALS = (RedditRateLimited, RedditPermanent, RedditAuthError, RedditRetryable)


class Publisher:
    """Publishes posts for the jobs of kind ``reddit.submit``; one per process."""

    def __init__(self, store: Store, client: RedditClient, vault: Vault, breakers: Breakers,
                 now: Callable[[], datetime]):
        self.store = store
        self.client = client
        self.vault = vault
        self.breakers = breakers
        self.now = now
        self.reconcile_settle_seconds = RECONCILE_SETTLE_SECONDS
        self.media_settle_seconds = MEDIA_SETTLE_SECONDS
        self._accounts: dict[int, RedditAccount] = {}  # keeps access tokens between posts
        # post id -> trio.current_time() of our last submit, oldest first
        self._sent_at: dict[int, float] = {}
        # Posts whose image Reddit accepted and was still processing when we last looked.
        # In memory only: after a restart such a post settles as any other.
        self._media_pending: set[int] = set()
        self.on_published: Callable[[Post], Awaitable[None]] | None = None
        """Called with the post once its publication is recorded, and again whenever its job
        runs again afterwards, so it must be idempotent (the Engine schedules a recurring
        post's next occurrence here)."""

    async def handle(self, ctx: JobContext) -> None:
        post = await self.store.get_post_by_job(ctx.job.id)
        if post.reddit_id is not None:
            # Published and recorded; only the job's own outcome, or what follows a
            # publication (a crash in between), had been lost.
            await self._after_publication(post)
            return
        if post.content.image_path:
            raise PermanentJobError(
                f"Post {post.id} names a file on the server ({post.content.image_path}), which Thotto "
                "no longer reads; upload the image (POST /api/media), edit the post's mediaIds and "
                "schedule it again")
        account = await self.store.get_account(post.account_id)
        if account.needs_relink:
            raise PermanentJobError(f"Reddit account u/{account.reddit_username} must be linked again",
                                    cause="account")
        reddit = self.reddit_account(account)
        try:
            async with self._guard(account):
                reconciled = post.armed_at is not None and await self._reconcile(reddit, post)
                if not reconciled:
                    await self.store.arm_post(post.id)
                    result = await self._submit_armed(reddit, post)
        except RedditOutcomeUnknown:
            if ctx.attempt < ctx.job.max_attempts:
                raise  # the next attempt reconciles first
            await self._last_look(reddit, post)
            reconciled = True
        except RedditAuthError as error:
            if error.error_type != APP_REFUSED:  # the app's own credentials: no account's fault
                await self.store.set_needs_relink(account.id, True)
            self._accounts.pop(account.id, None)
            raise
        if not reconciled:
            await self.store.record_publication(post.id, result.id, result.url)
            log.info("published post %d as %s", post.id, result.url,
                     extra={"job_id": ctx.job.id, "attempt": ctx.attempt, "post_id": post.id,
                            "account": account.reddit_username})
        # Outside the breakers' guard: a failure here is no fault of Reddit's.
        await self._after_publication(post)

    async def _after_publication(self, post: Post) -> None:
        """Run :attr:`on_published`. It runs again on every later run of a recorded post's job,
        so a failure here (the job retries) or a crash just before it loses nothing."""
        if self.on_published is not None:
            await self.on_published(post)

    async def _reconcile(self, reddit: RedditAccount, post: Post, *, settled: bool = False) -> bool:
        """Did an earlier attempt publish this post? Record it if so. Defers while Reddit's
        listing may still be catching up with a recent attempt (unless the caller waited for it
        to settle)."""
        content = post.content
        since = post.armed_at.timestamp() - CLOCK_SKEW_SECONDS
        found = await reddit.find_submission(content.subreddit, content.title, since=since)
        if found is not None:
            self._media_pending.discard(post.id)
            await self.store.record_publication(post.id, found.id, self.client.post_url(found))
            log.warning("post %d was already on Reddit as %s (an earlier attempt's outcome was "
                        "unknown); recorded it instead of posting again", post.id, found.id)
            return True
        if settled:
            return False
        processing = post.id in self._media_pending
        settle = self.media_settle_seconds if processing else self.reconcile_settle_seconds
        settled_at = post.armed_at + timedelta(seconds=settle)
        sent_at = self._sent_at.get(post.id)
        if sent_at is not None:
            # This process sent the earlier attempt: time its settling on the monotonic clock
            # too. After the wall clock jumps forward, armed_at looks long past while that
            # request may still be in flight (its lease looked expired and it was taken back).
            settling = sent_at + settle - trio.current_time()
            settled_at = max(settled_at, self.now() + timedelta(seconds=settling))
        if self.now() < settled_at:
            if processing:
                look_again = self.now() + timedelta(seconds=self.client.config.media_pending_seconds)
                raise DeferJob("Reddit is still processing the image post", until=min(look_again, settled_at))
            raise DeferJob("checking whether an interrupted attempt reached Reddit", until=settled_at)
        self._media_pending.discard(post.id)
        return False

    async def _submit_armed(self, reddit: RedditAccount, post: Post):
        """Submit an armed post. When Reddit answers with a refusal, nothing was posted: disarm
        it, so its creator may edit or cancel it again while it waits for its next attempt.
        Reconciliation has already ruled out earlier attempts (or there were none), so nothing
        of this post is in doubt any more. An unknown outcome keeps it armed."""
        try:
            return await self._submit(reddit, post)
        except REFUSALS as error:
            if not isinstance(error, RedditOutcomeUnknown):
                await self.store.disarm_post(post.id)
            raise

    async def _last_look(self, reddit: RedditAccount, post: Post) -> None:
        """The last attempt's outcome is unknown. Failing the post now could report a post that
        is live on Reddit as failed, so wait until Reddit's listing has settled and look once
        more: record it if it is there, else it fails, known not to be on Reddit."""
        await trio.sleep(self.reconcile_settle_seconds)
        armed = await self.store.get_post(post.id)
        if await self._reconcile(reddit, armed, settled=True):
            return
        await self.store.disarm_post(post.id)
        raise PermanentJobError(
            f"Reddit never confirmed post {post.id} to r/{post.content.subreddit} and it is not "
            "among the account's submissions: nothing was published; reschedule it to try again",
            cause="system")

    async def _submit(self, reddit: RedditAccount, post: Post):
        now = trio.current_time()
        self._forget_settled_sends(now)
        self._sent_at.pop(post.id, None)  # to the end: the dict stays in the order of sending
        self._sent_at[post.id] = now
        content = post.content
        try:
            if content.kind in (PostKind.IMAGE, PostKind.GALLERY):
                items = [await self._media_item(post, ref) for ref in content.media]
                return await reddit.submit_media(
                    content.subreddit, content.title, items, nsfw=content.nsfw,
                    spoiler=content.spoiler, flair_id=content.flair_id, flair_text=content.flair_text)
            return await reddit.submit(
                content.subreddit, content.title,
                text=content.text if content.kind is PostKind.SELF else None,
                url=content.url if content.kind is PostKind.LINK else None,
                nsfw=content.nsfw, spoiler=content.spoiler,
                flair_id=content.flair_id, flair_text=content.flair_text,
            )
        except RedditMediaPending:
            # Accepted: the next run looks for it (a DeferJob, so no breaker counts this).
            self._media_pending.add(post.id)
            raise

    def _forget_settled_sends(self, now: float) -> None:
        """Forget sends whose settling is over. Oldest first, and only those: a sweep over every
        send on each submission cost more CPU than the submission itself once thousands were
        sent within the settle time (the popular minute)."""
        settled = now - max(self.reconcile_settle_seconds, self.media_settle_seconds)
        while self._sent_at:
            post_id, sent_at = next(iter(self._sent_at.items()))
            if sent_at > settled:
                return
            del self._sent_at[post_id]
            self._media_pending.discard(post_id)

    async def _media_item(self, post: Post, ref: MediaRef) -> ImageUpload:
        """One image of the post, read from the store as it is uploaded (never held whole)."""
        try:
            media = await self.store.get_media(ref.media_id, post.user_id)
        except NotFound:
            raise PermanentJobError(f"Image {ref.media_id} of post {post.id} was deleted; edit the "
                                    "post's mediaIds and schedule it again") from None
        return ImageUpload.from_store(self.store, media, caption=ref.caption, outbound_url=ref.outbound_url)

    @contextlib.asynccontextmanager
    async def _guard(self, account: Account) -> AsyncIterator[None]:
        """Reddit's breakers: one for the OAuth app (Reddit down for everyone) and one per
        account. While either is open the job is deferred until it half-opens (BreakerOpen is
        a DeferJob), so an outage spends no attempts and kills no post."""
        client = self.breakers[f"reddit.client.{self.client.config.client_id}"]
        mine = self.breakers[f"reddit.account.{account.reddit_username}"]
        try:
            async with client.guard(), mine.guard():
                yield
        except RedditRetryable as error:
            # The failure that trips a breaker is an outage, not this post's fault: defer it
            # like the posts the open breaker will turn away, rather than spend its attempt.
            tripped = [breaker for breaker in (client, mine) if breaker.state is not BreakerState.CLOSED]
            if tripped:
                raise tripped[0].open_error() from error
            raise

    def forget(self, account_id: int) -> None:
        """Drop cached credentials and tokens of an account (after a re-link)."""
        self._accounts.pop(account_id, None)

    def reddit_account(self, account: Account) -> RedditAccount:
        """The client-side account for a stored one (credentials decrypted once, then cached
        with its access token)."""
        cached = self._accounts.get(account.id)
        if cached is None:
            credentials = self.vault.open(account.refresh_token_encrypted)
            if isinstance(credentials, RefreshToken):
                cached = RedditAccount(self.client, refresh_token=credentials.token,
                                       username=account.reddit_username)
            else:
                assert isinstance(credentials, Password)
                cached = RedditAccount(self.client, username=credentials.username,
                                       password=credentials.password)
            self._accounts[account.id] = cached
        return cached


