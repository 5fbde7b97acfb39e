"""Thotto's Reddit client: OAuth2, submissions, the reads Thotto needs, rate limits, errors.

One :class:`RedditClient` per OAuth app (client id) owns the HTTP connection pool and the
:class:`~thotto.reddit.ratelimit.RateLimiter` that Reddit's per-client budget calls for; each
linked Reddit account is a :class:`RedditAccount` made from it, holding that account's
credentials and its cached access token::

    async with RedditClient(RedditConfig.from_settings(settings)) as reddit:
        account = reddit.account_from_refresh_token(refresh_token)
        result = await account.submit("test", "Hello", text="First post")
        result = await account.submit_media("test", "A cat", [ImageUpload.from_store(store, media)])

Wire format (reddit.com and the sandbox alike): tokens come from ``{token_url}/api/v1/access_token``
(client credentials by HTTP Basic, form-encoded grants); the API lives at ``{api_url}`` with
``Authorization: bearer <token>``. Every failure raises one of the Reddit errors of
:mod:`thotto.errors`, each also an engine job outcome:

* :class:`~thotto.errors.RedditRetryable` — 5xx, 408, timeouts, refused or reset connections;
  :class:`~thotto.errors.RedditOutcomeUnknown` (a subclass) when a submission may have been
  accepted: reconcile with :meth:`RedditAccount.find_submission` before submitting again.
* :class:`~thotto.errors.RedditRateLimited` — HTTP 429 or a ``RATELIMIT`` error, with ``until``.
* :class:`~thotto.errors.RedditMediaPending` — Reddit accepted an image post and is still
  processing it: defer, then look for it (never an outage).
* :class:`~thotto.errors.RedditPermanent` — 400, JSON 403/404 and Reddit's refusals
  (``NO_SELFS``, ``NO_LINKS``, ``ALREADY_SUB``...), and posts that fail validation before
  anything is sent. A 403/404 that is an HTML page (Reddit's edge blocking a client, often for a
  while) is retryable, and so is ``SUBREDDIT_NOEXIST`` for a subreddit whose about page answers
  (Reddit sends it transiently).
* :class:`~thotto.errors.RedditAuthError` — a 401 that persists after one token refresh, or a
  token endpoint that refuses the grant: the account must be linked again.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
import mimetypes
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urljoin, urlsplit
from xml.etree import ElementTree

import httpx
import msgspec
import trio
import trio_websocket

from thotto.engine.errors import ConfigError, ThottoError
from thotto.errors import (
    RedditAuthError,
    RedditMediaPending,
    RedditOutcomeUnknown,
    RedditPermanent,
    RedditRateLimited,
    RedditRetryable,
)
from thotto.reddit.ratelimit import RateLimiter, parse_rate_limit_headers

T = TypeVar("T")
UTC = timezone.utc
log = logging.getLogger(__name__)

DEFAULT_TOKEN_URL = "https://www.reddit.com"
DEFAULT_API_URL = "https://oauth.reddit.com"
DEFAULT_SCOPES = ("identity", "submit", "read", "history", "flair")
"""identity: /api/v1/me; submit: posting and media; read: about pages; history: the submitted
listing; flair: link flair templates."""

MAX_TITLE = 300
MAX_FLAIR_TEXT = 64
MAX_FLAIR_ID = 36
MAX_INFO_IDS = 100
MAX_LISTING_PAGES = 10  # Reddit lists about 1,000 of a user's posts, 100 a page
# Connections to Reddit are spread over HTTP_SHARDS connection pools: httpcore's pool scans all
# its connections, some of them twice over, whenever a request comes or goes, so with 64
# submissions in flight one pool spent more CPU on that bookkeeping than on the posts (measured:
# most of the publishing process's time; 8 pools cut it about 4x). Each account is given one pool
# when it is made (in turn), and all its requests use that pool: a post's token, upload lease,
# upload, submission and the look at the listing that reconciles it go out as they would with a
# single pool, on the connections its earlier requests left warm. No cap on connections: the
# requests in flight are already bounded (the pool's I/O workers, the API's requests), and a
# capped pool makes the next request wait and fail with PoolTimeout, which would spend a post's
# attempt.
HTTP_SHARDS = 8
HTTP_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=32)
"""Reddit's limit of ids per ``/api/info`` request."""
MAX_GALLERY_ITEMS = 20
MAX_CAPTION = 180
MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""Reddit's limits: images in a gallery, characters of a gallery caption, bytes of an image."""
DEFAULT_RATE_LIMIT_WAIT = 60.0
"""Seconds to wait when Reddit rate-limits without saying for how long."""

_IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif"}
# What submit_media uploads: the media library's formats, all of which Reddit's image posts take.
_MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# The post id in the URL a media websocket redirects to: .../comments/<id>/<slug>/
_COMMENTS_ID = re.compile(r"/comments/([a-z0-9]+)(?:/|$)")
# A subreddit (2-21 characters), or a user's profile subreddit: u_ and a username (3-20
# characters, which may contain '-').
_SUBREDDIT = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_]{1,20}|u_[A-Za-z0-9_-]{3,20})$")
# Reddit's RATELIMIT messages: "you are doing that too much. try again in 9 minutes.",
# "Looks like you've been doing that a lot. Take a break for 2 minutes before trying again.",
# "...try again in 7 seconds", "...try again in 500 milliseconds".
_WAIT = re.compile(r"(\d+(?:\.\d+)?)\s*(milliseconds?|ms|seconds?|secs?|minutes?|mins?|hours?)\b",
                   re.IGNORECASE)
_RATE_LIMIT_TYPES = frozenset({"RATELIMIT", "QUOTA_FILLED"})


def user_agent(platform: str, app_id: str, version: str, username: str | None) -> str:
    """Reddit's required form: ``<platform>:<app id>:<version> (by /u/<username>)``. Without
    a username the ``(by ...)`` part is left for :func:`user_agent_for` to add per account."""
    agent = f"{platform}:{app_id}:{version}"
    return f"{agent} (by /u/{username})" if username else agent


def user_agent_for(agent: str, username: str | None) -> str:
    """``agent``, naming ``username`` as the one responsible when it names nobody yet: Reddit's
    rules ask every User-Agent for a ``(by /u/...)``, and an installation that configured no
    username of its own is run for the accounts it posts as."""
    if "(by " in agent or not username:
        return agent
    return f"{agent} (by /u/{username})"


def parse_wait(message: str) -> float | None:
    """Seconds to wait named in a rate-limit message ("try again in 7 seconds"), or None."""
    match = _WAIT.search(message or "")
    if match is None:
        return None
    unit = match.group(2).lower()
    scale = (0.001 if unit.startswith(("ms", "milli")) else 1.0 if unit.startswith("s")
             else 60.0 if unit.startswith("min") else 3600.0)
    return float(match.group(1)) * scale


# --- configuration -------------------------------------------------------------------------


class RedditConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach Reddit as one OAuth app. :meth:`from_settings` builds it from Settings."""

    client_id: str
    client_secret: str = ""
    """Empty for installed apps; script and web apps have one."""
    user_agent: str
    token_url: str = DEFAULT_TOKEN_URL
    """Where ``/api/v1/authorize`` and ``/api/v1/access_token`` live."""
    api_url: str = DEFAULT_API_URL
    """Where the OAuth API lives."""
    redirect_uri: str | None = None
    """The web app's registered callback; needed for the authorization-code flow."""
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    requests_per_minute: float = 100.0
    """Our own budget per OAuth client; the server's headers can only slow us further."""
    burst: int = 1
    timeout_seconds: float = 30.0
    token_margin_seconds: float = 60.0
    """Renew an access token this long before Reddit says it expires (at most half its life)."""
    max_queue_seconds: float = 30.0
    """A request whose rate-limit slot is further away than this is not queued: it raises
    RedditRateLimited at once, so a job is deferred instead of holding a worker."""
    image_lookup_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """Pauses between looks for a just-submitted image post in the account's listing: the old
    image path of :meth:`RedditAccount.submit` (issue #15), which does not use the websocket
    Reddit announces image posts on (:meth:`RedditAccount.submit_media` does)."""
    media_pending_seconds: float = 30.0
    """When an accepted image post is still not listed after those looks, look again this
    long later (:class:`~thotto.errors.RedditMediaPending`)."""
    media_confirm_seconds: float = 30.0
    """How long :meth:`RedditAccount.submit_media` waits on Reddit's websocket for an image
    post's processing to end before it looks at the listing once and, if the post is not
    there yet, raises :class:`~thotto.errors.RedditMediaPending`."""
    subreddit_noexist_pause: float = 1.0
    """Pause before submitting again after a ``SUBREDDIT_NOEXIST`` for a subreddit that exists."""

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "RedditConfig":
        """The config for ``settings`` (a :class:`thotto.config.Settings`).

        ``settings.reddit_url``, when set, points both the token and the API host at it (a
        sandbox). Raises :class:`~thotto.errors.ConfigError` without a client id.
        """
        from thotto import __version__

        if not settings.reddit_client_id:
            raise ConfigError("Reddit needs reddit_client_id (THOTTO_REDDIT_CLIENT_ID): the id of "
                              "the app registered at reddit.com/prefs/apps")
        base = settings.reddit_url.rstrip("/") if settings.reddit_url else None
        values: dict[str, Any] = dict(
            client_id=settings.reddit_client_id,
            client_secret=settings.reddit_client_secret or "",
            user_agent=user_agent(settings.reddit_user_agent_platform,
                                  settings.reddit_user_agent_app_id, __version__,
                                  settings.reddit_user_agent_username),
            token_url=base or settings.reddit_token_url,
            api_url=base or settings.reddit_api_url,
            redirect_uri=settings.reddit_redirect_uri,
            scopes=tuple(settings.reddit_scopes.split()),
            requests_per_minute=settings.reddit_requests_per_minute,
            timeout_seconds=settings.reddit_timeout_seconds,
            media_confirm_seconds=settings.reddit_media_confirm_seconds,
        )
        values.update(overrides)
        return cls(**values)


# --- what Reddit returns (only the fields Thotto needs; others are ignored) --------------------


class TokenGrant(msgspec.Struct, frozen=True):
    """A token endpoint answer. ``refresh_token`` comes with code grants of duration permanent."""

    access_token: str
    expires_in: float
    token_type: str = "bearer"
    scope: str = ""
    refresh_token: str | None = None


class Me(msgspec.Struct, frozen=True):
    """``/api/v1/me``: the account the token belongs to."""

    name: str
    id: str = ""
    created_utc: float | None = None
    over_18: bool | None = None


class Submission(msgspec.Struct, frozen=True):
    """One post of a listing (``t3``)."""

    id: str
    name: str
    title: str
    subreddit: str
    created_utc: float
    author: str = ""
    url: str = ""
    permalink: str = ""
    is_self: bool = False
    over_18: bool = False
    spoiler: bool = False
    link_flair_text: str | None = None
    link_flair_template_id: str | None = None
    score: int = 0
    """Upvotes minus downvotes, as Reddit shows it (fuzzed)."""
    num_comments: int = 0


class SubmitResult(msgspec.Struct, frozen=True):
    """A published post: ``id`` (base 36), ``name`` (``t3_<id>``) and its URL on Reddit."""

    id: str
    name: str
    url: str


@dataclass(frozen=True, kw_only=True)
class ImageUpload:
    """One image of a media post, streamed to Reddit rather than held in memory.

    ``chunks`` is called once per upload attempt and must yield exactly ``size`` bytes (e.g.
    ``lambda: store.read_media(media_id)``); ``size`` goes first into the upload's
    Content-Length, which Reddit's bucket requires. ``caption`` (up to 180 characters) and
    ``outbound_url`` belong to gallery items: an image post of one item has neither.
    """

    file_name: str
    mime_type: str
    size: int
    chunks: Callable[[], AsyncIterator[bytes]]
    caption: str | None = None
    outbound_url: str | None = None

    @classmethod
    def from_store(cls, store: Any, media: Any, *, caption: str | None = None,
                   outbound_url: str | None = None) -> "ImageUpload":
        """The item of a media-library image (``media``, a :class:`thotto.scheduler.records.Media`),
        its bytes read from ``store`` chunk by chunk on each upload."""
        return cls(file_name=f"image-{media.id}.{media.kind.value}",
                   mime_type=media.kind.content_type, size=media.bytes,
                   chunks=lambda: store.read_media(media.id), caption=caption,
                   outbound_url=outbound_url)


class _UploadedMedia(msgspec.Struct, frozen=True):
    """Where an uploaded image lives: its URL (image posts) and asset id (galleries)."""

    url: str
    asset_id: str


class PostRequirements(msgspec.Struct, frozen=True):
    """``/api/v1/{sr}/post_requirements``. Reddit sends null for unset limits."""

    is_flair_required: bool = False
    title_text_min_length: int | None = None
    title_text_max_length: int | None = None
    title_regexes: list[str] | None = None
    title_required_strings: list[str] | None = None
    title_blacklisted_strings: list[str] | None = None
    body_restriction_policy: str | None = None
    """``required``, ``notAllowed`` or ``none``."""
    body_text_min_length: int | None = None
    body_text_max_length: int | None = None
    body_required_strings: list[str] | None = None
    body_blacklisted_strings: list[str] | None = None
    link_restriction_policy: str | None = None
    """``whitelist``, ``blacklist`` or ``none``."""
    domain_whitelist: list[str] | None = None
    domain_blacklist: list[str] | None = None
    guidelines_text: str | None = None


class LinkFlair(msgspec.Struct, frozen=True):
    """A link flair the account may pick for a new post (``/r/{sr}/api/flairselector``)."""

    id: str
    text: str = ""
    text_editable: bool = False


class _FlairChoice(msgspec.Struct):
    flair_template_id: str
    flair_text: str | None = ""
    flair_text_editable: bool = False


class _FlairSelector(msgspec.Struct):
    choices: list[_FlairChoice] = []


class _CommunityRule(msgspec.Struct):
    short_name: str


class _CommunityRules(msgspec.Struct):
    rules: list[_CommunityRule] = []


class SubredditAbout(msgspec.Struct, frozen=True):
    """``/r/{sr}/about``: what scheduling checks need."""

    display_name: str
    subreddit_type: str = "public"
    """public, private, restricted, gold_restricted, archived, user..."""
    submission_type: str = "any"
    """any, link or self."""
    over18: bool = False
    subscribers: int | None = None
    allow_images: bool | None = None
    allow_galleries: bool | None = None
    link_flair_enabled: bool | None = None
    can_assign_link_flair: bool | None = None
    """Whether this account may pick a link flair for its posts."""
    user_is_moderator: bool | None = None
    user_is_banned: bool | None = None
    public_description: str | None = None


class _Thing(msgspec.Struct):
    kind: str
    data: Submission


class _ListingData(msgspec.Struct):
    children: list[_Thing]
    after: str | None = None


class _Listing(msgspec.Struct):
    data: _ListingData


class _About(msgspec.Struct):
    data: SubredditAbout


# --- the client ----------------------------------------------------------------------------


