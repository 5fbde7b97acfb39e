"""``/api/scheduled-posts``: schedule (one, several subreddits, a batch), list, read, edit, cancel,
and the optimal posting times.

Tier rules: free and starter may not schedule; pro schedules up to 7 days ahead, premium up to 30.
A post with the same account, subreddit and title as one pending, or published within
``duplicate_window_hours``, is a duplicate (409 naming it). Within a process, one user's
schedulings run one at a time, so two identical requests racing cannot both pass that check.

Post lists are cached per user and query (TTL class ``post_list``, tag
:func:`~thotto.scheduler.posts.post_list_tag`). Invalidation: every change the user makes through the API
and every publication the engine records, in every process. A post's own page
(``GET /api/scheduled-posts/{id}``) is never cached.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from thotto.api.app import (
    BatchInvalid,
    EndpointGroup,
    camel,
    decode_body,
    json_response,
    path_id,
    read_body,
    read_json,
    read_query,
)
from thotto.api.auth import require_user
from thotto.engine.errors import ThottoError, ValidationError
from thotto.engine.jobs import as_utc
from thotto.errors import DuplicatePost, Forbidden
from thotto.scheduler.posts import check_content, post_list_tag
from thotto.scheduler.records import (
    AttemptView,
    BatchScheduleRequest,
    ItemError,
    MediaItem,
    MediaRef,
    NewPost,
    OptimalTimes,
    OptimalTimesRequest,
    Post,
    PostChange,
    PostContent,
    PostDetail,
    PostList,
    PostStatus,
    PostView,
    ScheduledPosts,
    ScheduleRequest,
    Tier,
    User,
    title_key,
)

ENDPOINTS = EndpointGroup()
TAGS = ("scheduled posts",)

# How far ahead each tier may schedule; tiers not listed may not schedule at all.
HORIZON = {Tier.PRO: timedelta(days=7), Tier.PREMIUM: timedelta(days=30)}
# Posts one request may create in all (items x subreddits): each post costs checks, perhaps a
# call to Reddit for the subreddit's rules, and a job, so one request's work stays bounded.
MAX_POSTS_PER_REQUEST = 100


class PostQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Filters of ``GET /api/scheduled-posts``."""

    status: PostStatus | None = None
    scheduled_from: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(default=None, name="from")
    """Only posts scheduled at or after this time (ISO 8601 with offset)."""
    scheduled_to: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(default=None, name="to")
    """Only posts scheduled before this time."""
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50


# --- views -------------------------------------------------------------------------------------


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


# --- scheduling ----------------------------------------------------------------------------------


class Scheduling:
    """Turns requests into checked posts for one user; raises on the first problem."""

    def __init__(self, context, user: User):
        self.context = context
        self.user = user
        self.now = context.clock.now()
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
            await self.context.scheduler.posts.check(post)
            await check_duplicate(self.context, account_id, subreddit, request.title, self.now)
            posts.append(post)
        return posts

    async def _account_id(self, username: str | None) -> int:
        if self._accounts is None:
            self._accounts = await self.context.store.list_accounts(self.user.id)
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


async def check_duplicate(context, account_id: int, subreddit: str, title: str, now: datetime,
                          *, exclude: int | None = None) -> None:
    since = now - timedelta(hours=context.settings.duplicate_window_hours)
    for found in await context.store.find_recent_posts(account_id, subreddit, title, since):
        if found.id != exclude:
            raise DuplicatePost(
                f"Post {found.id} already has this title in r/{found.content.subreddit} "
                f"({found.status.value}, scheduled for {found.scheduled_for.isoformat()})",
                existing_post_id=found.id)


async def schedule_for_user(context, user: User, requests: list[ScheduleRequest], *, batch: bool) -> list[Post]:
    """Check every request, then store all their posts in one transaction (all or nothing).
    ``batch`` collects every item's problems (BatchInvalid) instead of raising the first."""
    check_post_count(requests, batch=batch)
    async with context.user_locks[user.id]:
        scheduling = Scheduling(context, user)
        posts, errors = [], []
        for index, request in enumerate(requests):
            try:
                new = await scheduling.posts_for(request)
            except ThottoError as error:
                if not batch:
                    raise
                errors.append(_item_error(index, error))
                continue
            errors += _repeats(posts, new, index)
            posts += new
        if errors:
            raise BatchInvalid(errors)
        created = await context.scheduler.posts.create(posts)
    await context.cache.invalidate_tags(post_list_tag(user.id))
    return created


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
    return [_item_error(index, ValidationError(
                f"The batch has this title for r/{post.content.subreddit} twice", field="title"))
            for post in new if _duplicate_key(post) in keys]


