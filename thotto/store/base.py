"""The Store protocol: the one contract every storage adapter of the product keeps.

It extends the engine's :class:`~thotto.engine.store.base.JobStore` (jobs, attempts, cron,
queues: the rules stated there hold here too) with users, tokens, accounts, posts, media and
engagement. Both dialects (``sqlite.py``, ``postgres.py``: the core of :mod:`thotto.store.core` over the job
store of :mod:`thotto.engine.store`) subclass :class:`Store` and pass the one contract test suite in
``tests/store/``. Inputs arrive as the types in
:mod:`thotto.scheduler.records` and :mod:`thotto.engine.jobs`.
"""

from __future__ import annotations

import abc
import base64
import binascii
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import datetime

from thotto.engine.errors import ValidationError
from thotto.engine.store.base import JobStore
from thotto.errors import MediaInUse
from thotto.scheduler.records import (
    Account,
    ApiToken,
    EngagementReading,
    AccountUnlinked,
    LinkRequest,
    PasswordLink,
    WebSession,
    Media,
    MediaPage,
    NewAccount,
    NewMedia,
    NewPost,
    NewUser,
    Post,
    PostContent,
    PostEngagement,
    PostPage,
    PostStatus,
    SubredditRules,
    Tier,
    User,
    UserRemoval,
)

#: Media are stored in chunks of at most this many bytes, so neither storing nor reading an image
#: holds more than one chunk of it in memory.
MEDIA_CHUNK_BYTES = 1_000_000


async def media_chunks(chunks: AsyncIterable[bytes], size: int = MEDIA_CHUNK_BYTES) -> AsyncIterator[bytes]:
    """``chunks`` cut or joined into pieces of exactly ``size`` bytes (the last one shorter):
    what the adapters store, whatever sizes the caller's iterator yields."""
    pending = bytearray()
    async for chunk in chunks:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise ValidationError(f"media chunks must be bytes, got {type(chunk).__name__}",
                                  field="chunks")
        if not pending and len(chunk) == size:  # already a whole chunk: no copy
            yield bytes(chunk)
            continue
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def encode_media_cursor(media_id: int) -> str:
    """The opaque cursor of a media page that ended with ``media_id`` (pages go newest first)."""
    return base64.urlsafe_b64encode(f"media:{media_id}".encode()).decode().rstrip("=")


