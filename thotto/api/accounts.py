"""Users, API tokens and linked Reddit accounts.

Admins create users and change tiers; every user manages their own tokens and linked accounts
(an admin may also mint a token for any user).

Linking uses Reddit's web-app flow, and a link must go to the Thotto user whose Reddit account
it is. ``POST /api/accounts/link`` answers the authorize URL with a random ``state`` and a
``secret`` that binds the link to whoever started it; the store keeps their hashes (a state
works once, for 10 minutes, in every process). The secret also comes as a cookie for the
callback's path: when the browser that started the link comes back from Reddit, the callback
links at once. Any other arrival (an API client's user consenting in a browser, or a stranger
who was handed the consent URL) links nothing: the page names the Thotto user the account
would go to and shows a verification code, and the starter completes with
``POST /api/accounts/link/complete {state, secret, verificationCode}``. The code is shown only
to the person who consented, so whoever started a link cannot finish it with someone else's
consent unless that person hands them the code on purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from thotto.api.app import EndpointGroup, json_response, path_id, read_json, read_query
from thotto.api.auth import create_token, require_admin, require_user
from thotto.engine.errors import Conflict, ValidationError
from thotto.scheduler.records import (
    AccountView,
    ApiBody,
    LinkCompletion,
    LinkPending,
    LinkRequest,
    LinkStart,
    NewUser,
    TierChange,
    TokenCreated,
    TokenRequest,
    TokenView,
    UserRemoved,
    UserRequest,
    UserView,
)
from thotto.usecases import users

ENDPOINTS = EndpointGroup()
LINK_STATE_SECONDS = 600.0
CALLBACK_PATH = "/api/accounts/callback"


def user_view(user) -> UserView:
    return UserView(id=user.id, name=user.name, tier=user.tier, role=user.role, created_at=user.created_at)


def token_view(token) -> TokenView:
    return TokenView(id=token.id, name=token.name, created_at=token.created_at, revoked_at=token.revoked_at)


def account_view(account) -> AccountView:
    return AccountView(id=account.id, reddit_username=account.reddit_username, scopes=account.scopes,
                       needs_relink=account.needs_relink, created_at=account.created_at)


# --- users ---------------------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/me", "Who the token belongs to", response=UserView, errors=(401, 429),
               tags=("users",))
async def me(request: Request) -> Response:
    return json_response(user_view(await require_user(request)))


@ENDPOINTS.add("GET", "/api/users", "Every user (admin)", response=list[UserView], auth="admin",
               errors=(401, 403, 429), tags=("users",))
async def list_users(request: Request) -> Response:
    await require_admin(request)
    users = await request.app.state.api.store.list_users()
    return json_response([user_view(user) for user in users])


@ENDPOINTS.add("POST", "/api/users", "Create a user (admin)", body=UserRequest, response=UserView,
               status=201, auth="admin", errors=(400, 401, 403, 409, 422, 429), tags=("users",))
async def add_user(request: Request) -> Response:
    await require_admin(request)
    body = await read_json(request, UserRequest)
    user = await request.app.state.api.store.create_user(NewUser(name=body.name, tier=body.tier, role=body.role))
    return json_response(user_view(user), 201)


@ENDPOINTS.add("PUT", "/api/users/{id}/tier", "Change a user's tier (admin)", body=TierChange,
               response=UserView, auth="admin", errors=(400, 401, 403, 404, 422, 429), tags=("users",))
async def set_tier(request: Request) -> Response:
    await require_admin(request, fresh=True)
    context = request.app.state.api
    body = await read_json(request, TierChange)
    user = await users.change_tier(context.store, context.cache, path_id(request), body.tier)
    return json_response(user_view(user))


@ENDPOINTS.add("DELETE", "/api/users/{id}",
               "Remove a user (admin): their tokens stop working everywhere within a second, their "
               "scheduled posts are cancelled (none is published after this), their linked Reddit "
               "accounts' credentials are erased; published posts stay as history and the name is "
               "free again. The last admin cannot be removed (409).",
               response=UserRemoved, auth="admin", errors=(401, 403, 404, 409, 429), tags=("users",))
async def remove_user(request: Request) -> Response:
    await require_admin(request, fresh=True)
    context = request.app.state.api
    removal = await users.remove_user(context.store, context.cache, path_id(request))
    return json_response(UserRemoved(id=removal.user.id, name=removal.user.name,
                                     posts_cancelled=removal.posts_cancelled,
                                     tokens_revoked=removal.tokens_revoked,
                                     accounts_unlinked=removal.accounts_unlinked))


# --- tokens --------------------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/tokens", "Your API tokens (never the tokens themselves)",
               response=list[TokenView], errors=(401, 429), tags=("tokens",))
async def list_tokens(request: Request) -> Response:
    user = await require_user(request)
    tokens = await request.app.state.api.store.list_tokens(user.id)
    return json_response([token_view(token) for token in tokens])


@ENDPOINTS.add("POST", "/api/tokens", "Create an API token for yourself; it is shown this once",
               body=TokenRequest, response=TokenCreated, status=201, errors=(400, 401, 422, 429),
               tags=("tokens",))
async def add_token(request: Request) -> Response:
    user = await require_user(request, fresh=True)  # a token revoked a moment ago mints nothing
    body = await read_json(request, TokenRequest)
    return await _created_token(request, user.id, body.name)


@ENDPOINTS.add("POST", "/api/users/{id}/tokens", "Create an API token for a user (admin)",
               body=TokenRequest, response=TokenCreated, status=201, auth="admin",
               errors=(400, 401, 403, 404, 422, 429), tags=("tokens",))
async def add_token_for(request: Request) -> Response:
    await require_admin(request, fresh=True)
    body = await read_json(request, TokenRequest)
    user = await request.app.state.api.store.get_user(path_id(request))
    return await _created_token(request, user.id, body.name)


async def _created_token(request: Request, user_id: int, name: str) -> Response:
    record, token = await create_token(request.app.state.api, user_id, name)
    return json_response(TokenCreated(id=record.id, name=record.name, created_at=record.created_at,
                                      token=token), 201)


@ENDPOINTS.add("DELETE", "/api/tokens/{id}",
               "Revoke one of your tokens (admins: any token); it stops working everywhere within a "
               "second",
               response=TokenView, errors=(401, 404, 429), tags=("tokens",))
async def revoke_token(request: Request) -> Response:
    user = await require_user(request)
    context = request.app.state.api
    revoked = await users.revoke_token(context.store, context.cache, path_id(request), by=user)
    return json_response(token_view(revoked))


# --- Reddit accounts -------------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/accounts", "Your linked Reddit accounts", response=list[AccountView],
               errors=(401, 429), tags=("accounts",))
async def list_accounts(request: Request) -> Response:
    user = await require_user(request)
    accounts = await request.app.state.api.store.list_accounts(user.id)
    return json_response([account_view(account) for account in accounts])


@ENDPOINTS.add("POST", "/api/accounts/link",
               "Start linking a Reddit account: open authorizeUrl in a browser. The answer's secret "
               "binds the link to you (a browser also gets it as a cookie, and its callback links "
               "at once); an API client keeps it for POST /api/accounts/link/complete. The state "
               "works once, for 10 minutes",
               response=LinkStart, errors=(401, 429, 503), tags=("accounts",))
async def start_link(request: Request) -> Response:
    user = await require_user(request)
    context = request.app.state.api
    reddit = context.scheduler.reddit()
    state, secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    authorize_url = reddit.authorize_url(state)  # first: without a redirect URI, 503 and no row
    expires_at = context.clock.now() + timedelta(seconds=LINK_STATE_SECONDS)
    await context.store.create_link_request(_digest(state), user.id, _digest(secret), expires_at)
    response = json_response(LinkStart(authorize_url=authorize_url, state=state, secret=secret,
                                       expires_at=expires_at))
    # The browser sends it back only to the callback, and only over HTTPS when that is HTTPS.
    response.set_cookie(_cookie_name(state), secret, max_age=int(LINK_STATE_SECONDS),
                        path=_callback_path(reddit), httponly=True, samesite="lax",
                        secure=reddit.config.redirect_uri.startswith("https:"))
    return response


class CallbackQuery(ApiBody, rename=None, forbid_unknown_fields=False):
    """What Reddit appends to the redirect URI."""

    state: str = ""
    code: str | None = None
    error: str | None = None


@ENDPOINTS.add("GET", CALLBACK_PATH,
               "Where Reddit sends the user back (the app's redirect URI). In the browser that "
               "started the link (its cookie) it links the account (200); anywhere else it links "
               "nothing and answers 202 with a verification code for the person who consented to "
               "hand to the program that started the link, which completes it with POST "
               "/api/accounts/link/complete. A used, expired or unknown state is refused (422)",
               query=CallbackQuery, response=AccountView, auth=None, errors=(422, 502, 503),
               also=((202, LinkPending, "Nothing linked yet: the starter must complete the link"),),
               tags=("accounts",))
async def finish_link(request: Request) -> Response:
    query = read_query(request, CallbackQuery)
    context = request.app.state.api
    link = await _open_link_request(context, query.state)
    if query.error or not query.code:
        await context.store.use_link_request(link.state_hash)  # a refusal ends this link
        raise ValidationError(f"Reddit did not grant access ({query.error or 'no code'}); "
                              "start linking again and choose Allow", field="code")
    cookie = request.cookies.get(_cookie_name(query.state))
    if cookie is not None and _matches(cookie, link.secret_hash):
        account = await _link_once(context, link, query.code)
        response = _linked_response(request, account)
        response.delete_cookie(_cookie_name(query.state), path=_callback_path(context.scheduler.reddit()))
        return response
    return await _hold_for_starter(request, context, link, query.code)


@ENDPOINTS.add("POST", "/api/accounts/link/complete",
               "Finish a link an API client started: after the person consented on Reddit, give "
               "the state and secret that POST /api/accounts/link returned and the verification "
               "code the callback page showed them. Only the user who started the link can, once",
               body=LinkCompletion, response=AccountView,
               errors=(400, 401, 409, 413, 422, 429, 502, 503), tags=("accounts",))
async def complete_link(request: Request) -> Response:
    user = await require_user(request)
    body = await read_json(request, LinkCompletion)
    context = request.app.state.api
    link = await _open_link_request(context, body.state)
    if link.user_id != user.id:
        raise ValidationError("This state belongs to a link another user started; start your "
                              "own with POST /api/accounts/link", field="state")
    if not _matches(body.secret, link.secret_hash):
        raise ValidationError("The secret does not match the one POST /api/accounts/link "
                              "returned with this state", field="secret")
    if link.held_code is None or link.verifier_hash is None:
        raise Conflict("Reddit has not sent the consent back yet: open authorizeUrl in a browser, "
                       "choose Allow, then send the verification code the page shows")
    if not _matches(_normal_code(body.verification_code), link.verifier_hash):
        raise ValidationError("The verification code is not the one the page after Reddit's "
                              "consent showed; check it and send it again", field="verificationCode")
    code = context.services.vault.open_note(link.held_code.decode(), max_age_seconds=LINK_STATE_SECONDS * 2)
    if code is None:
        raise ValidationError("Reddit's answer for this link can no longer be read; start linking "
                              "again", field="state")
    return json_response(account_view(await _link_once(context, link, code)))


# --- linking helpers -------------------------------------------------------------------------------

# Without 0, O, 1 and I, so that a code read off a screen is typed back right; 12 of these
# characters are 60 random bits, far beyond guessing within a link's 10 minutes.
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _matches(value: str, expected_hash: str) -> bool:
    return hmac.compare_digest(_digest(value), expected_hash)


def _cookie_name(state: str) -> str:
    """One cookie per link, so that two links started in one browser do not undo each other."""
    return "thotto_link_" + _digest(state)[:16]


def _callback_path(reddit) -> str:
    """The callback's path as the browser sees it: the redirect URI's (a proxy may prefix it)."""
    return urlsplit(reddit.config.redirect_uri or "").path or CALLBACK_PATH


def _new_verification_code() -> str:
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"


def _normal_code(code: str) -> str:
    """As typed back: any case, with or without the dashes and spaces."""
    plain = "".join(char for char in code.upper() if char.isalnum())
    return f"{plain[:4]}-{plain[4:8]}-{plain[8:]}"


async def _open_link_request(context, state: str) -> LinkRequest:
    """The link request of ``state`` if it can still link; 422 saying why not."""
    link = await context.store.get_link_request(_digest(state)) if state else None
    if link is None:
        raise ValidationError("This link request is unknown; start linking again with POST "
                              "/api/accounts/link", field="state")
    if link.used_at is not None:
        raise ValidationError("This link request was already used (a state links once); start "
                              "linking again with POST /api/accounts/link", field="state")
    if link.expires_at <= context.clock.now():
        raise ValidationError(f"This link request expired ({LINK_STATE_SECONDS / 60:g} minutes "
                              "after it started); start linking again", field="state")
    return link


async def _link_once(context, link: LinkRequest, code: str):
    """Spend the state (one caller wins across processes), then link the consenting account."""
    if not await context.store.use_link_request(link.state_hash):
        raise ValidationError("This link request was just used or expired; start linking again",
                              field="state")
    return await context.scheduler.link_account_with_code(link.user_id, code)


async def _hold_for_starter(request: Request, context, link: LinkRequest, code: str) -> Response:
    """Keep Reddit's code for the starter and show the consenting person the code that lets
    the starter finish; nothing is linked."""
    if link.held_code is not None:
        raise ValidationError("Reddit's answer for this link request already arrived; a state "
                              "is answered once. Start linking again", field="state")
    verification_code = _new_verification_code()
    sealed = context.services.vault.seal_note(code).encode()
    if not await context.store.hold_link_code(link.state_hash, sealed, _digest(verification_code)):
        raise ValidationError("This link request was just answered, used or expired; start "
                              "linking again", field="state")
    owner = await context.store.get_user(link.user_id)
    pending = LinkPending(
        detail=("Nothing is linked yet: this browser did not start this link. The program that "
                "started it finishes it with POST /api/accounts/link/complete and this "
                "verification code; give the code only if you started the link yourself"),
        link_to=owner.name, verification_code=verification_code, expires_at=link.expires_at)
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(_pending_page(pending), 202)
    return json_response(pending, 202)


def _pending_page(pending: LinkPending) -> str:
    name = html.escape(pending.link_to)
    until = pending.expires_at.strftime("%H:%M UTC")
    return ("<!doctype html><title>Almost linked</title><h1>Nothing is linked yet</h1>"
            "<p>This browser did not start this link, so Thotto does not link your Reddit account "
            f"by itself. It would go to the Thotto user <strong>{name}</strong>.</p>"
            "<p>If that is you, enter this code in the program where you started linking "
            f"(before {until}):</p><p style='font-size:2em'><code>{pending.verification_code}</code></p>"
            "<p>If you did not start this, close this page and give the code to no one: "
            "nothing will be linked.</p>")


def _linked_response(request: Request, account) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        name = html.escape(account.reddit_username)
        return HTMLResponse(f"<!doctype html><title>Linked</title><p>u/{name} is linked to Thotto. "
                            "You can close this page.</p>")
    return json_response(account_view(account))
