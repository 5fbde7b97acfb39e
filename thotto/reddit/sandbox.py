"""A Reddit-compatible sandbox: the endpoints Thotto uses, over real HTTP, with fault injection.

Reddit cannot be reached from Thotto's machines, so the client is tested against this server, and
``THOTTO_REDDIT_URL`` points a running Thotto at it (``thotto sandbox --port P --data-dir DIR``).
It speaks Reddit's wire format: the token endpoint (password, authorization-code, refresh and
client-credentials grants; client credentials by HTTP Basic; ``{"error": "invalid_grant"}`` with
HTTP 200), an authorize page that at once redirects back with a code, and on the API side
``/api/v1/me``, ``/api/submit`` (self, link and image posts; errors as ``{"json": {"errors":
[[TYPE, message, field]]}}``), ``/api/submit_gallery_post.json``, the media upload lease, an
S3-like upload endpoint and the websocket that announces a processed media post (or its
failure), ``/api/editusertext``, ``/api/del``, ``/user/{name}/submitted``, ``/api/info?id=t3_a,t3_b``
(posts with their score and comment count), ``/comments/{id}``, ``/api/v1/{sr}/post_requirements``,
``/r/{sr}/api/flairselector``, ``/r/{sr}/api/link_flair_v2`` (moderators only),
``/r/{sr}/about`` and ``/r/{sr}/about/rules``. Paths answer with or without a trailing slash, as
Reddit's do. A post's permalink (``/r/{sr}/comments/{id}/{slug}/``) is a readable HTML page for a
browser. Every API response carries ``X-Ratelimit-Used/Remaining/Reset`` for its OAuth client,
and a client over its budget gets 429.

Where Thotto's correctness depends on it the sandbox is as strict as Reddit: flair templates
are listed to moderators only, a flair is a template id (text alone, an unknown template or a
moderator-only one picked by an ordinary user is a bare 400; a template that is not editable
keeps its own text), titles are trimmed, and media posts stay out of listings while they are
processed. ``serve_sandbox(tls=...)`` serves HTTPS and WSS for clients that insist on them.

Accounts are created by their first password grant (or authorization). Subreddits are seeded with
one of each kind (:data:`SEED_SUBREDDITS`) and set through the control API.

Control API (JSON), under ``/_sandbox``:

* ``POST /_sandbox/faults`` — replace the fault set (:class:`Faults`): latency, HTTP errors by
  status and rate (``count`` limits how often; as Reddit's JSON or, ``html``, as the HTML page
  Reddit's edge blocks clients with), ``RATELIMIT`` bodies with a wait, other submission errors
  sent transiently (``submit_errors``: ``SUBREDDIT_NOEXIST`` for a subreddit that exists), 429
  with headers, media posts whose processing fails, "accept the next posts then drop the
  connection", and the immediate actions ``expire_tokens`` and ``revoke_refresh_tokens``.
  ``GET`` shows what is left of it.
* ``POST /_sandbox/config`` — token lifetime, rate budget and window, who the authorize page
  authorizes (:class:`SandboxConfig`).
* ``POST /_sandbox/subreddits`` — add or replace subreddits (a list of :class:`SandboxSubreddit`).
* ``GET /_sandbox/posts`` — every accepted post, read back from the durable record.
* ``POST /_sandbox/engagement`` — set posts' score and comment count:
  ``{"<post id>": {"score": 42, "num_comments": 7}}`` (ids with or without ``t3_``). Every
  accepted post starts at score 1 (the author's own upvote) and no comments, as on Reddit.
  ``GET`` shows what was set.
* ``POST /_sandbox/reset`` — forget everything: posts, accounts, tokens, media, faults, settings.

Durability: each accepted post is appended to ``posts.jsonl`` in the data directory and fsynced
before the reply, so a test can prove exactly-once publishing across sandbox restarts. Accounts,
app credentials, refresh tokens, subreddits and settings live in ``state.json`` (rewritten
atomically); access tokens and authorization codes live in memory only, so a restart makes every
client refresh its token, as an outage of Reddit's token cache would.
"""

from __future__ import annotations

import base64
import binascii
import html
import logging
import math
import os
import random
import re
import secrets
import socket
import time
import zlib
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from thotto.files import keep_private

POSTS_FILE = "posts.jsonl"
STATE_FILE = "state.json"
MEDIA_DIR = "media"
_FIRST_POST_NUMBER = 36**5  # ids look like Reddit's ("100000" in base 36 and up)


# --- the sandbox's model ---------------------------------------------------------------------


class Flair(msgspec.Struct, kw_only=True):
    """A link flair template."""

    id: str
    text: str
    text_editable: bool = False
    mod_only: bool = False


class SandboxSubreddit(msgspec.Struct, kw_only=True):
    """One subreddit and what it allows."""

    name: str
    state: str = "public"
    """public, private (403 to reads, SUBREDDIT_NOTALLOWED to posts) or banned (404, and
    SUBREDDIT_NOEXIST to posts)."""
    submission_type: str = "any"
    """any, self (link posts get NO_LINKS) or link (self posts get NO_SELFS)."""
    allow_images: bool = True
    flair_required: bool = False
    flairs: list[Flair] = []
    over18: bool = False
    subscribers: int = 1000
    title_min: int | None = None
    title_max: int | None = None
    moderators: list[str] = []
    """Accounts that moderate it: only they may read the flair templates (``link_flair_v2``)
    and pick moderator-only flairs, as on Reddit."""
    users_assign_flair: bool = True
    """Whether ordinary users may pick a link flair (the about page's
    ``can_assign_link_flair``); when not, the flair selector offers them nothing."""
    community_rules: list[str] = msgspec.field(default_factory=lambda: ["Be kind", "Stay on topic"])
    """The rules' short names, as ``/r/{sr}/about/rules`` lists them."""


TEST_FLAIRS = [
    Flair(id="6c4b3e7a-0000-4000-8000-000000000001", text="Discussion", text_editable=True),
    Flair(id="6c4b3e7a-0000-4000-8000-000000000002", text="News"),
]

SEED_SUBREDDITS = [
    SandboxSubreddit(name="test", flairs=TEST_FLAIRS, subscribers=12000),
    SandboxSubreddit(name="self_only", submission_type="self"),
    SandboxSubreddit(name="links_only", submission_type="link"),
    SandboxSubreddit(name="flair_required", flair_required=True, flairs=TEST_FLAIRS),
    SandboxSubreddit(name="private_sub", state="private"),
    SandboxSubreddit(name="banned_sub", state="banned"),
    SandboxSubreddit(name="nsfw_sub", over18=True, subscribers=500),
    SandboxSubreddit(name="no_images", allow_images=False),
]
"""What a fresh sandbox knows: one subreddit of each kind."""


class SandboxConfig(msgspec.Struct, kw_only=True):
    """Settings of a running sandbox (``POST /_sandbox/config`` changes any of them)."""

    token_lifetime: float = 3600.0
    """Seconds an access token lives (Reddit's ``expires_in``)."""
    rate_budget: int = 1000
    """Requests per OAuth client per window (Reddit: 1,000 per 10 minutes)."""
    rate_window: float = 600.0
    authorize_as: str = "sandbox_user"
    """The account the authorize page grants access to, unless the URL names ``username``."""
    media_delay: float = 0.0
    """Seconds an accepted image or gallery post stays out of listings ("processing"), as on
    Reddit; its websocket announces it when processing ends."""


