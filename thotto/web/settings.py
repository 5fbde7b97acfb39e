"""The user's settings page: their time zone (every page shows and takes times in it; the
browser's zone is offered) and signing out everywhere."""

from __future__ import annotations

import functools
import zoneinfo

from starlette.responses import Response

from thotto.errors import ValidationError
from thotto.web.pages import Page, PageGroup

PAGES = PageGroup()


@functools.cache
def time_zones() -> tuple[str, ...]:
    """Every IANA zone this Python knows (tzdata ships them), but the legacy aliases."""
    zones = sorted(zone for zone in zoneinfo.available_timezones()
                   if "/" in zone and not zone.startswith(("Etc/", "SystemV/", "US/")))
    return ("UTC", *zones)


def check_time_zone(name: str) -> str:
    if name not in time_zones():
        raise ValidationError(f"{name!r} is not an IANA time zone; pick one from the list "
                              "(e.g. Europe/Berlin, America/New_York)", field="time_zone")
    return name


@PAGES.route("/settings", methods=("GET", "POST"))
async def settings(page: Page) -> Response:
    if page.request.method == "POST":
        try:
            zone = check_time_zone(page.field("time_zone").strip())
        except ValidationError as error:
            return _render(page, status=422, errors={"time_zone": str(error)})
        await page.store.set_time_zone(page.user.id, zone)
        return page.redirect("/settings", flash=f"Times are now shown in {zone}.")
    return _render(page)


def _render(page: Page, *, status: int = 200, errors: dict[str, str] | None = None) -> Response:
    sessions_note = "This signs out every browser where you are signed in, this one too."
    return page.render("settings.html", status=status, errors=errors or {},
                       zones=[(zone, zone.replace("_", " ")) for zone in time_zones()],
                       sessions_note=sessions_note)
