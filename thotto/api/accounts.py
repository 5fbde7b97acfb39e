"""Users, API tokens and linked Reddit accounts.

Admins create users and change tiers; every user manages their own tokens and linked accounts
(an admin may also mint a token for any user). The routes parse and present; each action is a
use case (:mod:`thotto.usecases.users`, :mod:`~thotto.usecases.tokens`,
:mod:`~thotto.usecases.accounts`, which explains how a web-app link is bound to whoever started
it), the same the ``thotto`` commands call.

Linking by consent, over HTTP: ``POST /api/accounts/link`` answers the authorize URL, the state
and the secret; the secret also comes as a cookie for the callback's path, so that when the
browser that started the link comes back from Reddit the callback links at once. Any other
arrival gets a verification code (a page, or JSON), and the starter completes with
``POST /api/accounts/link/complete {state, secret, verificationCode}``.
"""

from __future__ import annotations

import hashlib
import html
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from thotto.api.auth import require_admin, require_user
from thotto.api.endpoints import EndpointGroup, json_response, path_id, read_json, read_query
from thotto.scheduler.records import (
    AccountUnlinkedView,
    AccountView,
    ApiBody,
    LinkCompletion,
    LinkPending,
    LinkStart,
    NewUser,
    TierChange,
    TimeZoneChange,
    TokenCreated,
    TokenRequest,
    TokenView,
    UserRemoved,
    UserRequest,
    UserView,
)
from thotto.usecases import accounts, tokens, users
from thotto.usecases.accounts import LINK_STATE_SECONDS
from thotto.web.pages import set_flash
from thotto.web.sessions import current_session

ENDPOINTS = EndpointGroup()
CALLBACK_PATH = "/api/accounts/callback"


def user_view(user) -> UserView:
    return UserView(id=user.id, name=user.name, tier=user.tier, role=user.role, created_at=user.created_at,
                    time_zone=user.time_zone)


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


@ENDPOINTS.add("PUT", "/api/me/time-zone",
               "Show and take your times in this IANA time zone (Europe/Berlin); the pages use it",
               body=TimeZoneChange, response=UserView, errors=(400, 401, 422, 429), tags=("users",))
async def set_time_zone(request: Request) -> Response:
    user = await require_user(request)
    context = request.app.state.api
    body = await read_json(request, TimeZoneChange)
    changed = await users.set_time_zone(context.store, context.cache, user.id, body.time_zone)
    return json_response(user_view(changed))


@ENDPOINTS.add("GET", "/api/users", "Every user (admin)", response=list[UserView], auth="admin",
               errors=(401, 403, 429), tags=("users",))
async def list_users(request: Request) -> Response:
    await require_admin(request)
    everyone = await request.app.state.api.store.list_users()
    return json_response([user_view(user) for user in everyone])


@ENDPOINTS.add("POST", "/api/users", "Create a user (admin)", body=UserRequest, response=UserView,
               status=201, auth="admin", errors=(400, 401, 403, 409, 422, 429), tags=("users",))
async def add_user(request: Request) -> Response:
    await require_admin(request)
    body = await read_json(request, UserRequest)
    user = await users.add_user(request.app.state.api.store,
                                NewUser(name=body.name, tier=body.tier, role=body.role))
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
    context = request.app.state.api
    record, token = await tokens.mint(context.store, context.cache, user_id, name)
    return json_response(TokenCreated(id=record.id, name=record.name, created_at=record.created_at,
                                      token=token), 201)


@ENDPOINTS.add("DELETE", "/api/tokens/{id}",
               "Revoke one of your tokens (admins: any token); it stops working everywhere within a "
               "second",
               response=TokenView, errors=(401, 404, 429), tags=("tokens",))
async def revoke_token(request: Request) -> Response:
    user = await require_user(request)
    context = request.app.state.api
    revoked = await tokens.revoke(context.store, context.cache, path_id(request), by=user)
    return json_response(token_view(revoked))


# --- Reddit accounts -------------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/accounts", "Your linked Reddit accounts", response=list[AccountView],
               errors=(401, 429), tags=("accounts",))
async def list_accounts(request: Request) -> Response:
    user = await require_user(request)
    linked = await request.app.state.api.store.list_accounts(user.id)
    return json_response([account_view(account) for account in linked])