class ErrorRule(msgspec.Struct, kw_only=True):
    """Answer requests with ``status`` at ``rate`` (0..1), ``count`` times (None: always)."""

    status: int
    rate: float = 1.0
    count: int | None = None
    path: str | None = None
    """Only requests whose path starts with this."""
    reason: str | None = None
    """Reddit's ``reason`` word in the body (``private``, ``banned``)."""
    html: bool = False
    """Answer with an HTML page instead of Reddit's JSON error, as Reddit's edge does when it
    blocks a client (often for a while only)."""


class SubmitErrorRule(msgspec.Struct, kw_only=True):
    """Answer the next ``count`` submissions with Reddit's ``[type, message, field]`` error,
    whatever the submission: Reddit sends some errors (``SUBREDDIT_NOEXIST`` for a subreddit
    that exists) transiently."""

    type: str
    message: str = "that subreddit doesn't exist"
    field: str = "sr"
    count: int = 1


class RateLimitRule(msgspec.Struct, kw_only=True):
    """Answer the next ``count`` submissions with a ``RATELIMIT`` error."""

    count: int = 1
    message: str | None = None
    """Default: "you are doing that too much. try again in N seconds." from ``seconds``, else
    Reddit's "take a break for 2 minutes" wording."""
    seconds: float | None = None
    """Also sent as ``json.ratelimit`` (as Reddit does) when set."""


class TooManyRequestsRule(msgspec.Struct, kw_only=True):
    """Answer the next ``count`` API requests with 429 and exhausted rate-limit headers."""

    count: int = 1
    reset: float = 30.0


class Faults(msgspec.Struct, kw_only=True):
    """The fault set; ``POST /_sandbox/faults`` replaces it."""

    latency: float = 0.0
    """Seconds added before handling each Reddit request."""
    latency_max: float | None = None
    """When set, each delay is drawn uniformly from ``latency`` to ``latency_max`` seconds."""
    latency_path: str | None = None
    """Only delay requests whose path starts with this."""
    errors: list[ErrorRule] = []
    ratelimit: RateLimitRule | None = None
    too_many_requests: TooManyRequestsRule | None = None
    drop_after_accept: int = 0
    """Record the next N submissions durably, then drop the connection instead of replying."""
    hold_after_accept: float = 0.0
    """Seconds to wait between recording a submission and replying: a window in which a test can
    kill the client after Reddit accepted the post and before the client learned of it."""
    submit_errors: list[SubmitErrorRule] = []
    media_failures: int = 0
    """The next N image or gallery posts fail processing: their websocket announces the
    failure and no post is created."""
    expire_tokens: bool = False
    """Immediate: every access token expires now."""
    revoke_refresh_tokens: bool = False
    """Immediate: every refresh token stops working."""


class PostRecord(msgspec.Struct, kw_only=True):
    """An accepted post, as the durable record keeps it."""

    id: str
    name: str
    subreddit: str
    title: str
    author: str
    created_utc: float
    kind: str
    url: str
    """The link for link posts, the image for image posts, the post's page for self posts."""
    permalink: str
    text: str | None = None
    nsfw: bool = False
    spoiler: bool = False
    flair_id: str | None = None
    flair_text: str | None = None
    send_replies: bool = True
    client_id: str = ""
    validate_on_submit: bool = False
    """Whether the client asked Reddit to check the post requirements on submission."""
    user_agent: str = ""
    """The submitting request's User-Agent."""
    gallery: list[str] | None = None
    """A gallery's media asset ids, in order."""
    gallery_captions: list[str] | None = None
    """A gallery's captions, one per image ("" where it has none)."""
    gallery_links: list[str] | None = None
    """A gallery's outbound links, one per image ("" where it has none)."""


class Engagement(msgspec.Struct, kw_only=True):
    """A post's votes and comments (``POST /_sandbox/engagement`` sets them)."""

    score: int = 1
    num_comments: int = 0


class SandboxAccount(msgspec.Struct, kw_only=True):
    id: str
    password: str | None = None
    created_utc: float = 0.0


class RefreshGrant(msgspec.Struct, kw_only=True):
    username: str
    client_id: str
    scope: str


class SandboxState(msgspec.Struct, kw_only=True):
    """What survives a restart besides the posts."""

    accounts: dict[str, SandboxAccount] = {}
    clients: dict[str, str] = {}
    """client id → secret, remembered from the client's first token request."""
    refresh_tokens: dict[str, RefreshGrant] = {}
    subreddits: list[SandboxSubreddit] = []
    config: SandboxConfig = msgspec.field(default_factory=SandboxConfig)
    engagement: dict[str, Engagement] = {}
    """Post id (base 36) → what was set; posts not in it have the default Engagement."""
    edits: dict[str, str] = {}
    """Post id → its self text as last edited (``/api/editusertext``)."""
    deleted: list[str] = []
    """Ids of posts their authors deleted (``/api/del``)."""


class _AccessToken(msgspec.Struct):
    username: str
    client_id: str
    scope: str
    expires_at: float


class _Code(msgspec.Struct):
    username: str
    client_id: str
    redirect_uri: str
    scope: str
    duration: str


class _RateWindow(msgspec.Struct):
    start: float
    used: int