class RedditClient:
    """One OAuth app: its connection pools (``httpx.AsyncClient``, each serving some of its
    accounts), the app's rate limiter, and its token grants.

    An async context manager; leaving it (or :meth:`aclose`) closes every pooled connection.
    Share one instance among all tasks and accounts of the app, so that the limiter sees every
    request. Cancelling a call abandons its connection; a cancelled submission may or may not have
    been accepted (treat it as :class:`~thotto.errors.RedditOutcomeUnknown`).

    ``clock`` (Trio time by default) decides when cached access tokens expire; ``wall_clock``
    (Unix seconds) dates rate-limit deferrals and submission look-ups. Tests inject both.
    """

    def __init__(
        self,
        config: RedditConfig,
        *,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = trio.current_time,
        wall_clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.config = config
        self.limiter = limiter or RateLimiter(config.requests_per_minute, burst=config.burst)
        self.clock = clock
        self.wall_clock = wall_clock
        tls = httpx.create_ssl_context()  # one for all pools: loading the CA bundle takes 0.1 s
        self._pools = [httpx.AsyncClient(
            headers={"User-Agent": config.user_agent},
            verify=tls,
            timeout=httpx.Timeout(config.timeout_seconds),
            follow_redirects=False,
            limits=HTTP_LIMITS,
            transport=transport,
        ) for _ in range(1 if transport is not None else HTTP_SHARDS)]
        self._pools_in_turn = itertools.cycle(self._pools)

    async def __aenter__(self) -> "RedditClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pools. Idempotent."""
        for pool in self._pools:
            await pool.aclose()

    # --- OAuth ---------------------------------------------------------------------------

    def authorize_url(self, state: str, *, scopes: tuple[str, ...] | None = None,
                      duration: str = "permanent") -> str:
        """The URL to send a user to for the web-app flow; Reddit redirects back to
        ``redirect_uri`` with ``code`` and the same ``state`` (check it: it defeats CSRF).
        ``duration=permanent`` gets a refresh token."""
        if not self.config.redirect_uri:
            raise ConfigError("the web-app flow needs reddit_redirect_uri (THOTTO_REDDIT_REDIRECT_URI)")
        if duration not in ("permanent", "temporary"):
            raise ValueError("duration is 'permanent' or 'temporary'")
        query = urlencode({
            "client_id": self.config.client_id,
            "response_type": "code",
            "state": state,
            "redirect_uri": self.config.redirect_uri,
            "duration": duration,
            "scope": " ".join(scopes or self.config.scopes),
        }, quote_via=quote)
        return f"{self.config.token_url.rstrip('/')}/api/v1/authorize?{query}"

    @staticmethod
    def new_state() -> str:
        """A fresh unguessable ``state`` for :meth:`authorize_url`."""
        return secrets.token_urlsafe(24)

    async def exchange_code(self, code: str) -> TokenGrant:
        """Trade the code from the redirect for tokens (web-app flow)."""
        if not self.config.redirect_uri:
            raise ConfigError("the web-app flow needs reddit_redirect_uri (THOTTO_REDDIT_REDIRECT_URI)")
        return await self.request_token({"grant_type": "authorization_code", "code": code,
                                         "redirect_uri": self.config.redirect_uri})

    async def link_with_code(self, code: str) -> "RedditAccount":
        """Exchange ``code`` and return the account, its fresh access token cached. Persist
        ``account.refresh_token`` (encrypted); ``await account.me()`` names the account."""
        started = self.clock()
        grant = await self.exchange_code(code)
        if grant.refresh_token is None:
            raise RedditAuthError("Reddit issued no refresh token; authorize with duration=permanent",
                                  error_type="NO_REFRESH_TOKEN")
        account = RedditAccount(self, refresh_token=grant.refresh_token)
        account._store(grant, started)
        return account

    def account_from_refresh_token(self, refresh_token: str, *, username: str | None = None
                                   ) -> "RedditAccount":
        """An account linked through the web-app flow. No request is made until it is used."""
        return RedditAccount(self, refresh_token=refresh_token, username=username)

    def account_from_password(self, username: str, password: str) -> "RedditAccount":
        """An account of a script app (the app's developers only): password grants, no refresh
        token; an expired token is replaced by a new password grant."""
        return RedditAccount(self, username=username, password=password)

    async def request_token(self, grant: Mapping[str, str], *, username: str | None = None,
                            pool: httpx.AsyncClient | None = None) -> TokenGrant:
        """POST a grant to the token endpoint and return the tokens.

        A body with an ``error`` key (Reddit answers ``{"error": "invalid_grant"}`` with HTTP 200)
        and a 400/401 raise :class:`~thotto.errors.RedditAuthError`; 429 and 5xx raise as anywhere.
        """
        url = f"{self.config.token_url.rstrip('/')}/api/v1/access_token"
        secret = f"{self.config.client_id}:{self.config.client_secret}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(secret).decode(),
                   "User-Agent": user_agent_for(self.config.user_agent, username)}
        response = await self._send("POST", url, context="an access token", pool=pool,
                                    data=dict(grant), headers=headers)
        body = _json_or_none(response)
        status = response.status_code
        if status == 408 or status == 429 or status >= 500:
            self._raise_for_status(response, body, context="an access token")
        error = body.get("error") if isinstance(body, dict) else None
        error = None if isinstance(error, int) else error  # {"message": ..., "error": 401}
        if status == 401 or error == "invalid_client":
            raise RedditAuthError("Reddit refused the app's credentials (check reddit_client_id "
                                  "and reddit_client_secret)", error_type="invalid_client", status=status)
        if error is not None or status == 400:
            kind = str(error or "invalid_request")
            raise RedditAuthError(f"Reddit refused the account's authorization ({kind}); link the "
                                  "account again", error_type=kind, status=status)
        self._raise_for_status(response, body, context="an access token")
        try:
            return msgspec.convert(body, TokenGrant)
        except msgspec.ValidationError as exc:
            raise RedditRetryable(f"unexpected token response from Reddit: {exc}",
                                  error_type="BAD_RESPONSE", status=response.status_code) from exc

    def post_url(self, post: Submission) -> str:
        """The page of a listed post: its permalink (a path) on the web host, which is
        www.reddit.com, or the sandbox when ``reddit_url`` is set."""
        return urljoin(self.config.token_url, post.permalink) if post.permalink else post.url

    # --- requests ------------------------------------------------------------------------

    def next_pool(self) -> httpx.AsyncClient:
        """A connection pool for a new account (see HTTP_SHARDS), the pools taken in turn."""
        return next(self._pools_in_turn)

    async def _send(self, method: str, url: str, *, context: str, submit: bool = False,
                    pool: httpx.AsyncClient | None = None, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange on ``pool`` (the account's; the next one for requests of no
        account), transport failures classified."""
        try:
            return await (pool or self.next_pool()).request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached Reddit: safe to retry, even a submission.
            raise RedditRetryable(f"could not reach Reddit for {context}: {_describe(exc)}",
                                  error_type="CONNECT_FAILED") from exc
        except httpx.TimeoutException as exc:
            error = RedditOutcomeUnknown if submit else RedditRetryable
            raise error(f"Reddit did not answer in time for {context}", error_type="TIMEOUT") from exc
        except httpx.TransportError as exc:
            error = RedditOutcomeUnknown if submit else RedditRetryable
            raise error(f"the connection to Reddit broke for {context}: {_describe(exc)}",
                        error_type="CONNECTION_LOST") from exc

    async def _api(self, account: "RedditAccount", method: str, path: str, *, context: str,
                   submit: bool = False, flair: bool = False, params: dict[str, Any] | None = None,
                   data: dict[str, str] | None = None, json: Any = None
                   ) -> tuple[httpx.Response, Any]:
        """An authorized API call: limiter slot, bearer token, one refresh on 401, errors raised.
        The body is a form (``data``) or JSON (``json``). Returns the response and its decoded
        JSON body."""
        url = self.config.api_url.rstrip("/") + path
        params = {**(params or {}), "raw_json": 1}
        refreshed = False
        while True:
            token = await account._access_token()
            wait = self.limiter.delay()
            if wait > self.config.max_queue_seconds:
                raise _rate_limited(f"this app's Reddit rate limit is spent for {wait:.0f} s; not "
                                    f"queueing {context}", wait, self.wall_clock,
                                    error_type="CLIENT_RATE_LIMIT")
            await self.limiter.acquire()
            headers = {"Authorization": f"bearer {token}",
                       "User-Agent": user_agent_for(self.config.user_agent, account.username)}
            response = await self._send(method, url, context=context, submit=submit,
                                        pool=account.pool, params=params, data=data, json=json,
                                        headers=headers)
            self.limiter.update(parse_rate_limit_headers(response.headers))
            if response.status_code != 401:
                break
            if refreshed:
                raise RedditAuthError(
                    f"Reddit refused the account's token for {context} (HTTP 401) even after a "
                    "refresh; link the account again", error_type="UNAUTHORIZED", status=401)
            await account._refresh(stale=token)
            refreshed = True
        body = _json_or_none(response)
        self._raise_for_status(response, body, context=context, submit=submit, flair=flair)
        if body is None:
            error = RedditOutcomeUnknown if submit else RedditRetryable
            raise error(f"Reddit answered with something that is not JSON for {context}",
                        error_type="BAD_RESPONSE", status=response.status_code)
        _raise_for_json_errors(body, context=context, wall_clock=self.wall_clock)
        return response, body

    def _raise_for_status(self, response: httpx.Response, body: Any, *, context: str,
                          submit: bool = False, flair: bool = False) -> None:
        status = response.status_code
        if response.is_success:
            return
        message, reason_word = _error_text(body, response)
        where = f"for {context}"
        if status == 429:
            limits = parse_rate_limit_headers(response.headers)
            wait = (limits.reset_seconds if limits is not None and limits.remaining < 1 else None)
            wait = wait if wait is not None else _retry_after(response.headers, self.wall_clock)
            wait = wait if wait is not None else DEFAULT_RATE_LIMIT_WAIT
            self.limiter.pause_for(wait)
            raise _rate_limited(f"Reddit is rate-limiting this app (HTTP 429) {where}", wait,
                                self.wall_clock, error_type="HTTP_429", message=message, status=status)
        if status == 408 or status >= 500:
            error = RedditOutcomeUnknown if submit and status != 408 else RedditRetryable
            raise error(f"Reddit had a problem {where} (HTTP {status})", error_type=f"HTTP_{status}",
                        message=message, status=status,
                        after_seconds=_retry_after(response.headers, self.wall_clock))
        if status in (403, 404) and body is None:
            # Not the API's JSON: Reddit's edge answered (an HTML "blocked" page), often for a
            # while only. Nothing was done, so even a submission may be sent again.
            raise RedditRetryable(f"Reddit's edge blocked the request {where} (HTTP {status}, "
                                  "an HTML page, not the API)", error_type="BLOCKED",
                                  message=message, status=status,
                                  after_seconds=_retry_after(response.headers, self.wall_clock))
        if status == 403 and "insufficient_scope" in response.headers.get("www-authenticate", ""):
            raise RedditAuthError(f"the account's authorization does not allow {context} (HTTP 403, "
                                  "insufficient scope); link the account again", status=status,
                                  error_type="insufficient_scope", message=message)
        if 300 <= status < 400:
            raise RedditPermanent(f"Reddit redirected {where} (HTTP {status}); the resource does "
                                  "not exist", error_type=f"HTTP_{status}", status=status)
        if status in (403, 404) and reason_word:
            kind = {"private": "SUBREDDIT_PRIVATE", "banned": "SUBREDDIT_BANNED",
                    "quarantined": "SUBREDDIT_QUARANTINED"}.get(reason_word.lower(), reason_word.upper())
            raise RedditPermanent(f"Reddit refused {context}: the subreddit is {reason_word.lower()} "
                                  f"(HTTP {status})", error_type=kind, message=message, status=status)
        if status == 400 and flair:
            raise RedditPermanent(f"Reddit refused {context} (HTTP 400): the flair is not one this "
                                  "account may pick (see the subreddit's flair choices)",
                                  error_type="INVALID_FLAIR",
                                  message=message, field="flair_id", status=status)
        raise RedditPermanent(f"Reddit refused {context} (HTTP {status}: {message})",
                              error_type=f"HTTP_{status}", message=message, status=status)


class RedditAccount:
    """One Reddit account, authorized through its client's OAuth app.

    Holds the account's credentials (a refresh token, or a script app's username and password)
    and its current access token, renewed ``token_margin_seconds`` before ``expires_in`` runs out
    and once more when Reddit answers 401. Concurrent calls share one renewal. Owns no resources:
    one of the client's connection pools serves it.
    """

    def __init__(self, client: RedditClient, *, refresh_token: str | None = None,
                 username: str | None = None, password: str | None = None):
        if refresh_token is None and password is None:
            raise ValueError("an account needs a refresh token or a username and password")
        self.client = client
        self.pool = client.next_pool()
        """The connection pool all this account's requests use (see HTTP_SHARDS)."""
        self.refresh_token = refresh_token
        self.username = username
        self._password = password
        self._token: str | None = None
        self._valid_until = -float("inf")
        self._lock = trio.Lock()
        self.scopes: tuple[str, ...] = ()
        self.token_requests = 0
        """How many times this account asked the token endpoint (for tests and metrics)."""

    def __repr__(self) -> str:  # never show secrets
        return f"RedditAccount(username={self.username!r})"

    # --- tokens --------------------------------------------------------------------------

    async def _access_token(self) -> str:
        if self._token is not None and self.client.clock() < self._valid_until:
            return self._token
        return await self._refresh(stale=self._token)

    async def _refresh(self, *, stale: str | None) -> str:
        """A new access token, unless another task already replaced ``stale``."""
        async with self._lock:
            if self._token is not None and self._token != stale and \
                    self.client.clock() < self._valid_until:
                return self._token
            started = self.client.clock()
            if self.refresh_token is not None:
                grant = {"grant_type": "refresh_token", "refresh_token": self.refresh_token}
            else:
                grant = {"grant_type": "password", "username": self.username or "",
                         "password": self._password or ""}
            self.token_requests += 1
            self._store(await self.client.request_token(grant, username=self.username,
                                                        pool=self.pool), started)
            assert self._token is not None
            return self._token

    def _store(self, grant: TokenGrant, started: float) -> None:
        # Measured from before the request, so the token is never believed to outlive Reddit's.
        margin = min(self.client.config.token_margin_seconds, grant.expires_in / 2)
        self._token = grant.access_token
        self._valid_until = started + grant.expires_in - margin
        self.scopes = tuple(grant.scope.split())
        if grant.refresh_token:
            self.refresh_token = grant.refresh_token

    # --- reads ---------------------------------------------------------------------------

    async def me(self) -> Me:
        """The account's identity; also sets :attr:`username`."""
        _, body = await self.client._api(self, "GET", "/api/v1/me", context="the account's identity")
        me = _convert(body, Me, "the account's identity")
        self.username = me.name
        return me

    async def submitted(self, username: str | None = None, *, limit: int = 25) -> list[Submission]:
        """The newest posts of ``username`` (default: this account), newest first."""
        posts, _ = await self._submitted_page(username, limit=limit)
        return posts

    async def _submitted_page(self, username: str | None = None, *, limit: int = 100,
                              after: str | None = None) -> tuple[list[Submission], str | None]:
        """One page of ``username``'s posts, newest first, and the cursor of the next page."""
        name = username or self.username or (await self.me()).name
        params: dict[str, str | int] = {"sort": "new", "limit": max(1, min(limit, 100))}
        if after is not None:
            params["after"] = after
        _, body = await self.client._api(
            self, "GET", f"/user/{quote(name, safe='')}/submitted", params=params,
            context=f"u/{name}'s submissions")
        listing = _convert(body, _Listing, f"u/{name}'s submissions")
        return [child.data for child in listing.data.children if child.kind == "t3"], listing.data.after

    async def find_submission(self, subreddit: str, title: str, *, since: float,
                              limit: int = 100) -> Submission | None:
        """This account's post to ``subreddit`` titled ``title`` created at or after ``since``
        (Unix seconds), the earliest if several, or None. How a publisher whose submission's
        outcome is unknown learns whether Reddit accepted it. Allow for clock skew in ``since``.

        Reads the listing page by page (``limit`` a page) until it reaches posts older than
        ``since`` or Reddit's end of it (about 1,000 posts): a busy account may have published
        many posts since the one looked for.

        Titles are compared as Reddit keeps them: Reddit trims a title's surrounding whitespace,
        so a title sent with it must still be recognised (else it would be posted again)."""
        matches: list[Submission] = []
        after = None
        wanted = normalise_title(title)
        for _ in range(MAX_LISTING_PAGES):
            page, after = await self._submitted_page(limit=limit, after=after)
            matches += [post for post in page
                        if post.subreddit.lower() == subreddit.lower()
                        and normalise_title(post.title) == wanted and post.created_utc >= since]
            if after is None or not page or page[-1].created_utc < since:
                break
        # The listing is newest first; among posts of the same second the last listed is oldest.
        return min(reversed(matches), key=lambda post: post.created_utc) if matches else None

    async def info(self, ids: Sequence[str]) -> list[Submission]:
        """The current state of posts by id (``abc123`` or ``t3_abc123``), with their ``score``
        and ``num_comments``: ``GET /api/info?id=t3_a,t3_b``, one request per 100 ids (Reddit's
        limit). Posts Reddit does not return (deleted, or not visible to this account) are
        left out; the rest come in Reddit's order."""
        names = [name if name.startswith("t3_") else f"t3_{name}" for name in ids]
        found: list[Submission] = []
        for start in range(0, len(names), MAX_INFO_IDS):
            chunk = names[start:start + MAX_INFO_IDS]
            context = f"the state of {len(chunk)} posts"
            _, body = await self.client._api(self, "GET", "/api/info",
                                             params={"id": ",".join(chunk)}, context=context)
            listing = _convert(body, _Listing, context)
            found.extend(child.data for child in listing.data.children if child.kind == "t3")
        return found

    async def post_requirements(self, subreddit: str) -> PostRequirements:
        """The subreddit's posting rules (title limits, flair required, body policy...)."""
        sr = _check_subreddit(subreddit)
        _, body = await self.client._api(self, "GET", f"/api/v1/{sr}/post_requirements",
                                         context=f"r/{sr}'s post requirements")
        return _convert(body, PostRequirements, f"r/{sr}'s post requirements")

    async def link_flairs(self, subreddit: str) -> list[LinkFlair]:
        """The link flairs this account may pick for a new post in ``subreddit``:
        ``POST /r/{sr}/api/flairselector`` with ``is_newlink``, what Reddit offers an ordinary
        user (``/r/{sr}/api/link_flair_v2`` is for moderators and lists flairs users may not
        pick). Empty when the subreddit lets users pick none."""
        sr = _check_subreddit(subreddit)
        context = f"r/{sr}'s link flairs"
        _, body = await self.client._api(self, "POST", f"/r/{sr}/api/flairselector",
                                         data={"is_newlink": "true"}, context=context)
        choices = _convert(body, _FlairSelector, context).choices
        return [LinkFlair(id=choice.flair_template_id, text=choice.flair_text or "",
                          text_editable=choice.flair_text_editable) for choice in choices]

    async def community_rules(self, subreddit: str) -> list[str]:
        """The community's rules by their short names (``/r/{sr}/about/rules``), in order."""
        sr = _check_subreddit(subreddit)
        context = f"r/{sr}'s rules"
        _, body = await self.client._api(self, "GET", f"/r/{sr}/about/rules", context=context)
        return [rule.short_name for rule in _convert(body, _CommunityRules, context).rules]

    async def about(self, subreddit: str) -> SubredditAbout:
        """The subreddit's about page: type, allowed post kinds, NSFW, subscribers."""
        sr = _check_subreddit(subreddit)
        _, body = await self.client._api(self, "GET", f"/r/{sr}/about",
                                         context=f"r/{sr}'s about page")
        return _convert(body, _About, f"r/{sr}'s about page").data

    # --- writes --------------------------------------------------------------------------

    async def upload_image(self, image: bytes, filename: str, mimetype: str | None = None) -> str:
        """Upload an image for an image post and return its URL.

        Reddit leases an upload slot (``/api/media/asset.json``), the image goes by multipart POST
        to the leased ``action`` URL with the leased fields, and the post is then submitted with
        ``url = action/key``. (Holds the whole image: :meth:`submit_media` streams instead.)
        """
        mimetype = mimetype or _IMAGE_TYPES.get(filename.rpartition(".")[2].lower()) or \
            mimetypes.guess_type(filename)[0]
        if mimetype not in _IMAGE_TYPES.values():
            raise RedditPermanent(f"{filename}: Reddit takes PNG, JPEG or GIF images",
                                  error_type="BAD_IMAGE", field="image")
        action, fields, _ = await self._lease_upload(filename, mimetype)
        response = await self.client._send("POST", action, context="the image upload",
                                           pool=self.pool, data=fields,
                                           files={"file": (filename, image, mimetype)})
        _raise_for_upload(response)
        return f"{action}/{fields['key']}"

    async def _lease_upload(self, file_name: str, mime_type: str) -> tuple[str, dict[str, str], str]:
        """Reddit's upload slot for one image: the bucket's URL (the lease's protocol-relative
        ``//host`` action, given the API's scheme), the form fields to send before the file,
        and the image's asset id (how a gallery names it)."""
        _, lease = await self.client._api(self, "POST", "/api/media/asset.json",
                                          data={"filepath": file_name, "mimetype": mime_type},
                                          context="an image upload lease")
        try:
            action = urljoin(self.client.config.api_url, lease["args"]["action"])
            fields = {str(item["name"]): str(item["value"]) for item in lease["args"]["fields"]}
            asset_id = str(lease["asset"]["asset_id"])
        except (KeyError, TypeError) as exc:
            raise RedditRetryable("unexpected image upload lease from Reddit", error_type="BAD_RESPONSE"
                                  ) from exc
        if "key" not in fields:  # the uploaded image's name in the bucket, and in its URL
            raise RedditRetryable("Reddit's image upload lease names no key", error_type="BAD_RESPONSE")
        return action, fields, asset_id

    async def _upload_streamed(self, item: ImageUpload) -> _UploadedMedia:
        """Lease a slot and upload ``item`` to it, its bytes streamed from ``item.chunks()``
        into a multipart body of exact Content-Length (Reddit's bucket refuses chunked
        uploads), so that at most a chunk or two of the image is in memory at a time."""
        action, fields, asset_id = await self._lease_upload(item.file_name, item.mime_type)
        boundary = secrets.token_hex(16)
        head, tail = _multipart_envelope(fields, item, boundary)
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
                   "Content-Length": str(len(head) + item.size + len(tail))}
        body = _multipart_body(head, item, tail)
        try:
            response = await self.client._send("POST", action, context="the image upload",
                                               pool=self.pool, content=body, headers=headers)
        except _WrongMediaSize as exc:
            raise RedditPermanent(str(exc), error_type="MEDIA_SIZE_MISMATCH", field="media") from exc
        _raise_for_upload(response)
        return _UploadedMedia(url=f"{action}/{fields['key']}", asset_id=asset_id)

    async def submit_media(
        self,
        subreddit: str,
        title: str,
        items: Sequence[ImageUpload],
        *,
        nsfw: bool = False,
        spoiler: bool = False,
        flair_id: str | None = None,
        flair_text: str | None = None,
        send_replies: bool = True,
    ) -> SubmitResult:
        """Publish an image post (one item) or a gallery (2 to 20 items, each with its caption
        and outbound link), as Reddit's own clients do. Validated before anything is sent.

        Each item is leased an upload slot and streamed to it (see :class:`ImageUpload`). An
        image post is then submitted and confirmed by the websocket Reddit names: the post's
        URL once processing ends, or its failure, which raises
        :class:`~thotto.errors.RedditPermanent` (``MEDIA_FAILED``, Reddit's reason as the
        message): nothing was posted, and uploading it again would fail the same way. When
        the websocket says nothing within ``media_confirm_seconds`` the account's listing is
        looked at once, and a post not there yet raises
        :class:`~thotto.errors.RedditMediaPending`: it was accepted, so look for it with
        :meth:`find_submission` before submitting again. A gallery's answer names the post.

        Cancelling it abandons the upload or the wait; a post already submitted may still
        appear (treat it as :class:`~thotto.errors.RedditOutcomeUnknown`).
        """
        sr = _check_subreddit(subreddit)
        _validate_post(title, text=None, url=None, image=None, flair_id=flair_id,
                       flair_text=flair_text)
        _validate_media(items)
        if len(items) > 1:
            return await self._submit_gallery(sr, title, items, nsfw=nsfw, spoiler=spoiler,
                                              flair_id=flair_id, flair_text=flair_text,
                                              send_replies=send_replies)
        uploaded = await self._upload_streamed(items[0])
        form = _submission_form(sr, title, nsfw=nsfw, spoiler=spoiler, send_replies=send_replies,
                                resubmit=True, flair_id=flair_id, flair_text=flair_text)
        form.update(kind="image", url=uploaded.url)
        started = self.client.wall_clock()
        body = await self._send_submission(sr, lambda: self._post_submission(sr, form))
        data = _submission_data(body)
        if data.get("name") and data.get("url"):  # answered with the post itself
            return _result(str(data["name"]), str(data["url"]))
        answer = await self._media_answer(str(data.get("websocket_url") or ""))
        if answer is not None:
            return _media_result(sr, answer)
        return await self._look_for_media_post(sr, title, since=started - 60)

    async def _submit_gallery(self, sr: str, title: str, items: Sequence[ImageUpload], *,
                              nsfw: bool, spoiler: bool, flair_id: str | None,
                              flair_text: str | None, send_replies: bool) -> SubmitResult:
        """Upload each image, then ``POST /api/submit_gallery_post.json`` (a JSON body naming
        them by asset id): Reddit answers with the post's id and URL."""
        uploaded = [await self._upload_streamed(item) for item in items]
        body: dict[str, Any] = {
            "api_type": "json", "show_error_list": True, "sr": sr, "title": title,
            "nsfw": nsfw, "spoiler": spoiler, "sendreplies": send_replies,
            "validate_on_submit": True,
            "items": [{"media_id": upload.asset_id, "caption": item.caption or "",
                       "outbound_url": item.outbound_url or ""}
                      for item, upload in zip(items, uploaded)]}
        if flair_id is not None:
            body["flair_id"] = flair_id
        if flair_text is not None:
            body["flair_text"] = flair_text

        async def post() -> Any:
            _, answer = await self.client._api(
                self, "POST", "/api/submit_gallery_post.json", json=body,
                context=f"the gallery post to r/{sr}", submit=True, flair=flair_id is not None)
            return answer

        data = _submission_data(await self._send_submission(sr, post))
        name = str(data.get("id") or data.get("name") or "")
        if not name or not data.get("url"):
            raise RedditOutcomeUnknown(f"Reddit accepted the gallery post to r/{sr} without naming "
                                       "it", error_type="BAD_RESPONSE")
        return _result(name if name.startswith("t3_") else f"t3_{name}", str(data["url"]))

    async def _media_answer(self, websocket_url: str) -> dict[str, Any] | None:
        """What Reddit's websocket announces for a submitted media post (``{"type":
        "success", "payload": {"redirect": <post URL>}}`` or ``{"type": "failed", ...}``), or
        None when it says nothing within ``media_confirm_seconds`` or cannot be reached."""
        if not websocket_url.startswith(("ws://", "wss://")):
            return None
        # The same certificate authorities as the HTTP requests (certifi, or SSL_CERT_FILE).
        context = httpx.create_ssl_context() if websocket_url.startswith("wss://") else None
        answer = None
        with trio.move_on_after(self.client.config.media_confirm_seconds):
            try:
                async with trio_websocket.open_websocket_url(
                        websocket_url, context, connect_timeout=self.client.config.timeout_seconds,
                        disconnect_timeout=1.0) as websocket:
                    while answer is None:
                        answer = _websocket_message(await websocket.get_message())
            except (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed) as exc:
                # The post was accepted whatever happened to the websocket (an answer received
                # before a failed close still counts); without one, the listing decides.
                if answer is None:
                    log.warning("Reddit's media websocket failed (%s); looking for the post in "
                                "the listing instead", _websocket_failure(exc))
        return answer

    async def _look_for_media_post(self, subreddit: str, title: str, *, since: float) -> SubmitResult:
        """The accepted media post Reddit has not announced: one look at the listing, else
        RedditMediaPending (it is still processing, and will appear, or never will)."""
        try:
            post = await self.find_submission(subreddit, title, since=since, limit=25)
        except ThottoError as exc:
            # The post was accepted: whatever went wrong now, do not let it be posted again
            # without looking first.
            raise RedditOutcomeUnknown(
                f"Reddit accepted the image post to r/{subreddit}, then looking it up failed: "
                f"{exc}", error_type="MEDIA_LOOKUP_FAILED") from exc
        if post is not None:
            return SubmitResult(id=post.id, name=post.name, url=self.client.post_url(post))
        raise self._media_pending(subreddit)

    def _media_pending(self, subreddit: str) -> RedditMediaPending:
        wait = self.client.config.media_pending_seconds
        until = datetime.fromtimestamp(self.client.wall_clock(), UTC) + timedelta(seconds=wait)
        return RedditMediaPending(
            f"Reddit accepted the image post to r/{subreddit} and is still processing it; "
            f"looking for it again in {wait:.0f} s", until=until, error_type="MEDIA_PROCESSING")

    async def submit(
        self,
        subreddit: str,
        title: str,
        *,
        text: str | None = None,
        url: str | None = None,
        image: bytes | None = None,
        image_name: str = "image.png",
        nsfw: bool = False,
        spoiler: bool = False,
        flair_id: str | None = None,
        flair_text: str | None = None,
        send_replies: bool = True,
        resubmit: bool = True,
    ) -> SubmitResult:
        """Publish a self post (``text``, may be empty or None) or a link (``url``); image
        posts and galleries go through :meth:`submit_media`. Validated before anything is sent.

        ``image`` (bytes, uploaded whole, the post then looked for in the listing) is the old
        image path, kept while thotto/publishing.py posts a file's bytes (issue #15: gone once
        the publisher calls :meth:`submit_media` with the media library's images).

        ``resubmit=False`` makes Reddit refuse a link already posted there (``ALREADY_SUB``).
        Raises the Reddit errors of :mod:`thotto.errors`; a
        :class:`~thotto.errors.RedditOutcomeUnknown` means the post may exist: check with
        :meth:`find_submission` before trying again.
        """
        sr = _check_subreddit(subreddit)
        _validate_post(title, text=text, url=url, image=image, flair_id=flair_id,
                       flair_text=flair_text)
        form = _submission_form(sr, title, nsfw=nsfw, spoiler=spoiler, send_replies=send_replies,
                                resubmit=resubmit, flair_id=flair_id, flair_text=flair_text)
        if image is not None:  # issue #15: see above
            form.update(kind="image", url=await self.upload_image(image, image_name))
        elif url is not None:
            form.update(kind="link", url=url)
        else:
            form.update(kind="self", text=text or "")
        started = self.client.wall_clock()
        body = await self._send_submission(sr, lambda: self._post_submission(sr, form))
        data = _submission_data(body)
        if data.get("name") and data.get("url"):
            return _result(str(data["name"]), str(data["url"]), str(data.get("id") or ""))
        if form["kind"] == "image":
            # Reddit answers media posts with a websocket URL to wait on, not the post itself;
            # this old path finds the post in the account's listing instead.
            return await self._await_media_post(sr, title, since=started - 60)
        raise RedditOutcomeUnknown(f"Reddit accepted the submission to r/{sr} without naming the post",
                                   error_type="BAD_RESPONSE")

    async def _send_submission(self, sr: str, post: Callable[[], Awaitable[Any]]) -> Any:
        """Send the submission (``post``). A ``SUBREDDIT_NOEXIST`` for a subreddit whose about
        page answers is sent once more after a pause, and if it comes again it is retryable,
        never final: Reddit sends it transiently for subreddits that exist."""
        try:
            return await post()
        except RedditPermanent as error:
            if error.error_type != "SUBREDDIT_NOEXIST" or not await self._subreddit_exists(sr):
                raise
        await trio.sleep(self.client.config.subreddit_noexist_pause)
        try:
            return await post()
        except RedditPermanent as error:
            if error.error_type != "SUBREDDIT_NOEXIST":
                raise
            raise RedditRetryable(
                f"Reddit said r/{sr} does not exist, but its about page answers: a transient "
                "error, to be tried again later", error_type=error.error_type,
                message=error.message, field=error.field) from error

    async def _post_submission(self, sr: str, form: dict[str, str]) -> Any:
        flair = "flair_id" in form or "flair_text" in form
        _, body = await self.client._api(self, "POST", "/api/submit", data=form,
                                         context=f"the post to r/{sr}", submit=True, flair=flair)
        return body

    async def _subreddit_exists(self, sr: str) -> bool:
        """Whether ``sr``'s about page answers; a failure to ask raises as usual (retryable)."""
        try:
            await self.about(sr)
        except RedditPermanent:
            return False
        return True

    async def _await_media_post(self, subreddit: str, title: str, *, since: float) -> SubmitResult:
        """The image post Reddit just accepted, from the account's listing (the old image path
        of :meth:`submit`, issue #15)."""
        for pause in self.client.config.image_lookup_delays:
            try:
                return await self._look_for_media_post(subreddit, title, since=since)
            except RedditMediaPending:
                await trio.sleep(pause)
        return await self._look_for_media_post(subreddit, title, since=since)


