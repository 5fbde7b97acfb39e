"""The admins' users page: every user, whether they have a password, a new one-time
set-password link for any of them (shown once, to hand over), their tier, and adding a user.
Tier changes go through :mod:`thotto.usecases.users` (they take effect in every process).
Anyone but an admin finds no such page (404)."""

from __future__ import annotations

import msgspec
from starlette.responses import Response

from thotto.errors import Conflict, ValidationError
from thotto.scheduler.records import NewUser, Tier, UserRequest
from thotto.usecases import passwords, users
from thotto.web.pages import Page, PageGroup

PAGES = PageGroup()
TIERS = [(tier.value, tier.value) for tier in Tier]


@PAGES.route("/admin/users", methods=("GET", "POST"), auth="admin")
async def user_list(page: Page) -> Response:
    if page.request.method == "GET":
        return await _render(page)
    name, tier = page.field("name").strip(), page.field("tier", Tier.FREE.value)
    try:
        request = msgspec.convert({"name": name, "tier": tier}, UserRequest)
    except msgspec.ValidationError as error:
        field = "tier" if "tier" in str(error) else "name"
        message = ("Use 1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
                   if field == "name" else "Pick one of the tiers")
        return await _render(page, status=422, new_name=name, errors={field: message})
    try:
        user = await users.add_user(page.store, NewUser(name=request.name, tier=request.tier))
    except Conflict:
        return await _render(page, status=409, new_name=name,
                             errors={"name": f"The name {name!r} is taken; choose another"})
    link = await passwords.issue_password_link(page.store, page.settings, user.id, _base(page), now=page.now())
    return await _render(page, status=201, issued=(user.name, link))


@PAGES.route("/admin/users/{id:int}/password-link", methods=("POST",), auth="admin")
async def password_link(page: Page) -> Response:
    user = await page.store.get_user(page.path_id())
    link = await passwords.issue_password_link(page.store, page.settings, user.id, _base(page), now=page.now())
    return await _render(page, issued=(user.name, link))


@PAGES.route("/admin/users/{id:int}/tier", methods=("POST",), auth="admin")
async def change_tier(page: Page) -> Response:
    user_id = page.path_id()
    try:
        tier = Tier(page.field("tier"))
    except ValueError:
        raise ValidationError("Pick one of the tiers", field="tier") from None
    user = await users.change_tier(page.store, page.context.cache, user_id, tier)
    return page.redirect("/admin/users", flash=f"{user.name} is now on the {user.tier.value} tier.")


def _base(page: Page) -> str:
    return page.context.base_url or passwords.base_url(page.settings)


async def _render(page: Page, *, status: int = 200, **values) -> Response:
    listed = await page.store.list_users()
    has_password = {user.id: await page.store.get_password_hash(user.id) is not None for user in listed}
    values.setdefault("new_name", "")
    return page.render("admin_users.html", status=status, users=listed, has_password=has_password,
                       tiers=TIERS, link_hours=page.settings.password_link_hours, **values)
