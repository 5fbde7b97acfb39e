"""Signing in and out: the sign-in page, the one-time set-password page, sign-out and sign-out
everywhere. The checks and limits are :mod:`thotto.usecases.passwords`'."""

from __future__ import annotations

from starlette.responses import Response

from thotto.api.auth import client_address
from thotto.errors import TooManyRequests, ValidationError
from thotto.usecases import passwords
from thotto.web.pages import Page, PageGroup, local_path
from thotto.web.sessions import clear_session_cookie, set_session_cookie, start_session

PAGES = PageGroup()


@PAGES.route("/sign-in", methods=("GET", "POST"), auth=None)
async def sign_in(page: Page) -> Response:
    next_path = local_path(page.field("next") or page.request.query_params.get("next", "/"))
    if page.request.method == "GET":
        if page.session is not None:
            return page.redirect(next_path)
        return page.render("sign_in.html", next=next_path, name="")
    name = page.field("name").strip()
    if not name:
        return page.render("sign_in.html", status=422, next=next_path, name=name,
                           errors={"name": "Enter your user name"})
    try:
        user = await passwords.sign_in(page.store, passwords.SignInLimits.from_settings(page.settings),
                                       name, page.field("password"), client_address(page.request),
                                       now=page.now())
    except ValidationError as error:
        return page.render("sign_in.html", status=422, next=next_path, name=name,
                           errors={error.field or "form": str(error)})
    except TooManyRequests as error:
        page.headers["Retry-After"] = str(max(1, round(error.retry_after + 0.5)))
        return page.render("sign_in.html", status=429, next=next_path, name=name,
                           errors={"form": str(error)})
    return await _signed_in(page, user, next_path)


async def _signed_in(page: Page, user, next_path: str, flash: str | None = None) -> Response:
    if page.session is not None:  # signing in again replaces this browser's session
        await page.store.delete_session(page.session.id_hash)
    value, _ = await start_session(page.request, user)
    response = page.redirect(next_path, flash=flash)
    set_session_cookie(page.request, response, value)
    return response


@PAGES.route("/set-password/{token}", methods=("GET", "POST"), auth=None)
async def set_password(page: Page) -> Response:
    token = page.request.path_params["token"]
    try:
        link_user = await passwords.link_user(page.store, token, now=page.now())
    except passwords.LinkUnusable as error:
        return page.render("set_password.html", status=410 if error.gone else 404, link_error=str(error),
                           token="")
    if page.request.method == "GET":
        return page.render("set_password.html", link_user=link_user, token=token)
    password = page.field("password")
    errors = {}
    try:
        passwords.check_password(password)
    except ValidationError as error:
        errors["password"] = str(error)
    if not errors and page.field("confirm") != password:
        errors["confirm"] = "This is not the same as the password above; type it again"
    if errors:
        return page.render("set_password.html", status=422, link_user=link_user, token=token, errors=errors)
    try:
        user = await passwords.set_password_with_link(page.store, token, password, now=page.now())
    except ValidationError as error:
        return page.render("set_password.html", status=422, link_user=link_user, token=token,
                           errors={error.field if error.field == "password" else "form": str(error)})
    page.session = None  # the new password ended every session of the user, this one too
    return await _signed_in(page, user, "/", flash="Your password is set; you are signed in.")


@PAGES.route("/sign-out", methods=("POST",), auth=None)
async def sign_out(page: Page) -> Response:
    if page.session is not None:
        await page.store.delete_session(page.session.id_hash)
    response = page.redirect("/sign-in", flash="You are signed out.")
    clear_session_cookie(page.request, response)
    return response


@PAGES.route("/sign-out-everywhere", methods=("POST",))
async def sign_out_everywhere(page: Page) -> Response:
    ended = await passwords.sign_out_everywhere(page.store, page.user.id)
    response = page.redirect("/sign-in", flash=f"You are signed out everywhere ({ended} session"
                                               f"{'' if ended == 1 else 's'} ended).")
    clear_session_cookie(page.request, response)
    return response
