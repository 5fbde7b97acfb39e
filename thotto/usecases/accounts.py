"""Linking a Reddit account to a Thotto user: by password (a self-hoster's script app), or by
Reddit's web-app consent, started by one call and completed by another.

A web-app link must go to the Thotto user whose Reddit account it is. :func:`start_link` answers
the authorize URL with a random ``state`` and a ``secret`` that binds the link to whoever started
it; the store keeps their hashes (a state works once, for 10 minutes, in every process). When
Reddit sends the person back (:func:`answer_link`), the browser that started the link (it
carries the secret, as a cookie) links at once. Any other arrival (an API client's user
consenting in a browser, or a stranger who was handed the consent URL) links nothing: the person
is shown the Thotto user the account would go to and a verification code, and the starter
completes with :func:`complete_link` (state, secret, code). The code is shown only to the person
who consented, so whoever started a link cannot finish it with someone else's consent unless
that person hands them the code on purpose.

Every link ends in :func:`_save_account`: the credentials are stored encrypted and the
publisher's cached credentials of a re-linked account are dropped. ``scheduler`` is the
process's :class:`~thotto.scheduler.scheduler.Scheduler`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from thotto.engine.errors import ConfigError
from thotto.errors import Conflict, ValidationError
from thotto.engine.jobs import validated
from thotto.scheduler.records import (
    Account,
    AccountUnlinked,
    LinkPending,
    LinkRequest,
    LinkStart,
    NewAccount,
    User,
)
from thotto.scheduler.posts import post_list_tag
from thotto.vault import Password, RefreshToken

if TYPE_CHECKING:
    from thotto.cache import Cache
    from thotto.scheduler.scheduler import Scheduler
    from thotto.store.base import Store
    from thotto.reddit.client import RedditClient

LINK_STATE_SECONDS = 600.0
# Without 0, O, 1 and I, so that a code read off a screen is typed back right; 12 of these
# characters are 60 random bits, far beyond guessing within a link's 10 minutes.
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def reddit_client(scheduler: "Scheduler") -> "RedditClient":
    """The process's Reddit client; ConfigError (503) saying what to set when there is none."""
    if scheduler.services.reddit is None:
        raise ConfigError("Reddit is not configured: set reddit_client_id (THOTTO_REDDIT_CLIENT_ID) "
                          "and reddit_client_secret (THOTTO_REDDIT_CLIENT_SECRET), plus "
                          "reddit_url (THOTTO_REDDIT_URL) to use a sandbox")
    return scheduler.services.reddit


# --- by password --------------------------------------------------------------------------------


async def link_with_password(scheduler: "Scheduler", user_id: int, username: str, password: str) -> Account:
    """Link a Reddit account by a script app's password grant (self-hosters). The credentials
    are checked with Reddit, then stored encrypted."""
    reddit = reddit_client(scheduler).account_from_password(username, password)
    me = await reddit.me()
    sealed = scheduler.services.vault.seal(Password(username=me.name, password=password))
    return await _save_account(scheduler, user_id, me.name, sealed, reddit.scopes)


# --- by Reddit's consent --------------------------------------------------------------------------


async def start_link(scheduler: "Scheduler", user: User) -> LinkStart:
    """Start a web-app link for ``user``: the URL to consent at, the state and the secret."""
    reddit = reddit_client(scheduler)
    state, secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    authorize_url = reddit.authorize_url(state)  # first: without a redirect URI, 503 and no row
    expires_at = scheduler.clock.now() + timedelta(seconds=LINK_STATE_SECONDS)
    await scheduler.store.create_link_request(digest(state), user.id, digest(secret), expires_at)
    return LinkStart(authorize_url=authorize_url, state=state, secret=secret, expires_at=expires_at)


async def answer_link(scheduler: "Scheduler", state: str, code: str | None, error: str | None, *,
                      browser_secret: str | None) -> Account | LinkPending:
    """Reddit's answer for ``state``: in the browser that started the link (``browser_secret``
    matches) the account is linked; anywhere else nothing is, and the answer is the pending
    link with the verification code for the person who consented."""
    link = await _open_link_request(scheduler, state)
    if error or not code:
        await scheduler.store.use_link_request(link.state_hash)  # a refusal ends this link
        raise ValidationError(f"Reddit did not grant access ({error or 'no code'}); "
                              "start linking again and choose Allow", field="code")
    if browser_secret is not None and _matches(browser_secret, link.secret_hash):
        return await _link_once(scheduler, link, code)
    return await _hold_for_starter(scheduler, link, code)