@ENDPOINTS.add("DELETE", "/api/accounts/{id}",
               "Unlink one of your Reddit accounts: its credentials are erased, its scheduled posts "
               "are cancelled, and it is no longer listed (linking it again brings it back)",
               response=AccountUnlinkedView, errors=(401, 404, 429), tags=("accounts",))
async def unlink(request: Request) -> Response:
    user = await require_user(request)
    context = request.app.state.api
    unlinked = await accounts.unlink_account(context.store, context.cache, path_id(request), user.id)
    return json_response(AccountUnlinkedView(id=unlinked.account.id,
                                             reddit_username=unlinked.account.reddit_username,
                                             posts_cancelled=unlinked.posts_cancelled))


@ENDPOINTS.add("POST", "/api/accounts/link",
               "Start linking a Reddit account: open authorizeUrl in a browser. The answer's secret "
               "binds the link to you (a browser also gets it as a cookie, and its callback links "
               "at once); an API client keeps it for POST /api/accounts/link/complete. The state "
               "works once, for 10 minutes",
               response=LinkStart, errors=(401, 429, 503), tags=("accounts",))
async def start_link(request: Request) -> Response:
    user = await require_user(request)
    scheduler = request.app.state.api.scheduler
    started = await accounts.start_link(scheduler, user)
    response = json_response(started)
    bind_browser(scheduler, response, started)
    return response


def bind_browser(scheduler, response: Response, started: LinkStart) -> None:
    """Give the browser that started a link its secret (the API's and the accounts page's
    button), as a cookie it sends back only to the callback, and only over HTTPS when that is
    HTTPS."""
    reddit = accounts.reddit_client(scheduler)
    response.set_cookie(_cookie_name(started.state), started.secret, max_age=int(LINK_STATE_SECONDS),
                        path=_callback_path(reddit), httponly=True, samesite="lax",
                        secure=reddit.config.redirect_uri.startswith("https:"))


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
    scheduler = request.app.state.api.scheduler
    cookie = request.cookies.get(_cookie_name(query.state)) if query.state else None
    answer = await accounts.answer_link(scheduler, query.state, query.code, query.error,
                                        browser_secret=cookie)
    if isinstance(answer, LinkPending):
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_pending_page(answer), 202)
        return json_response(answer, 202)
    response = await _linked_response(request, answer)
    response.delete_cookie(_cookie_name(query.state), path=_callback_path(accounts.reddit_client(scheduler)))
    return response


@ENDPOINTS.add("POST", "/api/accounts/link/complete",
               "Finish a link an API client started: after the person consented on Reddit, give "
               "the state and secret that POST /api/accounts/link returned and the verification "
               "code the callback page showed them. Only the user who started the link can, once",
               body=LinkCompletion, response=AccountView,
               errors=(400, 401, 409, 413, 422, 429, 502, 503), tags=("accounts",))
async def complete_link(request: Request) -> Response:
    user = await require_user(request)
    body = await read_json(request, LinkCompletion)
    account = await accounts.complete_link(request.app.state.api.scheduler, user, body.state,
                                           body.secret, body.verification_code)
    return json_response(account_view(account))


# --- linking, as a browser sees it -----------------------------------------------------------------


def _cookie_name(state: str) -> str:
    """One cookie per link, so that two links started in one browser do not undo each other."""
    return "thotto_link_" + hashlib.sha256(state.encode()).hexdigest()[:16]


def _callback_path(reddit) -> str:
    """The callback's path as the browser sees it: the redirect URI's (a proxy may prefix it)."""
    return urlsplit(reddit.config.redirect_uri or "").path or CALLBACK_PATH


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


async def _linked_response(request: Request, account) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        session = await current_session(request)
        if session is not None and session.user.id == account.user_id:  # back to the app
            response = RedirectResponse("/accounts", status_code=303)
            set_flash(request, response, f"u/{account.reddit_username} is linked.")
            return response
        name = html.escape(account.reddit_username)
        return HTMLResponse(f"<!doctype html><title>Linked</title><p>u/{name} is linked to Thotto. "
                            "You can close this page.</p>")
    return json_response(account_view(account))
