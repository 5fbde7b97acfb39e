"""``/api/scheduled-posts``: schedule (one, several subreddits, a batch), list, read, edit, cancel,
and the optimal posting times.

The routes parse and present; what each action checks (tiers, duplicates, ownership, content) and
invalidates is :mod:`thotto.usecases.posts`, which the CLI calls too.

Post lists are cached per user and query (TTL class ``post_list``, tag
:func:`~thotto.posts.post_list_tag`). Invalidation: every change the user makes (through the use
cases) and every publication the engine records, in every process. A post's own page
(``GET /api/scheduled-posts/{id}``) is never cached.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from thotto.api.auth import require_user
from thotto.api.endpoints import EndpointGroup, decode_body, json_response, path_id, read_body, read_json, read_query
from thotto.errors import ValidationError
from thotto.scheduler.records import (
    BatchScheduleRequest,
    OptimalTimes,
    OptimalTimesRequest,
    PostChange,
    PostDetail,
    PostList,
    PostStatus,
    PostView,
    ScheduledPosts,
    ScheduleRequest,
)
from thotto.scheduler.posts import post_list_tag
from thotto.usecases import posts
from thotto.usecases.posts import BatchInvalid, item_error, post_view

ENDPOINTS = EndpointGroup()
TAGS = ("scheduled posts",)


class PostQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Filters of ``GET /api/scheduled-posts``."""

    status: PostStatus | None = None
    scheduled_from: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(default=None, name="from")
    """Only posts scheduled at or after this time (ISO 8601 with offset)."""
    scheduled_to: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(default=None, name="to")
    """Only posts scheduled before this time."""
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50


# --- scheduling ----------------------------------------------------------------------------------


@ENDPOINTS.add("POST", "/api/scheduled-posts", "Schedule a post (to one subreddit or several)",
               body=ScheduleRequest, response=ScheduledPosts, status=201,
               errors=(400, 401, 403, 409, 413, 422, 429), tags=TAGS)
async def schedule_post(request: Request) -> Response:
    user = await require_user(request)
    body = await read_json(request, ScheduleRequest)
    created = await posts.schedule(request.app.state.api.scheduler, user, [body], batch=False)
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
            errors.append(item_error(index, error))
    if errors:
        raise BatchInvalid(errors)
    created = await posts.schedule(request.app.state.api.scheduler, user, requests, batch=True)
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
        page = await posts.list_page(
            context.scheduler, user, status=query.status, scheduled_from=query.scheduled_from,
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
    return json_response(await posts.detail(request.app.state.api.scheduler, user, path_id(request)))


# --- changing ------------------------------------------------------------------------------------

@ENDPOINTS.add("PATCH", "/api/scheduled-posts/{id}",
               "Edit or reschedule a post while it is scheduled; edit a failed one and schedule it again",
               body=PostChange, response=PostView, errors=(400, 401, 403, 404, 409, 413, 422, 429), tags=TAGS)
async def change_post(request: Request) -> Response:
    user = await require_user(request)
    change = await read_json(request, PostChange)
    return json_response(post_view(await posts.edit(request.app.state.api.scheduler, user, path_id(request), change)))


@ENDPOINTS.add("DELETE", "/api/scheduled-posts/{id}", "Cancel a scheduled post",
               response=PostView, errors=(401, 404, 409, 429), tags=TAGS)
async def cancel_post(request: Request) -> Response:
    user = await require_user(request)
    return json_response(post_view(await posts.cancel(request.app.state.api.scheduler, user, path_id(request))))


@ENDPOINTS.add("POST", "/api/scheduled-posts/optimal-times",
               "Best weekday and hour slots to post in a subreddit, ranked",
               body=OptimalTimesRequest, response=OptimalTimes, errors=(400, 401, 422, 429), tags=TAGS)
async def optimal_times(request: Request) -> Response:
    await require_user(request)
    body = await read_json(request, OptimalTimesRequest)
    times = await request.app.state.api.scheduler.optimal_times(body.subreddit)
    return json_response(times)
