"""Engagement analytics: reading published posts' scores and comments, and optimal posting times.

The hourly ``analytics`` cron job (:func:`refresh_engagement`) reads the score and comment count
of every post published in the last :data:`REFRESH_DAYS` days from Reddit, through the post's own
account (one ``/api/info`` request per 100 posts, under the client's rate limiter), stores them,
and then invalidates every cached optimal-times answer (tag :data:`OPTIMAL_TIMES_TAG`).

:func:`optimal_times` ranks the hours of the week (weekday × hour, UTC) to post in a subreddit,
from those readings when there are enough of them, else from a generic prior (see
:data:`COMMUNITY_HOURLY`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from thotto.cache import Cache
from thotto.engine.errors import JobError, StoreError
from thotto.reddit.client import RedditAccount
from thotto.scheduler.records import (
    Account,
    EngagementReading,
    OptimalTimes,
    PostEngagement,
    TimeSlot,
)
from thotto.store.base import Store

log = logging.getLogger("thotto.analytics")

REFRESH_DAYS = 30
"""Engagement is read for posts published this many days back; older readings stay as they
were last read (a post's score settles within days)."""
REFRESH_AFTER = timedelta(minutes=30)
"""A post read more recently than this is not read again by the next run."""
REFRESH_BATCH = 1000
ANALYSIS_DAYS = 90
"""Optimal times look at posts published this many days back (retention may keep fewer)."""
MIN_POSTS = 5
"""Published posts with engagement a subreddit needs before its own data ranks the slots."""
COMMENT_WEIGHT = 2.0
TOP_SLOTS = 10
OPTIMAL_TIMES_TAG = "optimal-times"

# A generic prior, not a measurement: Reddit's audience is largest in North American daytime,
# so activity is taken to climb from 11:00 UTC, peak 13:00-17:00 UTC (morning to early afternoon
# US Eastern) and bottom out around 06:00-09:00 UTC; weekdays a little above weekends. Relative
# weights, 1.0 the peak.
COMMUNITY_HOURLY = (
    0.62, 0.55, 0.48, 0.42, 0.36, 0.32, 0.30, 0.30, 0.32, 0.36, 0.44, 0.55,  # 00-11 UTC
    0.70, 0.86, 0.96, 1.00, 0.98, 0.93, 0.86, 0.80, 0.76, 0.73, 0.70, 0.66,  # 12-23 UTC
)
COMMUNITY_WEEKDAY = (1.00, 0.99, 0.98, 0.96, 0.90, 0.82, 0.86)  # Monday (0) to Sunday (6)
FEW_POSTS_SHIFT = 0.25
"""With fewer than MIN_POSTS posts, a slot of ours is raised by up to this share of the prior,
in proportion to how well its posts did."""


def optimal_times_key(subreddit: str) -> str:
    """The cache key of a subreddit's optimal times (tagged :data:`OPTIMAL_TIMES_TAG`)."""
    return f"optimal-times:{subreddit.lower()}"


def engagement_value(score: int, comments: int) -> float:
    """One post's engagement: its score (at least 0) plus two points per comment (a comment is
    more effort than a vote)."""
    return max(score, 0) + COMMENT_WEIGHT * comments


async def optimal_times(store: Store, cache: Cache | None, subreddit: str,
                        now: Callable[[], datetime]) -> OptimalTimes:
    """The best hours of the week (UTC) to post in ``subreddit``, best first, at most
    :data:`TOP_SLOTS`, scores relative (the best is 100).

    ``source="engagement"`` when at least :data:`MIN_POSTS` published posts to the subreddit
    have engagement readings: each weekday×hour slot of their publication times is ranked by
    the mean engagement of its posts (:func:`engagement_value`), shrunk toward the
    subreddit's overall mean as if the slot had one more, average post (a slot of one post
    moves halfway to the mean, so one lucky post counts for less than many good ones); only
    slots with posts are listed.
    Otherwise ``source="community"``: a generic prior of Reddit activity by hour and weekday
    (:data:`COMMUNITY_HOURLY`, :data:`COMMUNITY_WEEKDAY`; not measured for this subreddit),
    nudged up in the slots where the few posts we have did well (``posts`` shows them).

    Cached for the ``user_metrics`` TTL class (1 h) under :func:`optimal_times_key`, tagged
    :data:`OPTIMAL_TIMES_TAG`; invalidation: the analytics job invalidates the tag after every
    refresh, so an answer is never older than the engagement it was computed from by more than
    one run.
    """
    async def load() -> OptimalTimes:
        since = now() - timedelta(days=ANALYSIS_DAYS)
        posts = await store.subreddit_engagement(subreddit, since=since)
        return rank_slots(subreddit, posts, now())

    if cache is None:
        return await load()
    return await cache.get_or_load(optimal_times_key(subreddit), load, ttl_class="user_metrics",
                                   tags=(OPTIMAL_TIMES_TAG,), type=OptimalTimes)


def rank_slots(subreddit: str, posts: Iterable[PostEngagement], computed_at: datetime) -> OptimalTimes:
    """The ranking :func:`optimal_times` describes, from these posts' readings."""
    by_slot: dict[tuple[int, int], list[float]] = defaultdict(list)
    for post in posts:
        published = post.published_at
        by_slot[(published.weekday(), published.hour)].append(engagement_value(post.score, post.comments))
    count = sum(len(values) for values in by_slot.values())
    if count >= MIN_POSTS:
        overall = sum(sum(values) for values in by_slot.values()) / count
        values = {slot: (sum(v) + overall) / (len(v) + 1) for slot, v in by_slot.items()}
        source = "engagement"
    else:
        values = _community_prior(by_slot)
        source = "community"
    ranked = sorted(values, key=lambda slot: (-values[slot], -len(by_slot.get(slot, ())), slot))
    best = values[ranked[0]] if ranked else 0.0
    slots = [TimeSlot(weekday=weekday, hour=hour,
                      score=round(100.0 * values[(weekday, hour)] / best, 1) if best > 0 else 100.0,
                      posts=len(by_slot.get((weekday, hour), ())))
             for weekday, hour in ranked[:TOP_SLOTS]]
    return OptimalTimes(subreddit=subreddit, source=source, slots=slots, computed_at=computed_at)


def _community_prior(by_slot: dict[tuple[int, int], list[float]]) -> dict[tuple[int, int], float]:
    prior = {(weekday, hour): COMMUNITY_WEEKDAY[weekday] * COMMUNITY_HOURLY[hour]
             for weekday in range(7) for hour in range(24)}
    means = {slot: sum(values) / len(values) for slot, values in by_slot.items()}
    top = max(means.values(), default=0.0)
    if top > 0:
        for slot, mean in means.items():
            prior[slot] *= 1.0 + FEW_POSTS_SHIFT * mean / top
    return prior


async def refresh_engagement(store: Store, reddit_account: Callable[[Account], RedditAccount],
                             cache: Cache | None, now: Callable[[], datetime]) -> int:
    """Read the engagement of posts published in the last :data:`REFRESH_DAYS` days (those not
    read in the last :data:`REFRESH_AFTER`) through each post's own account, store it, then
    invalidate cached optimal times. Returns how many posts were updated.

    A failing account (refused login, flagged for re-linking, Reddit errors, the client's rate
    limit spent) is logged and skipped: its posts are read by the next run. Reddit calls go
    one account at a time, each through the shared client's rate limiter.
    """
    started = now()
    published_since = started - timedelta(days=REFRESH_DAYS)
    read_before = started - REFRESH_AFTER
    updated = 0
    seen: set[int] = set()
    while True:
        batch = [post for post in await store.posts_to_refresh(published_since, read_before,
                                                               limit=REFRESH_BATCH)
                 if post.id not in seen]
        if not batch:  # also ends the loop when only skipped accounts' posts are left
            break
        seen.update(post.id for post in batch)
        by_account: dict[int, dict[str, int]] = defaultdict(dict)
        for post in batch:
            by_account[post.account_id][post.reddit_id.removeprefix("t3_")] = post.id
        for account_id, posts in by_account.items():
            readings = await _read_account(store, reddit_account, account_id, posts, now)
            if readings:
                updated += await store.record_engagement(readings)
    if cache is not None:
        await cache.invalidate_tags(OPTIMAL_TIMES_TAG)
    log.info("analytics: engagement of %d posts updated", updated)
    return updated


async def _read_account(store: Store, reddit_account: Callable[[Account], RedditAccount],
                        account_id: int, posts: dict[str, int],
                        now: Callable[[], datetime]) -> list[EngagementReading]:
    """Readings of one account's posts (Reddit id → post id); [] when the account fails."""
    try:
        account = await store.get_account(account_id)
        if account.needs_relink:
            log.warning("analytics: u/%s must be linked again; %d posts not read",
                        account.reddit_username, len(posts))
            return []
        found = await reddit_account(account).info(list(posts))
    except (JobError, StoreError) as error:
        log.warning("analytics: posts of account %d not read: %s", account_id, error)
        return []
    read_at = now()
    return [EngagementReading(post_id=posts[item.id], score=item.score, comments=item.num_comments,
                              read_at=read_at)
            for item in found if item.id in posts]
