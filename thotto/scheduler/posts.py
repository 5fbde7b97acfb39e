"""Scheduling posts: check what a post says and where it goes, then store it with its job.

Refused at scheduling time, with the field and a message: a kind without its content (a link
without a URL, an image without a file), and anything that breaks a known rule of the subreddit
(:mod:`thotto.scheduler.community`). Rules not yet known are fetched from Reddit with the post's own
account when Reddit is configured; if Reddit cannot be asked, the post is accepted and Reddit
has the last word at publishing time.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from urllib.parse import urlsplit

from thotto.cache import Cache
from thotto.engine.errors import JobError, NotFound, ValidationError
from thotto.engine.jobs import as_utc, validated
from thotto.errors import RuleViolation
from thotto.scheduler.community import rule_problems
from thotto.scheduler.records import (
    MEDIA_PER_GALLERY,
    NewPost,
    Post,
    PostContent,
    PostKind,
    SubredditRules,
)
from thotto.scheduler.recurrence import check_recurrence
from thotto.store.base import Store

log = logging.getLogger("thotto.posts")

# Fetches a subreddit's rules from Reddit with an account: (account_id, subreddit) → rules.
RulesFetcher = Callable[[int, str], Awaitable[SubredditRules]]


# Attempts a post gets before it fails for good. Outages trip Reddit's breaker (deferring posts
# without spending attempts), but scattered 5xx do not: at a 5% error rate, 3 attempts lose about
# one post in 8,000 (measured by `python -m bench reliability`); 6 lose one in 64 million.
POST_MAX_ATTEMPTS = 6


def post_list_tag(user_id: int) -> str:
    """The cache tag of a user's post lists (the API caches them). Invalidation: every change
    the user makes, and every publication the engine records."""
    return f"posts:{user_id}"


def rules_key(subreddit: str) -> str:
    """The cache key of a subreddit's rules. Invalidation: every write of those rules (the
    weekly sync, a first fetch) deletes it, in every process; otherwise it lives for the
    ``community`` TTL class (6 h)."""
    return f"rules:{subreddit.lower()}"


class PostScheduler:
    """Validates and stores scheduled posts. ``fetch_rules`` is None without Reddit access;
    ``cache`` (optional) keeps subreddit rules in memory (and Redis) between schedulings."""

    def __init__(self, store: Store, now: Callable[[], datetime], fetch_rules: RulesFetcher | None = None,
                 cache: Cache | None = None):
        self.store = store
        self.now = now
        self.fetch_rules = fetch_rules
        self.cache = cache

    async def schedule(self, posts: Sequence[NewPost], *, max_attempts: int = POST_MAX_ATTEMPTS) -> list[Post]:
        """Check every post, then store them all (or none, if one is refused)."""
        for post in posts:
            await self.check(post)
        return await self.create(posts, max_attempts=max_attempts)

    async def check(self, post: NewPost, *, require_future: bool = True) -> None:
        """Refuse a post that breaks a constraint, lacks what its kind needs, is not in the
        future, has a recurrence that could not run (an unknown time zone), or breaks a known
        rule of its subreddit."""
        validated(post)
        check_title(post.content.title)
        check_content(post.content)
        now = self.now()
        check_recurrence(post.recurrence, post.scheduled_for, now)
        if require_future and as_utc(post.scheduled_for) <= now:
            raise ValidationError("scheduledFor must be in the future", field="scheduled_for")
        await self._check_media(post)
        await self._check_rules(post)

    async def create(self, posts: Sequence[NewPost], *, max_attempts: int = POST_MAX_ATTEMPTS) -> list[Post]:
        """Store checked posts with their jobs, all or none."""
        return await self.store.create_posts(posts, max_attempts=max_attempts)

    async def _check_media(self, post: NewPost) -> None:
        """Every image is one of the post's user's uploads: refused now, never at publishing."""
        for ref in post.content.media:
            try:
                await self.store.get_media(ref.media_id, post.user_id)
            except NotFound:
                raise ValidationError(f"media {ref.media_id} is not one of your uploads; upload the "
                                      "image with POST /api/media and use the id it answers",
                                      field="media_ids") from None

    async def _check_rules(self, post: NewPost) -> None:
        rules = await self.rules_for(post.account_id, post.content.subreddit)
        if rules is not None:
            problems = rule_problems(post.content, rules)
            if problems:
                raise RuleViolation(rules.display_name, problems)

    async def rules_for(self, account_id: int, subreddit: str) -> SubredditRules | None:
        """Cached rules, else stored, else fetched (and stored) when Reddit can be asked, else
        None. Unknown rules are not cached, so the next scheduling asks again."""
        if self.cache is not None:
            cached = await self.cache.get(rules_key(subreddit), type=SubredditRules)
            if cached is not None:
                return cached
        rules = await self._stored_or_fetched(account_id, subreddit)
        if rules is not None and self.cache is not None:
            await self.cache.set(rules_key(subreddit), rules, ttl_class="community")
        return rules

    async def save_rules(self, rules: SubredditRules) -> None:
        """Store rules and evict them from every process's cache."""
        await self.store.save_subreddit_rules(rules)
        if self.cache is not None:
            await self.cache.delete(rules_key(rules.name))

    async def _stored_or_fetched(self, account_id: int, subreddit: str) -> SubredditRules | None:
        rules = await self.store.get_subreddit_rules(subreddit)
        if rules is not None or self.fetch_rules is None:
            return rules
        try:
            rules = await self.fetch_rules(account_id, subreddit)
        except JobError as error:  # Reddit unreachable or refusing us: it decides at publish time
            log.warning("could not read r/%s's rules (%s); scheduling without them", subreddit, error)
            return None
        await self.save_rules(rules)
        return rules


