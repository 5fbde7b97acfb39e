"""The user's settings page: their time zone (every page shows and takes times in it; the
browser's zone is offered) and signing out everywhere."""

from __future__ import annotations

from starlette.responses import Response

from thotto.errors import ValidationError
from thotto.usecases.users import set_time_zone, time_zones
from thotto.web.pages import Page, PageGroup

PAGES = PageGroup()


@PAGES.route("/settings", methods=("GET", "POST"))
async def settings(page: Page) -> Response:
    if page.request.method == "POST":
        zone = page.field("time_zone").strip()
        try:
            await set_time_zone(page.store, page.context.cache, page.user.id, zone)
        except ValidationError as error:
            return _render(page, status=422, errors={"time_zone": str(error)})
        return page.redirect("/settings", flash=f"Times are now shown in {zone}.")
    return _render(page)


def _render(page: Page, *, status: int = 200, errors: dict[str, str] | None = None) -> Response:
    sessions_note = "This signs out every browser where you are signed in, this one too."
    return page.render("settings.html", status=status, errors=errors or {},
                       zones=[(zone, zone.replace("_", " ")) for zone in time_zones()],
                       sessions_note=sessions_note)
