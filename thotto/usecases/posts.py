"""A creator's scheduled posts: schedule, edit or reschedule, cancel, read one, list them.

Each function owns the checks its action needs and the invalidation that must follow it:

- **Tiers**: free and starter may not schedule; pro schedules up to 7 days ahead, premium up to 30.
- **Duplicates**: a post with the same account, subreddit and title (compared as the stores
  compare them, :func:`~thotto.messages.title_key`) as one pending, or published within
  ``duplicate_window_hours``, is refused (:class:`~thotto.errors.DuplicatePost` naming it).
- **Ownership**: another user's post is NotFound, never revealed.
- **Content and subreddit rules**: :class:`thotto.scheduler.posts.PostScheduler` (the same checks the scheduler
  applies to every post).
- **Invalidation**: every change drops the user's cached post lists (tag
  :func:`~thotto.posts.post_list_tag`) in every process.

Within a process, one user's schedulings and edits run one at a time, whoever asks (the API, the
CLI through the server, an operator), so two identical requests racing cannot both pass the
duplicate check. ``scheduler`` is the process's :class:`~thotto.scheduler.scheduler.Scheduler`.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from thotto.errors import DuplicatePost, Forbidden, RuleViolation, ThottoError, ValidationError
from thotto.engine.jobs import as_utc
from thotto.scheduler.records import (
    PostCheck,
    PostProblem,
    AttemptView,
    ItemError,
    MediaItem,
    MediaRef,
    NewPost,
    Post,
    PostChange,
    PostContent,
    PostDetail,
    PostPage,
    PostStatus,
    PostView,
    ScheduleRequest,
    Tier,
    User,
    title_key,
)
from thotto.scheduler.posts import check_content, post_list_tag

if TYPE_CHECKING:
    from thotto.scheduler.scheduler import Scheduler

# How far ahead each tier may schedule; tiers not listed may not schedule at all.
HORIZON = {Tier.PRO: timedelta(days=7), Tier.PREMIUM: timedelta(days=30)}
# Posts one request may create in all (items x subreddits): each post costs checks, perhaps a
# call to Reddit for the subreddit's rules, and a job, so one request's work stays bounded.
MAX_POSTS_PER_REQUEST = 100
# The post fields an edit may change besides its media and its time.
CONTENT_CHANGES = ("subreddit", "title", "text", "url", "nsfw", "spoiler", "flair_id", "flair_text")


class BatchInvalid(ValidationError):
    """Items of a batch failed validation; ``errors`` says which and why (nothing was stored)."""

    def __init__(self, errors: list[ItemError]):
        super().__init__(f"{len(errors)} of the posts are invalid; nothing was scheduled")
        self.errors = errors


# --- what callers show -----------------------------------------------------------------------------


def post_view(post: Post) -> PostView:
    return PostView(**_view_fields(post))


def _view_fields(post: Post) -> dict:
    content = post.content
    return dict(
        id=post.id, status=post.status, subreddit=content.subreddit, title=content.title,
        kind=content.kind, scheduled_for=post.scheduled_for, account_id=post.account_id,
        text=content.text, url=content.url, media_ids=media_items(content.media), nsfw=content.nsfw,
        spoiler=content.spoiler, flair_id=content.flair_id, flair_text=content.flair_text,
        reddit_id=post.reddit_id, reddit_url=post.reddit_url, error=post.error,
        recurrence=post.recurrence, created_at=post.created_at, updated_at=post.updated_at,
    )


def media_refs(items: list[int | MediaItem] | None) -> list[MediaRef]:
    """``mediaIds`` as the API takes them (ids, or objects with a caption and a link) as stored."""
    return [MediaRef(media_id=item) if isinstance(item, int) else
            MediaRef(media_id=item.id, caption=item.caption, outbound_url=item.outbound_url)
            for item in items or []]


def media_items(refs: list[MediaRef]) -> list[MediaItem]:
    return [MediaItem(id=ref.media_id, caption=ref.caption, outbound_url=ref.outbound_url) for ref in refs]


# --- one user at a time ------------------------------------------------------------------------------

# Per scheduler (one per process, but tests open several), one lock per user.
_USER_LOCKS: "weakref.WeakKeyDictionary[Any, defaultdict[int, trio.Lock]]" = weakref.WeakKeyDictionary()


def user_lock(scheduler: "Scheduler", user_id: int) -> trio.Lock:
    """The lock that makes one user's schedulings and edits in this process take turns."""
    return _USER_LOCKS.setdefault(scheduler, defaultdict(trio.Lock))[user_id]