# --- helpers -------------------------------------------------------------------------------


class _WrongMediaSize(Exception):
    """A media item's chunks did not add up to its declared size."""


def _submission_form(sr: str, title: str, *, nsfw: bool, spoiler: bool, send_replies: bool,
                     resubmit: bool, flair_id: str | None, flair_text: str | None) -> dict[str, str]:
    # validate_on_submit: Reddit checks the subreddit's post requirements now, and refuses
    # the post with their error, rather than taking it and letting it be removed after.
    form = {"api_type": "json", "sr": sr, "title": title, "nsfw": _bool(nsfw),
            "spoiler": _bool(spoiler), "sendreplies": _bool(send_replies),
            "resubmit": _bool(resubmit), "validate_on_submit": "true"}
    if flair_id is not None:
        form["flair_id"] = flair_id
    if flair_text is not None:
        form["flair_text"] = flair_text
    return form


def _submission_data(body: Any) -> dict[str, Any]:
    """``json.data`` of a submission's answer, or {}."""
    data = (body.get("json") or {}).get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


def _result(name: str, url: str, post_id: str = "") -> SubmitResult:
    return SubmitResult(id=post_id or name.removeprefix("t3_"), name=name, url=url)


def _websocket_message(text: str | bytes) -> dict[str, Any] | None:
    """A media websocket's announcement (``success`` or ``failed``); None for anything else,
    which is not the answer waited for."""
    try:
        message = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    if isinstance(message, dict) and message.get("type") in ("success", "failed"):
        return message
    return None