class Sandbox:
    """The sandbox's state and its Starlette app (:attr:`app`).

    ``data_dir`` holds the durable record; it is created if missing and read back on start.
    ``clock`` (Unix seconds) dates posts and expires tokens. Holds open no files between requests.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, config: SandboxConfig | None = None,
                 clock=time.time):
        self.data_dir = Path(data_dir)
        keep_private(self.data_dir, (STATE_FILE, POSTS_FILE))  # made 0700, files tightened to 0600
        (self.data_dir / MEDIA_DIR).mkdir(mode=0o700, exist_ok=True)
        self.clock = clock
        self.state = self._load_state()
        if config is not None:
            self.state.config = config
        if not self.state.subreddits:
            self.state.subreddits = msgspec.convert(msgspec.to_builtins(SEED_SUBREDDITS),
                                                    list[SandboxSubreddit])
        self._save_state()
        self.posts: list[PostRecord] = self._load_posts()
        self.faults = Faults()
        self.tokens: dict[str, _AccessToken] = {}
        self.codes: dict[str, _Code] = {}
        self.windows: dict[str, _RateWindow] = {}
        self.processing_until: dict[str, float] = {}
        """Image posts still "processing" (left out of listings) until then; not persisted."""
        self.failed_media: set[str] = set()
        """Websocket ids of media posts whose processing failed (no post was made)."""
        self.assets: dict[str, str] = {}
        """Leased media asset id → its upload key (galleries name their images by asset id)."""
        self._write_lock = trio.Lock()
        self.app = _TrailingSlashes(Starlette(routes=self._routes()))

    # --- persistence ---------------------------------------------------------------------

    def _load_state(self) -> SandboxState:
        path = self.data_dir / STATE_FILE
        if path.exists():
            return msgspec.json.decode(path.read_bytes(), type=SandboxState)
        return SandboxState()

    def _save_state(self) -> None:
        path = self.data_dir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
            file.write(msgspec.json.encode(self.state))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)

    def _load_posts(self) -> list[PostRecord]:
        path = self.data_dir / POSTS_FILE
        if not path.exists():
            return []
        decoder = msgspec.json.Decoder(PostRecord)
        posts = []
        for line in path.read_bytes().splitlines():
            if line.strip():
                try:
                    posts.append(decoder.decode(line))
                except msgspec.DecodeError:
                    break  # a torn last line from a crash mid-write: it was never acknowledged
        return posts

    def read_posts(self) -> list[PostRecord]:
        """Every accepted post, from the file (not memory): what a crash would leave."""
        return self._load_posts()

    async def _append_post(self, post: PostRecord) -> None:
        line = msgspec.json.encode(post) + b"\n"

        def write() -> None:
            with open(os.open(self.data_dir / POSTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as file:
                file.write(line)
                file.flush()
                os.fsync(file.fileno())

        async with self._write_lock:
            await trio.to_thread.run_sync(write)

    def reset(self) -> None:
        """Forget everything and re-seed the subreddits."""
        for path in (self.data_dir / MEDIA_DIR).iterdir():
            path.unlink()
        (self.data_dir / POSTS_FILE).unlink(missing_ok=True)
        self.state = SandboxState(subreddits=msgspec.convert(msgspec.to_builtins(SEED_SUBREDDITS),
                                                      list[SandboxSubreddit]))
        self._save_state()
        self.posts = []
        self.faults = Faults()
        self.tokens.clear()
        self.codes.clear()
        self.windows.clear()
        self.processing_until.clear()
        self.failed_media.clear()
        self.assets.clear()

    # --- routing -------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            Route("/api/v1/authorize", self.authorize, methods=["GET"]),
            Route("/api/v1/authorize.compact", self.authorize, methods=["GET"]),
            Route("/api/v1/access_token", self.access_token, methods=["POST"]),
            Route("/api/v1/me", self.me, methods=["GET"]),
            Route("/api/submit", self.submit, methods=["POST"]),
            Route("/api/submit_gallery_post.json", self.submit_gallery, methods=["POST"]),
            Route("/api/editusertext", self.edit, methods=["POST"]),
            Route("/api/del", self.delete, methods=["POST"]),
            Route("/api/media/asset.json", self.media_lease, methods=["POST"]),
            Route("/_sandbox/media", self.media_upload, methods=["POST"]),
            Route("/_sandbox/media/{key:path}", self.media_file, methods=["GET"]),
            WebSocketRoute("/_sandbox/ws/{id}", self.media_websocket),
            Route("/user/{name}/submitted", self.submitted, methods=["GET"]),
            Route("/api/info", self.info, methods=["GET"]),
            Route("/comments/{id}", self.comments, methods=["GET"]),
            Route("/r/{sr}/comments/{id}", self.permalink, methods=["GET"]),
            Route("/r/{sr}/comments/{id}/{slug}", self.permalink, methods=["GET"]),
            Route("/api/v1/{sr}/post_requirements", self.post_requirements, methods=["GET"]),
            Route("/r/{sr}/api/link_flair_v2", self.link_flair, methods=["GET"]),
            Route("/r/{sr}/api/flairselector", self.flair_selector, methods=["POST"]),
            Route("/r/{sr}/about", self.about, methods=["GET"]),
            Route("/r/{sr}/about/rules", self.about_rules, methods=["GET"]),
            Route("/_sandbox/faults", self.control_faults, methods=["GET", "POST"]),
            Route("/_sandbox/config", self.control_config, methods=["GET", "POST"]),
            Route("/_sandbox/subreddits", self.control_subreddits, methods=["GET", "POST"]),
            Route("/_sandbox/posts", self.control_posts, methods=["GET"]),
            Route("/_sandbox/engagement", self.control_engagement, methods=["GET", "POST"]),
            Route("/_sandbox/reset", self.control_reset, methods=["POST"]),
        ]

    # --- OAuth ---------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        """Reddit's consent page, consenting at once: redirect back with a code and the state."""
        query = request.query_params
        missing = [key for key in ("client_id", "response_type", "state", "redirect_uri", "scope")
                   if not query.get(key)]
        if missing or query["response_type"] != "code":
            return PlainTextResponse(f"bad request: missing or invalid {', '.join(missing) or 'response_type'}",
                                     status_code=400)
        username = query.get("username") or self.state.config.authorize_as
        self._account(username)
        code = secrets.token_urlsafe(20)
        self.codes[code] = _Code(username, query["client_id"], query["redirect_uri"], query["scope"],
                                 query.get("duration", "temporary"))
        separator = "&" if "?" in query["redirect_uri"] else "?"
        location = f"{query['redirect_uri']}{separator}{urlencode({'state': query['state'], 'code': code})}"
        return RedirectResponse(location, status_code=302)

    async def access_token(self, request: Request) -> Response:
        """``POST /api/v1/access_token``: password, authorization-code and refresh grants."""
        fault = await self._fault(request)
        if fault is not None:
            return fault
        client_id = self._client(request)
        if client_id is None:
            return _error_json(401)
        form = await _form(request)
        grant_type = form.get("grant_type")
        now = self.clock()
        if grant_type == "password":
            username, password = form.get("username", ""), form.get("password", "")
            account = self.state.accounts.get(username)
            if not re.match(r"^[A-Za-z0-9_-]{3,20}$", username) or (
                    account is not None and account.password not in (None, password)):
                return JSONResponse({"error": "invalid_grant"})
            account = self._account(username)
            if account.password is None:
                account.password = password
                self._save_state()
            return self._grant(username, client_id, "*", refresh=False)
        if grant_type == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            if code is None or code.client_id != client_id or code.redirect_uri != form.get("redirect_uri"):
                return JSONResponse({"error": "invalid_grant"})
            return self._grant(code.username, client_id, code.scope,
                               refresh=code.duration == "permanent")
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            grant = self.state.refresh_tokens.get(token)
            if grant is None or grant.client_id != client_id:
                return JSONResponse({"error": "invalid_grant"})
            access = self._new_access_token(grant.username, client_id, grant.scope, now)
            return JSONResponse({"access_token": access, "token_type": "bearer",
                                 "expires_in": self.state.config.token_lifetime,
                                 "scope": grant.scope, "refresh_token": token})
        if grant_type == "client_credentials":
            # An app-only token: reads, no account (Reddit's "application only OAuth").
            return self._grant("", client_id, "*", refresh=False)
        return JSONResponse({"error": "unsupported_grant_type"})

    def _client(self, request: Request) -> str | None:
        """The client id of valid HTTP Basic credentials; a new client id is registered."""
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not client_id:
            return None
        known = self.state.clients.get(client_id)
        if known is None:
            self.state.clients[client_id] = secret
            self._save_state()
        elif known != secret:
            return None
        return client_id

    def _account(self, username: str) -> SandboxAccount:
        account = self.state.accounts.get(username)
        if account is None:
            number = len(self.state.accounts) + 1
            account = SandboxAccount(id=_base36(36**4 + number), created_utc=float(int(self.clock())))
            self.state.accounts[username] = account
            self._save_state()
        return account

    def _new_access_token(self, username: str, client_id: str, scope: str, now: float) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = _AccessToken(username, client_id, scope,
                                          now + self.state.config.token_lifetime)
        return token

    def _grant(self, username: str, client_id: str, scope: str, *, refresh: bool) -> Response:
        body: dict[str, Any] = {
            "access_token": self._new_access_token(username, client_id, scope, self.clock()),
            "token_type": "bearer", "expires_in": self.state.config.token_lifetime, "scope": scope}
        if refresh:
            token = secrets.token_urlsafe(24)
            self.state.refresh_tokens[token] = RefreshGrant(username=username, client_id=client_id,
                                                            scope=scope)
            self._save_state()
            body["refresh_token"] = token
        return JSONResponse(body)

    # --- the API's common path -----------------------------------------------------------

    async def _fault(self, request: Request) -> Response | None:
        """Latency and injected HTTP errors, applied before a request is handled."""
        faults = self.faults
        path = request.url.path
        if faults.latency > 0 and (faults.latency_path is None or path.startswith(faults.latency_path)):
            await trio.sleep(random.uniform(faults.latency, max(faults.latency, faults.latency_max or 0)))
        for rule in faults.errors:
            if rule.path is not None and not path.startswith(rule.path):
                continue
            if rule.count is not None and rule.count <= 0:
                continue
            if random.random() < rule.rate:
                if rule.count is not None:
                    rule.count -= 1
                if rule.html:
                    return _blocked_page(rule.status)
                return _error_json(rule.status, reason=rule.reason)
        return None

    async def _authorized(self, request: Request, scope: str
                          ) -> tuple[_AccessToken | None, Response | None]:
        """The request's token (which must carry ``scope``) after counting it against its
        client's rate limit, or the response that refuses it."""
        fault = await self._fault(request)
        if fault is not None:
            return None, fault
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        grant = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None or grant.expires_at <= self.clock():
            response = _error_json(401)
            response.headers["www-authenticate"] = 'Bearer realm="reddit", error="invalid_token"'
            return None, response
        if scope not in grant.scope.split() and grant.scope != "*":
            response = _error_json(403)
            response.headers["www-authenticate"] = 'Bearer realm="reddit", error="insufficient_scope"'
            return None, response
        too_many = self.faults.too_many_requests
        if too_many is not None and too_many.count > 0:
            too_many.count -= 1
            response = _error_json(429)
            response.headers.update({"x-ratelimit-used": str(self.state.config.rate_budget),
                                     "x-ratelimit-remaining": "0.0",
                                     "x-ratelimit-reset": str(int(too_many.reset))})
            return None, response
        headers = self._count(grant.client_id)
        if float(headers["x-ratelimit-remaining"]) < 0:
            response = _error_json(429)
            headers["x-ratelimit-remaining"] = "0.0"
            response.headers.update(headers)
            return None, response
        request.state.rate_headers = headers
        request.state.username = grant.username
        return grant, None

    def _count(self, client_id: str) -> dict[str, str]:
        """Count a request against its client's window; the headers that report it."""
        config = self.state.config
        now = self.clock()
        start = math.floor(now / config.rate_window) * config.rate_window
        window = self.windows.get(client_id)
        if window is None or window.start != start:
            window = self.windows[client_id] = _RateWindow(start, 0)
        window.used += 1
        return {"x-ratelimit-used": str(window.used),
                "x-ratelimit-remaining": f"{float(config.rate_budget - window.used):.1f}",
                "x-ratelimit-reset": str(max(0, math.ceil(start + config.rate_window - now)))}

    def _json(self, request: Request, body: Any, status_code: int = 200) -> JSONResponse:
        response = JSONResponse(msgspec.to_builtins(body), status_code=status_code)
        response.headers.update(getattr(request.state, "rate_headers", {}))
        return response

    def _subreddit(self, name: str) -> SandboxSubreddit | None:
        for rules in self.state.subreddits:
            if rules.name.lower() == name.lower():
                return rules
        return None

    def _base(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    # --- API endpoints -------------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        """``GET /api/v1/me``: the token's account."""
        grant, refused = await self._authorized(request, "identity")
        if refused is not None:
            return refused
        if not grant.username:  # an app-only token has no account
            return self._json(request, {"message": "Forbidden", "error": 403}, 403)
        account = self._account(grant.username)
        return self._json(request, {"name": grant.username, "id": account.id,
                                    "created_utc": account.created_utc, "over_18": True,
                                    "is_employee": False, "has_verified_email": True})

    async def submit(self, request: Request) -> Response:
        """``POST /api/submit``: check the post against the subreddit's rules, record it durably,
        answer as Reddit does (media posts without the post itself)."""
        grant, refused = await self._authorized(request, "submit")
        if refused is not None:
            return refused
        form = await _form(request)
        injected = self._injected_submit_error()
        if injected is not None:
            return self._json(request, injected)
        problem = self._check_submission(form, self._base(request), grant.username)
        if isinstance(problem, Response):
            problem.headers.update(request.state.rate_headers)
            return problem
        if problem is not None:
            return self._json(request, {"json": {"errors": [list(problem)]}})
        if form.get("kind") == "image" and self.faults.media_failures > 0:
            # Accepted, then its processing fails: no post; the websocket says so.
            self.faults.media_failures -= 1
            failed = secrets.token_hex(6)
            self.failed_media.add(failed)
            return self._json(request, {"json": {"errors": [], "data": {
                "user_submitted_page": f"{self._base(request)}/user/{grant.username}/submitted/",
                "websocket_url": self._websocket_url(request, failed)}}})
        form["user_agent"] = request.headers.get("user-agent", "")
        post = await self._accept(form, grant, self._base(request))
        if self.faults.hold_after_accept > 0:
            await trio.sleep(self.faults.hold_after_accept)
        if self.faults.drop_after_accept > 0:
            self.faults.drop_after_accept -= 1
            return _DroppedConnection()
        if post.kind == "image":
            # Reddit answers media posts with where to wait for them, not the post itself.
            data = {"user_submitted_page": f"{self._base(request)}/user/{post.author}/submitted/",
                    "websocket_url": self._websocket_url(request, post.id)}
        else:
            data = {"url": post.url if post.kind == "self" else self._base(request) + post.permalink,
                    "id": post.id, "name": post.name, "drafts_count": 0}
        return self._json(request, {"json": {"errors": [], "data": data}})

    def _injected_submit_error(self) -> dict[str, Any] | None:
        """The body of an injected ``RATELIMIT`` or other submission error, if one is due."""
        rate_rule = self.faults.ratelimit
        if rate_rule is not None and rate_rule.count > 0:
            rate_rule.count -= 1
            return _ratelimit_body(rate_rule)
        for rule in self.faults.submit_errors:
            if rule.count > 0:
                rule.count -= 1
                return {"json": {"errors": [[rule.type, rule.message, rule.field]]}}
        return None

    def _websocket_url(self, request: Request, ident: str) -> str:
        scheme = "wss" if request.url.scheme == "https" else "ws"
        return f"{scheme}://{request.url.netloc}/_sandbox/ws/{ident}"

    def _check_submission(self, form: dict[str, str], base: str, username: str
                          ) -> tuple[str, str, str] | Response | None:
        """Reddit's refusal of a submission, or None when it is accepted."""
        rules = self._subreddit(form.get("sr", ""))
        if rules is None or rules.state == "banned":
            return ("SUBREDDIT_NOEXIST", "that subreddit doesn't exist", "sr")
        if rules.state == "private":
            return ("SUBREDDIT_NOTALLOWED", "you aren't allowed to post there.", "sr")
        # Reddit trims the title's surrounding whitespace before it checks or keeps it.
        title = form.get("title", "").strip()
        if not title.strip():
            return ("NO_TEXT", "we need something here", "title")
        limit = min(300, rules.title_max or 300)
        if len(title) > limit:
            return ("TOO_LONG", f"this is too long (max: {limit})", "title")
        if rules.title_min and len(title) < rules.title_min:
            return ("TOO_SHORT", f"this is too short (min: {rules.title_min})", "title")
        kind = form.get("kind", "link")
        if kind == "self" and rules.submission_type == "link":
            return ("NO_SELFS", "this community doesn't allow text posts", "sr")
        if kind in ("link", "image", "gallery") and rules.submission_type == "self":
            return ("NO_LINKS", "this community only allows text posts", "sr")
        if kind in ("image", "gallery") and not rules.allow_images:
            return ("NO_IMAGES", "this community doesn't allow images", "sr")
        if kind not in ("self", "link", "image", "gallery"):
            return ("INVALID_OPTION", "that option is not valid", "kind")
        url = form.get("url", "")
        if kind in ("link", "image"):
            if not url:
                return ("NO_URL", "a url is required", "url")
            if not re.match(r"^https?://[^\s/]+", url):
                return ("BAD_URL", "you should check that url", "url")
        if kind == "image" and not self._media_path(url, base):
            return ("BAD_URL", "that image has not been uploaded", "url")
        if kind == "link" and form.get("resubmit", "").lower() != "true" and any(
                post.url == url and post.subreddit.lower() == rules.name.lower() for post in self.posts):
            return ("ALREADY_SUB", "that link has already been submitted", "url")
        return self._check_flair(form, rules, username)

    def _check_flair(self, form: dict[str, str], rules: SandboxSubreddit, username: str
                     ) -> tuple[str, str, str] | Response | None:
        """Reddit's flair rules: a flair is a template id; text alone, an unknown template or a
        moderator-only one picked by an ordinary user is a bare HTTP 400."""
        flair_id = form.get("flair_id") or None
        if form.get("flair_text") and flair_id is None:
            return _error_json(400)
        if flair_id is not None:
            template = next((flair for flair in rules.flairs if flair.id == flair_id), None)
            if template is None or (template.mod_only and not self._moderates(rules, username)):
                return _error_json(400)
        if rules.flair_required and not flair_id:
            return ("SUBMIT_VALIDATION_FLAIR_REQUIRED", "Your post must contain post flair.", "flair")
        return None

    @staticmethod
    def _moderates(rules: SandboxSubreddit, username: str) -> bool:
        return username.lower() in {name.lower() for name in rules.moderators}

    async def _accept(self, form: dict[str, str], grant: _AccessToken, base: str,
                      gallery_items: list[dict[str, Any]] | None = None) -> PostRecord:
        rules = self._subreddit(form["sr"])
        assert rules is not None
        post_id = _base36(_FIRST_POST_NUMBER + len(self.posts))
        slug = "_".join(re.findall(r"[a-z0-9]+", form["title"].lower()))[:50] or "_"
        permalink = f"/r/{rules.name}/comments/{post_id}/{slug}/"
        kind = form.get("kind", "link")
        flair_id = form.get("flair_id") or None
        flair_text = None
        if flair_id is not None:
            template = next(flair for flair in rules.flairs if flair.id == flair_id)
            # The user's own text only where the template lets them edit it.
            editable = template.text_editable and form.get("flair_text")
            flair_text = form["flair_text"] if editable else template.text
        post = PostRecord(
            id=post_id, name=f"t3_{post_id}", subreddit=rules.name, title=form["title"].strip(),
            author=grant.username, created_utc=float(int(self.clock())), kind=kind,
            url=base + permalink if kind in ("self", "gallery") else form["url"], permalink=permalink,
            text=form.get("text") if kind == "self" else None,
            nsfw=form.get("nsfw", "").lower() == "true" or rules.over18,
            spoiler=form.get("spoiler", "").lower() == "true",
            flair_id=flair_id, flair_text=flair_text,
            send_replies=form.get("sendreplies", "true").lower() == "true",
            client_id=grant.client_id,
            validate_on_submit=form.get("validate_on_submit", "").lower() == "true",
            user_agent=form.get("user_agent", ""),
            gallery=form.get("gallery") and form["gallery"].split(","),
            gallery_captions=None if gallery_items is None else
            [str(item.get("caption") or "") for item in gallery_items],
            gallery_links=None if gallery_items is None else
            [str(item.get("outbound_url") or "") for item in gallery_items])
        if kind == "image":
            self.processing_until[post.id] = self.clock() + self.state.config.media_delay
        # The id is taken before the write so that concurrent submissions get distinct ids.
        self.posts.append(post)
        await self._append_post(post)
        return post

    async def media_lease(self, request: Request) -> Response:
        """``POST /api/media/asset.json``: lease an upload slot (action URL and form fields)."""
        grant, refused = await self._authorized(request, "submit")
        if refused is not None:
            return refused
        form = await _form(request)
        filepath, mimetype = form.get("filepath", ""), form.get("mimetype", "")
        if not filepath or not mimetype.startswith("image/"):
            return self._json(request, {"json": {"errors": [
                ["INVALID_OPTION", "that option is not valid", "mimetype"]]}})
        asset_id = secrets.token_hex(8)
        key = f"{asset_id}/{Path(filepath).name}"
        self.assets[asset_id] = key
        return self._json(request, {
            "args": {"action": f"//{request.url.netloc}/_sandbox/media",
                     "fields": [{"name": "acl", "value": "private"},
                                {"name": "key", "value": key},
                                {"name": "Content-Type", "value": mimetype},
                                {"name": "x-amz-meta-ext", "value": Path(filepath).suffix.lstrip(".")},
                                {"name": "success_action_status", "value": "201"}]},
            "asset": {"asset_id": asset_id, "processing_state": "incomplete",
                      "payload": {"filepath": filepath},
                      "websocket_url": self._websocket_url(request, asset_id)}})

    async def media_upload(self, request: Request) -> Response:
        """The S3-like upload: multipart fields from the lease, then ``file``."""
        fields, files = _multipart(request.headers.get("content-type", ""), await request.body())
        key = fields.get("key", "")
        if not re.match(r"^[0-9a-f]{16}/[^/\\]+$", key) or "file" not in files:
            return Response(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidArgument"
                            b"</Code><Message>key and file are required</Message></Error>",
                            status_code=400, media_type="application/xml")
        target = self.data_dir / MEDIA_DIR / key.replace("/", "__")
        await trio.Path(target).write_bytes(files["file"])
        location = f"{self._base(request)}/_sandbox/media/{key}"
        return Response(f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><PostResponse><Location>{location}"
                        f"</Location><Key>{key}</Key></PostResponse>".encode(), status_code=201,
                        media_type="application/xml")

    async def media_file(self, request: Request) -> Response:
        """An uploaded image, as the post's URL serves it."""
        path = self._media_path(f"{self._base(request)}/_sandbox/media/{request.path_params['key']}",
                                self._base(request))
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        return Response(await trio.Path(path).read_bytes(), media_type="application/octet-stream")

    def _media_path(self, url: str, base: str) -> Path | None:
        prefix = f"{base}/_sandbox/media/"
        if not url.startswith(prefix):
            return None
        key = url[len(prefix):]
        if not re.match(r"^[0-9a-f]{16}/[^/\\]+$", key):
            return None
        path = self.data_dir / MEDIA_DIR / key.replace("/", "__")
        return path if path.exists() else None

    async def submitted(self, request: Request) -> Response:
        """``GET /user/{name}/submitted``: the user's posts, newest first, as a Listing."""
        grant, refused = await self._authorized(request, "history")
        if refused is not None:
            return refused
        name = request.path_params["name"]
        if name.lower() not in {username.lower() for username in self.state.accounts}:
            return self._json(request, {"message": "Not Found", "error": 404}, status_code=404)
        try:
            limit = max(1, min(100, int(request.query_params.get("limit", "25"))))
        except ValueError:
            limit = 25
        now = self.clock()
        deleted = set(self.state.deleted)
        posts = [post for post in reversed(self.posts) if post.author.lower() == name.lower()
                 and self.processing_until.get(post.id, now) <= now and post.id not in deleted]
        after = request.query_params.get("after")
        if after:
            names = [post.name for post in posts]
            posts = posts[names.index(after) + 1:] if after in names else []
        page = posts[:limit]
        children = [{"kind": "t3", "data": self._entry(post, self._base(request))} for post in page]
        return self._json(request, {"kind": "Listing", "data": {
            "after": page[-1].name if len(posts) > limit else None, "before": None,
            "dist": len(children), "modhash": None, "children": children}})

    async def info(self, request: Request) -> Response:
        """``GET /api/info?id=t3_a,t3_b``: those posts (up to 100), as a Listing, in the order
        asked; unknown ids are left out."""
        grant, refused = await self._authorized(request, "read")
        if refused is not None:
            return refused
        names = [name for name in request.query_params.get("id", "").split(",") if name][:100]
        by_name = {post.name: post for post in self.posts}
        now = self.clock()
        found = [by_name[name] for name in names if name in by_name
                 and self.processing_until.get(by_name[name].id, now) <= now]
        children = [{"kind": "t3", "data": self._entry(post, self._base(request))} for post in found]
        return self._json(request, {"kind": "Listing", "data": {
            "after": None, "before": None, "dist": len(children), "modhash": None,
            "children": children}})

    def _entry(self, post: PostRecord, base: str) -> dict[str, Any]:
        """A post as listings show it, with its engagement, edits and deletion."""
        engagement = self.state.engagement.get(post.id) or Engagement()
        entry = {**_listing_entry(post, base), "score": engagement.score,
                 "ups": max(engagement.score, 0), "num_comments": engagement.num_comments}
        if post.id in self.state.edits:
            entry["selftext"] = self.state.edits[post.id]
        if post.id in self.state.deleted:
            entry.update(author="[deleted]", selftext="[deleted]" if post.kind == "self" else "")
        return entry

    def _post(self, post_id: str) -> PostRecord | None:
        post_id = post_id.removeprefix("t3_")
        now = self.clock()
        for post in self.posts:
            if post.id == post_id:
                return post if self.processing_until.get(post.id, now) <= now else None
        return None

    async def _readable(self, request: Request, scope: str
                        ) -> tuple[SandboxSubreddit | None, Response | None]:
        grant, refused = await self._authorized(request, scope)
        if refused is not None:
            return None, refused
        rules = self._subreddit(request.path_params["sr"])
        if rules is None:
            return None, self._json(request, {"message": "Not Found", "error": 404}, 404)
        if rules.state == "banned":
            return None, self._json(request, {"reason": "banned", "message": "Not Found", "error": 404}, 404)
        if rules.state == "private":
            return None, self._json(request, {"reason": "private", "message": "Forbidden", "error": 403}, 403)
        return rules, None

    async def post_requirements(self, request: Request) -> Response:
        """``GET /api/v1/{sr}/post_requirements``."""
        rules, refused = await self._readable(request, "submit")
        if refused is not None:
            return refused
        return self._json(request, {
            "title_regexes": [], "body_blacklisted_strings": [], "title_blacklisted_strings": [],
            "body_text_max_length": None, "title_required_strings": [], "guidelines_text": None,
            "gallery_min_items": None, "domain_blacklist": [], "domain_whitelist": [],
            "title_text_max_length": rules.title_max, "body_restriction_policy":
                "notAllowed" if rules.submission_type == "link" else "none",
            "link_restriction_policy": "none", "guidelines_display_policy": None,
            "body_required_strings": [], "title_text_min_length": rules.title_min,
            "gallery_captions_requirement": "none", "is_flair_required": rules.flair_required,
            "gallery_max_items": None, "gallery_urls_requirement": "none", "body_regexes": [],
            "link_repost_age": None, "body_text_min_length": None})

    async def link_flair(self, request: Request) -> Response:
        """``GET /r/{sr}/api/link_flair_v2``: the flair templates, for the subreddit's
        moderators only (Reddit answers anyone else 403)."""
        rules, refused = await self._readable(request, "flair")
        if refused is not None:
            return refused
        if not self._moderates(rules, request.state.username):
            return self._json(request, {"message": "Forbidden", "error": 403}, 403)
        return self._json(request, [
            {"type": "text", "text_editable": flair.text_editable, "allowable_content": "all",
             "text": flair.text, "max_emojis": 10, "text_color": "dark", "mod_only": flair.mod_only,
             "css_class": "", "richtext": [], "background_color": "", "id": flair.id}
            for flair in rules.flairs])

    async def about(self, request: Request) -> Response:
        """``GET /r/{sr}/about``: a ``t5`` thing."""
        rules, refused = await self._readable(request, "read")
        if refused is not None:
            return refused
        return self._json(request, {"kind": "t5", "data": {
            "display_name": rules.name, "display_name_prefixed": f"r/{rules.name}",
            "name": f"t5_{_base36(zlib.crc32(rules.name.lower().encode()))}",
            "subreddit_type": "public", "submission_type": rules.submission_type,
            "over18": rules.over18, "subscribers": rules.subscribers,
            "allow_images": rules.allow_images, "link_flair_enabled": bool(rules.flairs),
            "can_assign_link_flair": bool(rules.flairs) and (
                rules.users_assign_flair or self._moderates(rules, request.state.username)),
            "user_is_moderator": self._moderates(rules, request.state.username),
            "user_is_banned": False, "public_description": f"The sandbox's r/{rules.name}.",
            "url": f"/r/{rules.name}/"}})

    async def flair_selector(self, request: Request) -> Response:
        """``POST /r/{sr}/api/flairselector`` with ``is_newlink=true``: the link flairs this
        user may pick for a new post (none when the subreddit does not let users pick;
        moderator-only ones for moderators only)."""
        rules, refused = await self._readable(request, "flair")
        if refused is not None:
            return refused
        form = await _form(request)
        if form.get("is_newlink", "").lower() != "true":
            # Without is_newlink Reddit answers about the user's own flair, not a post's.
            return self._json(request, {"current": {"flair_css_class": None, "flair_template_id": None,
                                                    "flair_text": None, "flair_position": "right"},
                                        "choices": []})
        moderator = self._moderates(rules, request.state.username)
        allowed = rules.users_assign_flair or moderator
        choices = [{"flair_css_class": "", "flair_template_id": flair.id,
                    "flair_text_editable": flair.text_editable, "flair_position": "right",
                    "flair_text": flair.text}
                   for flair in rules.flairs if allowed and (moderator or not flair.mod_only)]
        return self._json(request, {"current": {"flair_css_class": None, "flair_template_id": None,
                                                "flair_text": None, "flair_position": "right"},
                                    "choices": choices})

    async def about_rules(self, request: Request) -> Response:
        """``GET /r/{sr}/about/rules``: the community's rules."""
        rules, refused = await self._readable(request, "read")
        if refused is not None:
            return refused
        return self._json(request, {"rules": [
            {"kind": "all", "short_name": name, "description": f"{name}.",
             "description_html": f"<p>{html.escape(name)}.</p>", "violation_reason": name,
             "created_utc": 1.6e9, "priority": priority}
            for priority, name in enumerate(rules.community_rules)],
            "site_rules": ["Spam", "Personal and confidential information"],
            "site_rules_flow": []})

    # --- posts: pages, edits, deletion, galleries, media websockets -----------------------

    async def comments(self, request: Request) -> Response:
        """``GET /comments/{id}``: the post and its (here, no) comments, as two Listings."""
        grant, refused = await self._authorized(request, "read")
        if refused is not None:
            return refused
        post = self._post(request.path_params["id"])
        if post is None:
            return self._json(request, {"message": "Not Found", "error": 404}, 404)
        return self._json(request, self._comments_body(post, self._base(request)))

    def _comments_body(self, post: PostRecord, base: str) -> list[dict[str, Any]]:
        def listing(children: list[dict[str, Any]]) -> dict[str, Any]:
            return {"kind": "Listing", "data": {"after": None, "before": None, "dist": len(children),
                                                "modhash": None, "children": children}}
        return [listing([{"kind": "t3", "data": self._entry(post, base)}]), listing([])]

    async def permalink(self, request: Request) -> Response:
        """``/r/{sr}/comments/{id}/{slug}/``: the post's page. A browser (no bearer token) gets
        readable HTML, as a demo post's ``redditUrl`` opens; an API client gets the JSON of
        ``/comments/{id}``."""
        if request.headers.get("authorization", "").lower().startswith("bearer "):
            return await self.comments(request)
        post = self._post(request.path_params["id"])
        if post is None or post.subreddit.lower() != request.path_params["sr"].lower():
            return HTMLResponse(_page("Not found", "<p>There is no such post in the sandbox.</p>"),
                                status_code=404)
        return HTMLResponse(_post_page(self._entry(post, self._base(request)), post))

    async def edit(self, request: Request) -> Response:
        """``POST /api/editusertext``: a self post's new text (``thing_id``, ``text``), by its
        author only."""
        grant, refused = await self._authorized(request, "edit")
        if refused is not None:
            return refused
        form = await _form(request)
        post = self._post(form.get("thing_id", ""))
        if post is None or post.id in self.state.deleted or post.author != grant.username:
            return self._json(request, {"json": {"errors": [
                ["NOT_AUTHOR", "you can't do that", "thing_id"]]}})
        if post.kind != "self":
            return self._json(request, {"json": {"errors": [
                ["NO_SELFS", "only text posts can be edited", "thing_id"]]}})
        self.state.edits[post.id] = form.get("text", "")
        self._save_state()
        return self._json(request, {"json": {"errors": [], "data": {"things": [
            {"kind": "t3", "data": self._entry(post, self._base(request))}]}}})

    async def delete(self, request: Request) -> Response:
        """``POST /api/del`` (``id``): the author deletes a post; Reddit answers ``{}`` whatever
        the id."""
        grant, refused = await self._authorized(request, "edit")
        if refused is not None:
            return refused
        post = self._post((await _form(request)).get("id", ""))
        if post is not None and post.author == grant.username and post.id not in self.state.deleted:
            self.state.deleted.append(post.id)
            self._save_state()
        return self._json(request, {})

    async def submit_gallery(self, request: Request) -> Response:
        """``POST /api/submit_gallery_post.json``: a JSON body naming uploaded media by asset id
        (``items``: ``media_id``, ``caption``, ``outbound_url``); the post exists at once."""
        grant, refused = await self._authorized(request, "submit")
        if refused is not None:
            return refused
        try:
            body = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            return self._json(request, {"message": "Bad Request", "error": 400}, 400)
        if not isinstance(body, dict):
            return self._json(request, {"message": "Bad Request", "error": 400}, 400)
        form = _gallery_form(body)
        injected = self._injected_submit_error()
        if injected is not None:
            return self._json(request, injected)
        problem = self._check_submission(form, self._base(request), grant.username) or \
            self._check_gallery(body.get("items"))
        if isinstance(problem, Response):
            problem.headers.update(request.state.rate_headers)
            return problem
        if problem is not None:
            return self._json(request, {"json": {"errors": [list(problem)]}})
        post = await self._accept(form, grant, self._base(request), gallery_items=body["items"])
        return self._json(request, {"json": {"errors": [], "data": {
            "url": self._base(request) + post.permalink, "id": post.name}}})

    def _check_gallery(self, items: Any) -> tuple[str, str, str] | None:
        if not isinstance(items, list) or not 2 <= len(items) <= 20:
            return ("INVALID_OPTION", "a gallery has 2 to 20 images", "items")
        for item in items:
            asset = self.assets.get(str(item.get("media_id")) if isinstance(item, dict) else "")
            if asset is None or not (self.data_dir / MEDIA_DIR / asset.replace("/", "__")).exists():
                return ("MEDIA_UPLOAD_FAILED", "that image has not been uploaded", "items")
        return None

    async def media_websocket(self, websocket: WebSocket) -> None:
        """The websocket a media submission names: when processing ends it sends
        ``{"type": "success", "payload": {"redirect": <post URL>}}`` (or ``"failed"``), then
        closes, as Reddit's does."""
        ident = websocket.path_params["id"]
        await websocket.accept()
        try:
            post = next((post for post in self.posts if post.id == ident), None)
            if post is None:
                await websocket.send_text(msgspec.json.encode(
                    {"type": "failed", "payload": {"reason": "processing failed"}}).decode())
            else:
                while (until := self.processing_until.get(post.id, 0.0)) > self.clock():
                    await trio.sleep(min(0.1, until - self.clock()))
                scheme = "https" if websocket.url.scheme == "wss" else "http"
                redirect = f"{scheme}://{websocket.url.netloc}{post.permalink}"
                await websocket.send_text(msgspec.json.encode(
                    {"type": "success", "payload": {"redirect": redirect}}).decode())
            await websocket.close()
        except WebSocketDisconnect:
            pass  # the client stopped waiting

    # --- control API ---------------------------------------------------------------------

    async def control_faults(self, request: Request) -> Response:
        """``/_sandbox/faults``: GET shows, POST replaces the fault set (see :class:`Faults`)."""
        if request.method == "POST":
            try:
                faults = msgspec.json.decode(await request.body() or b"{}", type=Faults)
            except msgspec.DecodeError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if faults.expire_tokens:
                for token in self.tokens.values():
                    token.expires_at = min(token.expires_at, self.clock())
            if faults.revoke_refresh_tokens:
                self.state.refresh_tokens.clear()
                self._save_state()
            faults.expire_tokens = faults.revoke_refresh_tokens = False
            self.faults = faults
        return JSONResponse(msgspec.to_builtins(self.faults))

    async def control_config(self, request: Request) -> Response:
        """``/_sandbox/config``: GET shows, POST changes :class:`SandboxConfig` fields."""
        if request.method == "POST":
            try:
                changes = msgspec.json.decode(await request.body() or b"{}")
                merged = {**msgspec.to_builtins(self.state.config), **changes}
                self.state.config = msgspec.convert(merged, SandboxConfig)
            except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            self._save_state()
        return JSONResponse(msgspec.to_builtins(self.state.config))

    async def control_subreddits(self, request: Request) -> Response:
        """``/_sandbox/subreddits``: GET lists, POST adds or replaces by name."""
        if request.method == "POST":
            try:
                added = msgspec.json.decode(await request.body(), type=list[SandboxSubreddit])
            except msgspec.DecodeError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            names = {rules.name.lower() for rules in added}
            self.state.subreddits = [rules for rules in self.state.subreddits
                                     if rules.name.lower() not in names] + added
            self._save_state()
        return JSONResponse(msgspec.to_builtins(self.state.subreddits))

    async def control_posts(self, request: Request) -> Response:
        """``GET /_sandbox/posts``: the durable record."""
        posts = await trio.to_thread.run_sync(self.read_posts)
        return JSONResponse({"posts": msgspec.to_builtins(posts)})

    async def control_engagement(self, request: Request) -> Response:
        """``/_sandbox/engagement``: POST sets posts' score and comments, GET shows them."""
        if request.method == "POST":
            try:
                changes = msgspec.json.decode(await request.body() or b"{}",
                                              type=dict[str, Engagement])
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            known = {post.id for post in self.posts}
            ids = {name.removeprefix("t3_"): value for name, value in changes.items()}
            unknown = sorted(set(ids) - known)
            if unknown:
                return JSONResponse({"error": f"no such posts: {', '.join(unknown)}"}, status_code=404)
            self.state.engagement.update(ids)
            self._save_state()
        return JSONResponse(msgspec.to_builtins(self.state.engagement))

    async def control_reset(self, request: Request) -> Response:
        """``POST /_sandbox/reset``: see :meth:`reset`."""
        self.reset()
        return JSONResponse({"ok": True})


# --- responses and parsing ---------------------------------------------------------------------

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            408: "Request Timeout", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def _error_json(status: int, *, reason: str | None = None) -> JSONResponse:
    """Reddit's shape for HTTP errors: ``{"message": "Forbidden", "error": 403}``."""
    body: dict[str, Any] = {"message": _REASONS.get(status, "Error"), "error": status}
    if reason:
        body["reason"] = reason
    return JSONResponse(body, status_code=status)


def _ratelimit_body(rule: RateLimitRule) -> dict[str, Any]:
    if rule.message:
        message = rule.message
    elif rule.seconds is not None:
        message = f"you are doing that too much. try again in {int(rule.seconds)} seconds."
    else:
        message = ("Looks like you've been doing that a lot. Take a break for 2 minutes before "
                   "trying again.")
    body: dict[str, Any] = {"errors": [["RATELIMIT", message, "ratelimit"]]}
    if rule.seconds is not None:
        body["ratelimit"] = rule.seconds
    return {"json": body}


def _listing_entry(post: PostRecord, base: str) -> dict[str, Any]:
    return {"id": post.id, "name": post.name, "title": post.title, "subreddit": post.subreddit,
            "subreddit_name_prefixed": f"r/{post.subreddit}", "author": post.author,
            "created_utc": post.created_utc, "created": post.created_utc, "url": post.url,
            "permalink": post.permalink, "is_self": post.kind == "self",
            "selftext": post.text or "", "over_18": post.nsfw, "spoiler": post.spoiler,
            "link_flair_text": post.flair_text, "link_flair_template_id": post.flair_id,
            "send_replies": post.send_replies, "domain": urlsplit(post.url).netloc or
            f"self.{post.subreddit}", "is_video": False, "post_hint": "image"
            if post.kind == "image" else None}


def _gallery_form(body: dict[str, Any]) -> dict[str, str]:
    """A gallery's JSON body as the form fields a submission is checked and kept by."""
    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    form = {key: text(body[key]) for key in ("sr", "title", "nsfw", "spoiler", "sendreplies",
                                             "validate_on_submit", "flair_id", "flair_text", "text")
            if body.get(key) is not None}
    items = body.get("items") if isinstance(body.get("items"), list) else []
    form.update(kind="gallery", gallery=",".join(str(item.get("media_id")) for item in items
                                                  if isinstance(item, dict)))
    return form


def _blocked_page(status: int) -> Response:
    """Reddit's edge answers a client it blocks with an HTML page, not the API's JSON."""
    return HTMLResponse(_page("Blocked", "<p>You've been blocked by network security. To continue, "
                                         "log in to your Reddit account or use your developer "
                                         "token.</p>"), status_code=status)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
            f"content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
            "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:2rem auto;"
            "padding:0 1rem;color:#1a1a1b}.meta{color:#576f76;font-size:.9rem}img{max-width:100%}"
            "</style></head><body>" + body + "</body></html>")