# --- scheduling --------------------------------------------------------------------------------------


async def schedule(scheduler: "Scheduler", user: User, requests: list[ScheduleRequest], *,
                   batch: bool) -> list[Post]:
    """Check every request, then store all their posts in one transaction (all or nothing).
    ``batch`` collects every item's problems (BatchInvalid) instead of raising the first."""
    check_post_count(requests, batch=batch)
    async with user_lock(scheduler, user.id):
        scheduling = _Scheduling(scheduler, user)
        posts, errors = [], []
        for index, request in enumerate(requests):
            try:
                new = await scheduling.posts_for(request)
            except ThottoError as error:
                if not batch:
                    raise
                errors.append(item_error(index, error))
                continue
            errors += _repeats(posts, new, index)
            posts += new
        if errors:
            raise BatchInvalid(errors)
        created = await scheduler.posts.create(posts)
    await scheduler.services.cache.invalidate_tags(post_list_tag(user.id))
    return created


async def problems(scheduler: "Scheduler", user: User, request: ScheduleRequest) -> PostCheck:
    """Every problem scheduling ``request`` would meet, nothing stored (the composer asks while
    the creator types): for each subreddit, its first problem outside the subreddit's rules, or
    every rule of the subreddit it breaks. Fields are named as in the request's Python names."""
    found: list[PostProblem] = []
    try:
        check_post_count([request], batch=False)
        names = _subreddits(request)
    except ThottoError as error:
        return PostCheck(problems=[_problem(error)])
    scheduling = _Scheduling(scheduler, user)
    for name in names:
        single = msgspec.structs.replace(request, subreddit=name, subreddits=None)
        try:
            await scheduling.posts_for(single)
        except RuleViolation as error:
            found += [PostProblem(error=message, field=field, subreddit=name)
                      for field, message in error.problems]
        except ThottoError as error:
            found.append(_problem(error, name))
    return PostCheck(problems=found)


def _problem(error: ThottoError, subreddit: str | None = None) -> PostProblem:
    return PostProblem(error=str(error), field=getattr(error, "field", None), subreddit=subreddit)


class _Scheduling:
    """Turns one user's requests into checked posts; raises on the first problem."""

    def __init__(self, scheduler: "Scheduler", user: User):
        self.scheduler = scheduler
        self.user = user
        self.now = scheduler.clock.now()
        self._accounts = None

    async def posts_for(self, request: ScheduleRequest) -> list[NewPost]:
        check_tier(self.user, as_utc(request.scheduled_for), self.now)
        account_id = await self._account_id(request.account)
        posts = []
        for subreddit in _subreddits(request):
            content = PostContent(
                subreddit=subreddit, title=request.title, kind=request.kind, text=request.text,
                url=request.url, media=media_refs(request.media_ids), nsfw=request.nsfw,
                spoiler=request.spoiler, flair_id=request.flair_id, flair_text=request.flair_text)
            post = NewPost(user_id=self.user.id, account_id=account_id, content=content,
                           scheduled_for=request.scheduled_for, recurrence=request.recurrence)
            await self.scheduler.posts.check(post)
            await check_duplicate(self.scheduler, account_id, subreddit, request.title, self.now)
            posts.append(post)
        return posts

    async def _account_id(self, username: str | None) -> int:
        if self._accounts is None:
            self._accounts = await self.scheduler.store.list_accounts(self.user.id)
        if not self._accounts:
            raise ValidationError("No Reddit account is linked yet; link one first (POST "
                                  "/api/accounts/link or `thotto account link`)", field="account")
        if username is None:
            if len(self._accounts) > 1:
                names = ", ".join(account.reddit_username for account in self._accounts)
                raise ValidationError(f"Say which account to post with: one of {names}", field="account")
            return self._accounts[0].id
        for account in self._accounts:
            if account.reddit_username.lower() == username.lower():
                return account.id
        raise ValidationError(f"u/{username} is not linked to your user", field="account")