async def complete_link(scheduler: "Scheduler", user: User, state: str, secret: str,
                        verification_code: str) -> Account:
    """Finish a link ``user`` started, with the code the person who consented was shown."""
    link = await _open_link_request(scheduler, state)
    if link.user_id != user.id:
        raise ValidationError("This state belongs to a link another user started; start your "
                              "own with POST /api/accounts/link", field="state")
    if not _matches(secret, link.secret_hash):
        raise ValidationError("The secret does not match the one POST /api/accounts/link "
                              "returned with this state", field="secret")
    if link.held_code is None or link.verifier_hash is None:
        raise Conflict("Reddit has not sent the consent back yet: open authorizeUrl in a browser, "
                       "choose Allow, then send the verification code the page shows")
    if not _matches(_normal_code(verification_code), link.verifier_hash):
        raise ValidationError("The verification code is not the one the page after Reddit's "
                              "consent showed; check it and send it again", field="verificationCode")
    code = scheduler.services.vault.open_note(link.held_code.decode(), max_age_seconds=LINK_STATE_SECONDS * 2)
    if code is None:
        raise ValidationError("Reddit's answer for this link can no longer be read; start linking "
                              "again", field="state")
    return await _link_once(scheduler, link, code)


async def link_with_code(scheduler: "Scheduler", user_id: int, code: str) -> Account:
    """Exchange Reddit's consent ``code`` for a permanent refresh token, stored encrypted."""
    reddit = await reddit_client(scheduler).link_with_code(code)
    me = await reddit.me()
    sealed = scheduler.services.vault.seal(RefreshToken(token=reddit.refresh_token))
    return await _save_account(scheduler, user_id, me.name, sealed, reddit.scopes)


def digest(value: str) -> str:
    """How the store keeps a link's state and secret (never the values themselves)."""
    return hashlib.sha256(value.encode()).hexdigest()


def _matches(value: str, expected_hash: str) -> bool:
    return hmac.compare_digest(digest(value), expected_hash)


def _new_verification_code() -> str:
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"


def _normal_code(code: str) -> str:
    """As typed back: any case, with or without the dashes and spaces."""
    plain = "".join(char for char in code.upper() if char.isalnum())
    return f"{plain[:4]}-{plain[4:8]}-{plain[8:]}"


async def _open_link_request(scheduler: "Scheduler", state: str) -> LinkRequest:
    """The link request of ``state`` if it can still link; 422 saying why not."""
    link = await scheduler.store.get_link_request(digest(state)) if state else None
    if link is None:
        raise ValidationError("This link request is unknown; start linking again with POST "
                              "/api/accounts/link", field="state")
    if link.used_at is not None:
        raise ValidationError("This link request was already used (a state links once); start "
                              "linking again with POST /api/accounts/link", field="state")
    if link.expires_at <= scheduler.clock.now():
        raise ValidationError(f"This link request expired ({LINK_STATE_SECONDS / 60:g} minutes "
                              "after it started); start linking again", field="state")
    return link


async def _link_once(scheduler: "Scheduler", link: LinkRequest, code: str) -> Account:
    """Spend the state (one caller wins across processes), then link the consenting account."""
    if not await scheduler.store.use_link_request(link.state_hash):
        raise ValidationError("This link request was just used or expired; start linking again",
                              field="state")
    return await link_with_code(scheduler, link.user_id, code)


async def _hold_for_starter(scheduler: "Scheduler", link: LinkRequest, code: str) -> LinkPending:
    """Keep Reddit's code for the starter and give the consenting person the code that lets the
    starter finish; nothing is linked."""
    if link.held_code is not None:
        raise ValidationError("Reddit's answer for this link request already arrived; a state "
                              "is answered once. Start linking again", field="state")
    verification_code = _new_verification_code()
    sealed = scheduler.services.vault.seal_note(code).encode()
    if not await scheduler.store.hold_link_code(link.state_hash, sealed, digest(verification_code)):
        raise ValidationError("This link request was just answered, used or expired; start "
                              "linking again", field="state")
    owner = await scheduler.store.get_user(link.user_id)
    return LinkPending(
        detail=("Nothing is linked yet: this browser did not start this link. The program that "
                "started it finishes it with POST /api/accounts/link/complete and this "
                "verification code; give the code only if you started the link yourself"),
        link_to=owner.name, verification_code=verification_code, expires_at=link.expires_at)


async def _save_account(scheduler: "Scheduler", user_id: int, name: str, sealed: bytes, scopes) -> Account:
    account = NewAccount(user_id=user_id, reddit_username=name, refresh_token_encrypted=sealed,
                         scopes=" ".join(scopes))
    saved = await scheduler.store.create_account(validated(account))
    if scheduler.publisher is not None:
        scheduler.publisher.forget(saved.id)  # a re-link replaces the cached credentials
    return saved


# --- unlinking ------------------------------------------------------------------------------------


async def unlink_account(store: "Store", cache: "Cache", account_id: int, user_id: int) -> AccountUnlinked:
    """Unlink one of ``user_id``'s accounts: credentials erased, the account hidden, its
    scheduled posts cancelled (NotFound for anyone else's: it is not revealed), and the user's
    cached post lists dropped."""
    unlinked = await store.unlink_account(account_id, user_id)
    await cache.invalidate_tags(post_list_tag(user_id))
    return unlinked
