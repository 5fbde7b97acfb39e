"""The Reddit product's records and messages: users, tokens, accounts, posts, media, and the
HTTP API's bodies.

Records are what the Store keeps and returns. All are ``msgspec.Struct`` types tagged by class
name under ``"type"`` (on the engine's :class:`~thotto.engine.jobs.Base`). Constraints live on
the types; every boundary that takes input from outside calls
:func:`~thotto.engine.jobs.validated` (or decodes with the type). All datetimes are time-zone
aware; stores keep and return them in UTC.
"""

from __future__ import annotations

import enum
import hashlib
import unicodedata
from datetime import datetime
from typing import Annotated, Union

import msgspec

from thotto.engine.jobs import (
    Attempt,
    AttemptOutcome,
    AwareDatetime,
    Base,
    Completed,
    Dead,
    Deferred,
    EnqueueResult,
    ExpiredLeases,
    Job,
    JobState,
    Name,
    NewJob,
    QueueCount,
    Released,
    Retry,
    SettleResult,
)

Subreddit = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=22,
        # A subreddit (2-21 characters), or a user's profile subreddit: u_ and a username
        # (3-20 characters, which may contain '-').
        pattern=r"^(?:[A-Za-z0-9][A-Za-z0-9_]{1,20}|u_[A-Za-z0-9_-]{3,20})\Z",
        description="the subreddit's name without 'r/' (a profile's is u_<username>)",
    ),
]
Title = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=300,
        description="1-300 characters on one line, with visible text: a title that is blank, has "
        "control characters or line breaks, or only invisible characters is refused (Reddit would)",
    ),
]
FlairText = Annotated[str, msgspec.Meta(max_length=64)]
FlairId = Annotated[str, msgspec.Meta(max_length=36)]
RedditUsername = Annotated[
    str, msgspec.Meta(min_length=3, max_length=20, pattern=r"^[A-Za-z0-9_-]{3,20}\Z")
]
TokenHash = Annotated[str, msgspec.Meta(min_length=16, max_length=128)]
RowId = Annotated[int, msgspec.Meta(ge=1)]





class Tier(enum.Enum):
    FREE = "free"
    STARTER = "starter"
    PRO = "pro"
    PREMIUM = "premium"


class Role(enum.Enum):
    USER = "user"
    ADMIN = "admin"


class PostKind(enum.Enum):
    SELF = "self"
    LINK = "link"
    IMAGE = "image"
    """One image of the media library."""
    GALLERY = "gallery"
    """2 to 20 images of the media library, each with an optional caption and outbound link."""


class MediaKind(enum.Enum):
    """An image format, told from the file's own bytes (never its name or Content-Type)."""

    PNG = "png"
    JPEG = "jpeg"
    GIF = "gif"
    WEBP = "webp"

    @property
    def content_type(self) -> str:
        return f"image/{self.value}"


class PostStatus(enum.Enum):
    """A post's status, derived from its job's state."""

    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    FAILED = "failed"
    CANCELLED = "cancelled"


POST_STATUS_OF_JOB_STATE = {
    JobState.PENDING: PostStatus.SCHEDULED,
    JobState.PROCESSING: PostStatus.PUBLISHING,
    JobState.COMPLETED: PostStatus.PUBLISHED,
    JobState.DEAD: PostStatus.FAILED,
    JobState.CANCELLED: PostStatus.CANCELLED,
}

# --- users, tokens, accounts, posts -----------------------------------------------------------


class NewUser(Base, kw_only=True):
    name: Name
    tier: Tier = Tier.FREE
    role: Role = Role.USER


class User(Base):
    id: int
    name: str
    tier: Tier
    role: Role
    created_at: datetime
    time_zone: str = "UTC"
    """The IANA zone the user's pages show and take times in."""


class AccountUnlinked(Base):
    """What unlinking a Reddit account did (see ``Store.unlink_account``)."""

    account: Account
    posts_cancelled: int


