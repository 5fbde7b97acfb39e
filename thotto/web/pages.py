"""What every page module uses: routes that know who is signed in, rendering, redirects with a
flash message, errors beside their fields, and the static files.

A page module declares ``PAGES = PageGroup()`` and its handlers::

    @PAGES.route("/tokens", methods=("GET", "POST"))
    async def tokens(page: Page) -> Response:
        ...
        return page.render("tokens.html", tokens=..., errors={"name": "..."})

``auth="user"`` (the default) sends a visitor who is not signed in to the sign-in page and back;
``auth="admin"`` answers 404 to anyone but an admin (a page for admins does not exist for the
others); ``auth=None`` is public. A POST's form is read before the handler runs (``page.form``,
``page.field(name)``), and on a signed-in page its ``csrf`` field must match the session's (else
403). Every unsafe request must also come from this site (Origin / Sec-Fetch-Site), which stops
another site from signing a browser in to an account of its choosing.

A :class:`~thotto.errors.ThottoError` a handler does not catch becomes an error page with the
status the JSON API would answer (404 for another user's object, 429 with Retry-After, ...).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import mimetypes
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import msgspec
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from thotto.api.app import status_of
from thotto.errors import Forbidden, NotFound, OutcomePending, ThottoError, TooManyRequests, ValidationError
from thotto.messages import Role, User, WebSession
from thotto.web.sessions import CSRF_FIELD, SAFE_METHODS, check_csrf, current_session

log = logging.getLogger("thotto.web")

SIGN_IN_PATH = "/sign-in"
FLASH_COOKIE = "thotto_flash"
FLASH_SECONDS = 120
#: A page's form is refused beyond this many bytes (uploads go to the JSON API, not here).
FORM_MAX_BYTES = 64 * 1024

# Scripts only from this site (no inline script, so an injected one cannot run); styles may be
# inline attributes (pages position things with them); nothing may frame a page.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    admin_only: bool = False


#: The app's navigation, in order (page modules of the app add theirs here).
NAV: list[NavItem] = [
    NavItem("Home", "/"),
    NavItem("Calendar", "/calendar"),
    NavItem("Posts", "/posts"),
    NavItem("New post", "/compose"),
    NavItem("Accounts", "/accounts"),
    NavItem("API tokens", "/tokens"),
    NavItem("Settings", "/settings"),
    NavItem("Users", "/admin/users", admin_only=True),
    NavItem("Operator", "/operator", admin_only=True),
]


class SignInNeeded(ThottoError):
    """The page needs a signed-in user and the request has no live session."""


# --- templates ----------------------------------------------------------------------------------


def _local_time(value: datetime | None, zone: str = "UTC", fmt: str = "%a %-d %b %Y, %H:%M %Z") -> str:
    """A stored (UTC) time as the user reads it, in their zone."""
    if value is None:
        return "–"
    return value.astimezone(zone_info(zone)).strftime(fmt)


def zone_info(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("thotto.web", "templates"),
                             autoescape=jinja2.select_autoescape(default=True),
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["localtime"] = _local_time
    env.globals["static"] = static_url
    return env


# --- static files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    version: str


@functools.cache
def static_files() -> dict[str, StaticFile]:
    """Every file of ``thotto/web/static`` by name, read once (they are small). Only these names
    are ever served: no path from a request reaches the file system."""
    files = {}
    for entry in resources.files("thotto.web").joinpath("static").iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            body = entry.read_bytes()
            media_type = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            if media_type.startswith("text/") or media_type.endswith("javascript"):
                media_type += "; charset=utf-8"
            files[entry.name] = StaticFile(body, media_type, hashlib.sha256(body).hexdigest()[:12])
    return files


def static_url(name: str) -> str:
    """The URL of a static file, with its content's hash so a new version is fetched at once."""
    found = static_files().get(name)
    if found is None:
        raise KeyError(f"no static file {name!r} in thotto/web/static")
    return f"/static/{name}?v={found.version}"