def decode_media_cursor(cursor: str) -> int:
    """The last media id of the previous page; ValidationError for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "media" or not number.isdigit() or len(number) > 18:
            raise ValueError(text)
        return int(number)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("Malformed cursor: pass the nextCursor of the previous page unchanged",
                              field="cursor") from None


def media_in_use(media_id: int, post_ids: list[int]) -> MediaInUse:
    """The error of deleting media that posts not finished yet use."""
    named = ", ".join(str(post_id) for post_id in post_ids)
    noun = "post" if len(post_ids) == 1 else "posts"
    return MediaInUse(f"Media {media_id} is used by {noun} {named}, not finished yet; cancel the "
                      f"{noun} or wait until published, then delete it", post_ids=post_ids)


POST_QUEUE = "posts"
POST_JOB_KIND = "reddit.submit"


class Store(JobStore):
    """Durable storage for jobs and their attempts (:class:`JobStore`), and the user, account,
    post and media records.

    Open one with :func:`thotto.store.open_store`, an async context manager that closes it (and
    its threads and connections) on exit, also when cancelled.
    """

    # --- users and API tokens --------------------------------------------------------------

    @abc.abstractmethod
    async def create_user(self, user: NewUser) -> User:
        """Create a user. Conflict if the name is taken."""

    @abc.abstractmethod
    async def get_user(self, user_id: int) -> User:
        """The user; NotFound."""

    @abc.abstractmethod
    async def get_user_by_name(self, name: str) -> User:
        """The user; NotFound."""

    @abc.abstractmethod
    async def list_users(self) -> list[User]:
        """All users, by id."""

    @abc.abstractmethod
    async def set_tier(self, user_id: int, tier: Tier) -> User:
        """Change a user's tier; NotFound."""

    @abc.abstractmethod
    async def create_token(self, user_id: int, name: str, token_hash: str) -> ApiToken:
        """Store an API token by its hash (the token itself is never stored). Conflict if the
        hash exists; NotFound if the user does not."""

    @abc.abstractmethod
    async def revoke_token(self, token_id: int) -> ApiToken:
        """Revoke a token; idempotent. NotFound."""

    @abc.abstractmethod
    async def list_tokens(self, user_id: int) -> list[ApiToken]:
        """A user's tokens, revoked ones included, by id."""

    @abc.abstractmethod
    async def user_for_token(self, token_hash: str) -> User | None:
        """The user owning an unrevoked token with this hash, else None."""

    @abc.abstractmethod
    async def remove_user(self, user_id: int) -> UserRemoval:
        """Remove a user, in one transaction: every token of theirs is revoked; every post of
        theirs still scheduled (job pending) is cancelled, so none is published after this; the
        credentials of their linked Reddit accounts are erased and the accounts flagged
        ``needs_relink``; a publishing attempt already running when the user is removed cannot
        :meth:`arm_post` any more (InvalidTransition), so it never reaches Reddit after this;
        the user is then gone for every user look-up (``get_user``, ``get_user_by_name``,
        ``list_users``, ``set_tier``, ``create_token``, ``create_account``: NotFound), and the
        name is free for a new user. Published posts stay, as history. NotFound if the user
        does not exist or was removed; Conflict if they are the last admin."""

    # --- Reddit accounts -------------------------------------------------------------------

    @abc.abstractmethod
    async def create_account(self, account: NewAccount) -> Account:
        """Link a Reddit account to a user. Linking the same Reddit username again for the same
        user replaces its token and clears ``needs_relink`` (re-linking), returning that account.
        NotFound if the user does not exist."""

    @abc.abstractmethod
    async def get_account(self, account_id: int) -> Account:
        """The account; NotFound."""

    @abc.abstractmethod
    async def list_accounts(self, user_id: int) -> list[Account]:
        """A user's linked accounts, by id (not those they unlinked)."""

    @abc.abstractmethod
    async def set_account_token(self, account_id: int, refresh_token_encrypted: bytes) -> Account:
        """Replace an account's (encrypted) refresh token and clear ``needs_relink``."""

    @abc.abstractmethod
    async def set_needs_relink(self, account_id: int, needs_relink: bool) -> Account:
        """Flag (or clear) that the account must be linked again (its token was refused)."""

    # --- account link requests --------------------------------------------------------------

    @abc.abstractmethod
    async def create_link_request(self, state_hash: str, user_id: int, secret_hash: str,
                                  expires_at: datetime) -> LinkRequest:
        """Record that ``user_id`` started linking: the state's hash, the binding secret's
        hash, when it expires. Forgets requests that expired over a day ago (the table stays
        small without a sweep). Conflict if the state hash exists; NotFound without the user."""

    @abc.abstractmethod
    async def get_link_request(self, state_hash: str) -> LinkRequest | None:
        """The link request with this state hash, used or expired ones included; else None."""

    @abc.abstractmethod
    async def hold_link_code(self, state_hash: str, held_code: bytes, verifier_hash: str) -> bool:
        """Keep Reddit's (encrypted) code and the verification code's hash on a request that is
        unused, unexpired (at ``self.now()``) and holds no code yet; True if this call did.
        Across processes one call wins, so a replayed callback can never replace a code."""

    @abc.abstractmethod
    async def use_link_request(self, state_hash: str) -> bool:
        """Mark the request used (``used_at`` = now) if it is unused and unexpired; True if
        this call did. One call wins across every process: a state links at most once."""

    @abc.abstractmethod
    async def unlink_account(self, account_id: int, user_id: int) -> AccountUnlinked:
        """Unlink one of the user's Reddit accounts, in one transaction: its credentials are
        erased, it is flagged ``needs_relink`` and left out of :meth:`list_accounts`, and the
        posts still scheduled on it are cancelled. Linking the same Reddit account again
        (:meth:`create_account`) brings it back. NotFound if it is not the user's or is
        already unlinked."""

    # --- the web app: time zones, passwords, sessions, sign-in failures ---------------------

    @abc.abstractmethod
    async def set_time_zone(self, user_id: int, time_zone: str) -> User:
        """Set the IANA zone the user's pages use (checked by the caller); NotFound."""

    @abc.abstractmethod
    async def get_password_hash(self, user_id: int) -> str | None:
        """The user's password hash, None if they have none; NotFound."""

    @abc.abstractmethod
    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Replace the user's password hash (a stronger rehash at sign-in); NotFound."""

    @abc.abstractmethod
    async def create_password_link(self, token_hash: str, user_id: int,
                                   expires_at: datetime) -> PasswordLink:
        """Record a one-time set-password link for the user. The user's earlier unused links
        stop working (the newest link is the only one), and links expired over a day ago are
        forgotten. Conflict if the hash exists; NotFound without the user."""

    @abc.abstractmethod
    async def get_password_link(self, token_hash: str) -> PasswordLink | None:
        """The link with this hash, used or expired ones included; else None."""

    @abc.abstractmethod
    async def use_password_link(self, token_hash: str, password_hash: str) -> User | None:
        """In one transaction: spend the link if it is unused and unexpired (at ``self.now()``)
        and its user is not removed, set that user's password hash, and delete every session
        of theirs (a new password signs every browser out). Returns the user, or None if the
        link cannot be used; one call wins across processes."""

    @abc.abstractmethod
    async def create_session(self, id_hash: str, user_id: int, csrf_token: str,
                             expires_at: datetime) -> WebSession:
        """Record a signed-in browser (``last_seen_at`` = now), forgetting sessions that
        expired. Conflict if the hash exists; NotFound without the user."""

    @abc.abstractmethod
    async def get_session(self, id_hash: str) -> WebSession | None:
        """The session with this hash and its user (as :meth:`get_user` sees them), expired
        ones included (the caller judges expiry); None if unknown or its user was removed."""

    @abc.abstractmethod
    async def touch_session(self, id_hash: str) -> None:
        """Set the session's ``last_seen_at`` to now (nothing if it is gone)."""

    @abc.abstractmethod
    async def delete_session(self, id_hash: str) -> bool:
        """Sign one browser out; True if the session existed."""

    @abc.abstractmethod
    async def delete_user_sessions(self, user_id: int) -> int:
        """Sign every browser of the user out; how many sessions there were."""

    @abc.abstractmethod
    async def record_sign_in_failure(self, keys: Sequence[str]) -> None:
        """Count one failed sign-in (now) under each key, forgetting failures over a day old."""

    @abc.abstractmethod
    async def sign_in_failures(self, key: str, since: datetime) -> list[datetime]:
        """When the failures counted under ``key`` at or after ``since`` happened, oldest
        first."""

    @abc.abstractmethod
    async def clear_sign_in_failures(self, key: str) -> None:
        """Forget the failures counted under ``key`` (after a successful sign-in)."""

    # --- posts -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_posts(
        self, posts: Sequence[NewPost], *, max_attempts: int = 3
    ) -> list[Post]:
        """Create posts, each with its publishing job (queue ``posts``, kind ``reddit.submit``,
        payload ``{"post_id": id}``, ``run_at`` = ``scheduled_for``), all in one transaction:
        all or none. NotFound if an account does not belong to the post's user."""

    @abc.abstractmethod
    async def get_post(self, post_id: int, user_id: int | None = None) -> Post:
        """The post. With ``user_id``, another user's post is NotFound (not Forbidden: its
        existence is not revealed)."""

    @abc.abstractmethod
    async def get_post_by_job(self, job_id: int) -> Post:
        """The post a publishing job belongs to; NotFound."""

    @abc.abstractmethod
    async def list_posts(
        self,
        user_id: int,
        *,
        status: PostStatus | None = None,
        scheduled_from: datetime | None = None,
        scheduled_to: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> PostPage:
        """A user's posts ordered by ``scheduled_for`` then id, filtered by status and a
        half-open ``[scheduled_from, scheduled_to)`` range. ``cursor`` is the opaque
        ``next_cursor`` of the previous page; pages do not skip or repeat posts. ValidationError
        for a malformed cursor or a limit outside 1–500."""

    @abc.abstractmethod
    async def find_recent_posts(
        self, account_id: int, subreddit: str, title: str, since: datetime
    ) -> list[Post]:
        """Posts of an account to a subreddit (name compared case-insensitively) with this title
        (compared by :func:`thotto.scheduler.records.title_key`, kept in an indexed column: NFKC, case
        folding, whitespace collapsed) that are scheduled or publishing, or whose job completed
        since ``since``: for duplicate detection."""

    @abc.abstractmethod
    async def update_post(
        self,
        post_id: int,
        user_id: int,
        *,
        content: PostContent | None = None,
        scheduled_for: datetime | None = None,
    ) -> Post:
        """Edit and/or reschedule a scheduled post (its job moves with it). InvalidTransition
        unless the post is still scheduled; NotFound for another user's post."""

    @abc.abstractmethod
    async def revive_post(
        self, post_id: int, *, scheduled_for: datetime, content: PostContent | None = None
    ) -> Post:
        """Edit (when ``content`` is given) and reschedule a *failed* post: it is scheduled again
        at ``scheduled_for``, its job pending with its attempts and failure cause reset.
        InvalidTransition unless the post is failed, and for an edit of a post that may be on
        Reddit (armed: an attempt's outcome was never known; retry it instead). NotFound."""

    @abc.abstractmethod
    async def cancel_post(self, post_id: int, user_id: int) -> Post:
        """Cancel a scheduled post and its job. Idempotent; InvalidTransition if it is
        publishing or finished; NotFound for another user's post."""

    @abc.abstractmethod
    async def record_publication(self, post_id: int, reddit_id: str, reddit_url: str) -> Post:
        """Record Reddit's id and URL for a published post. Idempotent for the same id;
        InvalidTransition if a different Reddit id is already recorded."""

    @abc.abstractmethod
    async def arm_post(self, post_id: int) -> Post:
        """Record, durably, that an attempt to publish the post is about to call Reddit: sets
        ``armed_at`` to now unless it is already set (the earliest arming is kept, so a later
        reconciliation looks back far enough). Call it before every submission. NotFound;
        InvalidTransition if the post's user was removed (see :meth:`remove_user`).

        While a post is armed and unpublished its status is ``publishing`` and it cannot be
        edited, rescheduled or cancelled (thotto.store.lifecycle)."""

    @abc.abstractmethod
    async def disarm_post(self, post_id: int) -> Post:
        """Clear ``armed_at`` once nothing of the post is in doubt: Reddit refused the attempt
        and any earlier one was reconciled as absent. A published post keeps its mark. The post
        is ``scheduled`` again (or failed, by its job), and may change. NotFound."""

    # --- media --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_media(self, media: NewMedia, chunks: AsyncIterable[bytes]) -> Media:
        """Store an image from ``chunks`` (cut into pieces of at most :data:`MEDIA_CHUNK_BYTES`,
        one transaction each, so no whole file is held), counting and hashing what is stored.
        The media becomes visible (get, list, read) only once its last chunk is stored; an
        upload that fails or is cancelled leaves nothing (an unfinished row is purged later)."""

    @abc.abstractmethod
    async def get_media(self, media_id: int, user_id: int | None = None) -> Media:
        """The media; with ``user_id``, another user's is NotFound (its existence is not revealed)."""

    @abc.abstractmethod
    async def list_media(self, user_id: int, *, cursor: str | None = None, limit: int = 50) -> MediaPage:
        """A user's media, newest first; ``cursor`` is the previous page's ``next_cursor``.
        ValidationError for a malformed cursor or a limit outside 1–500."""

    @abc.abstractmethod
    def read_media(self, media_id: int, user_id: int | None = None) -> AsyncIterator[bytes]:
        """The media's bytes, one stored chunk per step (NotFound as :meth:`get_media`)."""

    @abc.abstractmethod
    async def delete_media(self, media_id: int, user_id: int) -> Media:
        """Delete one of the user's media with its chunks; MediaInUse while a post that is not
        finished links it (``post_media``); NotFound for another user's."""

    @abc.abstractmethod
    async def purge_media(self, unused_before: datetime, *, unfinished_before: datetime | None = None) -> int:
        """Delete media no unfinished post uses, created before ``unused_before``, and uploads
        never finished, begun before ``unfinished_before`` (default: the same date). Returns
        how many were deleted."""

    # --- recurring posts and engagement -----------------------------------------------------

    @abc.abstractmethod
    async def create_follow_up(
        self, previous_post_id: int, post: NewPost, *, max_attempts: int = 3
    ) -> tuple[Post, bool]:
        """Create ``post`` (with its publishing job, as :meth:`create_posts` does) as the next
        occurrence of the recurring post ``previous_post_id``, exactly once: a post has at most
        one follow-up, whatever repeats or races the call (the database enforces it), so a
        repeated call creates nothing and returns the existing follow-up, even if it has since
        been published or cancelled. The follow-up inherits the previous post's
        :meth:`series_start`. Returns the follow-up and whether this call created it. NotFound
        if the previous post does not exist or the account is not the post's user's."""

    @abc.abstractmethod
    async def series_start(self, post_id: int) -> datetime:
        """The anchor of the post's recurring series: the scheduled time of its first
        occurrence, which :meth:`create_follow_up` carries from each post to its follow-up (a
        post that follows none is its own first occurrence). NotFound."""

    @abc.abstractmethod
    async def record_engagement(self, readings: Sequence[EngagementReading]) -> int:
        """Store the latest score and comment count of published posts, in one transaction.

        A reading replaces the post's stored one unless that was read later (readings from
        several processes may arrive out of order: the latest read wins); with several readings
        of one post in the batch, the latest counts. Readings of posts that are unknown (purged
        meanwhile) or have no Reddit id are ignored. Returns how many posts changed. Idempotent.
        """

    @abc.abstractmethod
    async def posts_to_refresh(
        self, published_since: datetime, read_before: datetime, *, limit: int = 1000
    ) -> list[Post]:
        """Published posts (job completed, Reddit id recorded) whose job completed at or after
        ``published_since`` and whose engagement was never read or last read before
        ``read_before``: never-read ones first, then the longest unread, then by id; at most
        ``limit`` (1-10,000, else ValidationError)."""

    @abc.abstractmethod
    async def subreddit_engagement(
        self, subreddit: str, *, since: datetime | None = None
    ) -> list[PostEngagement]:
        """The published posts to ``subreddit`` (case-insensitive) that have an engagement
        reading, with their latest one, published (job completed) at or after ``since`` when
        given; ordered by publication time, then post id."""

    # --- community rules -------------------------------------------------------------------

    @abc.abstractmethod
    async def save_subreddit_rules(self, rules: SubredditRules) -> None:
        """Store (or replace) what is known of a subreddit's rules, keyed by its lower-cased
        name."""

    @abc.abstractmethod
    async def get_subreddit_rules(self, name: str) -> SubredditRules | None:
        """The stored rules of a subreddit (name compared case-insensitively), or None."""

    @abc.abstractmethod
    async def list_subreddit_rules(self) -> list[SubredditRules]:
        """Every stored subreddit's rules, by name (for the weekly community sync)."""


__all__ = [
    "Store",
    "POST_QUEUE",
    "POST_JOB_KIND",
    "MEDIA_CHUNK_BYTES",
    "media_chunks",
    "encode_media_cursor",
    "decode_media_cursor",
    "media_in_use",
]
