"""Server-side sessions for people signed in to the pages, and CSRF protection.

The cookie ``thotto_session`` holds 256 random bits; the store keeps only their SHA-256 (a
leaked database signs nobody in), the user and a CSRF token. The cookie is HttpOnly (no script
reads it), SameSite=Lax (sent on top-level navigation, so coming back from Reddit's consent page
keeps the session, but not with cross-site POSTs) and Secure when ``public_url`` is https.

A session ends after ``web_session_idle_hours`` unused or ``web_session_max_days`` after signing
in, at sign-out, at sign-out everywhere, when its user sets a new password or is removed. Its
user (tier, role, zone) is read from the store on every request, so a change holds at once in
every process, with nothing cached to invalidate.

Every change made with a session (an unsafe method, on a page or on the JSON API) must carry the
session's CSRF token: the ``X-CSRF-Token`` header (``app.js`` sends it) or a ``csrf`` form field
(the pages' forms hold it). Another site can make a browser send the cookie, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from thotto.errors import Forbidden
from thotto.scheduler.records import User, WebSession

COOKIE = "thotto_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: last_seen_at is written at most this often per session (not on every request).
TOUCH_EVERY = timedelta(minutes=1)
#: A cookie value longer than this is not one Thotto made: refused without a store look-up.
COOKIE_MAX_LENGTH = 100
_UNREAD = object()


def session_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _context(request: Request):
    return request.app.state.api


def _now(request: Request):
    return _context(request).clock.now()


async def start_session(request: Request, user: User) -> tuple[str, WebSession]:
    """A new session for ``user``: the cookie's value (give it to :func:`set_session_cookie`)
    and the stored session."""
    context = _context(request)
    value, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires_at = _now(request) + timedelta(days=context.settings.web_session_max_days)
    session = await context.store.create_session(session_hash(value), user.id, csrf, expires_at)
    request.state.web_session = session
    return value, session


def set_session_cookie(request: Request, response: Response, value: str) -> None:
    settings = _context(request).settings
    response.set_cookie(COOKIE, value, max_age=int(settings.web_session_max_days * 86400), path="/",
                        httponly=True, samesite="lax", secure=secure_cookies(settings))


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax",
                           secure=secure_cookies(_context(request).settings))


def secure_cookies(settings) -> bool:
    return (settings.public_url or "").startswith("https:")


async def current_session(request: Request) -> WebSession | None:
    """The request's live session (looked up once per request), or None: no cookie, unknown,
    expired (then deleted), or its user removed."""
    found = getattr(request.state, "web_session", _UNREAD)
    if found is not _UNREAD:
        return found
    request.state.web_session = None
    value = request.cookies.get(COOKIE)
    if not value or len(value) > COOKIE_MAX_LENGTH:
        return None
    store = _context(request).store
    session = await store.get_session(session_hash(value))
    if session is None:
        return None
    now, settings = _now(request), _context(request).settings
    idle = timedelta(hours=settings.web_session_idle_hours)
    if now >= session.expires_at or now - session.last_seen_at >= idle:
        await store.delete_session(session.id_hash)
        return None
    if now - session.last_seen_at >= TOUCH_EVERY:
        await store.touch_session(session.id_hash)
    request.state.web_session = session
    return session


def has_session_cookie(request: Request) -> bool:
    return COOKIE in request.cookies


def csrf_matches(session: WebSession, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), session.csrf_token.encode())


async def check_csrf(request: Request, session: WebSession, form_value: str | None = None) -> None:
    """Forbidden unless a change (unsafe method) carries the session's CSRF token, in the
    ``X-CSRF-Token`` header or the ``csrf`` form field. A form is read only when the request is
    a form and ``form_value`` was not given (pages pass the field they already read)."""
    if request.method in SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER)
    if given is None and form_value is None and _is_form(request):
        form_value = await _csrf_field(request)
    if not csrf_matches(session, given if given is not None else form_value):
        raise Forbidden("This change needs the session's CSRF token (the X-CSRF-Token header or "
                        "the csrf form field); reload the page and try again")


#: A form read for its csrf field alone is at most this big (larger ones send the header).
CSRF_FORM_MAX_BYTES = 64 * 1024


async def _csrf_field(request: Request) -> str | None:
    """The ``csrf`` field of a small form, read so that the route can read the body again."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > CSRF_FORM_MAX_BYTES:
        return None
    await request.body()  # kept by the request: the route's own read sees the same bytes
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else None


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


async def session_user(request: Request) -> User | None:
    """For the JSON API: the user of the request's session if it has one, with the CSRF token
    checked for changes (Forbidden without it); None without a live session."""
    session = await current_session(request)
    if session is None:
        return None
    await check_csrf(request, session)
    return session.user
