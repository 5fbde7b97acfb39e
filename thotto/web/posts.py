"""The creator's post pages: compose (and edit, duplicate), the calendar (month, week), the list,
and one post's page.

The pages are HTML shells; their scripts (``static/compose.js``, ``calendar.js``, ``list.js``,
``post.js``) call the JSON API with the session, so every rule is the API's own use case
(:mod:`thotto.usecases.posts`: ``schedule``, ``edit``, ``cancel``, ``detail`` and the composer's
checks in :mod:`thotto.api.composing`). A page that names a post checks here, through
``detail``, that the post is the signed-in user's: another user's answers 404, the same as a
post that does not exist.
"""

from __future__ import annotations

import datetime as dt

from starlette.responses import Response

from thotto.usecases import posts as post_use_cases
from thotto.engine.errors import NotFound
from thotto.web.pages import Page, PageGroup

PAGES = PageGroup()
VIEWS = ("month", "week")


def _post_id(value: str | None) -> int | None:
    """A post id from the address, or None; anything else is no post (404)."""
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18 or int(value) < 1:
        raise NotFound(f"No such post: {value!r}")
    return int(value)


async def _own_post(page: Page, post_id: int | None) -> None:
    """404 unless the post is the signed-in user's (before any page names it)."""
    if post_id is not None:
        await post_use_cases.detail(page.context.scheduler, page.user, post_id)


@PAGES.route("/compose")
async def compose(page: Page) -> Response:
    query = page.request.query_params
    edit_id = _post_id(query.get("edit"))
    from_id = None if edit_id else _post_id(query.get("from"))
    await _own_post(page, edit_id or from_id)
    return page.render("compose.html", edit_id=edit_id, from_id=from_id,
                       heading="Edit post" if edit_id else "New post",
                       submit_label="Save changes" if edit_id else "Schedule")


@PAGES.route("/calendar")
async def calendar(page: Page) -> Response:
    view = page.request.query_params.get("view", "month")
    date = page.request.query_params.get("date", "")
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        date = ""  # the script starts at today in the user's zone
    return page.render("calendar.html", view=view if view in VIEWS else "month", date=date)


@PAGES.route("/posts")
async def post_list(page: Page) -> Response:
    query = page.request.query_params
    return page.render("posts.html", status_filter=query.get("status", ""), query=query.get("q", "")[:200])


@PAGES.route("/posts/{id}")
async def post_page(page: Page) -> Response:
    post_id = _post_id(page.request.path_params["id"])
    await _own_post(page, post_id)
    return page.render("post.html", post_id=post_id)