def _websocket_failure(exc: BaseException) -> str:
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return f"refused with HTTP {exc.status_code}"
    if isinstance(exc, trio_websocket.HandshakeError) and exc.__cause__ is not None:
        return f"{type(exc).__name__}: {_describe(exc.__cause__)}"
    return _describe(exc)


def _media_result(sr: str, answer: dict[str, Any]) -> SubmitResult:
    """The post a media websocket announced, or the RedditPermanent of its failure."""
    payload = answer.get("payload") if isinstance(answer.get("payload"), dict) else {}
    if answer["type"] == "failed":
        reason = str(payload.get("reason") or payload.get("message") or "processing failed")
        raise RedditPermanent(f"Reddit could not process the image post to r/{sr}: {reason}; "
                              "upload a different image", error_type="MEDIA_FAILED",
                              message=reason, field="media")
    redirect = str(payload.get("redirect") or "")
    match = _COMMENTS_ID.search(urlsplit(redirect).path)
    if match is None:
        raise RedditOutcomeUnknown(f"Reddit announced the image post to r/{sr} with a URL that names "
                                   f"no post: {redirect!r}", error_type="BAD_RESPONSE")
    return _result(f"t3_{match.group(1)}", redirect)


def _validate_media(items: Sequence[ImageUpload]) -> None:
    """Reddit's limits for image posts and galleries, checked before anything is uploaded."""
    def invalid(reason: str, error_type: str = "BAD_IMAGE") -> RedditPermanent:
        return RedditPermanent(reason, error_type=error_type, field="media")

    if not 1 <= len(items) <= MAX_GALLERY_ITEMS:
        raise invalid(f"a media post has 1 image (an image post) to {MAX_GALLERY_ITEMS} (a "
                      f"gallery), not {len(items)}", "BAD_GALLERY")
    for number, item in enumerate(items, 1):
        which = f"image {number} ({item.file_name!r})"
        if item.mime_type not in _MEDIA_TYPES:
            raise invalid(f"{which} is {item.mime_type}; Reddit takes PNG, JPEG, GIF or WebP images")
        if not item.file_name or any(char in item.file_name for char in "\r\n\"/\\"):
            raise invalid(f"{which}: a file name is needed, without quotes, slashes or line breaks")
        if not 0 < item.size <= MAX_IMAGE_BYTES:
            raise invalid(f"{which} is {item.size} bytes; Reddit takes images of 1 byte to "
                          f"{MAX_IMAGE_BYTES // (1024 * 1024)} MB", "TOO_LARGE" if item.size else "BAD_IMAGE")
        if len(items) == 1 and (item.caption or item.outbound_url):
            raise invalid("an image post has no caption or link: only a gallery's images (2 or "
                          "more) have them; leave them out or add images", "BAD_GALLERY")
        if item.caption is not None and len(item.caption) > MAX_CAPTION:
            raise invalid(f"{which}'s caption is {len(item.caption)} characters; Reddit allows "
                          f"{MAX_CAPTION}", "TOO_LONG")
        if item.outbound_url and not re.match(r"^https?://[^\s/]+\S*$", item.outbound_url):
            raise invalid(f"{which}'s link {item.outbound_url!r} is not an http(s) URL", "BAD_URL")