def _subreddits(request: ScheduleRequest) -> list[str]:
    if (request.subreddit is None) == (request.subreddits is None):
        raise ValidationError("Give either subreddit or subreddits (a list), not both or neither",
                              field="subreddit")
    names = request.subreddits or [request.subreddit]
    seen = set()
    for name in names:
        if name.lower() in seen:
            raise ValidationError(f"r/{name} is listed twice", field="subreddits")
        seen.add(name.lower())
    return names


def check_tier(user: User, scheduled_for: datetime, now: datetime) -> None:
    """Free and starter may not schedule; pro up to 7 days ahead; premium up to 30."""
    horizon = HORIZON.get(user.tier)
    if horizon is None:
        raise Forbidden("Scheduling requires Pro or Premium tier", required_tier="pro")
    if scheduled_for <= now:
        raise ValidationError("scheduledFor must be in the future", field="scheduledFor")
    if scheduled_for > now + horizon:
        if user.tier is Tier.PRO and scheduled_for <= now + HORIZON[Tier.PREMIUM]:
            raise Forbidden("Scheduling more than 7 days ahead requires Premium tier",
                            required_tier="premium")
        raise ValidationError(f"scheduledFor is more than {horizon.days} days ahead, the most "
                              f"your tier allows", field="scheduledFor")


async def check_duplicate(scheduler: "Scheduler", account_id: int, subreddit: str, title: str,
                          now: datetime, *, exclude: int | None = None) -> None:
    """DuplicatePost if the account has this title in this subreddit pending, or published
    within ``duplicate_window_hours`` (``exclude``: the post being edited)."""
    since = now - timedelta(hours=scheduler.settings.duplicate_window_hours)
    for found in await scheduler.store.find_recent_posts(account_id, subreddit, title, since):
        if found.id != exclude:
            raise DuplicatePost(
                f"Post {found.id} already has this title in r/{found.content.subreddit} "
                f"({found.status.value}, scheduled for {found.scheduled_for.isoformat()})",
                existing_post_id=found.id)


def check_post_count(requests: list[ScheduleRequest], *, batch: bool) -> None:
    """At most MAX_POSTS_PER_REQUEST posts in all, counted before any other work is done."""
    count = sum(len(request.subreddits) if request.subreddits else 1 for request in requests)
    if count > MAX_POSTS_PER_REQUEST:
        where = "items times their subreddits" if batch else "subreddits"
        raise ValidationError(f"This request would create {count} posts ({where}); one request "
                              f"creates at most {MAX_POSTS_PER_REQUEST}: split it into several",
                              field="posts" if batch else "subreddits")


def _repeats(earlier: list[NewPost], new: list[NewPost], index: int) -> list[ItemError]:
    """A batch must not hold the same account, subreddit and title twice (one request cannot:
    its subreddits are distinct). Titles compare as the stores compare them (title_key)."""
    keys = {_duplicate_key(post) for post in earlier}
    return [item_error(index, ValidationError(
                f"The batch has this title for r/{post.content.subreddit} twice", field="title"))
            for post in new if _duplicate_key(post) in keys]


def _duplicate_key(post: NewPost) -> tuple[int, str, str]:
    return post.account_id, post.content.subreddit.lower(), title_key(post.content.title)


def item_error(index: int, error: ThottoError) -> ItemError:
    """One batch item's problem; its field as the error names it (the API spells it in camelCase)."""
    return ItemError(index=index, error=str(error), field=getattr(error, "field", None))


# --- reading -------------------------------------------------------------------------------------


async def list_page(scheduler: "Scheduler", user: User, *, status: PostStatus | None = None,
                    scheduled_from: datetime | None = None, scheduled_to: datetime | None = None,
                    cursor: str | None = None, limit: int = 50) -> PostPage:
    """One page of the user's posts, by scheduled time."""
    return await scheduler.store.list_posts(user.id, status=status, scheduled_from=scheduled_from,
                                         scheduled_to=scheduled_to, cursor=cursor, limit=limit)