def _post_page(entry: dict[str, Any], post: PostRecord) -> str:
    """A post's readable page: subreddit, title, author, flair, and its text, link or image."""
    escape = html.escape
    flair = f" · <span>{escape(entry['link_flair_text'])}</span>" if entry.get("link_flair_text") else ""
    if post.kind == "self":
        content = "".join(f"<p>{escape(paragraph)}</p>" for paragraph in
                          (entry["selftext"] or "").split("\n\n") if paragraph.strip())
    elif post.kind == "image":
        content = f'<p><img src="{escape(post.url)}" alt="{escape(post.title)}"></p>'
    elif post.kind == "gallery":
        content = f"<p>A gallery of {len(post.gallery or [])} images.</p>"
    else:
        content = f'<p><a href="{escape(post.url)}" rel="nofollow">{escape(post.url)}</a></p>'
    body = (f'<p class="meta">r/{escape(post.subreddit)} · Posted by u/{escape(entry["author"])}'
            f"{flair} · score {entry['score']} · {entry['num_comments']} comments · Thotto's "
            f"Reddit sandbox</p><h1>{escape(post.title)}</h1>{content}")
    return _page(f"{post.title} : {post.subreddit}", body)


class _TrailingSlashes:
    """Serve ``/api/submit/`` as ``/api/submit``: Reddit answers both (PRAW uses the first),
    where Starlette would answer 307."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)


class _DroppedConnection(Response):
    """Start a response, then break the connection before its body is complete: the client
    cannot know whether the request it sent was acted upon."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"json": {"err', "more_body": True})
        raise ConnectionAbortedError("sandbox fault: connection dropped after accepting the post")