async def serve_static(request: Request) -> Response:
    found = static_files().get(request.path_params["name"])
    if found is None:
        return error_page(request, None, 404, "No such file")
    return Response(found.body, media_type=found.media_type, headers={
        "Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})


# --- the page a handler gets ----------------------------------------------------------------------


@dataclass
class Page:
    """One request to a page: who is signed in, the form of a POST, and how to answer."""

    request: Request
    session: WebSession | None
    form: FormData | None = None
    flash: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> User:
        """The signed-in user (pages with ``auth=None`` check :attr:`session` first)."""
        if self.session is None:
            raise SignInNeeded("Sign in first")
        return self.session.user

    @property
    def context(self):
        return self.request.app.state.api

    @property
    def store(self):
        return self.context.store

    @property
    def settings(self):
        return self.context.settings

    def now(self) -> datetime:
        return self.context.engine.clock.now()

    def path_id(self, name: str = "id") -> int:
        """A row id from the path (``{id:int}``); NotFound for one no row can have."""
        value = self.request.path_params[name]
        if not 1 <= value < 2**63:
            raise NotFound(f"No such {name}: {value}")
        return value

    def field(self, name: str, default: str = "") -> str:
        """A form field as text (a file or a missing field: ``default``)."""
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else default

    def render(self, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
        return render(self.request, template, session=self.session, status=status, flash=self.flash,
                      headers=self.headers, **values)

    def redirect(self, url: str, *, flash: str | None = None, kind: str = "info") -> Response:
        """303 to ``url`` (a path on this site); ``flash`` is shown once on the next page."""
        response = RedirectResponse(local_path(url), status_code=303, headers=SECURITY_HEADERS)
        if flash:
            set_flash(self.request, response, flash, kind)
        return response


def local_path(url: str, fallback: str = "/") -> str:
    """``url`` if it is a path on this site, else ``fallback`` (no open redirect through
    ``?next=``: ``//evil.example`` and ``https://...`` are not paths here)."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return fallback
    return url


def render(request: Request, template: str, *, session: WebSession | None = None, status: int = 200,
           flash: dict[str, str] | None = None, headers: dict[str, str] | None = None,
           **values: Any) -> HTMLResponse:
    """The template rendered inside ``base.html``'s frame: the nav for the signed-in user, the
    CSRF token every form and ``app.js`` send, a flash message, and ``errors`` (field -> message)
    shown beside their fields."""
    user = session.user if session is not None else None
    shown_flash = flash if flash is not None else take_flash(request)
    values.setdefault("errors", {})
    page = environment().get_template(template).render(
        user=user, csrf_token=session.csrf_token if session is not None else "",
        nav=[item for item in NAV if not item.admin_only or (user is not None and user.role is Role.ADMIN)],
        path=request.url.path, flash=shown_flash, zone=user.time_zone if user is not None else "UTC",
        **values)
    response = HTMLResponse(page, status, headers={**SECURITY_HEADERS, **(headers or {})})
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


# --- flash messages -------------------------------------------------------------------------------


class _Flash(msgspec.Struct):
    kind: str
    text: str


def set_flash(request: Request, response: Response, text: str, kind: str = "info") -> None:
    """A message for the next page this browser opens (sealed: no other site can forge one)."""
    vault = request.app.state.api.services.vault
    sealed = vault.seal_note(msgspec.json.encode(_Flash(kind, text)).decode())
    response.set_cookie(FLASH_COOKIE, sealed, max_age=FLASH_SECONDS, path="/", httponly=True,
                        samesite="lax")


def take_flash(request: Request) -> dict[str, str] | None:
    sealed = request.cookies.get(FLASH_COOKIE)
    if not sealed or len(sealed) > 4096:
        return None
    note = request.app.state.api.services.vault.open_note(sealed, max_age_seconds=FLASH_SECONDS)
    if note is None:
        return None
    try:
        flash = msgspec.json.decode(note, type=_Flash)
    except msgspec.DecodeError:
        return None
    return {"kind": flash.kind, "text": flash.text}


# --- routes -------------------------------------------------------------------------------------

PageHandler = Callable[[Page], Awaitable[Response]]


@dataclass
class PageGroup:
    """The page routes of one module, in the order they are matched."""

    routes: list[Route] = field(default_factory=list)

    def route(self, path: str, methods: Sequence[str] = ("GET",), *, auth: str | None = "user",
              ) -> Callable[[PageHandler], PageHandler]:
        def register(handler: PageHandler) -> PageHandler:
            self.routes.append(Route(path, _serving(handler, auth), methods=list(methods)))
            return handler

        return register


def _serving(handler: PageHandler, auth: str | None) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(handler)
    async def serve(request: Request) -> Response:
        session = None
        try:
            session = await current_session(request)
            if auth is not None and session is None:
                raise SignInNeeded("Sign in first")
            if auth == "admin" and session.user.role is not Role.ADMIN:
                raise NotFound(f"No page {request.url.path}")
            form = None
            if request.method not in SAFE_METHODS:
                check_same_site(request)
                form = await read_form(request)
                if session is not None:
                    value = form.get(CSRF_FIELD)
                    await check_csrf(request, session, value if isinstance(value, str) else "")
            return await handler(Page(request, session, form))
        except SignInNeeded:
            return sign_in_redirect(request)
        except ThottoError as error:
            return error_page(request, session, status_of(error), str(error), error)
        except Exception as error:
            incident = uuid.uuid4().hex[:12]
            log.error("unexpected error in %s %s (incident %s)", request.method, request.url.path,
                      incident, exc_info=error)
            return error_page(request, session, 500, f"Something went wrong on our side (incident {incident}).")

    return serve


def sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    where = SIGN_IN_PATH if target == "/" else f"{SIGN_IN_PATH}?next={quote(target, safe='/')}"
    return RedirectResponse(where, status_code=303, headers=SECURITY_HEADERS)


def check_same_site(request: Request) -> None:
    """Refuse a change a page of another site sent (a browser says so in Sec-Fetch-Site, or in
    Origin); requests without either (scripts, old browsers) are judged by the CSRF token."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("This form was sent from another site; open Thotto and send it from there")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Forbidden("This form was sent from another site; open Thotto and send it from there")


async def read_form(request: Request) -> FormData:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > FORM_MAX_BYTES:
        raise ValidationError(f"The form is over {FORM_MAX_BYTES // 1024} KB; send less")
    try:
        return await request.form(max_files=0, max_fields=200)
    except HTTPException as error:  # a multipart body Starlette refuses (a file, too many fields)
        raise ValidationError(f"The form could not be read ({error.detail}); send the page's own form") from None


def error_page(request: Request, session: WebSession | None, status: int, message: str,
               error: BaseException | None = None) -> Response:
    headers = {}
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = str(max(1, round(error.retry_after + 0.5)))
    if isinstance(error, OutcomePending):
        headers["Retry-After"] = str(max(1, round(error.retry_after_seconds + 0.5)))
    titles = {403: "Not allowed", 404: "Not found", 409: "Not now", 422: "Check this",
              429: "Too many attempts", 500: "Something went wrong", 503: "Unavailable"}
    return render(request, "error.html", session=session, status=status, headers=headers,
                  title=titles.get(status, "Error"), message=message)


def errors_of(error: ValidationError, default_field: str) -> dict[str, str]:
    """``{field: message}`` for a form: the error's own field, else ``default_field``."""
    return {error.field or default_field: str(error)}
