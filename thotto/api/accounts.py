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
from thotto.api.auth import create_token, forget_user, require_admin, require_user
from thotto.errors import NotFound, ValidationError
from thotto.messages import (
    AccountView,
    ApiBody,
    LinkStart,
    NewUser,
    Role,
    TierChange,
    TokenCreated,
    TokenRequest,
    TokenView,
    UserRequest,
    UserView,
)

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
    await require_admin(request)
    context = request.app.state.api
    body = await read_json(request, TierChange)
    user = await context.store.set_tier(path_id(request), body.tier)
    await forget_user(context, user.id)
    return json_response(user_view(user))


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
    user = await require_user(request)
    body = await read_json(request, TokenRequest)
    return await _created_token(request, user.id, body.name)


@ENDPOINTS.add("POST", "/api/users/{id}/tokens", "Create an API token for a user (admin)",
               body=TokenRequest, response=TokenCreated, status=201, auth="admin",
               errors=(400, 401, 403, 404, 422, 429), tags=("tokens",))
async def add_token_for(request: Request) -> Response:
    await require_admin(request)
    body = await read_json(request, TokenRequest)
    user = await request.app.state.api.store.get_user(path_id(request))
    return await _created_token(request, user.id, body.name)


async def _created_token(request: Request, user_id: int, name: str) -> Response:
    record, token = await create_token(request.app.state.api, user_id, name)
    return json_response(TokenCreated(id=record.id, name=record.name, created_at=record.created_at,
                                      token=token), 201)


@ENDPOINTS.add("DELETE", "/api/tokens/{id}", "Revoke one of your tokens (admins: any token)",
               response=TokenView, errors=(401, 404, 429), tags=("tokens",))
async def revoke_token(request: Request) -> Response:
    user = await require_user(request)
    context = request.app.state.api
    token_id = path_id(request)
    owner = await _token_owner(context, token_id, user)
    revoked = await context.store.revoke_token(token_id)
    await forget_user(context, owner)
    return json_response(token_view(revoked))


async def _token_owner(context, token_id: int, user) -> int:
    """The token's user id; NotFound unless it is the caller's own or the caller is an admin."""
    if any(token.id == token_id for token in await context.store.list_tokens(user.id)):
        return user.id
    if user.role is Role.ADMIN:
        for other in await context.store.list_users():
            if any(token.id == token_id for token in await context.store.list_tokens(other.id)):
                return other.id
    raise NotFound(f"No API token {token_id} of yours")


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