class UserRemoval(Base):
    """What removing a user did (see ``Store.remove_user``): the user as they were, and how
    many of their scheduled posts were cancelled, tokens revoked and Reddit accounts unlinked
    (credentials erased)."""

    user: User
    posts_cancelled: int
    tokens_revoked: int
    accounts_unlinked: int


class ApiToken(Base):
    """An API token's record; the token itself is never stored, only its hash."""

    id: int
    user_id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


class NewAccount(Base, kw_only=True):
    """A Reddit account linked to a user. The refresh token arrives already encrypted."""

    user_id: RowId
    reddit_username: RedditUsername
    refresh_token_encrypted: bytes
    scopes: Annotated[str, msgspec.Meta(max_length=1000)] = ""


class Account(Base):
    id: int
    user_id: int
    reddit_username: str
    refresh_token_encrypted: bytes
    scopes: str
    needs_relink: bool
    created_at: datetime


class LinkRequest(Base):
    """One start of linking a Reddit account, kept so that its ``state`` works once.

    Only hashes are stored: the state's, and that of the binding secret the party who started
    the flow holds (in a cookie for a browser, in hand for an API client). When Reddit's answer
    reaches the callback without that binding, the code is held here (encrypted) with the hash
    of a verification code shown to whoever consented, until the API client completes.
    """

    state_hash: str
    user_id: int
    secret_hash: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    held_code: bytes | None = None
    verifier_hash: str | None = None


class PasswordLink(Base):
    """A one-time link to set a user's password; only the hash of its secret is stored."""

    token_hash: str
    user_id: int
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


class WebSession(Base):
    """A signed-in browser: the store keeps the hash of the cookie's value (``id_hash``), whose
    user it is, and the CSRF token every change made with it must carry."""

    id_hash: str
    user: User
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


class Recurrence(Base, kw_only=True, forbid_unknown_fields=True):
    """Repeat a post: every ``interval`` days/weeks/months in ``timezone`` (IANA), at the same
    local time, until ``until`` (inclusive; not in the past nor before the first occurrence) or
    for ``count`` occurrences in all (this one included). When an occurrence publishes, the next
    is scheduled with ``count`` one less."""

    frequency: Annotated[str, msgspec.Meta(pattern=r"^(daily|weekly|monthly)\Z")]
    interval: Annotated[int, msgspec.Meta(ge=1, le=365)] = 1
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    until: AwareDatetime | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None


Caption = Annotated[str, msgspec.Meta(max_length=180, description="a gallery image's caption (Reddit allows 180 characters)")]
MEDIA_PER_GALLERY = (2, 20)


class MediaRef(Base, kw_only=True):
    """One image of a post: an upload of the post's user (thotto.scheduler.media), in its place."""

    media_id: RowId
    caption: Caption | None = None
    outbound_url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class PostContent(Base, kw_only=True):
    """What a post says, as the user wrote it."""

    subreddit: Subreddit
    title: Title
    kind: PostKind = PostKind.SELF
    text: Annotated[str, msgspec.Meta(max_length=40000)] | None = None
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    media: list[MediaRef] = []
    """The images of an image (one) or gallery (2-20) post, in order."""
    image_path: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    """Legacy: posts scheduled before the media library named a file on the server. Never
    accepted from anyone now, and such a post is refused at publishing (it reads no file)."""
    nsfw: bool = False
    spoiler: bool = False
    flair_id: FlairId | None = None
    flair_text: FlairText | None = None


class NewPost(Base, kw_only=True):
    """A post to schedule; the store creates the post and its publishing job together."""

    user_id: RowId
    account_id: RowId
    content: PostContent
    scheduled_for: AwareDatetime
    recurrence: Recurrence | None = None