def _multipart_envelope(fields: Mapping[str, str], item: ImageUpload, boundary: str
                        ) -> tuple[bytes, bytes]:
    """What goes before and after the file's bytes in a multipart/form-data upload: the
    lease's fields, then the file's part header; then the closing boundary."""
    head = bytearray()
    for name, value in fields.items():
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"'
                 f"\r\n\r\n").encode() + value.encode() + b"\r\n"
    head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
             f'filename="{_quoted(item.file_name)}"\r\nContent-Type: {item.mime_type}\r\n\r\n').encode()
    return bytes(head), f"\r\n--{boundary}--\r\n".encode()


def _quoted(value: str) -> str:
    """A multipart parameter value as browsers send it (HTML's form encoding)."""
    return value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


async def _multipart_body(head: bytes, item: ImageUpload, tail: bytes) -> AsyncIterator[bytes]:
    """The upload's body, the file streamed chunk by chunk between ``head`` and ``tail``.
    Raises _WrongMediaSize as soon as the chunks disagree with ``item.size`` (the declared
    Content-Length would otherwise be a lie the server could only time out on)."""
    yield head
    sent = 0
    chunks = item.chunks()
    closing = contextlib.aclosing(chunks) if hasattr(chunks, "aclose") else contextlib.nullcontext()
    async with closing:
        async for chunk in chunks:
            sent += len(chunk)
            if sent > item.size:
                raise _WrongMediaSize(f"{item.file_name} has more than its {item.size} bytes")
            yield bytes(chunk) if not isinstance(chunk, bytes) else chunk
    if sent != item.size:
        raise _WrongMediaSize(f"{item.file_name} has {sent} bytes, not the {item.size} declared")
    yield tail


