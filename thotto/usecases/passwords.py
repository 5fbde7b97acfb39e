"""People's passwords: one-time set-password links, the password rules, signing in (rate-limited
per user name and per client address, counted in the store so every process counts the same
attempts) and signing out everywhere.

Passwords are hashed with argon2id (argon2-cffi's defaults: 64 MiB, 3 passes). A hash takes
tens of milliseconds of CPU and that memory, so it runs in a worker thread, at most
:data:`HASHING_AT_ONCE` at a time: a burst of sign-ins queues rather than exhausting memory.
The CLI (``thotto user add``, ``thotto init``), the first start and the admin page all issue
links through :func:`issue_password_link`; the pages call the rest.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from thotto.engine.errors import NotFound
from thotto.errors import TooManyRequests, ValidationError
from thotto.scheduler.records import User

if TYPE_CHECKING:
    from thotto.config import Settings
    from thotto.store.base import Store

PASSWORD_MIN_LENGTH = 10
#: Longer passwords are refused: hashing is linear in the length, and nobody types more.
PASSWORD_MAX_LENGTH = 1024
SET_PASSWORD_PATH = "/set-password/"
HASHING_AT_ONCE = 2

_HASHER = PasswordHasher()
_HASHING = trio.CapacityLimiter(HASHING_AT_ONCE)
# Verified against when the user name is unknown, so an unknown name takes as long as a wrong
# password and timing does not tell which names exist.
_DECOY_HASH = _HASHER.hash("decoy password, never anyone's")


def link_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def base_url(settings: "Settings") -> str:
    """Where people reach this installation (``public_url``, else the API's address)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = f"[{settings.api_host}]" if ":" in settings.api_host else settings.api_host
    return f"http://{host}:{settings.api_port}"


def set_password_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}{SET_PASSWORD_PATH}{token}"


async def issue_password_link(store: "Store", settings: "Settings", user_id: int, base: str,
                              *, now: datetime) -> str:
    """A new one-time link for the user to set their password (their earlier unused links stop
    working); valid ``password_link_hours``. Returns its URL under ``base``."""
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(hours=settings.password_link_hours)
    await store.create_password_link(link_digest(token), user_id, expires_at)
    return set_password_url(base, token)


def check_password(password: str) -> str:
    """The password if it follows the rules; else ValidationError on ``password``."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValidationError(f"Use at least {PASSWORD_MIN_LENGTH} characters (this one has "
                              f"{len(password)}); a few words you will remember work well",
                              field="password")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise ValidationError(f"Use at most {PASSWORD_MAX_LENGTH} characters", field="password")
    if not password.strip():
        raise ValidationError("A password of only spaces is too easy to guess", field="password")
    return password


async def hash_password(password: str) -> str:
    async with _HASHING:
        return await trio.to_thread.run_sync(_HASHER.hash, password)


async def _verifies(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return _HASHER.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async with _HASHING:
        return await trio.to_thread.run_sync(verify)


class LinkUnusable(ValidationError):
    """A set-password link that cannot set a password; ``gone``: it existed (used, expired or its
    user removed), else it is unknown."""

    def __init__(self, message: str, *, gone: bool):
        super().__init__(message, field="token")
        self.gone = gone


async def link_user(store: "Store", token: str, *, now: datetime) -> User:
    """The user a set-password link is for, if it can still be used; :class:`LinkUnusable`
    saying why not (unknown, used, expired)."""
    link = await store.get_password_link(link_digest(token)) if 0 < len(token) <= 200 else None
    if link is None:
        raise LinkUnusable("This link is unknown or was replaced by a newer one; ask for a new "
                           "link (an admin issues one, or `thotto user password-link`)", gone=False)
    if link.used_at is not None:
        raise LinkUnusable("This link was already used (a link works once); sign in with your "
                           "password, or ask for a new link", gone=True)
    if link.expires_at <= now:
        raise LinkUnusable("This link has expired; ask for a new one", gone=True)
    try:
        return await store.get_user(link.user_id)
    except NotFound:
        raise LinkUnusable("This link's user no longer exists", gone=True) from None


async def set_password_with_link(store: "Store", token: str, password: str, *,
                                 now: datetime) -> User:
    """Spend the link and set the password (every session of the user ends). ValidationError
    on ``password`` (rules) or ``token`` (cannot be used)."""
    await link_user(store, token, now=now)
    password_hash = await hash_password(check_password(password))
    user = await store.use_password_link(link_digest(token), password_hash)
    if user is None:
        raise LinkUnusable("This link was just used or expired; ask for a new one", gone=True)
    return user


@dataclass(frozen=True)
class SignInLimits:
    per_user: int
    per_address: int
    window: timedelta

    @classmethod
    def from_settings(cls, settings: "Settings") -> "SignInLimits":
        return cls(settings.sign_in_failures_per_user, settings.sign_in_failures_per_address,
                   timedelta(minutes=settings.sign_in_window_minutes))


def _user_key(name: str) -> str:
    return "user:" + name.casefold()[:200]


def _address_key(address: str) -> str:
    return "address:" + address[:200]


async def _wait_before_trying(store: "Store", key: str, limit: int, window: timedelta,
                              now: datetime) -> float:
    """Seconds until ``key`` may try again (0: now): once ``limit`` failures fall within the
    window, until the oldest of the last ``limit`` leaves it."""
    failures = await store.sign_in_failures(key, now - window)
    if len(failures) < limit:
        return 0.0
    return max(1.0, (failures[len(failures) - limit] + window - now).total_seconds())


async def sign_in(store: "Store", limits: SignInLimits, name: str, password: str, address: str,
                  *, now: datetime) -> User:
    """The user whose name and password these are. TooManyRequests (with the wait) while the
    name or the address has had too many failures in the window, before the password is even
    checked; ValidationError on ``password`` for a wrong name or password (not saying which)."""
    keys = [_user_key(name), _address_key(address)]
    for key, limit in zip(keys, (limits.per_user, limits.per_address)):
        wait = await _wait_before_trying(store, key, limit, limits.window, now)
        if wait:
            who = "this user name" if key.startswith("user:") else "this address"
            raise TooManyRequests(
                f"Too many failed sign-ins for {who} ({limit} in {limits.window.total_seconds() / 60:g} "
                f"minutes); try again in {_minutes(wait)}", retry_after=wait)
    user, password_hash = await _credentials(store, name)
    if not await _verifies(password_hash or _DECOY_HASH, password) or user is None or password_hash is None:
        await store.record_sign_in_failure(keys)
        raise ValidationError("The user name or the password is wrong", field="password")
    await store.clear_sign_in_failures(keys[0])
    if _HASHER.check_needs_rehash(password_hash):
        await store.set_password_hash(user.id, await hash_password(password))
    return user


async def _credentials(store: "Store", name: str) -> tuple[User | None, str | None]:
    if not 0 < len(name) <= 64:
        return None, None
    try:
        user = await store.get_user_by_name(name)
        return user, await store.get_password_hash(user.id)
    except NotFound:
        return None, None


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.0f} minutes"


async def sign_out_everywhere(store: "Store", user_id: int) -> int:
    """End every session of the user (every browser); how many there were."""
    return await store.delete_user_sessions(user_id)