async def detail(scheduler: "Scheduler", user: User, post_id: int) -> PostDetail:
    """One of the user's posts with its attempts (another user's is NotFound)."""
    store = scheduler.store
    post = await store.get_post(post_id, user.id)
    attempts = await store.attempts(post.job_id)
    job = await store.get_job(post.job_id)
    return PostDetail(**_view_fields(post), attempts=[
        AttemptView(attempt=a.attempt, started_at=a.started_at, finished_at=a.finished_at,
                    outcome=a.outcome, error=a.error) for a in attempts],
        next_attempt_at=job.run_at if post.status is PostStatus.SCHEDULED else None)


# --- changing ------------------------------------------------------------------------------------


async def edit(scheduler: "Scheduler", user: User, post_id: int, change: PostChange) -> Post:
    """Edit or reschedule one of the user's posts, checked like a new post (tier, content,
    subreddit rules, duplicates); the store refuses it unless the post is scheduled
    (thotto.store.lifecycle), or failed: then it is scheduled again at a new time."""
    post = await scheduler.store.get_post(post_id, user.id)
    edits = {name: getattr(change, name) for name in CONTENT_CHANGES
             if getattr(change, name) is not msgspec.UNSET}
    if change.media_ids is not msgspec.UNSET:
        edits["media"] = media_refs(change.media_ids)
    scheduled_for = None if change.scheduled_for is msgspec.UNSET else change.scheduled_for
    return await _change(scheduler, user, post, edits, scheduled_for)


async def reschedule_failed(scheduler: "Scheduler", post: Post, *, scheduled_for: datetime,
                            edits: dict[str, Any]) -> Post:
    """An operator's fix of a failed post (``edits``: PostContent fields), scheduled again at
    ``scheduled_for``: checked as its owner's own edit would be, as its owner. The store
    refuses it unless the post failed."""
    owner = await scheduler.store.get_user(post.user_id)
    return await _change(scheduler, owner, post, edits, scheduled_for, revive=True)


async def _change(scheduler: "Scheduler", user: User, post: Post, edits: dict[str, Any],
                  scheduled_for: datetime | None, *, revive: bool = False) -> Post:
    async with user_lock(scheduler, user.id):
        post = await scheduler.store.get_post(post.id, user.id)  # as it is now, under the lock
        content, when = await _checked_change(scheduler, user, post, edits, scheduled_for)
        if revive or post.status is PostStatus.FAILED:
            # What Reddit refused is fixed, and the post goes back in line at its new time.
            if when is None:
                raise ValidationError("A failed post is scheduled again at a new time: give "
                                      "scheduledFor with your corrections", field="scheduledFor")
            updated = await scheduler.store.revive_post(post.id, scheduled_for=when, content=content)
        else:
            updated = await scheduler.store.update_post(post.id, user.id, content=content,
                                                     scheduled_for=when)
    await scheduler.services.cache.invalidate_tags(post_list_tag(user.id))
    return updated


async def _checked_change(scheduler: "Scheduler", user: User, post: Post, edits: dict[str, Any],
                          scheduled_for: datetime | None):
    """The post's new content and time (None where unchanged), checked like a new post."""
    content = _edited_content(post.content, edits) if edits else None
    when = None if scheduled_for is None else as_utc(scheduled_for)
    now = scheduler.clock.now()
    if when is not None:
        check_tier(user, when, now)
    if content is not None:
        check_content(content)
        candidate = NewPost(user_id=user.id, account_id=post.account_id, content=content,
                            scheduled_for=when or post.scheduled_for)
        await scheduler.posts.check(candidate, require_future=False)
        if (title_key(content.title), content.subreddit.lower()) != (
                title_key(post.content.title), post.content.subreddit.lower()):
            await check_duplicate(scheduler, post.account_id, content.subreddit, content.title, now,
                                  exclude=post.id)
    return content, when


def _edited_content(content: PostContent, edits: dict[str, Any]) -> PostContent:
    """``content`` with ``edits``, each checked against the field's constraints."""
    try:
        return msgspec.convert(msgspec.to_builtins(msgspec.structs.replace(content, **edits)),
                               PostContent)
    except (msgspec.ValidationError, TypeError) as error:
        raise ValidationError(str(error)) from None


async def cancel(scheduler: "Scheduler", user: User, post_id: int) -> Post:
    """Cancel one of the user's posts; the store refuses unless it is scheduled."""
    cancelled = await scheduler.store.cancel_post(post_id, user.id)
    await scheduler.services.cache.invalidate_tags(post_list_tag(user.id))
    return cancelled

