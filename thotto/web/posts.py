"""The creator's post pages: compose (and edit, duplicate), the calendar (month, week), the list,
and one post's page.

The pages are HTML shells; their scripts (``static/compose.js``, ``calendar.js``, ``list.js``,
``post.js``) call the JSON API with the session, so every rule is the API's own use case
(``schedule_for_user``, ``edit_post``, ``cancel_user_post``, ``post_detail`` and the composer's
checks in :mod:`thotto.api.composing`). A page that names a post checks here, through
``post_detail``, that the post is the signed-in user's: another user's answers 404, the same as a
post that does not exist.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from thotto.api.posts import post_detail
from thotto.errors import NotFound
from thotto.messages import User
from thotto.web.pages_scaffold import page_user, render_page

VIEWS = ("month", "week")


def user_time_zone(user: User) -> str:
    """The IANA time zone the user's pages show and take times in."""
    return getattr(user, "time_zone", None) or "UTC"


async def _page(request: Request, template: str, **context: Any) -> Response:
    user = await page_user(request)
    return render_page(request, template, user=user, time_zone=user_time_zone(user), **context)


def _post_id(value: str | None) -> int | None:
    """A post id from the address, or None; anything else is no post (404)."""
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18 or int(value) < 1:
        raise NotFound(f"No such post: {value!r}")
    return int(value)


async def _own_post(request: Request, post_id: int | None) -> None:
    """404 unless the post is the signed-in user's (before any page names it)."""
    if post_id is not None:
        await post_detail(request.app.state.api, await page_user(request), post_id)


async def compose(request: Request) -> Response:
    edit_id = _post_id(request.query_params.get("edit"))
    from_id = _post_id(request.query_params.get("from"))
    await _own_post(request, edit_id or from_id)
    heading = "Edit post" if edit_id else "New post"
    label = "Save changes" if edit_id else "Schedule"
    return await _page(request, "compose.html", edit_id=edit_id, from_id=from_id, heading=heading,
                       submit_label=label)


async def calendar(request: Request) -> Response:
    view = request.query_params.get("view", "month")
    date = request.query_params.get("date", "")
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        date = ""  # the script starts at today in the user's zone
    return await _page(request, "calendar.html", view=view if view in VIEWS else "month", date=date)


async def post_list(request: Request) -> Response:
    status = request.query_params.get("status", "")
    return await _page(request, "posts.html", status=status, query=request.query_params.get("q", "")[:200])


async def post_page(request: Request) -> Response:
    post_id = _post_id(request.path_params["id"])
    await _own_post(request, post_id)
    return await _page(request, "post.html", post_id=post_id)


ROUTES = [
    Route("/compose", compose, methods=["GET"]),
    Route("/calendar", calendar, methods=["GET"]),
    Route("/posts", post_list, methods=["GET"]),
    Route("/posts/{id}", post_page, methods=["GET"]),
]
