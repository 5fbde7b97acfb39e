"""Users, API tokens and linked Reddit accounts.

Admins create users and change tiers; every user manages their own tokens and linked accounts
(an admin may also mint a token for any user). Linking uses Reddit's web-app flow:
``POST /api/accounts/link`` answers the authorize URL, whose ``state`` is sealed by this
installation's key (the user's id, valid 10 minutes), so the callback needs no bearer token and
a forged or stale ``state`` is refused.
"""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from thotto.api.app import EndpointGroup, json_response, path_id, read_json, read_query
from thotto.api.auth import create_token, require_admin, require_user
from thotto.errors import ValidationError
from thotto.messages import (
    AccountView,
    ApiBody,
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
               "Start linking a Reddit account: open authorizeUrl in a browser",
               response=LinkStart, errors=(401, 429, 503), tags=("accounts",))
async def start_link(request: Request) -> Response:
    user = await require_user(request)
    context = request.app.state.api
    reddit = context.engine._reddit()
    state = context.services.vault.seal_note(f"link:{user.id}")
    return json_response(LinkStart(authorize_url=reddit.authorize_url(state), state=state))


class CallbackQuery(ApiBody, rename=None, forbid_unknown_fields=False):
    """What Reddit appends to the redirect URI."""

    state: str = ""
    code: str | None = None
    error: str | None = None


@ENDPOINTS.add("GET", "/api/accounts/callback",
               "Where Reddit sends the user back (the app's redirect URI); links the account",
               query=CallbackQuery, response=AccountView, auth=None, errors=(422, 502, 503),
               tags=("accounts",))
async def finish_link(request: Request) -> Response:
    query = read_query(request, CallbackQuery)
    context = request.app.state.api
    note = context.services.vault.open_note(query.state, max_age_seconds=LINK_STATE_SECONDS)
    if note is None or not note.startswith("link:"):
        raise ValidationError("The link request is unknown or expired; start linking again", field="state")
    if query.error or not query.code:
        raise ValidationError(f"Reddit did not grant access ({query.error or 'no code'}); "
                              "start linking again and choose Allow", field="code")
    user = await context.store.get_user(int(note.removeprefix("link:")))
    account = await context.engine.link_account_with_code(user.id, query.code)
    if "text/html" in request.headers.get("accept", ""):
        name = html.escape(account.reddit_username)
        return HTMLResponse(f"<!doctype html><title>Linked</title><p>u/{name} is linked to Thotto. "
                            "You can close this page.</p>")
    return json_response(account_view(account))
