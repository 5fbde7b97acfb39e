"""The API tokens page: a user creates tokens for their scripts (each shown once, with a copy
button) and revokes them, through the same code as ``POST /api/tokens`` and
``DELETE /api/tokens/{id}``. Only the user's own tokens are listed or revocable, admins' too:
another user's token id is not found."""

from __future__ import annotations

import msgspec
from starlette.responses import Response

from thotto.api.accounts import token_view
from thotto.engine.errors import NotFound
from thotto.scheduler.records import TokenRequest
from thotto.usecases import tokens as token_use_cases
from thotto.web.pages import Page, PageGroup

PAGES = PageGroup()


@PAGES.route("/tokens", methods=("GET", "POST"))
async def tokens(page: Page) -> Response:
    if page.request.method == "GET":
        return await _render(page)
    name = page.field("name").strip()
    try:
        request = msgspec.convert({"name": name}, TokenRequest)
    except msgspec.ValidationError:
        return await _render(page, status=422, name=name, errors={"name": (
            "Use 1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit "
            "(e.g. laptop-script)")})
    # The session was read from the store for this request: a user removed a moment ago mints nothing.
    record, token = await token_use_cases.mint(page.store, page.context.cache, page.user.id, request.name)
    return await _render(page, status=201, created=token_view(record), token=token)


@PAGES.route("/tokens/{id:int}/revoke", methods=("POST",))
async def revoke(page: Page) -> Response:
    token_id = page.path_id()
    own = {token.id: token for token in await page.store.list_tokens(page.user.id)}
    if token_id not in own:
        raise NotFound(f"You have no API token {token_id}")
    await token_use_cases.revoke(page.store, page.context.cache, token_id, by=page.user)
    return page.redirect("/tokens", flash=f"The token {own[token_id].name!r} is revoked; it no longer works anywhere.")


async def _render(page: Page, *, status: int = 200, **values) -> Response:
    listed = await page.store.list_tokens(page.user.id)
    active = [token for token in listed if token.revoked_at is None]
    revoked = [token for token in listed if token.revoked_at is not None]
    values.setdefault("name", "")
    return page.render("tokens.html", status=status, active=active, revoked=revoked, **values)