async def _form(request: Request) -> dict[str, str]:
    """A form-encoded body (Starlette's parser needs python-multipart, which Thotto avoids)."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Fields and files of a multipart/form-data body, parsed with the standard library."""
    if not content_type.lower().startswith("multipart/form-data"):
        return {}, {}
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[str(name)] = payload
        else:
            fields[str(name)] = payload.decode("utf-8", "replace")
    return fields, files


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, remainder = divmod(number, 36)
        out = digits[remainder] + out
        if number == 0:
            return out


# --- serving -----------------------------------------------------------------------------------


async def serve_sandbox(
    host: str,
    port: int,
    data_dir: str | os.PathLike[str],
    *,
    config: SandboxConfig | None = None,
    clock=time.time,
    grace_seconds: float = 2.0,
    tls: tuple[str, str] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a :class:`Sandbox` on ``host:port`` (hypercorn's Trio worker) until cancelled.

    ``tls`` (a certificate file and its key file) serves HTTPS and WSS instead: clients that
    insist on them, as PRAW does for the media upload (it prefixes the lease's ``//host``
    action with ``https:``), can then talk to the sandbox unchanged.

    ``task_status.started(port)`` reports the bound port once listening (``port=0`` picks a free
    one). ``clock`` (Unix seconds) dates posts and expires tokens (see :class:`Sandbox`).
    Cancellation stops gracefully: no new connections, in-flight requests get up to
    ``grace_seconds`` to finish, then the server is cancelled. The durable record needs no
    closing: every accepted post was fsynced before its reply.
    """
    from hypercorn.config import Config
    from hypercorn.trio import serve

    # Bind here, outside any nursery, so that a port in use is a plain OSError for the caller;
    # hypercorn serves a duplicate of the socket ("fd://").
    family, type_, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, type_, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        sandbox = Sandbox(data_dir, config=config, clock=clock)
        hypercorn_config = Config()
        hypercorn_config.bind = [f"fd://{os.dup(listener.fileno())}"]
        hypercorn_config.accesslog = None
        hypercorn_config.errorlog = logging.getLogger("thotto.reddit.sandbox.http")
        hypercorn_config.graceful_timeout = grace_seconds
        hypercorn_config.keep_alive_timeout = 5.0
        if tls is not None:
            hypercorn_config.certfile, hypercorn_config.keyfile = tls
        stop = trio.Event()
        server_scope = trio.CancelScope(shield=True)

        async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
            # Shielded so that cancelling serve_sandbox becomes a graceful stop (below) that a
            # deadline bounds, rather than tearing connections down mid-response.
            with server_scope:
                await serve(sandbox.app, hypercorn_config, shutdown_trigger=stop.wait,
                            task_status=task_status)

        async with trio.open_nursery() as nursery:
            await nursery.start(run_server)
            try:
                task_status.started(listener.getsockname()[1])
                await trio.sleep_forever()
            finally:
                stop.set()
                server_scope.deadline = trio.current_time() + grace_seconds
    finally:
        listener.close()
