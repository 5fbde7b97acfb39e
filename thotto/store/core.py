"""The product store's core: the Reddit scheduler's tables (users, tokens, accounts, link
requests, posts, recurrence, engagement, rules, media) over the job store's core, written once
for both dialects (issue #14).

:class:`CoreStore` extends :class:`thotto.engine.store.core.JobCore` (the job tables: see it for
what a dialect supplies) with the product's cold paths; the dialects ``sqlite.py`` and
``postgres.py`` combine it with their job store and the product's named queries
(``sql/queries_<dialect>.sql``). The state-change rules of posts are :mod:`thotto.store.lifecycle`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
import trio

from thotto.engine.errors import NotFound, StoreError
from thotto.errors import Conflict, InvalidTransition, ValidationError
from thotto.engine.jobs import JobState
from thotto.scheduler.records import (
    Account,
    AccountUnlinked,
    ApiToken,
    EngagementReading,
    LinkRequest,
    Media,
    MediaKind,
    MediaPage,
    NewAccount,
    NewMedia,
    NewPost,
    NewUser,
    PasswordLink,
    Post,
    PostContent,
    PostEngagement,
    PostPage,
    PostStatus,
    Recurrence,
    Role,
    SubredditRules,
    Tier,
    TokenHash,
    User,
    UserRemoval,
    WebSession,
    title_key,
)
from thotto.store.base import (
    POST_JOB_KIND,
    POST_QUEUE,
    Store,
    decode_media_cursor,
    encode_media_cursor,
    media_chunks,
    media_in_use,
)
from thotto.engine.store.core import (
    EPOCH,
    INT64_LIMIT,
    ONE_US,
    JobCore,
    PositiveId,
    Tx,
    UniqueViolation,
    check,
    check_bytes,
    check_struct,
    check_time,
    malformed_cursor,
    not_found,
)
from thotto.store.lifecycle import (
    STATUS_CONDITION,
    check_changeable,
    check_revivable,
    post_error,
    post_status,
)

PageLimit = Annotated[int, msgspec.Meta(ge=1, le=500)]
TokenName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
RedditId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
RedditUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
MaxAttemptsArg = Annotated[int, msgspec.Meta(ge=1, le=1000)]
RefreshLimit = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
TimeZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
PasswordHash = Annotated[str, msgspec.Meta(min_length=16, max_length=512)]
SignInKey = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
#: Expired link requests are kept this long (to say "expired" rather than "unknown"), then dropped.
LINK_REQUEST_MEMORY = timedelta(days=1)
#: Sign-in failures are counted over at most this long, then dropped.
SIGN_IN_MEMORY = timedelta(days=1)
MEDIA_PURGE_BATCH = 50  # media per transaction: a purge never holds the writer for long

_STATES = {state.value: state for state in JobState}
_TIERS = {tier.value: tier for tier in Tier}
_ROLES = {role.value: role for role in Role}
_MEDIA_KINDS = {kind.value: kind for kind in MediaKind}
_CONTENT = msgspec.json.Decoder(PostContent)
_RECURRENCE = msgspec.json.Decoder(Recurrence)
_RULES = msgspec.json.Decoder(SubredditRules)
_REMOVED = msgspec.json.Decoder(list[str])
_ENCODE = msgspec.json.Encoder().encode


class CoreStore(JobCore, Store):
    """The Store's product cold paths over a dialect's transactions and named queries."""

    # --- records -------------------------------------------------------------------------------

    def _user(self, r: Any) -> User:
        return User(r[0], r[1], _TIERS[r[2]], _ROLES[r[3]], self._from_db(r[4]), r[5])

    def _token(self, r: Any) -> ApiToken:
        return ApiToken(r[0], r[1], r[2], self._from_db(r[3]), self._from_db(r[4]))

    def _account(self, r: Any) -> Account:
        return Account(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5]), self._from_db(r[6]))

    def _link_request(self, r: Any) -> LinkRequest:
        time = self._from_db
        return LinkRequest(r[0], r[1], r[2], time(r[3]), time(r[4]), time(r[5]),
                           None if r[6] is None else bytes(r[6]), r[7])

    def _password_link(self, r: Any) -> PasswordLink:
        time = self._from_db
        return PasswordLink(r[0], r[1], time(r[2]), time(r[3]), time(r[4]))

    def _session(self, r: Any) -> WebSession:
        time = self._from_db
        return WebSession(r[0], self._user(tuple(r)[5:]), r[1], time(r[2]), time(r[3]), time(r[4]))

    def _post(self, r: Any) -> Post:
        time = self._from_db
        armed_at = time(r[13])
        status = post_status(_STATES[r[5]], armed_at, r[7])
        recurrence = None if r[10] is None else _RECURRENCE.decode(r[10])
        return Post(r[0], r[1], r[2], _CONTENT.decode(r[3]), time(r[4]), status, r[6], r[7], r[8],
                    post_error(status, r[9]), recurrence, time(r[11]), time(r[12]), armed_at)

    def _media(self, r: Any) -> Media:
        return Media(r[0], r[1], _MEDIA_KINDS[r[2]], r[3], r[4], r[5], r[6], _REMOVED.decode(r[7]),
                     self._from_db(r[8]))

    async def _live_user(self, tx: Tx, user_id: int) -> None:
        await self._one(tx, self.q.live_user, (user_id,), "user", user_id)

    # --- users and API tokens -------------------------------------------------------------------

    async def create_user(self, user: NewUser) -> User:
        user = check_struct(user, NewUser, "user")
        args = (user.name, user.tier.value, user.role.value, self._to_db(self._now()))

        async def create(tx: Tx) -> Any:
            try:
                return await tx.fetchrow(self.q.insert_user, *args)
            except UniqueViolation:
                raise Conflict(f"The user name {user.name!r} is taken") from None

        return self._user(await self._write_tx(create))

    async def get_user(self, user_id: int) -> User:
        user_id = check(user_id, int, "user_id")
        return await self._read_one(self.q.user_by_id, (user_id,), "user", user_id, self._user)

    async def get_user_by_name(self, name: str) -> User:
        name = check(name, str, "name")
        return await self._read_one(self.q.user_by_name, (name,), "user named", name, self._user)

    async def list_users(self) -> list[User]:
        return await self._read_all(self.q.users, (), self._user)

    async def set_tier(self, user_id: int, tier: Tier) -> User:
        user_id, tier = check(user_id, int, "user_id"), check(tier, Tier, "tier")
        return await self._write_one(self.q.set_tier, (user_id, tier.value), "user", user_id,
                                     self._user)

    async def create_token(self, user_id: int, name: str, token_hash: str) -> ApiToken:
        user_id = check(user_id, int, "user_id")
        name = check(name, TokenName, "name")
        token_hash = check(token_hash, TokenHash, "token_hash")
        now = self._to_db(self._now())

        async def create(tx: Tx) -> Any:
            await self._live_user(tx, user_id)
            try:
                return await tx.fetchrow(self.q.insert_token, user_id, name, token_hash, now)
            except UniqueViolation:
                raise Conflict("An API token with this hash already exists") from None

        return self._token(await self._write_tx(create))

    async def revoke_token(self, token_id: int) -> ApiToken:
        token_id = check(token_id, int, "token_id")
        now = self._to_db(self._now())
        return await self._write_one(self.q.revoke_token, (token_id, now), "API token", token_id,
                                     self._token)

    async def list_tokens(self, user_id: int) -> list[ApiToken]:
        return await self._read_all(self.q.tokens_of_user, (check(user_id, int, "user_id"),),
                                    self._token)

    async def user_for_token(self, token_hash: str) -> User | None:
        token_hash = check(token_hash, str, "token_hash")
        row = await self._read_tx(lambda tx: tx.fetchrow(self.q.user_by_token, token_hash))
        return None if row is None else self._user(row)

    async def remove_user(self, user_id: int) -> UserRemoval:
        user_id = check(user_id, int, "user_id")
        now = self._to_db(self._now())

        async def remove(tx: Tx) -> UserRemoval:
            user = self._user(await self._one(tx, self.q.user_to_remove, (user_id,), "user", user_id))
            # The other admins' rows are locked too: two admins removing each other at once
            # cannot both pass.
            if user.role is Role.ADMIN and not await tx.fetchval(self.q.other_admins, user_id):
                raise Conflict(f"{user.name!r} is the last admin; make another user an admin "
                               "before removing them")
            posts = await tx.execute(self.q.cancel_users_posts, user_id, now)
            tokens = await tx.execute(self.q.revoke_users_tokens, user_id, now)
            accounts = await tx.execute(self.q.unlink_users_accounts, user_id)
            # A '#' suffix, which no valid name has, frees the name for a new user.
            await tx.execute(self.q.mark_user_removed, user_id, now)
            return UserRemoval(user, posts, tokens, accounts)

        return await self._write_tx(remove)

    # --- Reddit accounts -------------------------------------------------------------------------

    async def create_account(self, account: NewAccount) -> Account:
        account = check_struct(account, NewAccount, "account")
        args = (account.user_id, account.reddit_username, account.refresh_token_encrypted,
                account.scopes, self._to_db(self._now()))

        async def link(tx: Tx) -> Any:
            await self._live_user(tx, account.user_id)
            return await tx.fetchrow(self.q.link_account, *args)

        return self._account(await self._write_tx(link))

    async def get_account(self, account_id: int) -> Account:
        account_id = check(account_id, int, "account_id")
        return await self._read_one(self.q.account_by_id, (account_id,), "account", account_id,
                                    self._account)

    async def list_accounts(self, user_id: int) -> list[Account]:
        return await self._read_all(self.q.accounts_of_user, (check(user_id, int, "user_id"),),
                                    self._account)

    async def set_account_token(self, account_id: int, refresh_token_encrypted: bytes) -> Account:
        token = check_bytes(refresh_token_encrypted, "refresh_token_encrypted")
        return await self._update_account(account_id, self.q.set_account_token, token)

    async def set_needs_relink(self, account_id: int, needs_relink: bool) -> Account:
        return await self._update_account(account_id, self.q.set_needs_relink,
                                          check(needs_relink, bool, "needs_relink"))

    async def _update_account(self, account_id: int, sql: str, value: Any) -> Account:
        account_id = check(account_id, int, "account_id")
        return await self._write_one(sql, (account_id, value), "account", account_id, self._account)

    async def unlink_account(self, account_id: int, user_id: int) -> AccountUnlinked:
        account_id, user_id = check(account_id, int, "account_id"), check(user_id, int, "user_id")
        now = self._to_db(self._now())

        async def unlink(tx: Tx) -> AccountUnlinked:
            account = self._account(await self._one(tx, self.q.linked_account_of_user,
                                                    (account_id, user_id), "linked account",
                                                    account_id))
            posts = await tx.execute(self.q.cancel_accounts_posts, account_id, now)
            await tx.execute(self.q.unlink_account, account_id, now)
            return AccountUnlinked(account, posts)

        return await self._write_tx(unlink)

    # --- account link requests ---------------------------------------------------------------

    async def create_link_request(self, state_hash: str, user_id: int, secret_hash: str,
                                  expires_at: datetime) -> LinkRequest:
        state_hash = check(state_hash, TokenHash, "state_hash")
        user_id = check(user_id, int, "user_id")
        secret_hash = check(secret_hash, TokenHash, "secret_hash")
        expires = self._to_db(check_time(expires_at, "expires_at"))
        now = self._now()

        async def create(tx: Tx) -> Any:
            await self._live_user(tx, user_id)
            await tx.execute(self.q.forget_old_link_requests, self._to_db(now - LINK_REQUEST_MEMORY))
            try:
                return await tx.fetchrow(self.q.insert_link_request, state_hash, user_id,
                                         secret_hash, self._to_db(now), expires)
            except UniqueViolation:
                raise Conflict("A link request with this state already exists") from None

        return self._link_request(await self._write_tx(create))

    async def get_link_request(self, state_hash: str) -> LinkRequest | None:
        state_hash = check(state_hash, str, "state_hash")
        row = await self._read_tx(lambda tx: tx.fetchrow(self.q.link_request, state_hash))
        return None if row is None else self._link_request(row)

    async def hold_link_code(self, state_hash: str, held_code: bytes, verifier_hash: str) -> bool:
        args = (check(state_hash, str, "state_hash"), check_bytes(held_code, "held_code"),
                check(verifier_hash, TokenHash, "verifier_hash"), self._to_db(self._now()))
        return await self._write_tx(lambda tx: tx.execute(self.q.hold_link_code, *args)) == 1

    async def use_link_request(self, state_hash: str) -> bool:
        args = (check(state_hash, str, "state_hash"), self._to_db(self._now()))
        return await self._write_tx(lambda tx: tx.execute(self.q.use_link_request, *args)) == 1

    # --- the web app: time zones, passwords, sessions, sign-in failures ------------------------

    async def set_time_zone(self, user_id: int, time_zone: str) -> User:
        args = (check(user_id, int, "user_id"), check(time_zone, TimeZoneName, "time_zone"))
        return await self._write_one(self.q.set_time_zone, args, "user", user_id, self._user)

    async def get_password_hash(self, user_id: int) -> str | None:
        user_id = check(user_id, int, "user_id")
        return await self._read_one(self.q.password_hash, (user_id,), "user", user_id,
                                    lambda row: row[0])

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        args = (check(user_id, int, "user_id"), check(password_hash, PasswordHash, "password_hash"))

        async def store(tx: Tx) -> None:
            if await tx.execute(self.q.set_password_hash, *args) != 1:
                raise not_found("user", user_id)

        await self._write_tx(store)

    async def create_password_link(self, token_hash: str, user_id: int,
                                   expires_at: datetime) -> PasswordLink:
        token_hash = check(token_hash, TokenHash, "token_hash")
        user_id = check(user_id, int, "user_id")
        expires = self._to_db(check_time(expires_at, "expires_at"))
        now = self._now()

        async def create(tx: Tx) -> Any:
            await self._one(tx, self.q.lock_live_user, (user_id,), "user", user_id)
            await tx.execute(self.q.forget_old_password_links, self._to_db(now - LINK_REQUEST_MEMORY))
            await tx.execute(self.q.retire_password_links, user_id)
            try:
                return await tx.fetchrow(self.q.insert_password_link, token_hash, user_id,
                                         self._to_db(now), expires)
            except UniqueViolation:
                raise Conflict("A password link with this hash already exists") from None

        return self._password_link(await self._write_tx(create))

    async def get_password_link(self, token_hash: str) -> PasswordLink | None:
        token_hash = check(token_hash, str, "token_hash")
        row = await self._read_tx(lambda tx: tx.fetchrow(self.q.password_link, token_hash))
        return None if row is None else self._password_link(row)

    async def use_password_link(self, token_hash: str, password_hash: str) -> User | None:
        token_hash = check(token_hash, str, "token_hash")
        password_hash = check(password_hash, PasswordHash, "password_hash")
        now = self._to_db(self._now())

        async def use(tx: Tx) -> User | None:
            user_id = await tx.fetchval(self.q.use_password_link, token_hash, now)
            if user_id is None:
                return None
            await tx.execute(self.q.set_password_hash, user_id, password_hash)
            # A new password signs every browser out.
            await tx.execute(self.q.delete_user_sessions, user_id)
            return self._user(await tx.fetchrow(self.q.user_by_id, user_id))

        return await self._write_tx(use)

    async def create_session(self, id_hash: str, user_id: int, csrf_token: str,
                             expires_at: datetime) -> WebSession:
        id_hash = check(id_hash, TokenHash, "id_hash")
        user_id = check(user_id, int, "user_id")
        csrf_token = check(csrf_token, TokenHash, "csrf_token")
        expires = self._to_db(check_time(expires_at, "expires_at"))
        now = self._to_db(self._now())

        async def create(tx: Tx) -> Any:
            await self._live_user(tx, user_id)
            await tx.execute(self.q.forget_expired_sessions, now)
            try:
                await tx.execute(self.q.insert_session, id_hash, user_id, csrf_token, now, expires)
            except UniqueViolation:
                raise Conflict("A session with this id already exists") from None
            return await tx.fetchrow(self.q.session, id_hash)

        return self._session(await self._write_tx(create))

    async def get_session(self, id_hash: str) -> WebSession | None:
        id_hash = check(id_hash, str, "id_hash")
        row = await self._read_tx(lambda tx: tx.fetchrow(self.q.session, id_hash))
        return None if row is None else self._session(row)

    async def touch_session(self, id_hash: str) -> None:
        args = (check(id_hash, str, "id_hash"), self._to_db(self._now()))
        await self._write_tx(lambda tx: tx.execute(self.q.touch_session, *args))

    async def delete_session(self, id_hash: str) -> bool:
        id_hash = check(id_hash, str, "id_hash")
        return await self._write_tx(lambda tx: tx.execute(self.q.delete_session, id_hash)) == 1

    async def delete_user_sessions(self, user_id: int) -> int:
        user_id = check(user_id, int, "user_id")
        return await self._write_tx(lambda tx: tx.execute(self.q.delete_user_sessions, user_id))

    async def record_sign_in_failure(self, keys: Sequence[str]) -> None:
        keys = check(keys, list[SignInKey], "keys")
        now = self._now()

        async def record(tx: Tx) -> None:
            await tx.execute(self.q.forget_old_sign_in_failures, self._to_db(now - SIGN_IN_MEMORY))
            for key in keys:
                await tx.execute(self.q.insert_sign_in_failure, key, self._to_db(now))

        await self._write_tx(record)

    async def sign_in_failures(self, key: str, since: datetime) -> list[datetime]:
        args = (check(key, SignInKey, "key"), self._to_db(check_time(since, "since")))
        return await self._read_all(self.q.sign_in_failures, args, lambda row: self._from_db(row[0]))

    async def clear_sign_in_failures(self, key: str) -> None:
        key = check(key, SignInKey, "key")
        await self._write_tx(lambda tx: tx.execute(self.q.clear_sign_in_failures, key))

    # --- posts -----------------------------------------------------------------------------------

    async def create_posts(self, posts: Sequence[NewPost], *, max_attempts: int = 3) -> list[Post]:
        checked = [check_struct(post, NewPost, "posts") for post in posts]
        max_attempts = check(max_attempts, MaxAttemptsArg, "max_attempts")
        times = [check_time(post.scheduled_for, "scheduled_for") for post in checked]
        now = self._now()
        if not checked:
            await trio.lowlevel.checkpoint()
            return []

        async def create(tx: Tx) -> list[Post]:
            return [await self._create_post(tx, post, when, max_attempts, now)
                    for post, when in zip(checked, times)]

        return await self._write_tx(create)

    async def _create_post(self, tx: Tx, post: NewPost, when: datetime, max_attempts: int,
                           now: datetime, follows: int | None = None) -> Post:
        """Insert a post and its publishing job (and, with ``follows``, mark it as that post's
        follow-up, carrying its series' anchor)."""
        if await tx.fetchval(self.q.account_owner, post.account_id) != post.user_id:
            raise NotFound(f"Account {post.account_id} is not an account of user {post.user_id}")
        at, created = self._to_db(when), self._to_db(now)
        job_id = await tx.fetchval(self.q.insert_post_job, POST_QUEUE, POST_JOB_KIND, b"null", at,
                                   max_attempts, created)
        recurrence = None if post.recurrence is None else self._json(post.recurrence)
        post_id = await tx.fetchval(
            self.q.insert_post, post.user_id, post.account_id, job_id, post.content.subreddit,
            title_key(post.content.title), self._json(post.content), at, recurrence, created)
        await tx.execute(self.q.set_job_payload, job_id, _ENCODE({"post_id": post_id}))
        if follows is not None:
            await tx.execute(self.q.set_follows, post_id, follows)
        await self._link_media(tx, post_id, post.user_id, post.content)
        tx.wake(when)
        return Post(post_id, post.user_id, post.account_id, post.content, when,
                    PostStatus.SCHEDULED, job_id, None, None, None, post.recurrence, now, now)

    async def _link_media(self, tx: Tx, post_id: int, user_id: int, content: PostContent) -> None:
        """Record which uploads the post uses (so they are not deleted while it may publish),
        each checked to be one of the post's user's."""
        await tx.execute(self.q.unlink_post_media, post_id)
        for position, ref in enumerate(content.media):
            if await tx.fetchval(self.q.media_owner, ref.media_id) != user_id:
                raise NotFound(f"Media {ref.media_id} is not one of user {user_id}'s uploads")
            await tx.execute(self.q.link_post_media, post_id, ref.media_id, position)

    async def _select_post(self, tx: Tx, post_id: int, user_id: int | None = None, *,
                           lock: bool = False) -> Post:
        """The post; NotFound if it is missing or (with ``user_id``) another user's."""
        row = await tx.fetchrow(self.q.post_for_update if lock else self.q.post_by_id, post_id)
        if row is None or (user_id is not None and row[1] != user_id):
            raise not_found("post", post_id)
        return self._post(row)

    async def get_post(self, post_id: int, user_id: int | None = None) -> Post:
        post_id = check(post_id, int, "post_id")
        user_id = check(user_id, int | None, "user_id")
        return await self._read_tx(lambda tx: self._select_post(tx, post_id, user_id))

    async def get_post_by_job(self, job_id: int) -> Post:
        job_id = check(job_id, int, "job_id")
        row = await self._read_tx(lambda tx: tx.fetchrow(self.q.post_by_job, job_id))
        if row is None:
            raise NotFound(f"No post is published by job {job_id}")
        return self._post(row)

    async def list_posts(self, user_id: int, *, status: PostStatus | None = None,
                         scheduled_from: datetime | None = None,
                         scheduled_to: datetime | None = None, cursor: str | None = None,
                         limit: int = 50) -> PostPage:
        args: list[Any] = [check(user_id, int, "user_id")]
        limit = check(limit, PageLimit, "limit")

        def arg(value: Any) -> str:
            args.append(value)
            return self._param(len(args))

        clauses = [f"p.user_id = {self._param(1)}"]
        status = check(status, PostStatus | None, "status")
        if status is not None:
            clauses.append(STATUS_CONDITION[status])
        if scheduled_from is not None:
            clauses.append(f"p.scheduled_for >= {arg(self._to_db(check_time(scheduled_from, 'scheduled_from')))}")
        if scheduled_to is not None:
            clauses.append(f"p.scheduled_for < {arg(self._to_db(check_time(scheduled_to, 'scheduled_to')))}")
        if cursor is not None:
            after, after_id = _decode_post_cursor(cursor)
            clauses.append(f"(p.scheduled_for, p.id) > ({arg(self._to_db(after))}, {arg(after_id)})")
        sql = (f"{self.q.post_select} WHERE {' AND '.join(clauses)} "
               f"ORDER BY p.scheduled_for, p.id LIMIT {arg(limit + 1)}")
        rows = await self._read_tx(lambda tx: tx.fetch(sql, *args))
        posts = [self._post(row) for row in rows[:limit]]
        more = len(rows) > limit
        return PostPage(posts, _encode_post_cursor(posts[-1]) if more else None)

    async def find_recent_posts(self, account_id: int, subreddit: str, title: str,
                                since: datetime) -> list[Post]:
        args = (check(account_id, int, "account_id"), check(subreddit, str, "subreddit"),
                title_key(check(title, str, "title")), self._to_db(check_time(since, "since")))
        return await self._read_all(self.q.recent_posts, args, self._post)

    async def update_post(self, post_id: int, user_id: int, *, content: PostContent | None = None,
                          scheduled_for: datetime | None = None) -> Post:
        post_id, user_id = check(post_id, int, "post_id"), check(user_id, int, "user_id")
        if content is not None:
            content = check_struct(content, PostContent, "content")
        when = None if scheduled_for is None else check_time(scheduled_for, "scheduled_for")
        now = self._now()

        async def update(tx: Tx) -> Post:
            post = await self._select_post(tx, post_id, user_id, lock=True)
            check_changeable(post, "edited" if content is not None else "rescheduled", now)
            await self._apply_post_edit(tx, post, content, when, now)
            return await self._select_post(tx, post_id)

        return await self._write_tx(update)

    async def _apply_post_edit(self, tx: Tx, post: Post, content: PostContent | None,
                               when: datetime | None, now: datetime) -> None:
        if content is not None:
            await tx.execute(self.q.set_post_content, post.id, self._json(content),
                             content.subreddit, title_key(content.title))
            await self._link_media(tx, post.id, post.user_id, content)
        if when is not None:
            await tx.execute(self.q.set_post_schedule, post.id, self._to_db(when))
            await tx.execute(self.q.set_job_run_at, post.job_id, self._to_db(when))
            tx.wake(when)
        await tx.execute(self.q.set_post_updated, post.id, self._to_db(now))

    async def revive_post(self, post_id: int, *, scheduled_for: datetime,
                          content: PostContent | None = None) -> Post:
        post_id = check(post_id, int, "post_id")
        if content is not None:
            content = check_struct(content, PostContent, "content")
        when = check_time(scheduled_for, "scheduled_for")
        now = self._now()

        async def revive(tx: Tx) -> Post:
            post = await self._select_post(tx, post_id, lock=True)
            check_revivable(post, content is not None)
            await self._apply_post_edit(tx, post, content, when, now)
            await tx.execute(self.q.revive_job, post.job_id, self._to_db(when))
            return await self._select_post(tx, post_id)

        return await self._write_tx(revive)

    async def cancel_post(self, post_id: int, user_id: int) -> Post:
        post_id, user_id = check(post_id, int, "post_id"), check(user_id, int, "user_id")
        now = self._now()

        async def cancel(tx: Tx) -> Post:
            post = await self._select_post(tx, post_id, user_id, lock=True)
            if post.status is PostStatus.CANCELLED:
                return post
            check_changeable(post, "cancelled", now)
            await tx.execute(self.q.cancel_post_job, post.job_id, self._to_db(now))
            await tx.execute(self.q.set_post_updated, post_id, self._to_db(now))
            return await self._select_post(tx, post_id)

        return await self._write_tx(cancel)

    async def record_publication(self, post_id: int, reddit_id: str, reddit_url: str) -> Post:
        post_id = check(post_id, int, "post_id")
        reddit_id = check(reddit_id, RedditId, "reddit_id")
        reddit_url = check(reddit_url, RedditUrl, "reddit_url")
        now = self._to_db(self._now())

        async def record(tx: Tx) -> Post:
            post = await self._select_post(tx, post_id, lock=True)
            if post.reddit_id == reddit_id:
                return post
            if post.reddit_id is not None:
                raise InvalidTransition(
                    f"Post {post_id} is already recorded as Reddit post {post.reddit_id}; "
                    f"refusing to record {reddit_id} over it",
                    job_id=post.job_id, state=post.status.value)
            await tx.execute(self.q.set_publication, post_id, reddit_id, reddit_url, now)
            return await self._select_post(tx, post_id)

        return await self._write_tx(record)

    async def arm_post(self, post_id: int) -> Post:
        post_id = check(post_id, int, "post_id")
        now = self._to_db(self._now())

        async def arm(tx: Tx) -> Post:
            await self._select_post(tx, post_id, lock=True)
            if await tx.fetchrow(self.q.post_of_removed_user, post_id):
                raise InvalidTransition(f"Post {post_id} belongs to a removed user; it is not "
                                        "published")
            await tx.execute(self.q.arm_post, post_id, now)
            return await self._select_post(tx, post_id)

        return await self._write_tx(arm)

    async def disarm_post(self, post_id: int) -> Post:
        post_id = check(post_id, int, "post_id")
        now = self._to_db(self._now())

        async def disarm(tx: Tx) -> Post:
            await tx.execute(self.q.disarm_post, post_id, now)
            return await self._select_post(tx, post_id)

        return await self._write_tx(disarm)

    # --- recurring posts and engagement ---------------------------------------------------------

    async def create_follow_up(self, previous_post_id: int, post: NewPost, *,
                               max_attempts: int = 3) -> tuple[Post, bool]:
        previous_post_id = check(previous_post_id, PositiveId, "previous_post_id")
        post = check_struct(post, NewPost, "post")
        max_attempts = check(max_attempts, MaxAttemptsArg, "max_attempts")
        when, now = check_time(post.scheduled_for, "scheduled_for"), self._now()

        async def create(tx: Tx) -> tuple[Post, bool]:
            # Locking the previous post (Postgres; SQLite has one writer) queues concurrent
            # calls here; the unique index on follows_post_id is the last word besides.
            await self._one(tx, self.q.lock_post, (previous_post_id,), "post", previous_post_id)
            found = await tx.fetchval(self.q.follow_up_of, previous_post_id)
            if found is not None:
                return await self._select_post(tx, found), False
            return await self._create_post(tx, post, when, max_attempts, now,
                                           follows=previous_post_id), True

        return await self._write_tx(create)

    async def series_start(self, post_id: int) -> datetime:
        post_id = check(post_id, PositiveId, "post_id")
        return await self._read_one(self.q.series_start, (post_id,), "post", post_id,
                                    lambda row: self._from_db(row[0]))

    async def record_engagement(self, readings: Sequence[EngagementReading]) -> int:
        latest: dict[int, EngagementReading] = {}
        for reading in readings:
            reading = check_struct(reading, EngagementReading, "readings")
            kept = latest.get(reading.post_id)
            if kept is None or kept.read_at <= reading.read_at:
                latest[reading.post_id] = reading
        rows = [(r.post_id, r.score, r.comments, self._to_db(check_time(r.read_at, "read_at")))
                for r in latest.values()]
        if not rows:
            await trio.lowlevel.checkpoint()
            return 0

        async def record(tx: Tx) -> int:
            return sum([await tx.execute(self.q.set_engagement, *row) for row in rows])

        return await self._write_tx(record)

    async def posts_to_refresh(self, published_since: datetime, read_before: datetime, *,
                               limit: int = 1000) -> list[Post]:
        args = (self._to_db(check_time(published_since, "published_since")),
                self._to_db(check_time(read_before, "read_before")),
                check(limit, RefreshLimit, "limit"))
        return await self._read_all(self.q.to_refresh, args, self._post)

    async def subreddit_engagement(self, subreddit: str, *,
                                   since: datetime | None = None) -> list[PostEngagement]:
        args = (check(subreddit, str, "subreddit"),
                self._to_db(EPOCH if since is None else check_time(since, "since")))
        time = self._from_db
        return await self._read_all(self.q.subreddit_engagement, args, lambda r: PostEngagement(
            post_id=r[0], account_id=r[1], subreddit=r[2], scheduled_for=time(r[3]),
            published_at=time(r[4]), score=r[5], comments=r[6], read_at=time(r[7])))

    # --- community rules -------------------------------------------------------------------------

    async def save_subreddit_rules(self, rules: SubredditRules) -> None:
        rules = check_struct(rules, SubredditRules, "rules")
        args = (rules.name.lower(), self._json(rules),
                self._to_db(check_time(rules.synced_at, "synced_at")))
        await self._write_tx(lambda tx: tx.execute(self.q.save_rules, *args))

    async def get_subreddit_rules(self, name: str) -> SubredditRules | None:
        name = check(name, str, "name").lower()
        rules = await self._read_tx(lambda tx: tx.fetchval(self.q.rules_by_name, name))
        return None if rules is None else _RULES.decode(rules)

    async def list_subreddit_rules(self) -> list[SubredditRules]:
        return await self._read_all(self.q.all_rules, (), lambda row: _RULES.decode(row[0]))

    # --- media -----------------------------------------------------------------------------------

    async def create_media(self, media: NewMedia, chunks: AsyncIterable[bytes]) -> Media:
        media = check_struct(media, NewMedia, "media")
        args = (media.user_id, media.kind.value, media.width, media.height,
                self._json(media.removed), self._to_db(self._now()))

        async def begin(tx: Tx) -> int:
            await self._live_user(tx, media.user_id)
            return await tx.fetchval(self.q.insert_media, *args)

        media_id = await self._write_tx(begin)
        try:
            size, digest = await self._store_chunks(media_id, chunks)
            if size == 0:
                raise ValidationError("The image is empty: send its bytes", field="chunks")
            return await self._write_one(self.q.finish_media, (media_id, size, digest),
                                         "media (deleted while it was being stored)", media_id,
                                         self._media)
        except BaseException:
            # An unfinished upload must not stay behind (if this fails too, purge_media will).
            with trio.CancelScope(shield=True), contextlib.suppress(StoreError):
                await self._write_tx(lambda tx: tx.execute(self.q.delete_media, media_id))
            raise

    async def _store_chunks(self, media_id: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        """Write the chunks one transaction each; their total size and SHA-256."""
        hasher, size, seq = hashlib.sha256(), 0, 0
        async with contextlib.aclosing(media_chunks(chunks)) as pieces:
            async for piece in pieces:
                hasher.update(piece)
                size += len(piece)
                args = (media_id, seq, piece)
                await self._write_tx(lambda tx: tx.execute(self.q.insert_media_chunk, *args))
                seq += 1
        return size, hasher.hexdigest()

    async def get_media(self, media_id: int, user_id: int | None = None) -> Media:
        media_id = check(media_id, int, "media_id")
        user_id = check(user_id, int | None, "user_id")
        if user_id is None:
            return await self._read_one(self.q.media_by_id, (media_id,), "media", media_id,
                                        self._media)
        return await self._read_one(self.q.media_of_user, (media_id, user_id), "media", media_id,
                                    self._media)

    async def list_media(self, user_id: int, *, cursor: str | None = None,
                         limit: int = 50) -> MediaPage:
        user_id = check(user_id, int, "user_id")
        limit = check(limit, PageLimit, "limit")
        before = (1 << 62) if cursor is None else decode_media_cursor(cursor)
        rows = await self._read_tx(lambda tx: tx.fetch(self.q.media_page, user_id, before, limit + 1))
        media = [self._media(row) for row in rows[:limit]]
        return MediaPage(media, encode_media_cursor(media[-1].id) if len(rows) > limit else None)

    async def read_media(self, media_id: int, user_id: int | None = None) -> AsyncIterator[bytes]:
        media = await self.get_media(media_id, user_id)
        sent, seq = 0, 0
        while sent < media.bytes:
            args = (media.id, seq)
            data = await self._read_tx(lambda tx: tx.fetchval(self.q.media_chunk, *args))
            if data is None:
                raise not_found("media", media_id)  # deleted while it was being read
            sent += len(data)
            seq += 1
            yield bytes(data)

    async def delete_media(self, media_id: int, user_id: int) -> Media:
        media_id, user_id = check(media_id, int, "media_id"), check(user_id, int, "user_id")

        async def delete(tx: Tx) -> Media:
            media = self._media(await self._one(tx, self.q.media_of_user_for_update,
                                                (media_id, user_id), "media", media_id))
            posts = [row[0] for row in await tx.fetch(self.q.media_live_posts, media_id)]
            if posts:
                raise media_in_use(media_id, posts)
            await tx.execute(self.q.delete_media, media_id)
            return media

        return await self._write_tx(delete)

    async def purge_media(self, unused_before: datetime, *,
                          unfinished_before: datetime | None = None) -> int:
        unused = self._to_db(check_time(unused_before, "unused_before"))
        unfinished = unused if unfinished_before is None else self._to_db(
            check_time(unfinished_before, "unfinished_before"))

        async def purge_batch(tx: Tx) -> int:
            ids = [row[0] for row in await tx.fetch(self.q.media_to_purge, unused, unfinished,
                                                    MEDIA_PURGE_BATCH)]
            for media_id in ids:
                await tx.execute(self.q.delete_media, media_id)
            return len(ids)

        purged = 0
        while batch := await self._write_tx(purge_batch):
            purged += batch
        return purged


# --- cursors ---------------------------------------------------------------------------------


def _encode_post_cursor(post: Post) -> str:
    micros = (post.scheduled_for - EPOCH) // ONE_US
    return base64.urlsafe_b64encode(f"{micros}:{post.id}".encode()).decode().rstrip("=")


def _decode_post_cursor(cursor: str) -> tuple[datetime, int]:
    """Where the previous page ended: (scheduled_for, post id). A forged cursor may hold numbers
    no database integer holds: a ValidationError, not a driver's overflow."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        micros, post_id = (int(n) for n in base64.urlsafe_b64decode(padded.encode()).decode().split(":"))
        if not all(-INT64_LIMIT <= number < INT64_LIMIT for number in (micros, post_id)):
            raise OverflowError(micros, post_id)
        return EPOCH + ONE_US * micros, post_id
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeError, OverflowError):
        raise malformed_cursor() from None


__all__ = ["CoreStore"]
