"""The accounts page: the user's linked Reddit accounts, which must be linked again (Reddit
refused their credentials: ``needs_relink``, the flag the publisher sets and the monitor
announces), a button that links one through Reddit's consent page (the API's link flow, with
this browser bound to it by a cookie), and unlink."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from thotto.api.accounts import bind_browser
from thotto.engine.errors import ConfigError
from thotto.usecases import accounts
from thotto.web.pages import SECURITY_HEADERS, Page, PageGroup

PAGES = PageGroup()


@PAGES.route("/accounts")
async def accounts_page(page: Page) -> Response:
    return await _render(page)


@PAGES.route("/accounts/link", methods=("POST",))
async def link(page: Page) -> Response:
    try:
        start = await accounts.start_link(page.context.scheduler, page.user)
    except ConfigError as error:
        return await _render(page, status=503, link_error=(
            f"Linking through Reddit's consent page is not set up on this server: {error}. "
            "An admin sets it up (see the README, Posting to Reddit)."))
    response = RedirectResponse(start.authorize_url, status_code=303, headers=SECURITY_HEADERS)
    bind_browser(page.context.scheduler, response, start)
    return response


@PAGES.route("/accounts/{id:int}/unlink", methods=("POST",))
async def unlink(page: Page) -> Response:
    unlinked = await accounts.unlink_account(page.store, page.context.cache, page.path_id(),
                                             page.user.id)
    cancelled = unlinked.posts_cancelled
    note = f" {cancelled} scheduled post{'s were' if cancelled != 1 else ' was'} cancelled." if cancelled else ""
    return page.redirect("/accounts", flash=f"u/{unlinked.account.reddit_username} is unlinked.{note}")


async def _render(page: Page, *, status: int = 200, **values) -> Response:
    linked = await page.store.list_accounts(page.user.id)
    return page.render("accounts.html", status=status, accounts=linked,
                       to_relink=[account for account in linked if account.needs_relink], **values)
