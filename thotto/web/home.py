"""The app's home page (``/``): who is signed in, their zone, accounts that need relinking.
A visitor who is not signed in is sent to sign in."""

from __future__ import annotations

from starlette.responses import Response

from thotto.web.pages import Page, PageGroup

PAGES = PageGroup()


@PAGES.route("/")
async def home(page: Page) -> Response:
    accounts = await page.store.list_accounts(page.user.id)
    return page.render("home.html", account_count=len(accounts),
                       accounts_to_relink=[account for account in accounts if account.needs_relink])