def _raise_for_upload(response: httpx.Response) -> None:
    """The bucket's refusal of an upload, classified: 5xx and 408 retryable, else permanent."""
    if response.is_success:
        return
    code, message = _s3_error(response)
    if response.status_code >= 500 or response.status_code == 408:
        raise RedditRetryable(f"the image upload failed (HTTP {response.status_code})",
                              error_type=code, message=message, status=response.status_code)
    raise RedditPermanent(f"the image upload was refused: {message}", error_type=code,
                          message=message, field="image", status=response.status_code)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def normalise_title(title: str) -> str:
    """A title as Reddit keeps it, for matching: surrounding whitespace trimmed (Reddit does
    that) and inner runs of whitespace made one space (so that a listing that shows them
    otherwise still matches)."""
    return " ".join(title.split())


def _check_subreddit(subreddit: str) -> str:
    name = subreddit.removeprefix("r/").removeprefix("/r/")
    if not _SUBREDDIT.match(name):
        raise RedditPermanent(f"{subreddit!r} is not a subreddit name", error_type="BAD_SR_NAME",
                              field="sr")
    return name


def _validate_post(title: str, *, text: str | None, url: str | None, image: bytes | None,
                   flair_id: str | None, flair_text: str | None) -> None:
    """Reddit's own limits, checked before anything is sent."""
    def invalid(reason: str, error_type: str, field: str) -> RedditPermanent:
        return RedditPermanent(reason, error_type=error_type, field=field)

    if not title or not title.strip():
        raise invalid("the title is empty", "NO_TEXT", "title")
    if len(title) > MAX_TITLE:
        raise invalid(f"the title is {len(title)} characters; Reddit allows {MAX_TITLE}", "TOO_LONG", "title")
    if flair_text is not None and flair_id is None:
        raise invalid("a flair's text needs its template: set flair_id to one of the subreddit's "
                      "editable link flairs, or leave flair_text out", "FLAIR_TEXT_WITHOUT_ID",
                      "flair_text")
    if flair_text is not None and len(flair_text) > MAX_FLAIR_TEXT:
        raise invalid(f"the flair text is {len(flair_text)} characters; Reddit allows {MAX_FLAIR_TEXT}",
                      "TOO_LONG", "flair_text")
    if flair_id is not None and len(flair_id) > MAX_FLAIR_ID:
        raise invalid(f"the flair id is {len(flair_id)} characters; Reddit allows {MAX_FLAIR_ID}",
                      "TOO_LONG", "flair_id")
    if sum(value is not None for value in (text, url, image)) > 1:
        raise invalid("a post has text, a URL or an image, not several", "BAD_KIND", "kind")
    if url is not None and not re.match(r"^https?://[^\s/]+\S*$", url):
        raise invalid(f"{url!r} is not an http(s) URL", "BAD_URL", "url")
    if image is not None and not image:
        raise invalid("the image is empty", "BAD_IMAGE", "image")


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return None


