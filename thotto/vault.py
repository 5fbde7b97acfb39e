"""Secrets at rest: Reddit credentials are stored encrypted with Fernet (AES-128-CBC + HMAC).

The key comes from the ``encryption_key`` setting (``THOTTO_ENCRYPTION_KEY``) or, by default,
from ``<data_dir>/secret.key``, created with mode 0600 on first start. Losing the key makes the
stored credentials unreadable (accounts must then be linked again); it is never logged.

Several processes sharing one Postgres must share one key: set ``THOTTO_ENCRYPTION_KEY`` (or
copy the key file) on each.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
from cryptography.fernet import Fernet, InvalidToken

from thotto.engine.errors import ConfigError, ThottoError

KEY_FILE_NAME = "secret.key"


class SecretUnreadable(ThottoError):
    """Stored credentials could not be decrypted (the key changed or the data is damaged)."""


class Credentials(msgspec.Struct, tag_field="type", tag=True, forbid_unknown_fields=True):
    """Base of what is stored encrypted for a Reddit account."""


class RefreshToken(Credentials, tag="refresh_token"):
    """A web-app link: the permanent refresh token from the OAuth code flow."""

    token: str


class Password(Credentials, tag="password"):
    """A script-app link (self-hosters): Reddit's password grant issues no refresh token, so
    the password itself is what lets Thotto sign in again."""

    username: str
    password: str


class Vault:
    """Encrypts and decrypts account credentials with one Fernet key."""

    def __init__(self, key: bytes | str):
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "Invalid encryption_key (THOTTO_ENCRYPTION_KEY): it must be 32 url-safe "
                "base64-encoded bytes, as made by `python -c 'from cryptography.fernet import "
                "Fernet; print(Fernet.generate_key().decode())'`"
            ) from exc

    @classmethod
    def for_settings(cls, data_dir: str, key: str | None) -> "Vault":
        """The vault for these settings: the given key, else the data dir's key file (made on
        first use, readable by the owner only)."""
        return cls(key if key else load_or_create_key(Path(data_dir) / KEY_FILE_NAME))

    def seal(self, credentials: Credentials) -> bytes:
        return self._fernet.encrypt(msgspec.json.encode(credentials))

    def open(self, sealed: bytes) -> Credentials:
        try:
            return msgspec.json.decode(self._fernet.decrypt(sealed), type=RefreshToken | Password)
        except (InvalidToken, msgspec.DecodeError) as exc:
            raise SecretUnreadable(
                "Stored Reddit credentials cannot be decrypted: the encryption key changed or "
                "the data is damaged; link the account again"
            ) from exc

    def seal_note(self, note: str) -> str:
        """An encrypted, authenticated, timestamped note (e.g. an OAuth ``state`` naming the
        user who started linking): only this installation can make or read one."""
        return self._fernet.encrypt(note.encode()).decode()

    def open_note(self, sealed: str, *, max_age_seconds: float) -> str | None:
        """The note, or None if it is forged, damaged or older than ``max_age_seconds``."""
        try:
            return self._fernet.decrypt(sealed.encode(), ttl=int(max_age_seconds)).decode()
        except (InvalidToken, ValueError):
            return None


def load_or_create_key(path: Path) -> bytes:
    """Read the key file, creating it (mode 0600) if it does not exist.

    The key is written to a private temporary file and then hard-linked into place, so a
    process starting at the same moment never reads a half-written key: whoever links first
    wins and the other uses that key.
    """
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # private, as thotto.files keeps it
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(Fernet.generate_key() + b"\n")
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_bytes().strip()
