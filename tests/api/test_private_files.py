"""Files only their owner can read (issue #13): the data directory is 0700; the database with
its WAL, SHM and lock, the encryption key, and the sandbox's state are 0600. A start makes them
so (whatever the process umask) and tightens what others could read, with a warning, and then
serves as usual over real HTTP."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.api.conftest import api_settings, serving
from thotto.app import open_app

DATABASE_FILES = ("thotto.db", "thotto.db-wal", "thotto.db-shm", "thotto.db.lock", "secret.key")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask():
    """The usual umask, under which files are made 0644 unless their maker says otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def test_a_first_start_makes_its_files_private(sandbox, tmp_path, usual_umask):
    settings = api_settings(tmp_path, sandbox.url)
    async with serving(settings) as api:
        assert (await api.pro.client.get("/api/me")).status_code == 200
        data = Path(settings.data_dir)
        assert mode(data) == 0o700
        assert {name: mode(data / name) for name in DATABASE_FILES} == dict.fromkeys(DATABASE_FILES, 0o600)
    sandbox_dir = Path(sandbox.data_dir)
    assert mode(sandbox_dir) == 0o700 and mode(sandbox_dir / "state.json") == 0o600


async def test_a_start_tightens_what_others_could_read(sandbox, tmp_path, caplog, usual_umask):
    settings = api_settings(tmp_path, sandbox.url)
    data = Path(settings.data_dir)
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "secret.key").write_bytes(Fernet.generate_key())
    os.chmod(data / "secret.key", 0o644)
    async with serving(settings):
        pass
    for name in ("thotto.db", "thotto.db.lock"):
        os.chmod(data / name, 0o644)
    os.chmod(data / "secret.key", 0o640)
    os.chmod(data, 0o775)
    with caplog.at_level(logging.WARNING, logger="thotto.files"):
        async with open_app(settings, serve_api=True) as app:
            async with httpx.AsyncClient(base_url=app.tree.api.url) as http:
                assert (await http.get("/api/health")).status_code == 200
            assert mode(data) == 0o700
            assert all(mode(data / name) == 0o600 for name in DATABASE_FILES)
    warned = " ".join(record.getMessage() for record in caplog.records)
    for name in ("thotto.db", "secret.key", "thotto.db.lock"):
        assert str(data / name) in warned and "readable by others" in warned


async def test_the_sandbox_keeps_its_state_private_across_restarts(sandbox, caplog, usual_umask):
    await sandbox.stop()
    state_dir = Path(sandbox.data_dir)
    (state_dir / "posts.jsonl").write_bytes(b"")
    for name in ("state.json", "posts.jsonl"):
        os.chmod(state_dir / name, 0o644)
    os.chmod(state_dir, 0o755)
    with caplog.at_level(logging.WARNING, logger="thotto.files"):
        await sandbox.start()
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        assert (await http.get("/_sandbox/posts")).status_code == 200
    assert mode(state_dir) == 0o700
    assert mode(state_dir / "state.json") == 0o600 and mode(state_dir / "posts.jsonl") == 0o600
    assert "posts.jsonl" in " ".join(record.getMessage() for record in caplog.records)