class Post(Base):
    """A stored post. ``status`` is derived from its job's state; ``error`` is the job's last
    error (the dead-letter reason of a failed post, the latest retry reason of a scheduled
    one), None once published."""

    id: int
    user_id: int
    account_id: int
    content: PostContent
    scheduled_for: datetime
    status: PostStatus
    job_id: int
    reddit_id: str | None
    reddit_url: str | None
    error: str | None
    recurrence: Recurrence | None
    created_at: datetime
    updated_at: datetime
    armed_at: datetime | None = None
    """When the first attempt that may have reached Reddit began (effectively once: thotto/publishing.py)."""


class PostPage(Base):
    """One page of a post listing; pass ``next_cursor`` back to get the next page."""

    posts: list[Post]
    next_cursor: str | None


class FlairChoice(Base, kw_only=True):
    """A link flair a user may pick for a new post in a subreddit, as Reddit offers it."""

    id: str
    text: str = ""
    text_editable: bool = False


class SubredditRules(Base, kw_only=True):
    """What Thotto knows of a subreddit's posting rules (synced weekly, fetched on first use),
    so that a post breaking a known rule is refused when it is scheduled, not when it is due."""

    name: Annotated[str, msgspec.Meta(min_length=2, max_length=22)]
    """Lower-cased, the key."""
    display_name: str
    subreddit_type: str = "public"
    allows_self: bool = True
    allows_link: bool = True
    allows_image: bool = True
    allows_gallery: bool = True
    over18: bool = False
    flair_required: bool = False
    flair_ids: list[str] = []
    """Known flair template ids (empty: unknown, so any id is accepted)."""
    flairs: list[FlairChoice] = []
    """The same flairs with their text, to offer them by name (empty in rules stored before
    Thotto kept the texts: the ids still count)."""
    community_rules: list[str] = []
    """The community's own rules, by their short names (``/r/{sr}/about/rules``), to show a
    creator while composing; Reddit's moderators enforce them, Thotto cannot."""
    title_min_length: int | None = None
    title_max_length: int | None = None
    title_required_strings: list[str] = []
    title_blacklisted_strings: list[str] = []
    body_policy: str | None = None
    """``required``, ``notAllowed`` or ``none`` (Reddit's body_restriction_policy)."""
    domain_whitelist: list[str] = []
    domain_blacklist: list[str] = []
    subscribers: int | None = None
    synced_at: AwareDatetime


class EngagementReading(Base, kw_only=True):
    """A published post's engagement as read from Reddit at ``read_at`` (Store.record_engagement)."""

    post_id: RowId
    score: Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
    """Reddit's score (upvotes minus downvotes, fuzzed); may be negative."""
    comments: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    read_at: AwareDatetime


class PostEngagement(Base, kw_only=True):
    """A published post with its latest engagement reading (Store.subreddit_engagement)."""

    post_id: int
    account_id: int
    subreddit: str
    scheduled_for: datetime
    published_at: datetime
    """When its publishing job completed."""
    score: int
    comments: int
    read_at: datetime


# --- media -----------------------------------------------------------------------------------


class NewMedia(Base, kw_only=True):
    """An image to store for ``user_id``: what was learned of it while it was checked. The
    store counts its bytes and computes its SHA-256 from the chunks it stores."""

    user_id: RowId
    kind: MediaKind
    width: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    height: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    removed: Annotated[list[Annotated[str, msgspec.Meta(max_length=200)]], msgspec.Meta(max_length=50)] = []
    """What metadata was removed before storing, e.g. ``["EXIF (GPS, camera)", "XMP"]``."""


class Media(Base):
    """A stored image: its bytes are read with :meth:`Store.read_media`."""

    id: int
    user_id: int
    kind: MediaKind
    width: int
    height: int
    bytes: int
    sha256: str
    removed: list[str]
    created_at: datetime


class MediaPage(Base):
    """One page of a user's media, newest first; ``next_cursor`` None on the last page."""

    media: list[Media]
    next_cursor: str | None


# --- HTTP API bodies --------------------------------------------------------------------------
# What the API reads and writes, in camelCase; unknown fields are refused. The OpenAPI document is
# generated from these types (thotto/api/openapi.py), so they are the API's one definition.


class ApiBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", omit_defaults=False):
    """Base of the HTTP API's request and response bodies."""


class MediaItem(ApiBody):
    """One image of a post, with what a gallery may say of it."""

    id: RowId
    """An id from ``POST /api/media`` (one of your uploads)."""
    caption: Caption | None = None
    outbound_url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


MediaIds = Annotated[list[RowId | MediaItem], msgspec.Meta(
    min_length=1, max_length=20,
    description="Your uploads (POST /api/media) in order: ids, or objects with a caption and an outbound "
                "link (galleries); one for an image post, 2-20 for a gallery")]


class ScheduleRequest(ApiBody):
    """Schedule a post, to one subreddit or (``subreddits``) to several, one post each."""

    title: Title
    scheduled_for: AwareDatetime
    subreddit: Subreddit | None = None
    subreddits: Annotated[list[Subreddit], msgspec.Meta(min_length=1, max_length=25)] | None = None
    kind: PostKind = PostKind.SELF
    text: Annotated[str, msgspec.Meta(max_length=40000)] | None = None
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    media_ids: MediaIds | None = None
    nsfw: bool = False
    spoiler: bool = False
    flair_id: FlairId | None = None
    flair_text: FlairText | None = None
    account: RedditUsername | None = None
    """The linked Reddit account to post with; may be left out when the user has only one."""
    recurrence: Recurrence | None = None


class BatchScheduleRequest(ApiBody):
    """Up to 100 posts, accepted all together or not at all."""

    posts: Annotated[list[ScheduleRequest], msgspec.Meta(min_length=1, max_length=100)]


class PostChange(ApiBody):
    """Edit or reschedule a scheduled post; fields left out stay as they are, ``null`` clears an
    optional one. A failed post is edited and scheduled again the same way, with a new
    ``scheduledFor`` (required then)."""

    subreddit: Subreddit | msgspec.UnsetType = msgspec.UNSET
    title: Title | msgspec.UnsetType = msgspec.UNSET
    scheduled_for: AwareDatetime | msgspec.UnsetType = msgspec.UNSET
    text: Annotated[str, msgspec.Meta(max_length=40000)] | None | msgspec.UnsetType = msgspec.UNSET
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None | msgspec.UnsetType = msgspec.UNSET
    media_ids: MediaIds | msgspec.UnsetType = msgspec.UNSET
    nsfw: bool | msgspec.UnsetType = msgspec.UNSET
    spoiler: bool | msgspec.UnsetType = msgspec.UNSET
    flair_id: FlairId | None | msgspec.UnsetType = msgspec.UNSET
    flair_text: FlairText | None | msgspec.UnsetType = msgspec.UNSET


class PostView(ApiBody):
    """A scheduled post as the API shows it."""

    id: int
    status: PostStatus
    subreddit: str
    title: str
    kind: PostKind
    scheduled_for: datetime
    account_id: int
    text: str | None = None
    url: str | None = None
    media_ids: list[MediaItem] = []
    nsfw: bool = False
    spoiler: bool = False
    flair_id: str | None = None
    flair_text: str | None = None
    reddit_id: str | None = None
    reddit_url: str | None = None
    error: str | None = None
    recurrence: Recurrence | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class AttemptView(ApiBody):
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    outcome: AttemptOutcome
    error: str | None = None


class PostDetail(PostView):
    """A post with its publishing history."""

    attempts: list[AttemptView] = []
    next_attempt_at: datetime | None = None


class PostList(ApiBody):
    posts: list[PostView]
    next_cursor: str | None = None
    """Pass back as ``cursor`` for the next page; null on the last page."""


class ScheduledPosts(ApiBody):
    posts: list[PostView]


class OptimalTimesRequest(ApiBody):
    subreddit: Subreddit


