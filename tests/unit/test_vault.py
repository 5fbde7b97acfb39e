"""Credentials at rest: encrypted, key file made once with owner-only permissions."""

import stat

import pytest

from thotto.engine.errors import ConfigError
from thotto.vault import KEY_FILE_NAME, Password, RefreshToken, SecretUnreadable, Vault


def test_credentials_round_trip_and_are_not_stored_in_clear(tmp_path):
    vault = Vault.for_settings(str(tmp_path), None)
    sealed = vault.seal(Password(username="creator", password="hunter2"))
    assert b"hunter2" not in sealed and b"creator" not in sealed
    assert vault.open(sealed) == Password(username="creator", password="hunter2")
    assert vault.open(vault.seal(RefreshToken(token="r-123"))) == RefreshToken(token="r-123")


def test_the_key_file_is_created_once_readable_by_the_owner_only(tmp_path):
    first = Vault.for_settings(str(tmp_path), None)
    key_file = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    second = Vault.for_settings(str(tmp_path), None)
    assert key_file.read_bytes() == key
    assert second.open(first.seal(RefreshToken(token="t"))) == RefreshToken(token="t")
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]  # no temporary left behind


def test_another_key_cannot_open_the_credentials(tmp_path):
    sealed = Vault.for_settings(str(tmp_path / "a"), None).seal(RefreshToken(token="t"))
    with pytest.raises(SecretUnreadable, match="link the account again"):
        Vault.for_settings(str(tmp_path / "b"), None).open(sealed)


def test_a_bad_configured_key_names_the_setting():
    with pytest.raises(ConfigError, match="THOTTO_ENCRYPTION_KEY"):
        Vault("not-a-key")