# Characters that draw nothing but are not whitespace: format characters (zero-width space and
# joiners, word joiner, BOM, direction marks, soft hyphen) and the blank fillers of Hangul and
# Braille. A title of only these (and spaces) looks empty, and Reddit refuses it.
_BLANK_FILLERS = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")


def check_title(title: str) -> None:
    """Refuse a title Reddit would refuse: blank once trimmed, holding control characters or
    line breaks, or made only of invisible characters. (Its length is checked by its type.)"""
    if not title.strip():
        raise ValidationError("title is blank; give it some visible text", field="title")
    for position, char in enumerate(title):
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise ValidationError(f"title has a control character or line break (U+{ord(char):04X} "
                                  f"at position {position}); a Reddit title is one line of text",
                                  field="title")
    if all(char.isspace() or char in _BLANK_FILLERS or unicodedata.category(char) == "Cf"
           for char in title):
        raise ValidationError("title has only invisible characters (zero-width spaces or the "
                              "like); give it some visible text", field="title")


def check_url(url: str) -> None:
    """An absolute http(s) address that Reddit can take as it is."""
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in url):
        raise ValidationError("url has spaces or control characters; percent-encode them "
                              "(%20 for a space)", field="url")
    try:
        parts = urlsplit(url)
        parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError as error:
        raise ValidationError(f"url is not a valid address ({error}), e.g. https://example.com/page",
                              field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("url must be an http(s) address, e.g. https://example.com/page", field="url")


# Control characters a post's body may hold: it is Markdown, over several lines.
_BODY_CONTROLS = frozenset("\t\n\r")


def check_controls(value: str | None, field: str, allowed: frozenset[str] = frozenset()) -> None:
    """Refuse control characters (but ``allowed``) in a field Reddit shows as text. NUL above
    all: Postgres cannot store it."""
    for position, char in enumerate(value or ""):
        if unicodedata.category(char) == "Cc" and char not in allowed:
            raise ValidationError(f"{field} has a control character (U+{ord(char):04X} at position "
                                  f"{position}); remove it", field=field)


def check_content(content: PostContent) -> None:
    """A post of each kind carries what that kind needs, and nothing of the others; its texts
    hold no control characters (but line breaks and tabs in the body)."""
    check_controls(content.text, "text", _BODY_CONTROLS)
    check_controls(content.flair_text, "flair_text")
    check_controls(content.flair_id, "flair_id")
    if content.kind is PostKind.LINK:
        if not content.url:
            raise ValidationError("a link post needs a url", field="url")
        check_url(content.url)
    if content.image_path:  # no one may make Thotto read a file on the server
        raise ValidationError("a post cannot name a file on the server; upload the image (POST "
                              "/api/media) and give its id in mediaIds", field="media_ids")
    check_media_count(content)
    for ref in content.media:
        check_controls(ref.caption, "media_ids")
        if ref.outbound_url is not None:
            check_url(ref.outbound_url)
    extras = {"text": content.text and content.kind is not PostKind.SELF,
              "url": content.url and content.kind is not PostKind.LINK}
    for field, present in extras.items():
        if present:
            raise ValidationError(f"{field} does not go with a {content.kind.value} post", field=field)


def check_media_count(content: PostContent) -> None:
    """An image post has one image, a gallery 2-20 (captions and links only there), others none."""
    count, kind = len(content.media), content.kind
    least, most = MEDIA_PER_GALLERY
    if kind is PostKind.IMAGE and count != 1:
        raise ValidationError(f"an image post takes one id in mediaIds (got {count}); for several "
                              "images, make it a gallery (kind: gallery)", field="media_ids")
    if kind is PostKind.GALLERY and not least <= count <= most:
        raise ValidationError(f"a gallery takes {least} to {most} ids in mediaIds (got {count})",
                              field="media_ids")
    if kind not in (PostKind.IMAGE, PostKind.GALLERY) and count:
        raise ValidationError(f"mediaIds does not go with a {kind.value} post; use kind image or "
                              "gallery", field="media_ids")
    ids = [ref.media_id for ref in content.media]
    repeated = next((media_id for media_id in ids if ids.count(media_id) > 1), None)
    if repeated is not None:
        raise ValidationError(f"media {repeated} is in mediaIds twice; each image goes in once",
                              field="media_ids")
    if kind is PostKind.IMAGE and (content.media[0].caption or content.media[0].outbound_url):
        raise ValidationError("captions and outbound links are for gallery images; Reddit's image "
                              "posts have none", field="media_ids")