class TimeSlot(ApiBody):
    """An hour of the week to post in, ranked by expected engagement."""

    weekday: Annotated[int, msgspec.Meta(ge=0, le=6)]
    """0 is Monday (UTC)."""
    hour: Annotated[int, msgspec.Meta(ge=0, le=23)]
    """Hour of the day, UTC."""
    score: float
    """Expected engagement, relative: the best slot is 100."""
    posts: int = 0
    """Published posts behind this slot's score (0 for community data)."""


class OptimalTimes(ApiBody):
    subreddit: str
    source: Annotated[str, msgspec.Meta(pattern=r"^(engagement|community)\Z")]
    """``engagement``: our published posts' scores and comments; ``community``: general
    activity of Reddit communities (too few posts of ours yet)."""
    slots: list[TimeSlot]
    computed_at: datetime


class FlairView(ApiBody):
    id: str
    text: str
    text_editable: bool = False
    """The creator may change the flair's text (``flairText``)."""


class SubredditRulesView(ApiBody):
    """What a subreddit takes, for composing: the checks scheduling makes come from these
    (``POST /api/scheduled-posts/check`` runs them); ``known`` false means Thotto could not ask
    Reddit yet, and Reddit decides at publishing time."""

    subreddit: str
    known: bool
    subreddit_type: str | None = None
    post_kinds: list[PostKind] = []
    """The kinds of post it takes."""
    over18: bool = False
    flair_required: bool = False
    flairs: list[FlairView] = []
    title_min_length: int | None = None
    title_max_length: int | None = None
    title_required_strings: list[str] = []
    title_blacklisted_strings: list[str] = []
    body_policy: str | None = None
    domain_whitelist: list[str] = []
    domain_blacklist: list[str] = []
    community_rules: list[str] = []
    subscribers: int | None = None


class PostProblem(ApiBody, omit_defaults=True):
    """One thing scheduling would refuse, in the words and with the field of the API's error."""

    error: str
    field: str | None = None
    subreddit: str | None = None


class PostCheck(ApiBody):
    """What scheduling this request would refuse (empty: it would be accepted now)."""

    problems: list[PostProblem]


class MediaView(ApiBody):
    """An uploaded image. ``width`` and ``height`` are its pixel dimensions as stored (a photo
    whose kept EXIF orientation turns it shows the other way round)."""

    id: int
    kind: MediaKind
    width: int
    height: int
    bytes: int
    sha256: str
    """Of the bytes stored (after metadata removal): what ``GET /api/media/{id}/content`` returns."""
    removed: list[str]
    """The metadata removed before storing (empty with ``keepMetadata=true``)."""
    created_at: datetime


class MediaList(ApiBody):
    media: list[MediaView]
    next_cursor: str | None = None
    """Pass back as ``cursor`` for the next page; null on the last page."""


class ErrorBody(ApiBody, omit_defaults=True):
    """Every error the API returns."""

    error: str
    detail: str | None = None
    field: str | None = None
    required_tier: Tier | None = None
    existing_post_id: int | None = None
    post_ids: list[int] | None = None
    """The posts that still use the media a delete was refused for."""
    errors: list["ItemError"] | None = None


class ItemError(ApiBody, omit_defaults=True):
    """What was wrong with one item of a batch."""

    index: int
    error: str
    field: str | None = None


class UserRequest(ApiBody):
    name: Name
    tier: Tier = Tier.FREE
    role: Role = Role.USER


class UserView(ApiBody):
    id: int
    name: str
    tier: Tier
    role: Role
    created_at: datetime
    time_zone: str = "UTC"
    """The IANA zone the user's pages show times in (set on the app's settings page)."""


class TierChange(ApiBody):
    tier: Tier


class TimeZoneChange(ApiBody):
    """An IANA time zone name (``Europe/Berlin``), checked by the use case."""

    time_zone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class UserRemoved(ApiBody):
    """A removed user: their tokens no longer work anywhere, their scheduled posts are
    cancelled (none is published after this), their linked Reddit accounts' credentials are
    erased. Their published posts stay as history; the name is free again."""

    id: int
    name: str
    posts_cancelled: int
    tokens_revoked: int
    accounts_unlinked: int