def _duplicate_key(post: NewPost) -> tuple[int, str, str]:
    return post.account_id, post.content.subreddit.lower(), title_key(post.content.title)


def _item_error(index: int, error: ThottoError) -> ItemError:
    return ItemError(index=index, error=str(error), field=camel(getattr(error, "field", None)))


@ENDPOINTS.add("POST", "/api/scheduled-posts", "Schedule a post (to one subreddit or several)",
               body=ScheduleRequest, response=ScheduledPosts, status=201,
               errors=(400, 401, 403, 409, 413, 422, 429), tags=TAGS)
async def schedule_post(request: Request) -> Response:
    user = await require_user(request)
    body = await read_json(request, ScheduleRequest)
    created = await schedule_for_user(request.app.state.api, user, [body], batch=False)
    return json_response(ScheduledPosts(posts=[post_view(post) for post in created]), 201)


class _RawBatch(msgspec.Struct, forbid_unknown_fields=True):
    posts: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=100)]


@ENDPOINTS.add("POST", "/api/scheduled-posts/batch",
               "Schedule up to 100 posts in all (items times their subreddits), all or nothing "
               "(errors listed per item)",
               body=BatchScheduleRequest, response=ScheduledPosts, status=201,
               errors=(400, 401, 403, 413, 422, 429), tags=TAGS)
async def schedule_batch(request: Request) -> Response:
    user = await require_user(request)
    raw = decode_body(await read_body(request), _RawBatch)
    requests, errors = [], []
    for index, item in enumerate(raw.posts):
        try:
            requests.append(decode_body(item, ScheduleRequest))
        except ValidationError as error:
            errors.append(_item_error(index, error))
    if errors:
        raise BatchInvalid(errors)
    created = await schedule_for_user(request.app.state.api, user, requests, batch=True)
    return json_response(ScheduledPosts(posts=[post_view(post) for post in created]), 201)


# --- reading -------------------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/scheduled-posts", "Your posts, by scheduled time (cursor pagination)",
               query=PostQuery, response=PostList, errors=(401, 422, 429), tags=TAGS)
async def list_posts(request: Request) -> Response:
    user = await require_user(request)
    query = read_query(request, PostQuery)
    context = request.app.state.api
    key = f"posts:{user.id}:{request.url.query}"

    async def load() -> bytes:
        page = await context.store.list_posts(
            user.id, status=query.status, scheduled_from=query.scheduled_from,
            scheduled_to=query.scheduled_to, cursor=query.cursor, limit=query.limit)
        body = PostList(posts=[post_view(post) for post in page.posts], next_cursor=page.next_cursor)
        return msgspec.json.encode(body)

    # The encoded body is cached, so a hit costs no encoding either.
    encoded = await context.cache.get_or_load(key, load, ttl_class="post_list", tags=(post_list_tag(user.id),),
                                              type=bytes)
    return Response(encoded, media_type="application/json")


@ENDPOINTS.add("GET", "/api/scheduled-posts/{id}", "One post with its attempts, errors and Reddit URL",
               response=PostDetail, errors=(401, 404, 429), tags=TAGS)
async def get_post(request: Request) -> Response:
    user = await require_user(request)
    return json_response(await post_detail(request.app.state.api, user, path_id(request)))


async def post_detail(context, user: User, post_id: int) -> PostDetail:
    """One of the user's posts with its attempts (another user's is NotFound)."""
    post = await context.store.get_post(post_id, user.id)
    attempts = await context.store.attempts(post.job_id)
    job = await context.store.get_job(post.job_id)
    return PostDetail(**_view_fields(post), attempts=[
        AttemptView(attempt=a.attempt, started_at=a.started_at, finished_at=a.finished_at,
                    outcome=a.outcome, error=a.error) for a in attempts],
        next_attempt_at=job.run_at if post.status is PostStatus.SCHEDULED else None)