def _convert(body: Any, type_: type[T], context: str) -> T:
    try:
        return msgspec.convert(body, type_)
    except msgspec.ValidationError as exc:
        raise RedditRetryable(f"unexpected answer from Reddit for {context}: {exc}",
                              error_type="BAD_RESPONSE") from exc


def _error_text(body: Any, response: httpx.Response) -> tuple[str, str | None]:
    """Reddit's message for an HTTP error, and its ``reason`` word (``private``, ``banned``)."""
    if isinstance(body, dict):
        message = body.get("explanation") or body.get("message") or response.reason_phrase
        reason = body.get("reason")
        return str(message), str(reason) if reason else None
    return response.reason_phrase or f"HTTP {response.status_code}", None


def _raise_for_json_errors(body: Any, *, context: str, wall_clock: Callable[[], float]) -> None:
    """Reddit's HTTP-200 errors: ``{"json": {"errors": [[TYPE, message, field], ...]}}``."""
    if not isinstance(body, dict) or not isinstance(body.get("json"), dict):
        return
    errors = body["json"].get("errors") or []
    if not errors:
        return
    first = list(errors[0]) + [None, None, None]
    error_type, message, field = str(first[0]), str(first[1] or first[0]), first[2]
    everything = "; ".join(f"{e[0]}: {e[1]}" for e in errors if isinstance(e, list) and len(e) > 1)
    if error_type in _RATE_LIMIT_TYPES:
        seconds = body["json"].get("ratelimit")
        wait = float(seconds) if isinstance(seconds, (int, float)) else parse_wait(message)
        raise _rate_limited(f"Reddit says to slow down for {context}: {message}",
                            wait if wait is not None else DEFAULT_RATE_LIMIT_WAIT, wall_clock,
                            error_type=error_type, message=message, field=field)
    raise RedditPermanent(f"Reddit refused {context}: {everything or message}", error_type=error_type,
                          message=message, field=field)


def _rate_limited(reason: str, wait: float, wall_clock: Callable[[], float], **info: Any
                  ) -> RedditRateLimited:
    until = datetime.fromtimestamp(wall_clock(), UTC) + timedelta(seconds=wait)
    return RedditRateLimited(reason, until=until, wait_seconds=wait, **info)


def _retry_after(headers: httpx.Headers, wall_clock: Callable[[], float]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - wall_clock())
    except (TypeError, ValueError):
        return None


def _s3_error(response: httpx.Response) -> tuple[str, str]:
    """The ``Code`` and ``Message`` of an S3-style XML error body."""
    try:
        root = ElementTree.fromstring(response.content)
        return (root.findtext("Code") or f"HTTP_{response.status_code}",
                root.findtext("Message") or response.reason_phrase)
    except ElementTree.ParseError:
        return f"HTTP_{response.status_code}", response.reason_phrase


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