class TokenRequest(ApiBody):
    name: Name = "api"


class TokenView(ApiBody):
    id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


class TokenCreated(TokenView):
    """A new token: ``token`` is shown this once; only its hash is stored."""

    token: str = ""


class AccountView(ApiBody):
    id: int
    reddit_username: str
    scopes: str
    needs_relink: bool
    created_at: datetime


class AccountUnlinkedView(ApiBody):
    """An account unlinked, and how many of its scheduled posts were cancelled."""

    id: int
    reddit_username: str
    posts_cancelled: int


class LinkStart(ApiBody):
    """Send the user to ``authorizeUrl``; Reddit returns them to the callback.

    ``secret`` binds this link to whoever started it: a browser gets it as a cookie too, so its
    callback links at once; an API client keeps it and presents it to
    ``POST /api/accounts/link/complete``. The link must finish before ``expiresAt``, once."""

    authorize_url: str
    state: str
    secret: str
    expires_at: datetime


class LinkPending(ApiBody):
    """The callback's answer when it cannot tell that the one who consented started the link:
    nothing is linked yet. The program that started it finishes with
    ``POST /api/accounts/link/complete``, giving ``verificationCode``, which only the person
    who consented sees."""

    detail: str
    link_to: str
    """The Thotto user the account will be linked to."""
    verification_code: str
    expires_at: datetime


class LinkCompletion(ApiBody):
    """Finish a link started by an API client, after the person consented on Reddit."""

    state: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    """As ``POST /api/accounts/link`` returned it."""
    verification_code: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    """As the callback page showed it to the person who consented."""


# Every record above and the engine's, as one tagged union: any of them can be decoded from JSON
# or msgpack with ``decode(data, type=AnyMessage)``.
AnyMessage = Union[
    NewJob,
    Job,
    EnqueueResult,
    Attempt,
    QueueCount,
    ExpiredLeases,
    Completed,
    Retry,
    Dead,
    Deferred,
    Released,
    SettleResult,
    NewUser,
    User,
    UserRemoval,
    ApiToken,
    NewAccount,
    Account,
    Recurrence,
    PostContent,
    NewPost,
    Post,
    PostPage,
    SubredditRules,
    EngagementReading,
    PostEngagement,
    NewMedia,
    Media,
    MediaPage,
]


# Invisible format characters a reader cannot see, dropped from title keys. Joiners (U+200C,
# U+200D) stay: they change how the characters around them are drawn (emoji, Persian, Indic).
_KEPT_FORMAT_CHARACTERS = frozenset("\u200c\u200d")
#: Title keys longer than this many UTF-8 bytes keep a prefix and a SHA-256 of the whole key, so
#: the key always fits in an index entry (NFKC may expand 300 characters to 5,400).
TITLE_KEY_MAX_BYTES = 1000


def title_key(title: str) -> str:
    """What two titles share when a person would call them the same: NFKC-normalised, case-folded
    (``straße`` and ``STRASSE`` agree), invisible format characters dropped and every run of
    whitespace (tabs, no-break and ideographic spaces included) made one space, trimmed.

    The one definition of a duplicate title: both stores keep it in ``posts.title_key`` and the
    API compares batch items with it.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", title).casefold())
    visible = "".join(char for char in folded
                      if unicodedata.category(char) != "Cf" or char in _KEPT_FORMAT_CHARACTERS)
    key = " ".join(visible.split())
    encoded = key.encode("utf-8", "surrogatepass")
    if len(encoded) <= TITLE_KEY_MAX_BYTES:
        return key
    digest = hashlib.sha256(encoded).hexdigest()
    return encoded[: TITLE_KEY_MAX_BYTES - 65].decode("utf-8", "ignore") + "#" + digest