# --- changing ------------------------------------------------------------------------------------

CONTENT_CHANGES = ("subreddit", "title", "text", "url", "nsfw", "spoiler", "flair_id", "flair_text")


@ENDPOINTS.add("PATCH", "/api/scheduled-posts/{id}",
               "Edit or reschedule a post while it is scheduled; edit a failed one and schedule it again",
               body=PostChange, response=PostView, errors=(400, 401, 403, 404, 409, 413, 422, 429), tags=TAGS)
async def change_post(request: Request) -> Response:
    user = await require_user(request)
    change = await read_json(request, PostChange)
    return json_response(post_view(await edit_post(request.app.state.api, user, path_id(request), change)))


async def edit_post(context, user: User, post_id: int, change: PostChange) -> Post:
    """Edit or reschedule one of the user's posts, checked like a new post (tier, content,
    subreddit rules, duplicates); the store refuses it unless the post is scheduled
    (thotto.store.lifecycle), or failed: then it is scheduled again at a new time."""
    async with context.user_locks[user.id]:
        post = await context.store.get_post(post_id, user.id)
        content, scheduled_for = await _changed(context, user, post, change)
        if post.status is PostStatus.FAILED:
            # What Reddit refused is fixed, and the post goes back in line at its new time.
            if scheduled_for is None:
                raise ValidationError("A failed post is scheduled again at a new time: give "
                                      "scheduledFor with your corrections", field="scheduledFor")
            updated = await context.store.revive_post(post.id, scheduled_for=scheduled_for, content=content)
        else:
            updated = await context.store.update_post(post.id, user.id, content=content,
                                                      scheduled_for=scheduled_for)
    await context.cache.invalidate_tags(post_list_tag(user.id))
    return updated


async def _changed(context, user: User, post: Post, change: PostChange):
    """The post's new content and time (None where unchanged), checked like a new post."""
    edits = {name: getattr(change, name) for name in CONTENT_CHANGES
             if getattr(change, name) is not msgspec.UNSET}
    if change.media_ids is not msgspec.UNSET:
        edits["media"] = media_refs(change.media_ids)
    content = msgspec.structs.replace(post.content, **edits) if edits else None
    scheduled_for = None if change.scheduled_for is msgspec.UNSET else as_utc(change.scheduled_for)
    now = context.clock.now()
    if scheduled_for is not None:
        check_tier(user, scheduled_for, now)
    if content is not None:
        check_content(content)
        candidate = NewPost(user_id=user.id, account_id=post.account_id, content=content,
                            scheduled_for=scheduled_for or post.scheduled_for)
        await context.scheduler.posts.check(candidate, require_future=False)
        if (title_key(content.title), content.subreddit.lower()) != (
                title_key(post.content.title), post.content.subreddit.lower()):
            await check_duplicate(context, post.account_id, content.subreddit, content.title, now,
                                  exclude=post.id)
    return content, scheduled_for


@ENDPOINTS.add("DELETE", "/api/scheduled-posts/{id}", "Cancel a scheduled post",
               response=PostView, errors=(401, 404, 409, 429), tags=TAGS)
async def cancel_post(request: Request) -> Response:
    user = await require_user(request)
    return json_response(post_view(await cancel_user_post(request.app.state.api, user, path_id(request))))


async def cancel_user_post(context, user: User, post_id: int) -> Post:
    """Cancel one of the user's posts; the store refuses unless it is scheduled."""
    cancelled = await context.store.cancel_post(post_id, user.id)
    await context.cache.invalidate_tags(post_list_tag(user.id))
    return cancelled


@ENDPOINTS.add("POST", "/api/scheduled-posts/optimal-times",
               "Best weekday and hour slots to post in a subreddit, ranked",
               body=OptimalTimesRequest, response=OptimalTimes, errors=(400, 401, 422, 429), tags=TAGS)
async def optimal_times(request: Request) -> Response:
    await require_user(request)
    body = await read_json(request, OptimalTimesRequest)
    times = await request.app.state.api.scheduler.optimal_times(body.subreddit)
    return json_response(times)
